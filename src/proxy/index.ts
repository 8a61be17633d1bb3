/**
 * The proxy feature: route table, header policy, forwarding (undici for HTTP, http-proxy-3 for
 * WebSocket upgrades) and response rewriting. The server pipeline validates Host and normalises the
 * path, then asks match() and hands the request to web() or upgrade().
 */
import type { Agent as HttpAgent, IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { createSecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { Pool as UndiciPool } from 'undici';
import type { RouteConfig } from '../config/schema.ts';
import { type RequestContext, sendError } from '../core/http.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { type ForwardEnv, forward, HeldChunks } from './forward.ts';
import type { ObserverFactory } from './observer.ts';
import { buildRouteTable, type CompiledRoute, forwardPath } from './routes.ts';
import { WebSocketProxy } from './websocket.ts';

export { HOP_BY_HOP_HEADERS } from './headers.ts';
export type { BodySink, ObserverFactory, Replacement, ResponseObserver } from './observer.ts';

/**
 * undici's Pool, loaded on its own: undici's index also loads fetch, WebSocket, EventSource, the
 * caches and the mock agents, which the gateway never uses: about 2.5 MB more heap and 5 MB more RSS
 * in a process that has node:http and node:https loaded anyway (measured on Node 24). The module is
 * undici's own Pool (the package has no exports map); the version is pinned by the lock file, and
 * every proxy test goes through it.
 */
const Pool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
type Pool = UndiciPool;

/** The way out of a route with `egress:` (implemented by an egress profile, src/egress). */
export interface RouteEgress {
  /** A pool to one upstream origin leaving through the profile; the proxy closes it. */
  createPool(origin: string, options: UndiciPool.Options): Pool;
  /** An agent for the route's WebSocket upgrades leaving through the profile; the proxy destroys it. */
  createAgent(secure: boolean, options: { readonly connectTimeoutMs: number }): HttpAgent;
}

export interface ProxyDeps {
  readonly routes: readonly RouteConfig[];
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The egress profile named by a route's `egress:`; routes without it use plain pools and no agent. */
  readonly egress?: (profile: string) => RouteEgress | undefined;
  /** Gives each route its response observer, once per route table (e.g. the WeCom error scan); none by default. */
  readonly observer?: ObserverFactory;
  /** listen.send_timeout_ms: what routes without timeouts.send_ms use (default 60 s). */
  readonly sendTimeoutMs?: number;
}

/** A matched route: its name (metrics label), its config, and the precomputed forwarding data. */
export type MatchedRoute = CompiledRoute;

export interface Proxy {
  /** Most specific route for a host (no port, lower-case) and normalised path (its `;parameters` ignored); undefined → caller answers 404. */
  match(host: string, path: string): MatchedRoute | undefined;
  /** Forward one HTTP request. Sets ctx.route and ctx.upstream. Answers every failure itself with sendError(). Never throws. */
  web(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, route: MatchedRoute): void;
  /** Proxy a WebSocket upgrade. Never throws; on refusal writes a short HTTP error on the socket and destroys it. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, ctx: RequestContext, route: MatchedRoute): void;
  /** Status the upstream answered an upgrade on this socket with (101 or a relayed refusal); undefined when it did not answer. */
  upgradeStatus(socket: Duplex): number | undefined;
  /** Open proxied WebSockets now (for graceful drain). */
  readonly openWebSockets: number;
  /** Close every open WebSocket (used when the drain deadline passes). */
  closeWebSockets(): void;
  /** Stop: close upstream connection pools after in-flight exchanges end. */
  close(): Promise<void>;
}

/** Connection pools are shared by routes with the same upstream origin and connection settings. */
function poolKey(r: CompiledRoute): string {
  return `${r.upstream.origin}|${r.config.tls?.ca_file ?? ''}|${r.insecureSkipVerify}|${r.connectMs}|${r.servername ?? ''}|${r.config.egress ?? ''}`;
}

/**
 * Build a proxy for a route table. Throws an Error naming the route when a route cannot be used
 * (bad upstream URL, unreadable tls.ca_file). Opens no connection until the first request.
 */
export function createProxy(deps: ProxyDeps): Proxy {
  const { logger, metrics } = deps;
  const table = buildRouteTable(deps.routes, deps.sendTimeoutMs === undefined ? undefined : { sendMs: deps.sendTimeoutMs });
  const pools = new Map<string, Pool>();
  const poolOf = new Map<CompiledRoute, Pool>();
  // WebSocket agents of routes with `egress:` (the others let http-proxy-3 connect directly).
  const agents = new Map<string, HttpAgent>();
  const agentOf = new Map<CompiledRoute, HttpAgent>();
  for (const r of table.routes) {
    const key = poolKey(r);
    let pool = pools.get(key);
    const egressName = r.config.egress;
    const via = egressName === undefined ? undefined : deps.egress?.(egressName);
    if (egressName !== undefined && via === undefined) {
      throw new Error(`route ${JSON.stringify(r.name)}: egress profile ${JSON.stringify(egressName)} is not defined`);
    }
    if (pool === undefined) {
      const options: UndiciPool.Options = {
        // HTTP/1.1 upstream like nginx: predictable Host/hop-by-hop semantics.
        allowH2: false,
        connect: {
          timeout: r.connectMs,
          rejectUnauthorized: !r.insecureSkipVerify,
          // One TLS context for the pool: with `ca` alone, every connection builds its own (OpenSSL
          // context, the PEM parsed again), and those short-lived allocations between long-lived
          // ones grew the malloc heap: 64 TLS connections to such an upstream, then 100 KiB
          // responses, peaked ~10 MB higher (4 probe pairs, relay phases of test/bench).
          ...(r.ca !== undefined ? { secureContext: createSecureContext({ ca: r.ca }) } : {}),
          ...(r.servername !== null ? { servername: r.servername } : {}),
        },
      };
      pool = via === undefined ? new Pool(r.upstream.origin, options) : via.createPool(r.upstream.origin, options);
      // Connection errors also reach the request handler; this keeps an unlistened 'error' from crashing us.
      pool.on('connectionError', (_origin, _targets, err) =>
        logger.debug({ upstream: r.upstream.origin, err }, 'upstream connection error'),
      );
      pools.set(key, pool);
    }
    poolOf.set(r, pool);
    if (via !== undefined && r.websocket) {
      let agent = agents.get(key);
      if (agent === undefined) {
        agent = via.createAgent(r.upstream.secure, { connectTimeoutMs: r.connectMs });
        agents.set(key, agent);
      }
      agentOf.set(r, agent);
    }
  }
  const env: ForwardEnv = {
    table,
    logger,
    metrics,
    poolFor: (r) => poolOf.get(r) as Pool,
    held: new HeldChunks(),
  };
  const ws = new WebSocketProxy(logger, metrics, table);
  if (deps.observer !== undefined) for (const r of table.routes) r.observer = deps.observer(r) ?? null;
  let closed = false;

  return {
    match: (host, path) => table.match(host, path),
    web(req, res, ctx, route) {
      ctx.route = route.name;
      ctx.upstream = route.upstream.origin;
      try {
        forward(env, req, res, ctx, route);
      } catch (err) {
        // Defensive: forward() handles its own failures; nothing may escape to the server.
        logger.error({ req_id: ctx.id, route: route.name, err }, 'proxy failed unexpectedly');
        sendError(req, res, ctx, 'WG_INTERNAL');
      }
    },
    upgrade(req, socket, head, ctx, route) {
      ctx.route = route.name;
      ctx.upstream = route.upstream.origin;
      try {
        ws.upgrade(req, socket, head, ctx, route, forwardPath(route, ctx.path) + ctx.query, agentOf.get(route));
      } catch (err) {
        logger.error({ req_id: ctx.id, route: route.name, err }, 'websocket proxy failed unexpectedly');
        socket.destroy();
      }
    },
    upgradeStatus: (socket) => ws.status(socket),
    get openWebSockets() {
      return ws.open;
    },
    closeWebSockets: () => ws.closeAll(),
    async close() {
      if (closed) return;
      closed = true;
      // Upgraded WebSockets have left their agent: destroying it only drops idle sockets.
      for (const a of agents.values()) a.destroy();
      await Promise.all([...pools.values()].map((p) => p.close().catch(() => undefined)));
    },
  };
}
