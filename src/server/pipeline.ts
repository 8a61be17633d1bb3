/**
 * The request pipeline of the public listeners: request id, client IP, Host and target validation
 * (once, here, so every stage sees the same normalised path), then verification files →
 * gateway-owned paths (gateway-paths.ts) → HTTP→HTTPS redirect → routing → proxy. Also the access log and request metrics, and the handlers
 * for upgrades and malformed requests. This is the hot path: no closures beyond one per request,
 * no URL objects, no header copies.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ERRORS, type ErrorCode } from '../core/errors.ts';
import { hasUnreadBody, parseTarget, type RequestContext, sendError } from '../core/http.ts';
import { type LiveNode, LiveList } from '../core/live-list.ts';
import { createAccessLog, type Logger } from '../core/logger.ts';
import { ServerResponse, STATUS_CODES } from '../core/node-http.ts';
import { type Metrics, statusClass } from '../metrics/metrics.ts';
import type { Proxy as RouteProxy } from '../proxy/index.ts';
import type { VerifyFiles } from '../verify-files/index.ts';
import type { CallbackStage } from '../wecom/callback/index.ts';
import { clientIp, kOverLimit } from './connection-limit.ts';
import type { GatewayPaths } from './gateway-paths.ts';
import { checkHost } from './host.ts';

/** One configuration generation. A request keeps the generation it started with, even across a reload. */
export interface Site {
  readonly proxy: RouteProxy;
  readonly verifyFiles: VerifyFiles | undefined;
  /** wegate's own paths under the reserved prefix (relay …): never proxied. */
  readonly gateway: GatewayPaths;
  readonly redirectHttp: boolean;
  readonly publicHttpsPort: number | undefined;
  readonly accessLog: boolean;
  /** Requests and WebSockets currently using this generation. */
  inflight: number;
}

export interface PipelineDeps {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** The generation new requests use. */
  site(): Site;
  /** A request or WebSocket that used `site` has ended. */
  release(site: Site): void;
  /** The HTTPS listener's port, for redirects when `public_https_port` is not set. */
  httpsPort(): number | undefined;
  /** True once graceful shutdown began: responses then carry `Connection: close`. */
  closing(): boolean;
  /** The WeCom callback paths (exact match, every host, before the redirect and routing). */
  readonly callbacks?: CallbackStage;
}

