/**
 * HTTP forwarding over undici's dispatch API with one handler object per request (no per-request
 * closures, no URL objects): chosen by measurement over http-proxy-3's web path, see
 * test/bench/proxy-path.ts. The handler streams the upstream response into the ServerResponse with
 * backpressure, rewrites response headers, and maps every failure to an error page (or, once the
 * response has started, to a destroyed client connection so the client sees an error).
 *
 * The route's response and idle timeouts are kept here, on one native timer per exchange, with
 * undici's own headersTimeout/bodyTimeout off: undici keeps those timers for a second or more after
 * the request is done (its coarse "fast timers"), which made them outlive two young-generation
 * collections and become about half of everything the proxy path moved into the old generation.
 * The semantics are undici's: the response clock starts once the request body has been sent, and the
 * idle clock does not run while the client is the slow side (the upstream body is paused).
 *
 * A route with a response observer (observer.ts) offers it the head and, when it asks, the body
 * chunks; a holding sink keeps a small response back until its end and may replace it. A route
 * without one pays one null check per response.
 */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { Dispatcher, Pool } from 'undici';
import type { ErrorCode } from '../core/errors.ts';
import { type RequestContext, type ResponseCloseHook, sendError } from '../core/http.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { classifyUpstreamError } from './failures.ts';
import { type BodyInfo, buildRequestHeaders, isHopByHop, responseNominated } from './headers.ts';
import type { BodySink, ResponseObserver } from './observer.ts';
import { rewriteRefresh, rewriteSetCookie, rewriteUrl } from './rewrite.ts';
import { type CompiledRoute, forwardPath, type RouteTable } from './routes.ts';

/** What every forwarded request shares. */
export interface ForwardEnv {
  readonly table: RouteTable;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly poolFor: (route: CompiledRoute) => Pool;
  /** The proxy's exchanges holding a first body chunk this turn (see Forward.#first). */
  readonly held: HeldChunks;
}

const kForward = Symbol('wegate.forward');
type Tagged = { [kForward]?: Forward };

/** Abort reasons we cause ourselves (not upstream failures). */
class ClientGoneError extends Error {
  override readonly name = 'ClientGoneError';
}
class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
}
/** The upstream sent no response headers within response_ms, or stalled its body past idle_ms. */
class UpstreamTimeoutError extends Error {
  override readonly name = 'UpstreamTimeoutError';
  /** undici's codes for the same two timeouts (failures.ts classifies them as timeouts). */
  readonly code: 'UND_ERR_HEADERS_TIMEOUT' | 'UND_ERR_BODY_TIMEOUT';
  constructor(phase: 'response' | 'body', ms: number) {
    super(phase === 'response' ? `no response headers within ${ms} ms` : `response body idle for ${ms} ms`);
    this.code = phase === 'response' ? 'UND_ERR_HEADERS_TIMEOUT' : 'UND_ERR_BODY_TIMEOUT';
  }
}

/** Counts a streamed request body and fails once it exceeds the route's limit. */
class BodyLimiter extends Transform {
  readonly #fwd: Forward;
  readonly #limit: number;
  #seen = 0;
  constructor(fwd: Forward, limit: number) {
    super();
    this.#fwd = fwd;
    this.#limit = limit;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#seen += chunk.length;
    if (this.#seen > this.#limit) {
      this.#fwd.bodyTooLarge();
      cb();
      return;
    }
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    // The whole body went to undici: from now on the upstream owes the response.
    this.#fwd.requestSent();
    cb();
  }
}

function noop(): void {}

function onResClose(this: ServerResponse & Tagged): void {
  this[kForward]?.responseClosed();
}

function onResDrain(this: ServerResponse & Tagged): void {
  this[kForward]?.controller?.resume();
}

function onForwardTimeout(fwd: Forward): void {
  fwd.timedOut();
}

/** Largest body sent joined to the response head as one string (Node writes up to 16 KiB from the stack). */
const JOIN_MAX_BYTES = 16 * 1024;

/** Exchanges holding their first body chunk until the current turn is over (see Forward.#first). */
export class HeldChunks {
  readonly #list: { releaseFirst(): void }[] = [];
  readonly #release = (): void => {
    const list = this.#list;
    try {
      for (let i = 0; i < list.length; i++) (list[i] as { releaseFirst(): void }).releaseFirst();
    } finally {
      list.length = 0;
    }
  };

  /** Release the exchange's chunk in a microtask, i.e. once the parser's turn is over. */
  add(exchange: { releaseFirst(): void }): void {
    if (this.#list.push(exchange) === 1) queueMicrotask(this.#release);
  }
}

