/**
 * WebSocket upgrades through http-proxy-3's `ws` pass. Everything security-relevant happens before
 * it is called: the request headers are replaced by the gateway's sanitised list and req.url by the
 * already-normalised forwarded path (`toProxy` keeps http-proxy-3 from re-parsing it). The upstream
 * handshake response gets the HTTP response policy (hop-by-hop and nominated headers removed,
 * Location/Content-Location/Refresh and Set-Cookie rewritten, gateway cookies dropped, the
 * gateway's X-Request-Id) in an `upgrade`/`response` listener that runs before the library's, which
 * then writes the headers object as it is: on a 101, or on a refusal (302, 401 …) that it relays and
 * closes. A 101 that does not switch to WebSocket (`Upgrade: h2c`, no Upgrade header) is never
 * relayed: the library would tunnel whatever protocol the upstream chose. It gets a 502 instead.
 */
import type { Agent, ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ProxyServer } from 'http-proxy-3';
import type { ErrorCode } from '../core/errors.ts';
import { type RequestContext, sendError } from '../core/http.ts';
import { LiveList } from '../core/live-list.ts';
import type { Logger } from '../core/logger.ts';
import { ServerResponse } from '../core/node-http.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { classifyUpstreamError } from './failures.ts';
import { type BodyInfo, buildRequestHeaders, headerListToObject, isHopByHop, responseNominated } from './headers.ts';
import { rewriteRefresh, rewriteSetCookie, rewriteUrl } from './rewrite.ts';
import type { CompiledRoute, RouteTable } from './routes.ts';

const kSession = Symbol('wegate.ws');
type Tagged = { [kSession]?: WsSession };

interface WsSession {
  readonly req: IncomingMessage;
  readonly ctx: RequestContext;
  readonly route: CompiledRoute;
  readonly socket: Duplex;
  upgraded: boolean;
  failed: boolean;
  /** The client left before the upstream answered the handshake. */
  clientGone: boolean;
  /** Bytes the client sent while the handshake was pending (read only to notice the client leaving). */
  early: Buffer[];
  earlyBytes: number;
  proxyReq: ClientRequest | null;
  /** Status the upstream answered the handshake with (101, or a refusal relayed to the client). */
  status: number | undefined;
  /** The gateway's own 'response' and 'upgrade' listeners on proxyReq (the others are http-proxy-3's). */
  own: ((...args: never[]) => void)[];
}

function destroySocket(s: Duplex): void {
  s.destroy();
}

/** Most a client may send before the upstream accepted the handshake (RFC 6455 clients send nothing). */
const MAX_EARLY_BYTES = 64 * 1024;

function onEarlyData(this: Duplex & Tagged, chunk: Buffer): void {
  const session = this[kSession];
  if (session === undefined) return;
  session.early.push(chunk);
  session.earlyBytes += chunk.length;
  if (session.earlyBytes > MAX_EARLY_BYTES) this.destroy();
}

function onEarlyClose(this: Duplex & Tagged): void {
  const session = this[kSession];
  if (session === undefined || session.upgraded || session.clientGone) return;
  session.clientGone = true;
  session.proxyReq?.destroy();
  this.destroy();
}

/** Answer a not-yet-upgraded socket with the standard error page (sendError) and close it. */
export function refuseSocket(req: IncomingMessage, socket: Duplex, ctx: RequestContext, code: ErrorCode): void {
  ctx.errorCode = code;
  if (socket.destroyed || !socket.writable) {
    socket.destroy();
    return;
  }
  const res = new ServerResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket as Socket);
  res.once('finish', () => {
    res.detachSocket(socket as Socket);
    socket.end();
    // Do not wait for a client that never reads.
    setTimeout(() => socket.destroy(), 1000).unref();
  });
  res.setHeader('x-request-id', ctx.id);
  sendError(req, res, ctx, code);
}