export interface Pipeline {
  request(secure: boolean): (req: IncomingMessage, res: ServerResponse) => void;
  /** `checkContinue` handler: validates before sending `100 Continue`, so refused bodies are never sent. */
  checkContinue(secure: boolean): (req: IncomingMessage, res: ServerResponse) => void;
  upgrade(secure: boolean): (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** Node's `shouldUpgradeCallback`: which upgrade requests go to `upgrade` (the others are ordinary requests). */
  shouldUpgrade(req: IncomingMessage): boolean;
  /** `connect` handler: CONNECT is not a proxy method here. */
  connect(secure: boolean): (req: IncomingMessage, socket: Duplex) => void;
  clientError(err: Error & { code?: string }, socket: Duplex): void;
  /** Shutdown began: responses whose headers are not sent yet will close their connection. */
  closeInFlight(): void;
  /** Write the access-log lines still queued for the end of this event-loop turn (at shutdown). */
  flushAccessLog(): void;
}

type Ctx = RequestContext & { method: string };

const kCtx = Symbol('wegate.ctx');
type TrackedSocket = Duplex & { [kCtx]?: Ctx | undefined; [kOverLimit]?: true; bytesWritten?: number; remoteAddress?: string };
const kTrack = Symbol('wegate.track');
/** What the shared 'close' listener needs of a request. */
interface Track {
  readonly req: IncomingMessage;
  readonly ctx: Ctx;
  readonly site: Site;
  readonly node: LiveNode<ServerResponse>;
  readonly bytesBefore: number;
}
type TrackedResponse = { [kTrack]?: Track | undefined };

/**
 * Only WebSocket handshakes (GET with `Upgrade: websocket`) are upgraded. Any other Upgrade (`h2c`
 * from `curl --http2` or Java's HttpClient, `TLS/1.0` …) is declined, as RFC 9110 §7.8 allows: Node
 * then emits it as an ordinary request, which is forwarded with Upgrade, Connection and what it
 * nominates (HTTP2-Settings) removed. Called only for requests with Upgrade and `Connection: upgrade`.
 *
 * Node 24.21's parser drops whatever the client pipelined after a declined upgrade in the same
 * read (no client pipelines behind an h2c upgrade; the connection then idles to keepAliveTimeout).
 */
function shouldUpgrade(req: IncomingMessage): boolean {
  const u = req.headers.upgrade;
  return req.method === 'GET' && typeof u === 'string' && u.length === 9 && u.toLowerCase() === 'websocket';
}

/**
 * Is a Transfer-Encoding value a lone "chunked"? llhttp refuses a final coding other than chunked
 * and a repeated chunked, but accepts "gzip, chunked" (also as two header lines) and would hand us
 * the de-chunked, still gzip-coded body as if it were plain: such requests are refused (501).
 */
function loneChunked(te: string): boolean {
  return te === 'chunked' || te.toLowerCase() === 'chunked';
}

/** Build the public-listener request pipeline. */
export function createPipeline(deps: PipelineDeps): Pipeline {
  const { metrics, callbacks } = deps;
  // The access line has a fixed, flat shape: a pre-built writer (no pino hooks, serializers or
  // redaction paths per request); it redacts secret query parameters in the URL itself.
  const accessLog = createAccessLog(deps.logger);
  const idPrefix = randomBytes(5).toString('hex');
  let seq = 0;
  const nextId = () => `${idPrefix}-${(++seq).toString(36)}`;
  // In-flight responses (closeInFlight); a LiveList, not a Set: see core/live-list.ts.
  const active = new LiveList<ServerResponse>();

  const newCtx = (req: IncomingMessage, secure: boolean, id: string): Ctx => {
    const host = checkHost(req.rawHeaders);
    const target = parseTarget(req.url);
    const te = req.headers['transfer-encoding'];
    const ctx: Ctx = {
      id,
      startedAt: process.hrtime.bigint(),
      clientIp: clientIp(req.socket.remoteAddress),
      secure,
      host: host.ok ? host.host : '',
      authority: host.ok ? host.authority : '',
      rawPath: target.ok ? target.rawPath : '',
      path: target.ok ? target.path : '',
      query: target.ok ? target.query : '',
      method: req.method ?? '',
      route: undefined,
      upstream: undefined,
      errorCode: !host.ok
        ? 'WG_BAD_HOST'
        : !target.ok
          ? target.code
          : te !== undefined && !loneChunked(te)
            ? 'WG_UNSUPPORTED_TRANSFER_ENCODING'
            : undefined,
      // onResponseClose below calls onClose: the proxy adds no 'close' listener of its own.
      notifiesClose: true,
      onClose: undefined,
    };
    return ctx;
  };

  const logLine = (site: Site, req: IncomingMessage, ctx: Ctx, status: number, bytes: number, completed: boolean) => {
    const seconds = Number(process.hrtime.bigint() - ctx.startedAt) / 1e9;
    metrics.requests.slot(ctx.route ?? '-', statusClass(status)).record(seconds);
    if (!site.accessLog) return;
    accessLog.write({
      req_id: ctx.id,
      method: ctx.method,
      host: ctx.host,
      // Secret query parameters are redacted by the writer.
      url: ctx.rawPath ? ctx.rawPath + ctx.query : (req.url ?? ''),
      status,
      route: ctx.route ?? '-',
      upstream: ctx.upstream,
      us: Math.round(seconds * 1e6),
      bytes,
      client_ip: ctx.clientIp,
      error_code: ctx.errorCode,
      completed,
    });
  };

  const reject = (req: IncomingMessage, res: ServerResponse, ctx: Ctx, code: ErrorCode) => {
    metrics.rejectedRequests.inc({ code });
    sendError(req, res, ctx, code);
  };

  /**
   * The one 'close' listener of every response (shared, `this` is the response: no closure or once()
   * wrapper per request): releases the generation, then metrics and the access log, then tells the
   * stage that asked (`ctx.onClose`: the proxy aborts an upstream exchange the client left).
   */
  function onResponseClose(this: ServerResponse & TrackedResponse): void {
    const t = this[kTrack];
    if (t === undefined) return;
    this[kTrack] = undefined;
    active.delete(t.node);
    const socket = t.req.socket as Socket & TrackedSocket;
    if (socket[kCtx] === t.ctx) socket[kCtx] = undefined;
    deps.release(t.site);
    const ctx = t.ctx;
    // 499 (nginx's "client closed request") when nothing was answered.
    const status = this.headersSent ? this.statusCode : ctx.errorCode !== undefined ? ERRORS[ctx.errorCode].status : 499;
    logLine(t.site, t.req, ctx, status, socket.bytesWritten - t.bytesBefore, this.writableFinished);
    const hook = ctx.onClose;
    if (hook !== undefined) {
      ctx.onClose = undefined;
      hook.responseClosed();
    }
  }

  const handle = (req: IncomingMessage, res: ServerResponse & TrackedResponse, secure: boolean, expectContinue: boolean, id: string) => {
    // X-Request-Id is added where each response is written (error page, verification file, redirect,
    // proxied response), not with setHeader here: a header set in advance sends every later
    // writeHead(status, headerList) down Node's slow path (a setHeader per upstream header).
    const socket = req.socket as Socket & TrackedSocket;
    const ctx = newCtx(req, secure, id);
    socket[kCtx] = ctx;
    // Taking the generation and registering its release happen together: nothing may throw between.
    const site = deps.site();
    site.inflight++;
    res[kTrack] = { req, ctx, site, node: active.add(res), bytesBefore: socket.bytesWritten };
    res.on('close', onResponseClose);
    if (deps.closing()) res.setHeader('connection', 'close');

    // A connection over listen.max_connections(_per_ip): one clear answer, then it closes.
    if (socket[kOverLimit] === true) {
      res.shouldKeepAlive = false;
      return reject(req, res, ctx, 'WG_TOO_MANY_CONNECTIONS');
    }

    if (ctx.errorCode !== undefined) {
      // A traversal or encoding trick aimed at a verification file is just a missing file (404).
      if (ctx.errorCode === 'WG_BAD_PATH' && site.verifyFiles?.aimsAt(req.url ?? '')) ctx.errorCode = 'WG_NOT_FOUND';
      return reject(req, res, ctx, ctx.errorCode);
    }

    // Verification files: before the redirect (WeCom fetches them over plain HTTP) and before routing.
    const file = site.verifyFiles?.lookup(ctx.host, ctx.rawPath);
    if (file !== undefined) {
      ctx.route = 'verify_file';
      const headers: Record<string, string | number> = {
        'content-type': 'text/plain',
        'content-length': file.length,
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
        'x-request-id': ctx.id,
      };
      if (hasUnreadBody(req)) headers.connection = 'close';
      res.writeHead(200, headers);
      res.end(req.method === 'HEAD' ? undefined : file);
      return;
    }

    // WeCom callbacks: one Map lookup on the exact path; answered on every host and scheme, never proxied.
    const callback = callbacks?.match(ctx.path);
    if (callback !== undefined) return (callbacks as CallbackStage).handle(req, res, ctx, callback, expectContinue);
    // wegate's own paths (reserved prefix, never proxied): one startsWith for every other request.
    if (ctx.path.startsWith(site.gateway.prefix)) return site.gateway.handle(req, res, ctx, expectContinue);

    if (!secure && site.redirectHttp) return redirect(req, res, ctx, site);

    const route = site.proxy.match(ctx.host, ctx.path);
    if (route === undefined) {
      if (!slashRedirect(req, res, ctx, site)) sendError(req, res, ctx, 'WG_NOT_FOUND');
      return;
    }
    if (expectContinue) {
      // A body the route would refuse is refused before the client sends it (no 100 Continue).
      const cl = req.headers['content-length'];
      if (cl !== undefined && Number(cl) > route.maxBodyBytes) {
        ctx.route = route.name;
        deps.logger.info({ req_id: ctx.id, route: route.name, limit: route.maxBodyBytes }, 'request body too large');
        return sendError(req, res, ctx, 'WG_BODY_TOO_LARGE');
      }
      // The gateway answered the expectation; the upstream must not be asked again.
      res.writeContinue();
      delete req.headers.expect;
    }
    site.proxy.web(req, res, ctx, route);
  };

  /**
   * "/api1" when no route covers it but a route's path is "/api1/": a redirect there (query kept),
   * as nginx answers for `location /api1/`. False when there is no such route.
   */
  const slashRedirect = (req: IncomingMessage, res: ServerResponse, ctx: Ctx, site: Site): boolean => {
    const path = ctx.path;
    if (path.charCodeAt(path.length - 1) === 0x2f) return false;
    const dir = `${path}/`;
    const route = site.proxy.match(ctx.host, dir);
    if (route === undefined || route.prefix !== dir) return false;
    ctx.route = route.name;
    const headers: Record<string, string | number> = {
      location: dir + ctx.query,
      'content-length': 0,
      'cache-control': 'no-cache',
      'x-request-id': ctx.id,
    };
    if (hasUnreadBody(req)) headers.connection = 'close';
    res.writeHead(req.method === 'GET' || req.method === 'HEAD' ? 301 : 308, headers);
    res.end();
    return true;
  };

  // A throw escaping a request handler would crash the process: answer 500 instead.
  const guard = (req: IncomingMessage, res: ServerResponse, secure: boolean, expectContinue: boolean) => {
    const id = nextId();
    try {
      handle(req, res, secure, expectContinue, id);
    } catch (e) {
      deps.logger.error({ err: e, req_id: id }, 'request pipeline failed unexpectedly');
      sendError(req, res, (res as TrackedResponse)[kTrack]?.ctx ?? { id }, 'WG_INTERNAL');
    }
  };

  const redirect = (req: IncomingMessage, res: ServerResponse, ctx: Ctx, site: Site) => {
    ctx.route = 'redirect';
    const port = site.publicHttpsPort ?? deps.httpsPort() ?? 443;
    const location = `https://${ctx.host}${port === 443 ? '' : `:${port}`}${ctx.rawPath}${ctx.query}`;
    const headers: Record<string, string | number> = { location, 'content-length': 0, 'cache-control': 'no-cache', 'x-request-id': ctx.id };
    if (hasUnreadBody(req)) headers.connection = 'close';
    // 308 keeps the method and body of a POST; 301 is what every client understands for GET.
    res.writeHead(req.method === 'GET' || req.method === 'HEAD' ? 301 : 308, headers);
    res.end();
  };

  /** A response written straight onto an upgrade/CONNECT socket, which is closed afterwards. */
  const socketResponse = (req: IncomingMessage, socket: Duplex): ServerResponse => {
    const res = new ServerResponse(req);
    res.shouldKeepAlive = false;
    res.assignSocket(socket as Socket);
    res.once('finish', () => {
      res.detachSocket(socket as Socket);
      socket.end();
      // Do not wait for a client that ignores the close.
      setTimeout(() => socket.destroy(), 1000).unref();
    });
    return res;
  };

  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, secure: boolean) => {
    // Node removed its own listeners from the socket: without one, a reset would crash the process.
    socket.on('error', () => socket.destroy());
    const id = nextId();
    const site = deps.site();
    site.inflight++;
    const ctx = newCtx(req, secure, id);
    const tracked = socket as TrackedSocket;
    const bytesBefore = tracked.bytesWritten ?? 0;
    socket.once('close', () => {
      deps.release(site);
      // The upstream's answer (101 or a relayed refusal); 499 when the client left before it came.
      const status = ctx.errorCode
        ? ERRORS[ctx.errorCode].status
        : ctx.route === 'redirect'
          ? 301
          : (site.proxy.upgradeStatus(socket) ?? 499);
      logLine(site, req, ctx, status, (tracked.bytesWritten ?? 0) - bytesBefore, true);
    });
    const answer = (code: ErrorCode) => {
      const res = socketResponse(req, socket);
      res.setHeader('x-request-id', id);
      if (code !== 'WG_NOT_FOUND') metrics.rejectedRequests.inc({ code });
      sendError(req, res, ctx, code);
    };
    if ((socket as TrackedSocket)[kOverLimit] === true) return answer('WG_TOO_MANY_CONNECTIONS');
    if (ctx.errorCode !== undefined) return answer(ctx.errorCode);
    if (deps.closing()) return answer('WG_SHUTTING_DOWN');
    if (callbacks?.match(ctx.path) !== undefined) return answer('WG_CALLBACK_METHOD');
    if (!secure && site.redirectHttp) {
      const res = socketResponse(req, socket);
      res.setHeader('x-request-id', id);
      return redirect(req, res, ctx, site);
    }
    const route = ctx.path.startsWith(site.gateway.prefix) ? undefined : site.proxy.match(ctx.host, ctx.path);
    if (route === undefined) return answer('WG_NOT_FOUND');
    site.proxy.upgrade(req, socket, head, ctx, route);
  };