/** One forwarded exchange; implements undici's dispatch handler. */
class Forward implements Dispatcher.DispatchHandler, ResponseCloseHook {
  readonly env: ForwardEnv;
  readonly req: IncomingMessage;
  readonly res: ServerResponse & Tagged;
  readonly ctx: RequestContext;
  readonly route: CompiledRoute;
  controller: Dispatcher.DispatchController | null = null;
  /** The exchange is over (response ended or failed): later events are ignored. */
  done = false;
  #gone = false;
  #tooLarge = false;
  #body: BodyLimiter | null = null;
  #timer: NodeJS.Timeout | undefined;
  #timerMs = 0;
  /** What the timer waits for: response headers, then the next body chunk. */
  #phase: 'response' | 'body' = 'response';
  #timeout: UpstreamTimeoutError | null = null;
  /**
   * The first body chunk, held until the current parser turn is over: when the response also ends
   * in that turn (a small response), the head and body leave in one string and one write() instead
   * of a writev of a header string and a Buffer (~1 µs less per request). A response that goes on
   * streaming gets its first chunk at the end of the turn, as before.
   */
  #first: Buffer | null = null;
  #sawData = false;
  /** The route observer's sink for this response; null when nobody looks (see observer.ts). */
  #sink: BodySink | null = null;
  /** A holding sink's response, not sent yet. */
  #hold: { readonly status: number; readonly head: string[]; readonly chunks: Buffer[] } | null = null;

  constructor(env: ForwardEnv, req: IncomingMessage, res: ServerResponse, ctx: RequestContext, route: CompiledRoute) {
    this.env = env;
    this.req = req;
    this.res = res;
    this.ctx = ctx;
    this.route = route;
  }

  start(body: BodyInfo, headers: string[]): void {
    const { req, res, route } = this;
    let stream: BodyLimiter | null = null;
    if (body.chunked || body.contentLength > 0) {
      // A pass-through we own: undici destroys its body stream on failure, and destroying the
      // IncomingMessage itself would kill the client connection before we could answer.
      stream = new BodyLimiter(this, route.maxBodyBytes);
      stream.on('error', noop);
      req.pipe(stream);
      this.#body = stream;
    }
    res[kForward] = this;
    if (this.ctx.notifiesClose === true) this.ctx.onClose = this;
    else res.on('close', onResClose);
    if (res.listenerCount('error') === 0) res.on('error', noop);
    const opts = {
      path: forwardPath(route, this.ctx.path) + this.ctx.query,
      method: req.method ?? 'GET',
      headers,
      body: stream,
      // Kept by this handler instead (see the top of this file).
      headersTimeout: 0,
      bodyTimeout: 0,
      servername: route.servername,
    } as Dispatcher.DispatchOptions;
    // Without a body the request is sent as soon as undici writes it; with one, once the body ends.
    if (stream === null) this.requestSent();
    try {
      this.env.poolFor(route).dispatch(opts, this);
    } catch (err) {
      this.onResponseError(null, err as Error);
    }
  }

