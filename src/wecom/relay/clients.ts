/**
 * The relay's client table: who a vendor server is (bearer token for the API relay, Basic password
 * for the CONNECT tunnel, both stored as SHA-256 hex only), where it may connect from (node:net
 * BlockList) and how fast it may call (a token bucket that outlives configuration reloads).
 * Nothing here logs, and no error or metric label carries a token or password.
 */
import { hash, timingSafeEqual } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { LRUCache } from 'lru-cache';
import type { Counter } from 'prom-client';
import type { RelayClientConfig } from '../../config/schema.ts';

/** A relay client after start-up: immutable except its bucket (shared across reloads). */
export interface RelayClient {
  readonly name: string;
  readonly app: string | undefined;
  /** Allow-listed WeCom API paths (exact). */
  readonly apis: ReadonlySet<string>;
  /** The CONNECT password's SHA-256 (raw bytes), if the client may use the tunnel. */
  readonly connectPasswordHash: Buffer | undefined;
  /** True when the address may use this client (no source_cidrs = any). */
  allowsSource(ip: string): boolean;
  readonly bucket: TokenBucket;
}

/** Token bucket: `take()` answers 0 when a request may go, else the seconds to wait. */
export class TokenBucket {
  #rate: number;
  #burst: number;
  #tokens: number;
  #last: number;
  readonly #clock: () => number;
  constructor(rate: number, burst: number, clock: () => number) {
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
    this.#clock = clock;
    this.#last = clock();
  }
  /** A reload changed the limits: keep the tokens earned so far, capped to the new burst. */
  configure(rate: number, burst: number): void {
    this.#refill();
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = Math.min(this.#tokens, burst);
  }
  /** 0 when a token is there (none taken), else the seconds until one is. */
  wait(): number {
    this.#refill();
    return this.#tokens >= 1 ? 0 : Math.max(1, Math.ceil((1 - this.#tokens) / this.#rate));
  }
  take(): number {
    this.#refill();
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - this.#tokens) / this.#rate));
  }
  #refill(): void {
    const now = this.#clock();
    const elapsed = now - this.#last;
    this.#last = now;
    if (elapsed > 0) this.#tokens = Math.min(this.#burst, this.#tokens + (elapsed / 1000) * this.#rate);
  }
}

/** Failed authentications (no or wrong bearer token / CONNECT password) a source address may make per minute. */
export const AUTH_FAILURES_PER_MINUTE = 20;
/** Source addresses whose failures are remembered (least recently failed forgotten first). */
const AUTH_FAILURE_ADDRESSES = 10_000;

/**
 * Buckets per client name, created once by the composition root so a reload does not refill them;
 * and the failed-authentication buckets per source address (relay and tunnel), which outlive
 * reloads too: AUTH_FAILURES_PER_MINUTE failures, then every request from that address is refused
 * with 429 until the bucket refills (one attempt per 3 s), before its credentials are even checked.
 */
export interface RelayLimiter {
  bucket(name: string, perSecond: number, burst: number): TokenBucket;
  /** Seconds `ip` must wait after too many failed authentications; 0 = it may try. */
  authWait(ip: string): number;
  /** Record one failed authentication from `ip`. */
  authFailed(ip: string): void;
}

export function createRelayLimiter(clock: () => number = performance.now.bind(performance)): RelayLimiter {
  const buckets = new Map<string, TokenBucket>();
  const failures = new LRUCache<string, TokenBucket>({ max: AUTH_FAILURE_ADDRESSES });
  return {
    bucket(name, perSecond, burst) {
      let b = buckets.get(name);
      if (b) b.configure(perSecond, burst);
      else buckets.set(name, (b = new TokenBucket(perSecond, burst, clock)));
      return b;
    },
    authWait(ip) {
      // The common case (no failure ever, or none remembered) costs one size test.
      if (failures.size === 0) return 0;
      const b = failures.peek(plainIp(ip));
      return b === undefined ? 0 : b.wait();
    },
    authFailed(ip) {
      const key = plainIp(ip);
      let b = failures.get(key);
      if (b === undefined) failures.set(key, (b = new TokenBucket(AUTH_FAILURES_PER_MINUTE / 60, AUTH_FAILURES_PER_MINUTE, clock)));
      b.take();
    },
  };
}

/** "::ffff:1.2.3.4" → "1.2.3.4" (a dual-stack listener reports IPv4 peers that way). */
const plainIp = (ip: string): string => (ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip);

