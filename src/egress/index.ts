/**
 * Egress profiles: named ways out for WeCom calls and for the upstream traffic of routes with
 * `egress:` — a pinned local source address (address family pinned: src/egress/family.ts), a fixed-IP forward
 * proxy reached with HTTP CONNECT (optionally from that local address), or both. WeCom's 企业可信IP
 * check sees whatever address the traffic finally leaves with, so each profile can also compare the
 * public IP an IP-echo service reports with `expected_ip`, at start-up and on a timer.
 *
 * Each profile gives:
 * - `dispatcher`: an undici Agent (`localAddress` + `connect.family`) or ProxyAgent for API clients;
 *   `createDispatcher(tls)` makes another one with a private CA / connect timeout;
 * - `createPool` / `createAgent`: what src/proxy needs for HTTP (an undici Pool) and WebSocket
 *   upgrades (an http(s).Agent for http-proxy-3) of a route using the profile.
 *
 * undici is loaded on first use (src/egress/undici.ts): a gateway without profiles never loads it.
 */
import { createSecureContext } from 'node:tls';
import type { Agent as HttpsAgentType } from 'node:https';
import { Agent as HttpsAgent } from 'node:https';
import type { Dispatcher, Pool } from 'undici';
import type { EgressProfileConfig } from '../config/schema.ts';
import type { Logger } from '../core/logger.ts';
import { Agent as HttpAgent } from '../core/node-http.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { checkEgressHost, readProxyCredentials } from './check.ts';
import { pinnedFamily } from './family.ts';
import { fetchPublicIp, sameIp } from './ip-echo.ts';
import { createTunnelAgent, type TunnelSettings, tunnelConnector } from './tunnel.ts';
import { undici } from './undici.ts';

export { checkEgressHost, probeLocalAddress } from './check.ts';
export { familyOf, pinnedFamily } from './family.ts';
export { explainEgressError } from './ip-echo.ts';
export { EgressProxyError } from './tunnel.ts';

/** TLS and connect settings for a dispatcher made by createDispatcher (a private CA in tests, WeCom's api_base). */
export interface EgressTls {
  readonly ca?: string | Buffer | readonly (string | Buffer)[];
  readonly servername?: string;
  readonly rejectUnauthorized?: boolean;
  /** TCP (+ proxy tunnel) + TLS connect timeout; default 5000 ms. */
  readonly connectTimeoutMs?: number;
}

/** The last IP-echo result of a profile (diagnostics, doctor). */
export interface EgressStatus {
  /** Public IP the echo service saw, undefined before the first successful check. */
  readonly observedIp: string | undefined;
  /** observedIp equals expected_ip; undefined without expected_ip or before the first check. */
  readonly matches: boolean | undefined;
  /** Wall-clock ms of the last check (successful or not). */
  readonly checkedAt: number | undefined;
  /** Why the last check failed (no secret in it), undefined when it succeeded. */
  readonly error: string | undefined;
}

export interface EgressProfile {
  readonly name: string;
  /** For API clients (the WeCom client): system CAs, 5 s connect timeout. Closed with the egress. */
  readonly dispatcher: Dispatcher;
  readonly localAddress?: string;
  readonly family?: 4 | 6;
  readonly expectedIp?: string;
  readonly viaProxy: boolean;
  /** The proxy's origin ("http://10.0.0.9:3128"; credentials are never part of it). */
  readonly proxyOrigin?: string;
  /** Another dispatcher with these TLS settings; closed with the egress unless closed earlier. */
  createDispatcher(tls?: EgressTls): Dispatcher;
  /** A Pool to one upstream origin leaving through this profile (for src/proxy; the caller closes it). */
  createPool(origin: string, options: Pool.Options): Pool;
  /** An http(s).Agent for WebSocket upgrades leaving through this profile (for src/proxy; the caller destroys it). */
  createAgent(secure: boolean, options: { readonly connectTimeoutMs: number }): HttpAgent;
  readonly status: EgressStatus;
  /** Run the IP echo now (no-op without ip_echo); resolves with the new status. Never rejects. */
  checkNow(): Promise<EgressStatus>;
}