/**
 * The HTTP response policy on a handshake response, in place (http-proxy-3 writes this object): drop
 * hop-by-hop (except the upgrade pair on a 101), Connection-nominated and gateway cookies, rewrite
 * Set-Cookie and Location/Content-Location/Refresh as for HTTP, and set the gateway's request id.
 * A refusal is relayed and its connection closed, so it says `Connection: close` (never the
 * `Connection: upgrade` of the request).
 */
function applyResponsePolicy(res: IncomingMessage, session: WsSession, table: RouteTable, upgraded: boolean): void {
  const { route, ctx } = session;
  const h = res.headers;
  const nominated = responseNominated(h);
  for (const k of Object.keys(h)) {
    if (upgraded && (k === 'connection' || k === 'upgrade')) continue;
    if (isHopByHop(k) || nominated?.has(k) || k === '__proto__' || k === 'x-request-id') delete h[k];
  }
  const cookies = h['set-cookie'];
  if (cookies !== undefined) {
    const kept: string[] = [];
    for (const c of cookies) {
      const r = rewriteSetCookie(c, route, route.rewriteCookies);
      if (r !== undefined) kept.push(r);
    }
    if (kept.length === 0) delete h['set-cookie'];
    else h['set-cookie'] = kept;
  }
  if (route.rewriteLocation) {
    // Untyped view: Node types location as a string, but a repeated header arrives as an array.
    const any = h as Record<string, string | string[] | undefined>;
    for (const k of ['location', 'content-location', 'refresh']) {
      const v = any[k];
      if (v === undefined) continue;
      const one = (x: string) => (k === 'refresh' ? rewriteRefresh(x, route, table, ctx) : rewriteUrl(x.trim(), route, table, ctx)) ?? x;
      any[k] = typeof v === 'string' ? one(v) : v.map(one);
    }
  }
  h['x-request-id'] = ctx.id;
  if (!upgraded) {
    h.connection = 'close';
    // http-proxy-3 copies the request's Connection onto answers to HTTP/1.0 clients.
    session.req.headers.connection = 'close';
  }
}

/**
 * Wrap http-proxy-3's 'response' and 'upgrade' listeners on proxyReq (every listener but the
 * session's own) so that they do nothing once the gateway has answered the client itself: an
 * EventEmitter cannot stop the listeners after the one running, and the library's would write the
 * 101 and pipe the sockets. Runs once per WebSocket handshake, not per request.
 */
function skipWhenFailed(proxyReq: ClientRequest, session: WsSession): void {
  for (const event of ['response', 'upgrade'] as const) {
    for (const listener of proxyReq.listeners(event) as ((...args: unknown[]) => void)[]) {
      if ((session.own as unknown[]).includes(listener)) continue;
      proxyReq.removeListener(event, listener);
      proxyReq.on(event, function (this: ClientRequest, ...args: unknown[]) {
        if (!session.failed) listener.apply(this, args);
      });
    }
  }
}

/** Proxies upgrades and tracks the open WebSockets. */
export class WebSocketProxy {
  readonly #logger: Logger;
  readonly #metrics: Metrics;
  readonly #server: ProxyServer;
  readonly #table: RouteTable;
  // A LiveList, not a Set (see core/live-list.ts): WebSockets may churn as fast as requests.
  readonly #open = new LiveList<Duplex>();

  constructor(logger: Logger, metrics: Metrics, table: RouteTable) {
    this.#logger = logger;
    this.#metrics = metrics;
    this.#table = table;
    this.#server = new ProxyServer({ ws: true });
    // Without an 'error' listener http-proxy-3 rethrows; per-request errors arrive in the callback.
    this.#server.on('error', (err) => this.#logger.debug({ err }, 'websocket proxy error'));
    this.#server.on('proxyReqWs', (proxyReq, req) => this.#onProxyReq(proxyReq, req as IncomingMessage & Tagged));
  }

  get open(): number {
    return this.#open.size;
  }