  /** The request (with its body) is on its way: the response timeout starts. */
  requestSent(): void {
    if (!this.done && this.#phase === 'response') this.#arm(this.route.responseMs);
  }

  #arm(ms: number): void {
    if (this.#timer !== undefined && this.#timerMs === ms) {
      this.#timer.refresh();
      return;
    }
    clearTimeout(this.#timer);
    this.#timer = setTimeout(onForwardTimeout, ms, this);
    this.#timer.unref();
    this.#timerMs = ms;
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The response or idle timer fired. */
  timedOut(): void {
    this.#timer = undefined;
    if (this.done) return;
    const controller = this.controller;
    if (this.#phase === 'body' && controller?.paused === true) {
      // The client reads slowly and the upstream waits for it: not the upstream's stall (as in undici).
      this.#arm(this.route.idleMs);
      return;
    }
    this.#timeout = new UpstreamTimeoutError(this.#phase, this.#timerMs);
    controller?.abort(this.#timeout);
  }

  /** The response closed (ResponseCloseHook): before it ended, that means the client went away. */
  responseClosed(): void {
    if (!this.done) this.clientGone();
  }

  /** The client went away before the response ended: abort the upstream exchange. */
  clientGone(): void {
    this.#gone = true;
    this.controller?.abort(new ClientGoneError('client closed the connection'));
  }

  /** The streamed request body passed max_body_bytes. */
  bodyTooLarge(): void {
    if (this.#tooLarge) return;
    this.#tooLarge = true;
    const stream = this.#body;
    if (stream !== null) {
      this.req.unpipe(stream);
      // Read and discard the rest so the 413 is delivered; the connection closes after it.
      this.req.resume();
      stream.destroy(new BodyTooLargeError('request body too large'));
    }
    this.controller?.abort(new BodyTooLargeError('request body too large'));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.#gone) controller.abort(new ClientGoneError('client closed the connection'));
    else if (this.#tooLarge) controller.abort(new BodyTooLargeError('request body too large'));
    else if (this.#timeout !== null) controller.abort(this.#timeout);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.#phase = 'body';
    this.#arm(this.route.idleMs);
    const out = this.#responseHeaders(headers);
    if (this.route.observer !== null && this.#observe(statusCode, headers, out)) return;
    this.#writeHead(controller, statusCode, out);
  }

  #writeHead(controller: Dispatcher.DispatchController, statusCode: number, out: string[]): boolean {
    try {
      this.res.writeHead(statusCode, out);
      return true;
    } catch (err) {
      // Node refuses some things llhttp accepts (e.g. a status below 100).
      controller.abort(Object.assign(new Error('upstream response cannot be relayed', { cause: err }), { code: 'UND_ERR_INFO' }));
      return false;
    }
  }

  /** Ask the route's observer for a sink; true when the sink holds the response (its head waits). */
  #observe(statusCode: number, headers: IncomingHttpHeaders, out: string[]): boolean {
    const sink = (this.route.observer as ResponseObserver).open(this.req, this.ctx, statusCode, headers);
    if (sink === undefined) return false;
    this.#sink = sink;
    if (!sink.hold) return false;
    this.#hold = { status: statusCode, head: out, chunks: [] };
    return true;
  }

  /** Offer a chunk to the sink; true when a holding sink keeps it back. */
  #observeData(controller: Dispatcher.DispatchController, chunk: Buffer): boolean {
    const hold = this.#hold;
    if ((this.#sink as BodySink).data(chunk)) {
      if (hold === null) return false;
      hold.chunks.push(chunk);
      return true;
    }
    this.#sink = null;
    if (hold === null) return false;
    // The sink let go (the body is larger than it looks at): the response leaves as it came, streamed.
    this.#hold = null;
    if (!this.#writeHead(controller, hold.status, hold.head)) return true;
    this.#sawData = true;
    for (let i = 0; i < hold.chunks.length; i++) this.#write(controller, hold.chunks[i] as Buffer);
    return false;
  }

  /**
   * The body ended: the sink sees the end; a holding sink's response (or what replaces it, same
   * status) is sent now, its body as #first. True when that failed and the exchange is answered.
   */
  #observeEnd(): boolean {
    const sink = this.#sink as BodySink;
    const hold = this.#hold;
    this.#sink = null;
    if (hold === null) {
      sink.end(null);
      return false;
    }
    this.#hold = null;
    const replacement = sink.end(hold.head);
    try {
      this.res.writeHead(hold.status, replacement?.head ?? hold.head);
    } catch (err) {
      const { route, ctx } = this;
      this.env.metrics.upstreamErrors.inc({ route: route.name, kind: 'bad_response' });
      this.env.logger.warn(
        { req_id: ctx.id, route: route.name, upstream: route.upstream.origin, err },
        'upstream response cannot be relayed',
      );
      this.#fail('WG_UPSTREAM_BAD_RESPONSE');
      return true;
    }
    const chunks = hold.chunks;
    this.#first =
      replacement !== undefined
        ? Buffer.from(replacement.body)
        : chunks.length === 0
          ? null
          : chunks.length === 1
            ? (chunks[0] as Buffer)
            : Buffer.concat(chunks);
    return false;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#timer?.refresh();
    if (this.#sink !== null && this.#observeData(controller, chunk)) return;
    if (!this.#sawData) {
      this.#sawData = true;
      this.#first = chunk;
      this.env.held.add(this);
      return;
    }
    this.releaseFirst();
    this.#write(controller, chunk);
  }

  /** Write the held first chunk, if any (at the end of its turn, before a later chunk or an error). */
  releaseFirst(): void {
    const first = this.#first;
    if (first === null) return;
    this.#first = null;
    if (this.controller !== null) this.#write(this.controller, first);
  }

  #write(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk) && !controller.paused) {
      controller.pause();
      this.res.once('drain', onResDrain);
    }
  }

  onResponseEnd(): void {
    this.done = true;
    this.#disarm();
    if (this.#sink !== null && this.#observeEnd()) return;
    const first = this.#first;
    if (first === null) {
      this.res.end();
      return;
    }
    // The whole body came in this turn. A small one goes as a string: latin1 maps each byte to one
    // character and back, so the bytes are unchanged, and Node joins a string body to the head it
    // has not sent yet. A large one stays a Buffer (a string would be one more copy of it).
    this.#first = null;
    if (first.length <= JOIN_MAX_BYTES) this.res.end(first.toString('latin1'), 'latin1');
    else this.res.end(first);
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    if (this.done) return;
    if (!this.#gone && !this.res.destroyed) this.releaseFirst();
    this.#first = null;
    this.done = true;
    this.#disarm();
    const { req, res, ctx, route } = this;
    if (this.#body !== null) {
      req.unpipe(this.#body);
      // Drain what the client still sends, so it reads our answer instead of a reset; the connection closes after it.
      if (!req.complete) req.resume();
    }
    if (err instanceof ClientGoneError || this.#gone) {
      this.env.logger.debug({ req_id: ctx.id, route: route.name }, 'client closed before the upstream response ended');
      if (!res.destroyed) res.destroy();
      return;
    }
    if (err instanceof BodyTooLargeError || this.#tooLarge) {
      this.env.logger.info({ req_id: ctx.id, route: route.name, limit: route.maxBodyBytes }, 'request body too large');
      this.#fail('WG_BODY_TOO_LARGE');
      return;
    }
    const failure = classifyUpstreamError(err);
    this.env.metrics.upstreamErrors.inc({ route: route.name, kind: failure.kind });
    this.env.logger.warn(
      { req_id: ctx.id, route: route.name, upstream: route.upstream.origin, kind: failure.kind, after_headers: res.headersSent, err },
      'upstream request failed',
    );
    this.#fail(failure.code);
  }

  #fail(code: ErrorCode): void {
    const { req, res, ctx } = this;
    if (res.headersSent || res.destroyed) {
      // Too late for an error page: a destroyed connection is the only honest signal.
      ctx.errorCode = code;
      res.destroy();
      return;
    }
    sendError(req, res, ctx, code);
  }

  #responseHeaders(headers: IncomingHttpHeaders): string[] {
    // The gateway's request id (correlated with its logs) replaces an upstream's.
    const out: string[] = ['x-request-id', this.ctx.id];
    const route = this.route;
    const nominated = headers.connection === undefined ? undefined : responseNominated(headers);
    for (const k in headers) {
      const v = headers[k];
      if (v === undefined || isHopByHop(k) || k === '__proto__' || k === 'x-request-id' || nominated?.has(k)) continue;
      if (k === 'set-cookie') {
        for (const c of Array.isArray(v) ? v : [v]) {
          const r = rewriteSetCookie(c, route, route.rewriteCookies);
          if (r !== undefined) out.push(k, r);
        }
        continue;
      }
      if (route.rewriteLocation && (k === 'location' || k === 'content-location' || k === 'refresh')) {
        for (const x of Array.isArray(v) ? v : [v]) {
          const r =
            k === 'refresh' ? rewriteRefresh(x, route, this.env.table, this.ctx) : rewriteUrl(x.trim(), route, this.env.table, this.ctx);
          out.push(k, r ?? x);
        }
        continue;
      }
      if (typeof v === 'string') out.push(k, v);
      else for (const x of v) out.push(k, x);
    }
    return out;
  }
}

const scratchBody: BodyInfo = { contentLength: -1, chunked: false };

/** Forward one request to its route's upstream; answers every failure itself. */
export function forward(env: ForwardEnv, req: IncomingMessage, res: ServerResponse, ctx: RequestContext, route: CompiledRoute): void {
  // The client already left: its 'close' has fired, so nothing would abort an upstream exchange.
  if (res.destroyed) return;
  const headers = buildRequestHeaders(
    req.rawHeaders,
    ctx,
    route.preserveHost ? ctx.authority : route.upstream.hostHeader,
    false,
    scratchBody,
  );
  if (scratchBody.contentLength > route.maxBodyBytes) {
    env.logger.info({ req_id: ctx.id, route: route.name, limit: route.maxBodyBytes }, 'request body too large');
    sendError(req, res, ctx, 'WG_BODY_TOO_LARGE');
    return;
  }
  // start() reads scratchBody synchronously.
  new Forward(env, req, res, ctx, route).start(scratchBody, headers);
}