  const connect = (req: IncomingMessage, socket: Duplex, secure: boolean) => {
    socket.on('error', () => socket.destroy());
    const ctx = newCtx(req, secure, nextId());
    const res = socketResponse(req, socket);
    res.setHeader('x-request-id', ctx.id);
    metrics.rejectedRequests.inc({ code: 'WG_BAD_REQUEST' });
    sendError(req, res, ctx, 'WG_BAD_REQUEST');
  };

  const clientError = (err: Error & { code?: string }, socket: Duplex) => {
    let code: ErrorCode;
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      code = 'WG_REQUEST_TIMEOUT';
    } else if (err.code === 'HPE_HEADER_OVERFLOW') {
      code = 'WG_HEADERS_TOO_LARGE';
    } else if (err.code === 'ECONNRESET' || err.code === 'EPIPE') {
      socket.destroy();
      return;
    } else {
      code = 'WG_BAD_REQUEST';
    }
    metrics.rejectedRequests.inc({ code });
    const inResponse = (socket as unknown as { _httpMessage?: ServerResponse | null })._httpMessage;
    if (socket.writable && !inResponse?.headersSent) {
      // The request in progress (slow body) is logged with the status the client actually got.
      const ctx = (socket as TrackedSocket)[kCtx];
      if (ctx !== undefined) ctx.errorCode = code;
      // The parser state is unknown and there is no request object: a fixed response, then close.
      const spec = ERRORS[code];
      const id = ctx?.id ?? nextId();
      const body = `${JSON.stringify({ error: code, status: spec.status, message: spec.en, message_zh: spec.zh, request_id: id })}\n`;
      socket.end(
        `HTTP/1.1 ${spec.status} ${STATUS_CODES[spec.status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nX-Request-Id: ${id}\r\nConnection: close\r\n\r\n${body}`,
      );
      setTimeout(() => socket.destroy(), 1000).unref();
    } else {
      socket.destroy();
    }
  };

  return {
    shouldUpgrade,
    request: (secure) => (req, res) => guard(req, res, secure, false),
    checkContinue: (secure) => (req, res) => guard(req, res, secure, true),
    upgrade: (secure) => (req, socket, head) => {
      try {
        upgrade(req, socket, head, secure);
      } catch (e) {
        deps.logger.error({ err: e }, 'upgrade pipeline failed unexpectedly');
        socket.destroy();
      }
    },
    connect: (secure) => (req, socket) => {
      try {
        connect(req, socket, secure);
      } catch {
        socket.destroy();
      }
    },
    clientError,
    closeInFlight() {
      for (const res of active) if (!res.headersSent) res.setHeader('connection', 'close');
    },
    flushAccessLog() {
      accessLog.flush();
    },
  };
}
