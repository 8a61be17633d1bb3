/**
 * `wegate doctor`: the checks, in the order they run. Adding a check is one line in DOCTOR_CHECKS
 * (a DoctorCheck: a name and a function returning results); the callbacks and login issues add
 * theirs here. runDoctor builds the shared resources (egress profiles, the WeCom client) on first
 * use and closes them after the last check; formatDoctorReport prints it for people, the report
 * itself is the --json output.
 */
import { Registry } from 'prom-client';
import type { ConfigProblem } from '../../config/load.ts';
import type { Config } from '../../config/schema.ts';
import { EXIT_CONFIG } from '../../core/errors.ts';
import { createLogger } from '../../core/logger.ts';
import { checkEgressHost, createEgress, type Egress } from '../../egress/index.ts';
import { createMetrics } from '../../metrics/metrics.ts';
import { createDirectWecomEgress } from '../../wecom/api/direct-egress.ts';
import { createWecomApi, type WecomApi, type WecomEgress } from '../../wecom/api/index.ts';
import { createProfileWecomEgress } from '../../wecom/api/profile-egress.ts';
import { createIncidents } from '../incidents.ts';
import { certificatesCheck, listenersCheck, verifyFilesCheck } from './host-checks.ts';
import { egressCheck, publicIpCheck, upstreamsCheck } from './network-checks.ts';
import type { CheckResult, CheckStatus, DoctorCheck, DoctorContext } from './types.ts';
import { suiteTicketCheck } from './suite-checks.ts';
import { wecomTokenCheck, wecomTrustedIpCheck } from './wecom-checks.ts';

export type { Bilingual, CheckResult, CheckStatus, DoctorCheck, DoctorContext } from './types.ts';
export { result } from './types.ts';

/** Every check `wegate doctor` runs, in order (a later check may read an earlier one's results). */
export const DOCTOR_CHECKS: readonly DoctorCheck[] = [
  listenersCheck,
  certificatesCheck,
  verifyFilesCheck,
  egressCheck,
  publicIpCheck,
  upstreamsCheck,
  wecomTokenCheck,
  wecomTrustedIpCheck,
  suiteTicketCheck,
];

export interface DoctorReport {
  readonly file: string;
  /** No ✗. */
  readonly ok: boolean;
  /** 0 ok, 1 a check failed, 78 the configuration is invalid. */
  readonly exitCode: number;
  readonly summary: Readonly<Record<CheckStatus, number>>;
  readonly results: readonly CheckResult[];
}

export interface DoctorDeps {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly now?: () => number;
  readonly roots?: () => readonly string[];
  readonly checks?: readonly DoctorCheck[];
}

function report(file: string, results: readonly CheckResult[], exitCode?: number): DoctorReport {
  const summary: Record<CheckStatus, number> = { ok: 0, warn: 0, fail: 0, skip: 0 };
  for (const r of results) summary[r.status]++;
  return { file, ok: summary.fail === 0, exitCode: exitCode ?? (summary.fail > 0 ? 1 : 0), summary, results };
}

/** The report for a configuration that did not validate: one ✗ per problem, exit 78. */
export function invalidConfigReport(file: string, problems: readonly ConfigProblem[]): DoctorReport {
  return report(
    file,
    problems.map((p) => ({
      check: 'config',
      subject: `${p.path}${p.line !== undefined ? ` (line ${p.line})` : ''}`,
      status: 'fail' as const,
      en: p.message,
      zh: `配置无效：${p.message}`,
    })),
    EXIT_CONFIG,
  );
}

