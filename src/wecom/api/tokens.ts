/**
 * Token cache: one entry per credential key (kind + corp + hash of the secret), in lru-cache,
 * refreshed ahead of expiry, with exactly one refresh in flight per key however many callers wait
 * (single-flight). A refresh that fails while the old token is still valid keeps the old token.
 *
 * The credential hold-off lives here too: when WeCom rejects a secret (40001 …), the failure is
 * remembered for that key and returned without calling WeCom again until the hold-off passes; a new
 * secret is a new key.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';

export interface Issued {
  readonly token: string;
  /** Seconds, as WeCom said (expires_in). */
  readonly expiresIn: number;
}

interface Entry {
  readonly token: string;
  readonly obtainedAt: number;
  readonly refreshAt: number;
  readonly expiresAt: number;
}

export interface TokenCacheOptions {
  readonly clock: () => number;
  /** Fraction of expires_in after which a refresh starts (default 0.85). */
  readonly refreshAhead?: number;
  readonly max?: number;
  /** How long a rejected credential is held off (ms). */
  readonly holdOffMs: number;
}

/** A stable map key for credentials; the secret goes in only through a hash and the key is never logged. */
export function credentialKey(kind: string, ...parts: string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return `${kind}:${parts[0] ?? ''}:${h.digest('base64url').slice(0, 22)}`;
}

export class TokenCache {
  readonly #clock: () => number;
  readonly #ahead: number;
  readonly #holdOffMs: number;
  readonly #entries: LRUCache<string, Entry>;
  readonly #inflight = new Map<string, Promise<string>>();
  readonly #rejected: LRUCache<string, { error: unknown; until: number }>;

  constructor(opts: TokenCacheOptions) {
    this.#clock = opts.clock;
    this.#ahead = opts.refreshAhead ?? 0.85;
    this.#holdOffMs = opts.holdOffMs;
    this.#entries = new LRUCache({ max: opts.max ?? 1000 });
    this.#rejected = new LRUCache({ max: opts.max ?? 1000 });
  }

  /**
   * The token for `key`: cached while fresh, else from `fetch` (one in flight per key).
   * `isRejection(err)` tells a credential refusal (held off) from a transient failure.
   */
  get(key: string, fetch: () => Promise<Issued>, isRejection: (err: unknown) => boolean): Promise<string> {
    const now = this.#clock();
    const entry = this.#entries.get(key);
    if (entry && now < entry.refreshAt) return Promise.resolve(entry.token);
    const pending = this.#inflight.get(key);
    if (pending) return pending;
    const held = this.#rejected.get(key);
    if (held && now < held.until) return Promise.reject(held.error);
    const p = (async () => {
      try {
        const issued = await fetch();
        const t = this.#clock();
        const life = Math.max(1, issued.expiresIn) * 1000;
        this.#entries.set(key, { token: issued.token, obtainedAt: t, refreshAt: t + life * this.#ahead, expiresAt: t + life });
        this.#rejected.delete(key);
        return issued.token;
      } catch (e) {
        if (isRejection(e)) {
          this.#rejected.set(key, { error: e, until: this.#clock() + this.#holdOffMs });
          this.#entries.delete(key);
          throw e;
        }
        // Refreshing ahead of expiry failed: the old token is still good for a while.
        const old = this.#entries.get(key);
        if (old && this.#clock() < old.expiresAt) return old.token;
        throw e;
      } finally {
        this.#inflight.delete(key);
      }
    })();
    this.#inflight.set(key, p);
    return p;
  }

  /** WeCom said `token` is invalid or expired: drop it, unless a newer one already replaced it. */
  invalidate(key: string, token: string): void {
    if (this.#entries.get(key)?.token === token) this.#entries.delete(key);
  }

  /** Forget the token of `key` whatever it is (its credential was replaced or withdrawn). */
  drop(key: string): void {
    this.#entries.delete(key);
  }

  /** Expiry (ms) of the cached token for `key`, if any. */
  expiresAt(key: string): number | undefined {
    return this.#entries.get(key)?.expiresAt;
  }

  /** The hold-off end of a rejected credential, if one is active. */
  heldUntil(key: string): number | undefined {
    const h = this.#rejected.get(key);
    return h && this.#clock() < h.until ? h.until : undefined;
  }

  clear(): void {
    this.#entries.clear();
    this.#rejected.clear();
  }
}
