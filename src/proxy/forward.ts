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
 * The same timer is the send timeout (nginx's send_timeout): it is armed only when res.write()
 * returns false (backpressure) and gives way to the idle clock again on 'drain', so a response that
 * flows costs nothing more; a client that reads nothing for send_ms loses its connection and the
 * upstream exchange is aborted, which releases the upstream connection. It also bounds the reading of
 * a request body the upstream answered before it was sent (see #discardRequest).
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
  override readonly name: string = 'ClientGoneError';
}
class BodyTooLargeError extends Error {
  override readonly name = 'BodyTooLargeError';
}
/** The client read nothing of the response for send_ms. */
class SendTimeoutError extends ClientGoneError {
  override readonly name = 'SendTimeoutError';
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
  /** Bytes of the request body counted so far. */
  get seen(): number {
    return this.#seen;
  }
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
  this[kForward]?.drained();
}

function onDrainData(this: IncomingMessage & Tagged, chunk: Buffer): void {
  this[kForward]?.discarded(chunk.length);
}

function onDrainEnd(this: IncomingMessage & Tagged): void {
  this[kForward]?.discardEnded();
}

function onForwardTimeout(fwd: Forward): void {
  fwd.timedOut();
}

/** Largest body sent joined to the response head as one string (Node writes up to 16 KiB from the stack). */
const JOIN_MAX_BYTES = 16 * 1024;

/**
 * Longest time the rest of a request body is read and discarded after the upstream answered early
 * (nginx's lingering_time); the bytes are bounded by the route's max_body_bytes.
 */
export const DISCARD_BODY_MS = 30_000;

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
  /**
   * What the timer waits for: response headers, then the next body chunk; 'send' while the client
   * holds the response back (backpressure), 'discard' while the rest of an early-answered request
   * body is read and thrown away.
   */
  #phase: 'response' | 'body' | 'send' | 'discard' = 'response';
  /** Request body bytes seen, counted on while it is discarded. */
  #discarded = 0;
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

  /** The response, idle, send or discard timer fired. */
  timedOut(): void {
    this.#timer = undefined;
    const phase = this.#phase;
    if (phase === 'send') {
      this.#sendTimedOut();
      return;
    }
    if (phase === 'discard') {
      this.#stopDiscard('the rest of the request body did not arrive in time');
      return;
    }
    if (this.done) return;
    // While the client holds the body back the phase is 'send': an idle upstream here is a stall.
    this.#timeout = new UpstreamTimeoutError(phase, this.#timerMs);
    this.controller?.abort(this.#timeout);
  }

  /** The client read nothing for send_ms: close its connection and release the upstream one. */
  #sendTimedOut(): void {
    const { res, ctx, route } = this;
    if (res.destroyed || res.writableFinished) return;
    this.env.metrics.sendTimeouts.inc({ route: route.name });
    this.env.logger.info(
      { req_id: ctx.id, route: route.name, send_ms: route.sendMs, after_end: this.done },
      'client did not read the response within send_ms: connection closed',
    );
    this.#gone = true;
    res.destroy();
    if (!this.done) this.controller?.abort(new SendTimeoutError('client did not read the response within send_ms'));
  }

  /** The client took the buffered response ('drain'): the upstream may send again, the idle clock runs. */
  drained(): void {
    // Before resume(): undici may hand over the next chunk (and pause again) inside it.
    if (this.#phase === 'send') {
      this.#phase = 'body';
      if (!this.done) this.#arm(this.route.idleMs);
      else this.#disarm();
    }
    this.controller?.resume();
  }

  /** The response closed (ResponseCloseHook): before it ended, that means the client went away. */
  responseClosed(): void {
    if (!this.done) this.clientGone();
    else if (this.#phase === 'send') this.#disarm();
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
    if (statusCode < 200) {
      this.#informational(statusCode, headers);
      return;
    }
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

  /**
   * A 1xx before the final response. undici reports each one here (client-h1.js onHeadersComplete,
   * then skips its body and waits for the next head), except 100, which it fails as a bad response
   * (the gateway never sends Expect upstream, so a 100 is unsolicited). 103 Early Hints is relayed
   * with its Link headers only; every other 1xx is dropped.
   */
  #informational(statusCode: number, headers: IncomingHttpHeaders): void {
    // The upstream is alive: as undici does with its own headers timeout.
    this.#timer?.refresh();
    const { req, res } = this;
    const link = headers.link;
    // No 1xx to an HTTP/1.0 client (RFC 9110 §15.2).
    if (statusCode !== 103 || link === undefined || req.httpVersionMinor === 0 || res.headersSent || res.destroyed) return;
    try {
      // Only Link: Node writes any other hint key and value unchecked.
      res.writeEarlyHints({ link });
    } catch (err) {
      // Node refuses a Link value that is not a valid link header: the hint is dropped.
      this.env.logger.debug({ req_id: this.ctx.id, route: this.route.name, err }, 'early hints not relayed');
    }
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
      // The client is the slow side now: the send timeout replaces the idle clock until 'drain'.
      this.#phase = 'send';
      this.#arm(this.route.sendMs);
    }
  }

  onResponseEnd(): void {
    this.done = true;
    this.#disarm();
    if (this.#sink !== null && this.#observeEnd()) return;
    const { res } = this;
    const first = this.#first;
    if (first === null) {
      res.end();
    } else {
      // The whole body came in this turn. A small one goes as a string: latin1 maps each byte to one
      // character and back, so the bytes are unchanged, and Node joins a string body to the head it
      // has not sent yet. A large one stays a Buffer (a string would be one more copy of it).
      this.#first = null;
      if (first.length <= JOIN_MAX_BYTES) res.end(first.toString('latin1'), 'latin1');
      else res.end(first);
    }
    // The upstream answered before the whole request body was read (401, 302, 413 …).
    if (this.#body !== null && !this.req.complete) {
      this.#discardRequest();
      return;
    }
    // The kernel did not take the end of the response (0 in the common case): the send timeout
    // covers it until the response finishes ('close' disarms it).
    if (res.writableLength > 0 && !res.destroyed) {
      this.#phase = 'send';
      this.#arm(this.route.sendMs);
    }
  }

  /**
   * Read and discard the rest of a request body the upstream answered early, so the client reads
   * the answer instead of a reset and its keep-alive connection stays usable for the next request
   * (which Node parses once this body has ended). Bounded by max_body_bytes and DISCARD_BODY_MS
   * (and by Node's requestTimeout, listen.request_timeout_ms from the request's start); beyond a
   * bound the connection is closed.
   */
  #discardRequest(): void {
    const req = this.req as IncomingMessage & Tagged;
    const body = this.#body as BodyLimiter;
    req.unpipe(body);
    this.#discarded = body.seen;
    req[kForward] = this;
    req.on('data', onDrainData);
    req.once('end', onDrainEnd);
    req.resume();
    this.#phase = 'discard';
    this.#arm(DISCARD_BODY_MS);
  }

  /** Bytes of an early-answered request body read and thrown away. */
  discarded(n: number): void {
    this.#discarded += n;
    if (this.#discarded > this.route.maxBodyBytes) this.#stopDiscard('the rest of the request body passed max_body_bytes');
  }

  /** The early-answered request body has ended: the connection can carry the next request. */
  discardEnded(): void {
    if (this.#phase !== 'discard') return;
    this.#phase = 'body';
    this.#disarm();
    this.req.off('data', onDrainData);
  }

  #stopDiscard(reason: string): void {
    if (this.#phase !== 'discard') return;
    this.#phase = 'body';
    this.#disarm();
    const { req, ctx, route } = this;
    req.off('data', onDrainData);
    req.off('end', onDrainEnd);
    // A client that left meanwhile needs no word.
    if (req.socket.destroyed) return;
    this.env.logger.info(
      { req_id: ctx.id, route: route.name, reason, limit: route.maxBodyBytes, limit_ms: DISCARD_BODY_MS },
      'request body answered early and not discarded to its end: connection closed',
    );
    req.socket.destroy();
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
      // A send timeout was logged when it fired.
      if (!(err instanceof SendTimeoutError))
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
