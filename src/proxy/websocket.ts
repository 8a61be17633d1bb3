/**
 * WebSocket upgrades through http-proxy-3's `ws` pass. Everything security-relevant happens before
 * it is called: the request headers are replaced by the gateway's sanitised list and req.url by the
 * already-normalised forwarded path (`toProxy` keeps http-proxy-3 from re-parsing it). The upstream
 * handshake response is cleaned in an `upgrade`/`response` listener that runs before the library's.
 */
import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ProxyServer } from 'http-proxy-3';
import { ERRORS, type ErrorCode } from '../core/errors.ts';
import type { RequestContext } from '../core/http.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { classifyUpstreamError } from './failures.ts';
import { type BodyInfo, buildRequestHeaders, headerListToObject, isHopByHop, responseNominated } from './headers.ts';
import { isGatewayCookie } from './rewrite.ts';
import type { CompiledRoute } from './routes.ts';

const kSession = Symbol('wegate.ws');
type Tagged = { [kSession]?: WsSession };

interface WsSession {
  readonly ctx: RequestContext;
  readonly route: CompiledRoute;
  readonly socket: Duplex;
  upgraded: boolean;
  failed: boolean;
}

/** Write a short HTTP error on a not-yet-upgraded socket and close it. */
export function refuseSocket(socket: Duplex, ctx: RequestContext, code: ErrorCode): void {
  ctx.errorCode = code;
  if (socket.destroyed) return;
  const spec = ERRORS[code];
  const body = `${JSON.stringify({ error: code, status: spec.status, message: spec.en, message_zh: spec.zh, request_id: ctx.id })}\n`;
  const head =
    `HTTP/1.1 ${spec.status} ${spec.en.replace(/[^\x20-\x7e]/g, '')}\r\n` +
    'content-type: application/json; charset=utf-8\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    'cache-control: no-store\r\n' +
    `x-request-id: ${ctx.id}\r\n` +
    'connection: close\r\n\r\n';
  socket.end(head + body);
  // Do not wait for a client that never reads.
  setTimeout(() => socket.destroy(), 1000).unref();
}

/** Drop hop-by-hop (except the upgrade pair on a 101), Connection-nominated and gateway cookies from a handshake response. */
function cleanHandshakeResponse(res: IncomingMessage, upgraded: boolean): void {
  const h = res.headers;
  const nominated = responseNominated(h);
  for (const k of Object.keys(h)) {
    if (upgraded && (k === 'connection' || k === 'upgrade')) continue;
    if (isHopByHop(k) || nominated?.has(k)) delete h[k];
  }
  const cookies = h['set-cookie'];
  if (cookies !== undefined) {
    const kept = cookies.filter((c) => {
      const pair = c.split(';', 1)[0] as string;
      const eq = pair.indexOf('=');
      return !isGatewayCookie(eq === -1 ? pair : pair.slice(0, eq));
    });
    if (kept.length === 0) delete h['set-cookie'];
    else h['set-cookie'] = kept;
  }
}

/** Proxies upgrades and tracks the open WebSockets. */
export class WebSocketProxy {
  readonly #logger: Logger;
  readonly #metrics: Metrics;
  readonly #server: ProxyServer;
  readonly #open = new Set<Duplex>();

  constructor(logger: Logger, metrics: Metrics) {
    this.#logger = logger;
    this.#metrics = metrics;
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

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, ctx: RequestContext, route: CompiledRoute, path: string): void {
    socket.on('error', (err) => this.#logger.debug({ request_id: ctx.id, route: route.name, err }, 'websocket client socket error'));
    const upgradeHeader = req.headers.upgrade;
    if (!route.websocket || req.method !== 'GET' || typeof upgradeHeader !== 'string' || upgradeHeader.toLowerCase() !== 'websocket') {
      refuseSocket(socket, ctx, 'WG_NOT_FOUND');
      return;
    }
    const body: BodyInfo = { contentLength: -1, chunked: false };
    const list = buildRequestHeaders(req.rawHeaders, ctx, route.preserveHost ? ctx.authority : route.upstream.hostHeader, true, body);
    // http-proxy-3 copies req.headers and req.url: give it only what we decided to send.
    req.headers = headerListToObject(list);
    req.url = path;
    const session: WsSession = { ctx, route, socket, upgraded: false, failed: false };
    (req as IncomingMessage & Tagged)[kSession] = session;
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
    };
    try {
      this.#server.ws(req, socket, head, options, (err) => this.#onError(session, err));
    } catch (err) {
      this.#onError(session, err as Error);
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
    // Registered before http-proxy-3's own listeners, so these run first.
    proxyReq.on('response', (res: IncomingMessage) => cleanHandshakeResponse(res, false));
    proxyReq.on('upgrade', (res: IncomingMessage, upstreamSocket: Socket) => {
      cleanHandshakeResponse(res, true);
      proxyReq.setTimeout(0);
      session.upgraded = true;
      this.#open.add(socket);
      this.#metrics.websocketsOpen.inc({ route: route.name });
      const s = socket as Socket;
      if (typeof s.setTimeout === 'function') {
        s.setTimeout(route.idleMs);
        s.on('timeout', () => {
          this.#logger.debug({ request_id: session.ctx.id, route: route.name }, 'websocket idle timeout');
          s.destroy();
          upstreamSocket.destroy();
        });
      }
      upstreamSocket.on('close', () => socket.destroy());
      socket.once('close', () => {
        this.#open.delete(socket);
        this.#metrics.websocketsOpen.dec({ route: route.name });
        upstreamSocket.destroy();
      });
    });
  }

  #onError(session: WsSession, err: Error): void {
    const { ctx, route, socket } = session;
    if (session.upgraded) {
      this.#logger.debug({ request_id: ctx.id, route: route.name, err }, 'websocket upstream connection ended with an error');
      socket.destroy();
      return;
    }
    if (session.failed) return;
    session.failed = true;
    const failure = classifyUpstreamError(err);
    this.#metrics.upstreamErrors.inc({ route: route.name, kind: failure.kind });
    this.#logger.warn(
      { request_id: ctx.id, route: route.name, upstream: route.upstream.origin, kind: failure.kind, err },
      'websocket upstream handshake failed',
    );
    refuseSocket(socket, ctx, failure.code);
  }
}