  closeAll(): void {
    for (const s of this.#open) s.destroy();
  }

  /** Status the upstream answered this socket's handshake with (101 or the relayed refusal), or undefined. */
  status(socket: Duplex): number | undefined {
    return (socket as Duplex & Tagged)[kSession]?.status;
  }

  /** `agent`: the route's egress (src/egress), else http-proxy-3 connects directly. */
  upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    ctx: RequestContext,
    route: CompiledRoute,
    path: string,
    agent?: Agent,
  ): void {
    socket.on('error', (err) => this.#logger.debug({ req_id: ctx.id, route: route.name, err }, 'websocket client socket error'));
    const upgradeHeader = req.headers.upgrade;
    if (!route.websocket || req.method !== 'GET' || typeof upgradeHeader !== 'string' || upgradeHeader.toLowerCase() !== 'websocket') {
      refuseSocket(req, socket, ctx, 'WG_NOT_FOUND');
      return;
    }
    const body: BodyInfo = { contentLength: -1, chunked: false };
    const list = buildRequestHeaders(req.rawHeaders, ctx, route.preserveHost ? ctx.authority : route.upstream.hostHeader, true, body);
    // http-proxy-3 copies req.headers and req.url: give it only what we decided to send.
    req.headers = headerListToObject(list);
    req.url = path;
    const session: WsSession = {
      req,
      ctx,
      route,
      socket,
      upgraded: false,
      failed: false,
      clientGone: false,
      early: [],
      earlyBytes: 0,
      proxyReq: null,
      status: undefined,
      own: [],
    };
    (req as IncomingMessage & Tagged)[kSession] = session;
    (socket as Duplex & Tagged)[kSession] = session;
    const ssl: Record<string, unknown> = {};
    if (route.servername !== null) ssl.servername = route.servername;
    const options = {
      target: new URL(route.upstream.origin),
      ssl,
      secure: !route.insecureSkipVerify,
      toProxy: true,
      prependPath: false,
      connectTimeout: route.connectMs,
      ...(route.ca !== undefined ? { ca: route.ca } : {}),
      ...(agent !== undefined ? { agent } : {}),
    };
    try {
      this.#server.ws(req, socket, head, options, (err) => this.#onError(session, err));
    } catch (err) {
      this.#onError(session, err as Error);
    }
    // The library's passes run synchronously: its listeners are on proxyReq now, after the gateway's.
    if (session.proxyReq !== null) skipWhenFailed(session.proxyReq, session);
    if (!session.failed && !socket.destroyed) {
      // The server leaves an upgraded socket paused, so a client that leaves during the handshake
      // would go unnoticed: read (and keep) what it sends until the upstream answers.
      socket.on('data', onEarlyData);
      // Node's HTTP server allows half-open sockets: a client's FIN shows as 'end', not 'close'.
      socket.once('end', onEarlyClose);
      socket.once('close', onEarlyClose);
    }
  }

  #onProxyReq(proxyReq: ClientRequest, req: IncomingMessage & Tagged): void {
    const session = req[kSession];
    if (session === undefined) return;
    const { route, socket } = session;
    // Time allowed for the upstream handshake answer (the library only bounds the TCP connect).
    proxyReq.setTimeout(route.responseMs, () => {
      proxyReq.destroy(Object.assign(new Error('upstream did not answer the WebSocket handshake in time'), { code: 'ETIMEDOUT' }));
    });
    session.proxyReq = proxyReq;
    // Registered before http-proxy-3's own listeners, so these run first.
    const onResponse = (res: IncomingMessage): void => {
      // A 101 without an Upgrade header arrives here (Node only calls 101 + Upgrade an upgrade).
      if ((res.statusCode ?? 0) < 200) {
        this.#refuseSwitch(session, res, res.socket);
        return;
      }
      session.status = res.statusCode;
      applyResponsePolicy(res, session, this.#table, false);
      // An upstream that stops in the middle of the refusal's body: end the client's connection too.
      res.once('close', () => {
        if (!res.complete) socket.destroy();
      });
    };
    const onUpgrade = (res: IncomingMessage, upstreamSocket: Socket): void => {
      if (socket.destroyed) {
        upstreamSocket.destroy();
        return;
      }
      // RFC 6455 4.1: the client fails the connection unless the 101 says "Upgrade: websocket". The
      // gateway does so for it: the upstream switching to h2c (or anything else) is not tunnelled.
      const protocol = res.headers.upgrade;
      if (typeof protocol !== 'string' || protocol.trim().toLowerCase() !== 'websocket') {
        this.#refuseSwitch(session, res, upstreamSocket);
        return;
      }
      session.status = 101;
      applyResponsePolicy(res, session, this.#table, true);
      proxyReq.setTimeout(0);
      session.upgraded = true;
      // Hand the early bytes back before http-proxy-3 pipes the socket.
      socket.off('data', onEarlyData);
      socket.off('end', onEarlyClose);
      socket.pause();
      if (session.early.length !== 0) socket.unshift(Buffer.concat(session.early));
      session.early = [];
      const openNode = this.#open.add(socket);
      this.#metrics.websocketsOpen.inc({ route: route.name });
      const s = socket as Socket;
      if (typeof s.setTimeout === 'function') {
        s.setTimeout(route.idleMs);
        s.on('timeout', () => {
          this.#logger.debug({ req_id: session.ctx.id, route: route.name }, 'websocket idle timeout');
          s.destroy();
          upstreamSocket.destroy();
        });
      }
      // http-proxy-3 ends each side when the other closes; a peer that never finishes closing is cut
      // off shortly after (not at once, which could drop a close frame still being written).
      upstreamSocket.once('close', () => setTimeout(destroySocket, 1000, socket).unref());
      socket.once('close', () => {
        this.#open.delete(openNode);
        this.#metrics.websocketsOpen.dec({ route: route.name });
        setTimeout(destroySocket, 1000, upstreamSocket).unref();
      });
    };
    proxyReq.on('response', onResponse);
    proxyReq.on('upgrade', onUpgrade);
    session.own.push(onResponse, onUpgrade);
  }

  /**
   * The upstream answered the handshake with a 101 that does not switch to WebSocket: close the
   * upstream connection, answer 502 WG_UPSTREAM_BAD_RESPONSE and close (skipWhenFailed keeps
   * http-proxy-3 from relaying the 101 after this).
   */
  #refuseSwitch(session: WsSession, res: IncomingMessage, upstreamSocket: Duplex | null): void {
    const { ctx, route } = session;
    session.failed = true;
    session.proxyReq?.setTimeout(0);
    upstreamSocket?.destroy();
    res.destroy();
    this.#metrics.upstreamErrors.inc({ route: route.name, kind: 'bad_response' });
    const upgrade = res.headers.upgrade;
    this.#logger.warn(
      {
        req_id: ctx.id,
        route: route.name,
        upstream: route.upstream.origin,
        kind: 'bad_response',
        status: res.statusCode,
        upgrade: typeof upgrade === 'string' ? upgrade.slice(0, 64) : null,
      },
      'websocket upstream answered 101 without switching to WebSocket',
    );
    refuseSocket(session.req, session.socket, ctx, 'WG_UPSTREAM_BAD_RESPONSE');
  }

  #onError(session: WsSession, err: Error): void {
    const { ctx, route, socket } = session;
    if (session.upgraded) {
      this.#logger.debug({ req_id: ctx.id, route: route.name, err }, 'websocket upstream connection ended with an error');
      socket.destroy();
      return;
    }
    if (session.failed) return;
    session.failed = true;
    if (session.status !== undefined) {
      // The refusal's head is on its way to the client: too late for an error page.
      this.#logger.debug({ req_id: ctx.id, route: route.name, err }, 'websocket upstream failed while relaying its answer');
      socket.destroy();
      return;
    }
    if (session.clientGone) {
      this.#logger.debug({ req_id: ctx.id, route: route.name }, 'client left during the WebSocket handshake');
      return;
    }
    const failure = classifyUpstreamError(err);
    this.#metrics.upstreamErrors.inc({ route: route.name, kind: failure.kind });
    this.#logger.warn(
      { req_id: ctx.id, route: route.name, upstream: route.upstream.origin, kind: failure.kind, err },
      'websocket upstream handshake failed',
    );
    refuseSocket(session.req, socket, ctx, failure.code);
  }
}
