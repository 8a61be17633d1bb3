/**
 * The shape every doctor check shares. A check is a named function over the context that returns
 * one result per thing it looked at (a listener, a certificate, an app …), each ✓ / ⚠ / ✗ / – with
 * what was found and, when something is wrong, the fix, in English and 简体中文.
 */
import type { Config } from '../../config/schema.ts';
import type { Egress } from '../../egress/index.ts';
import type { WecomApi } from '../../wecom/api/index.ts';

/** ok ✓; warn ⚠ (works, but look at it; exit code stays 0); fail ✗ (exit 1); skip – (not applicable). */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface Bilingual {
  readonly en: string;
  readonly zh: string;
}

export interface CheckResult extends Bilingual {
  /** The check's name ("listeners", "wecom_trusted_ip" …). */
  readonly check: string;
  /** What was looked at ("listen.http 127.0.0.1:80", "app ecard" …). */
  readonly subject: string;
  readonly status: CheckStatus;
  /** What to do, when status is warn or fail and the finding does not already say it. */
  readonly fix?: Bilingual;
}

/** What a check may use; resources are built once, on first use, and closed after the run. */
export interface DoctorContext {
  readonly config: Config;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Wall clock, ms. */
  readonly now: () => number;
  /** PEM roots a client knows (certificate chain check). */
  readonly roots: () => readonly string[];
  /** Egress profiles that cannot be used on this host (name → why); the others are in egress(). */
  unusableProfiles(): Promise<ReadonlyMap<string, string>>;
  /** The usable egress profiles (IP echo, dispatchers). */
  egress(): Promise<Egress>;
  /** The WeCom client through wecom.egress (or direct), or why it cannot be built; undefined without `wecom:`. */
  wecom(): Promise<{ readonly api: WecomApi } | { readonly error: string } | undefined>;
  /** Results of checks that already ran (a later check may depend on an earlier one). */
  readonly results: readonly CheckResult[];
}

export interface DoctorCheck {
  readonly name: string;
  run(ctx: DoctorContext): Promise<readonly CheckResult[]>;
}

/** A result of `check` (a small constructor the checks share). */
export const result = (check: string, subject: string, status: CheckStatus, found: Bilingual, fix?: Bilingual): CheckResult => ({
  check,
  subject,
  status,
  en: found.en,
  zh: found.zh,
  ...(fix ? { fix } : {}),
});