/** A profile as /diagnostics and doctor show it. */
export interface EgressSnapshot extends EgressStatus {
  readonly name: string;
  readonly localAddress: string | undefined;
  readonly family: 4 | 6 | undefined;
  readonly proxy: string | undefined;
  readonly expectedIp: string | undefined;
  readonly ipEcho: boolean;
}

export interface Egress {
  profile(name: string): EgressProfile | undefined;
  readonly profiles: readonly EgressProfile[];
  snapshot(): EgressSnapshot[];
  /** Run every profile's IP echo now (tests, doctor). */
  checkAll(): Promise<void>;
  /** Stop the timers, abort running checks, close the dispatchers. Idempotent. */
  close(): Promise<void>;
}

export interface EgressDeps {
  readonly profiles: Readonly<Record<string, EgressProfileConfig>> | undefined;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Wall clock in ms (status timestamps). */
  readonly now?: () => number;
}

/** The profiles cannot be used on this host; `problems` name each key (as config problems do). */
export class EgressError extends Error {
  override readonly name = 'EgressError';
  readonly problems: readonly { readonly at: readonly (string | number)[]; readonly message: string }[];
  constructor(problems: EgressError['problems']) {
    super(
      `egress profiles cannot be used on this host (出口配置在本机不可用):\n${problems
        .map((p) => `  ${p.at.map((s) => (typeof s === 'number' ? `[${s}]` : s)).join('.')}: ${p.message}`)
        .join('\n')}`,
    );
    this.problems = problems;
  }
}

const DEFAULT_CONNECT_MS = 5_000;

type CheckResult = 'match' | 'mismatch' | 'no_expected_ip' | 'error';

/**
 * Build the profiles. Rejects with an EgressError when a local address is not on this host or a
 * credentials file cannot be read. Starts each profile's IP echo (not awaited: start-up does not
 * wait for an outside service) and its timer (unref'd).
 */