/** Parse "a.b.c.d", "a.b.c.d/n", "v6", "v6/n"; undefined when malformed (validation reports it first). */
export function parseCidr(text: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const slash = text.indexOf('/');
  const address = plainIp(slash === -1 ? text : text.slice(0, slash));
  const f = isIP(address);
  if (f === 0) return undefined;
  const max = f === 4 ? 32 : 128;
  const p = slash === -1 ? String(max) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(p) || Number(p) > max) return undefined;
  return { address, prefix: Number(p), family: f === 4 ? 'ipv4' : 'ipv6' };
}

function sourceCheck(cidrs: readonly string[]): (ip: string) => boolean {
  if (cidrs.length === 0) return () => true;
  const list = new BlockList();
  for (const c of cidrs) {
    const parsed = parseCidr(c);
    if (!parsed) throw new Error(`relay: source_cidrs entry ${JSON.stringify(c)} is not an address or CIDR block`);
    list.addSubnet(parsed.address, parsed.prefix, parsed.family);
  }
  return (ip) => {
    const a = plainIp(ip);
    const f = isIP(a);
    return f !== 0 && list.check(a, f === 4 ? 'ipv4' : 'ipv6');
  };
}

const sha256 = (s: string): Buffer => hash('sha256', s, 'buffer');

/** Lookup of clients by credentials. */
export interface RelayClients {
  readonly list: readonly RelayClient[];
  /** The client whose token is in `Authorization: Bearer <token>`, if any. */
  byBearer(header: string | undefined): RelayClient | undefined;
  /** The client of `Proxy-Authorization: Basic base64(name:password)`, if the password matches. */
  byBasic(header: string | undefined): RelayClient | undefined;
  /** Pre-resolved metric children per client and result (no label hashing per request). */
  count(client: RelayClient | undefined, result: string): void;
  /** The limiter's failed-authentication buckets per source address (see RelayLimiter). */
  authWait(ip: string): number;
  authFailed(ip: string): void;
}

export function createRelayClients(
  configs: readonly RelayClientConfig[],
  limiter: RelayLimiter,
  counter: Pick<Counter<'client' | 'result'>, 'labels'>,
): RelayClients {
  const byToken = new Map<string, RelayClient>();
  const byName = new Map<string, RelayClient>();
  const list: RelayClient[] = [];
  for (const c of configs) {
    const client: RelayClient = {
      name: c.name,
      app: c.app,
      apis: new Set(c.apis),
      connectPasswordHash: c.connect_password_sha256 !== undefined ? Buffer.from(c.connect_password_sha256, 'hex') : undefined,
      allowsSource: sourceCheck(c.source_cidrs),
      bucket: limiter.bucket(c.name, c.rate.per_second, c.rate.burst),
    };
    list.push(client);
    byName.set(c.name, client);
    if (c.token_sha256 !== undefined) byToken.set(c.token_sha256.toLowerCase(), client);
  }
  const children = new Map<string, Map<string, { inc(): void }>>();
  return {
    list,
    byBearer(header) {
      // "Bearer <token>"; the scheme is case-insensitive (RFC 9110 §11.1).
      if (header === undefined || header.length < 8 || header.charCodeAt(6) !== 0x20) return undefined;
      if (header.slice(0, 6).toLowerCase() !== 'bearer') return undefined;
      const token = header.slice(7).trim();
      if (token === '') return undefined;
      // The map is keyed by a SHA-256 of the token: a lookup reveals nothing usable through timing.
      return byToken.get(hash('sha256', token, 'hex'));
    },
    byBasic(header) {
      if (header === undefined || header.length < 7 || header.slice(0, 6).toLowerCase() !== 'basic ') return undefined;
      const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon <= 0) return undefined;
      const client = byName.get(decoded.slice(0, colon));
      const expected = client?.connectPasswordHash;
      // Hash even for an unknown user, so both cases take the same time.
      const got = sha256(decoded.slice(colon + 1));
      if (!client || !expected) return undefined;
      return timingSafeEqual(got, expected) ? client : undefined;
    },
    count(client, result) {
      const name = client?.name ?? '-';
      let m = children.get(name);
      if (!m) children.set(name, (m = new Map()));
      let child = m.get(result);
      if (!child) m.set(result, (child = counter.labels({ client: name, result })));
      child.inc();
    },
    authWait: (ip) => limiter.authWait(ip),
    authFailed: (ip) => limiter.authFailed(ip),
  };
}