/** Run every check against a valid configuration. Never rejects for what it finds; a check that throws is a ✗ of its own. */
export async function runDoctor(file: string, config: Config, deps: DoctorDeps): Promise<DoctorReport> {
  const results: CheckResult[] = [
    {
      check: 'config',
      subject: file,
      status: 'ok',
      en: `configuration is valid: ${config.routes.length} route(s)`,
      zh: `配置有效：${config.routes.length} 条路由`,
    },
  ];
  const now = deps.now ?? Date.now;
  const logger = createLogger({ level: 'silent', destination: { write: () => undefined } });
  const metrics = createMetrics({ registry: new Registry(), processMetrics: false });
  let unusable: Promise<Map<string, string>> | undefined;
  let egress: Promise<Egress> | undefined;
  let wecom: Promise<{ api: WecomApi } | { error: string } | undefined> | undefined;
  let direct: { close(): Promise<void> } | undefined;

  const ctx: DoctorContext = {
    config,
    env: deps.env,
    now,
    roots: deps.roots ?? (() => []),
    results,
    unusableProfiles() {
      unusable ??= checkEgressHost(config).then((problems) => {
        const m = new Map<string, string>();
        for (const p of problems) {
          const name = String(p.at[1]);
          const line = `${p.at.join('.')}: ${p.message}`;
          m.set(name, m.has(name) ? `${m.get(name)}; ${line}` : line);
        }
        return m;
      });
      return unusable;
    },
    egress() {
      egress ??= ctx.unusableProfiles().then((bad) => {
        const profiles = Object.fromEntries(Object.entries(config.egress ?? {}).filter(([n]) => !bad.has(n)));
        return createEgress({ profiles, logger, metrics, now });
      });
      return egress;
    },
    wecom() {
      wecom ??= (async () => {
        const w = config.wecom;
        if (!w) return undefined;
        try {
          let wecomEgress: WecomEgress;
          if (w.egress !== undefined) {
            const name = w.egress;
            if ((await ctx.unusableProfiles()).has(name))
              return { error: `wecom.egress: the egress profile ${name} is unusable (see egress above)` };
            const eg = await ctx.egress();
            const profile = eg.profile(name);
            if (!profile) return { error: `wecom.egress names the egress profile "${name}", which the egress section does not define` };
            wecomEgress = createProfileWecomEgress(() => profile, w);
          } else {
            const d = createDirectWecomEgress(w);
            direct = d;
            wecomEgress = d.egress;
          }
          const incidents = createIncidents({ clock: now, logger, metrics });
          return { api: createWecomApi({ config: w, egress: wecomEgress, logger, metrics, incidents, env: deps.env, clock: now }) };
        } catch (e) {
          return { error: (e as Error).message };
        }
      })();
      return wecom;
    },
  };

  try {
    for (const check of deps.checks ?? DOCTOR_CHECKS) {
      try {
        results.push(...(await check.run(ctx)));
      } catch (e) {
        results.push({
          check: check.name,
          subject: check.name,
          status: 'fail',
          en: `the check failed: ${(e as Error).message}`,
          zh: `检查出错：${(e as Error).message}`,
        });
      }
    }
  } finally {
    const w = await wecom;
    if (w && 'api' in w) await w.api.close();
    await direct?.close();
    await (await egress?.catch(() => undefined))?.close();
  }
  return report(file, results);
}

const MARK: Record<CheckStatus, string> = { ok: '✓', warn: '⚠', fail: '✗', skip: '–' };

/** The report for people: one block per result, English then 简体中文, the fix indented below. */
export function formatDoctorReport(r: DoctorReport): string {
  const lines = [`wegate doctor: ${r.file}`, ''];
  for (const x of r.results) {
    lines.push(`${MARK[x.status]} ${x.check}: ${x.subject}`);
    lines.push(`    ${x.en}`);
    if (x.zh !== x.en) lines.push(`    ${x.zh}`);
    if (x.fix) lines.push(`    fix: ${x.fix.en}`, `    处理：${x.fix.zh}`);
  }
  const s = r.summary;
  lines.push(
    '',
    `${s.ok} ✓, ${s.warn} ⚠, ${s.fail} ✗, ${s.skip} –: ` +
      (r.exitCode === EXIT_CONFIG
        ? 'the configuration is invalid (配置无效)'
        : s.fail > 0
          ? `${s.fail} problem(s) to fix (${s.fail} 项需要处理)`
          : 'everything checked works (所有检查均通过)'),
    '',
  );
  return lines.join('\n');
}