export async function createEgress(deps: EgressDeps): Promise<Egress> {
  const { logger, metrics } = deps;
  const now = deps.now ?? Date.now;
  const entries = Object.entries(deps.profiles ?? {});
  const problems = await checkEgressHost({ egress: deps.profiles ?? {} });
  if (problems.length > 0) throw new EgressError(problems);

  const owned = new Set<Dispatcher>();
  const timers: NodeJS.Timeout[] = [];
  const aborts = new Set<AbortController>();
  let closed = false;
  const profiles: Profile[] = [];

  interface Profile extends EgressProfile {
    readonly config: EgressProfileConfig;
    status: EgressStatus;
    running: Promise<EgressStatus> | undefined;
    /** result|ip of the last logged state: a state is logged once, when it changes. */
    logged: string;
  }

  for (const [name, cfg] of entries) {
    const localAddress = cfg.local_address;
    const family = pinnedFamily(cfg);
    let tunnel: TunnelSettings | undefined;
    if (cfg.proxy !== undefined) {
      let authorization: string | undefined;
      if (cfg.proxy.credentials_file !== undefined) {
        const creds = await readProxyCredentials(cfg.proxy.credentials_file);
        // checkEgressHost read it a moment ago; a file that changed since is a start-up error too.
        if (!creds.ok) throw new EgressError([{ at: ['egress', name, 'proxy', 'credentials_file'], message: creds.reason }]);
        authorization = `Basic ${Buffer.from(`${creds.user}:${creds.password}`).toString('base64')}`;
      }
      tunnel = { proxyOrigin: new URL(cfg.proxy.url).origin, authorization, localAddress, family };
    }

    const makeDispatcher = (tls: EgressTls = {}): Dispatcher => {
      const { Agent, Pool, ProxyAgent, connect: connectApi } = undici();
      const connectTimeout = tls.connectTimeoutMs ?? DEFAULT_CONNECT_MS;
      const tlsOptions = {
        // One TLS context for the dispatcher's connections (with `ca` alone each builds its own: see src/proxy/index.ts).
        ...(tls.ca !== undefined ? { secureContext: createSecureContext({ ca: tls.ca as string | Buffer | (string | Buffer)[] }) } : {}),
        ...(tls.servername !== undefined ? { servername: tls.servername } : {}),
        ...(tls.rejectUnauthorized !== undefined ? { rejectUnauthorized: tls.rejectUnauthorized } : {}),
      };
      let d: Dispatcher;
      if (tunnel === undefined) {
        // `localAddress` must be the Agent's own option: undici's connector takes the source address
        // from the Client, and `connect.localAddress` would be overwritten by its unset value.
        d = new Agent({
          ...(localAddress !== undefined ? { localAddress } : {}),
          connect: { timeout: connectTimeout, ...(family !== undefined ? { family } : {}), ...tlsOptions },
        });
      } else {
        const t = tunnel;
        d = new ProxyAgent({
          uri: t.proxyOrigin,
          ...(t.authorization !== undefined ? { token: t.authorization } : {}),
          connectTimeout,
          // Every connection is a CONNECT tunnel, http:// targets too (as the route pools' tunnels):
          // the proxy sees no request, and a refusal is an error instead of the proxy's error page.
          proxyTunnel: true,
          // The connection to the proxy leaves from the local address (the same Client option as above).
          // ProxyAgent opens its tunnels with this client's connect() method, which undici's index
          // copies onto Dispatcher.prototype; without that index loaded (src/egress/undici.ts) the
          // client needs the API function of its own.
          clientFactory: (url, opts) =>
            Object.assign(new Pool(url, { ...(opts as Pool.Options), ...(localAddress !== undefined ? { localAddress } : {}) }), {
              connect: connectApi,
            }),
          proxyTls: { timeout: connectTimeout, ...(family !== undefined ? { family } : {}) },
          requestTls: { timeout: connectTimeout, ...tlsOptions },
        });
      }
      owned.add(d);
      return d;
    };

    // The profile's own dispatcher is made on first use: a profile only routes use never loads undici's agents.
    let own: Dispatcher | undefined;
    const profile: Profile = {
      name,
      config: cfg,
      get dispatcher() {
        own ??= makeDispatcher();
        return own;
      },
      ...(localAddress !== undefined ? { localAddress } : {}),
      ...(family !== undefined ? { family } : {}),
      ...(cfg.expected_ip !== undefined ? { expectedIp: cfg.expected_ip } : {}),
      viaProxy: tunnel !== undefined,
      ...(tunnel !== undefined ? { proxyOrigin: tunnel.proxyOrigin } : {}),
      createDispatcher: makeDispatcher,
      createPool(origin, options) {
        const { Pool } = undici();
        if (tunnel !== undefined) {
          const connect = typeof options.connect === 'function' ? {} : (options.connect ?? {});
          return new Pool(origin, { ...options, connect: tunnelConnector(tunnel, connect) });
        }
        const connect =
          typeof options.connect === 'function' ? options.connect : { ...options.connect, ...(family !== undefined ? { family } : {}) };
        return new Pool(origin, { ...options, ...(localAddress !== undefined ? { localAddress } : {}), connect });
      },
      createAgent(secure, { connectTimeoutMs }) {
        if (tunnel !== undefined) return createTunnelAgent(tunnel, secure, connectTimeoutMs);
        const pin = {
          keepAlive: false,
          ...(localAddress !== undefined ? { localAddress } : {}),
          ...(family !== undefined ? { family } : {}),
        };
        return secure ? (new HttpsAgent(pin) as HttpsAgentType as HttpAgent) : new HttpAgent(pin);
      },
      status: { observedIp: undefined, matches: undefined, checkedAt: undefined, error: undefined },
      running: undefined,
      logged: '',
      checkNow: () => check(profile),
    };
    profiles.push(profile);
  }

  const byName = new Map(profiles.map((p) => [p.name, p]));

  function record(p: Profile, result: CheckResult, status: EgressStatus): EgressStatus {
    p.status = status;
    metrics.egressChecks.inc({ profile: p.name, result });
    if (result === 'match') metrics.egressIpMismatch.set({ profile: p.name }, 0);
    else if (result === 'mismatch') metrics.egressIpMismatch.set({ profile: p.name }, 1);
    const key = `${result}|${status.observedIp ?? ''}|${result === 'error' ? (status.error ?? '') : ''}`;
    if (key === p.logged) return status;
    p.logged = key;
    const fields = { egress: p.name, observed_ip: status.observedIp, expected_ip: p.expectedIp };
    if (result === 'mismatch') {
      logger.warn(
        fields,
        `egress profile ${p.name}: WeCom will see ${status.observedIp} but expected_ip is ${p.expectedIp}; calls will fail with 60020 ` +
          `unless ${status.observedIp} is in 应用管理 › <app> › 企业可信IP or the egress pin is fixed ` +
          `(出口 IP 与 expected_ip 不一致：企业微信看到的是 ${status.observedIp}，请检查出口固定是否生效或把该 IP 加入企业可信IP)`,
      );
    } else if (result === 'match') {
      logger.info(fields, `egress profile ${p.name}: public IP ${status.observedIp} matches expected_ip (出口 IP 与 expected_ip 一致)`);
    } else if (result === 'no_expected_ip') {
      logger.info(
        fields,
        `egress profile ${p.name}: public IP is ${status.observedIp} (no expected_ip to compare with / 未设置 expected_ip)`,
      );
    } else {
      logger.warn({ ...fields, reason: status.error }, `egress profile ${p.name}: the IP echo failed (出口 IP 检测失败)`);
    }
    return status;
  }

  function check(p: Profile): Promise<EgressStatus> {
    const echo = p.config.ip_echo;
    if (echo === undefined || closed) return Promise.resolve(p.status);
    // One check at a time per profile: a timer tick during a slow check joins it.
    p.running ??= (async () => {
      const abort = new AbortController();
      aborts.add(abort);
      try {
        const ip = await fetchPublicIp(p.dispatcher, echo.url, echo.timeout_ms, abort.signal);
        if (closed) return p.status;
        const matches = p.expectedIp === undefined ? undefined : sameIp(ip, p.expectedIp);
        const result: CheckResult = matches === undefined ? 'no_expected_ip' : matches ? 'match' : 'mismatch';
        return record(p, result, { observedIp: ip, matches, checkedAt: now(), error: undefined });
      } catch (err) {
        if (closed) return p.status;
        return record(p, 'error', { ...p.status, checkedAt: now(), error: (err as Error).message });
      } finally {
        aborts.delete(abort);
        p.running = undefined;
      }
    })();
    return p.running;
  }

  for (const p of profiles) {
    const echo = p.config.ip_echo;
    if (echo === undefined) continue;
    void check(p);
    const timer = setInterval(() => void check(p), echo.interval_ms);
    timer.unref();
    timers.push(timer);
  }

  return {
    profile: (name) => byName.get(name),
    profiles,
    snapshot: () =>
      profiles.map((p) => ({
        name: p.name,
        localAddress: p.localAddress,
        family: p.family,
        proxy: p.proxyOrigin,
        expectedIp: p.expectedIp,
        ipEcho: p.config.ip_echo !== undefined,
        ...p.status,
      })),
    async checkAll() {
      await Promise.all(profiles.map((p) => check(p)));
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const t of timers) clearInterval(t);
      for (const a of aborts) a.abort(new Error('egress closed'));
      await Promise.allSettled([...owned].map((d) => d.close()));
    },
  };
}
