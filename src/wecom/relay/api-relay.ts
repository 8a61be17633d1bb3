/**
 * The API relay: `<gateway.prefix>relay/cgi-bin/…` forwards an allow-listed WeCom API call of an
 * authenticated vendor server to WeCom through the pinned egress, with wegate's access token put in
 * (any `access_token` the vendor sends is removed first), and hands back WeCom's answer exactly as
 * WeCom sent it. On a stale token (40001/40014/42001) the token is dropped and the call made once
 * more, as the client does; a 60020 / 48009 is diagnosed, recorded as an incident and named in the
 * `X-Wegate-Diagnosis` header (a cause word, never an address list or a secret).
 *
 * Per request: one size test of the failed-authentication buckets (a Map lookup once an address has
 * failed), one SHA-256 of the bearer token, one BlockList check, one bucket, one undici request
 * on the egress dispatcher; metric children are resolved once; the answer is not parsed when it
 * starts with `{"errcode":0,` (WeCom's shape for success).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { WecomConfig } from '../../config/schema.ts';
import type { ErrorCode } from '../../core/errors.ts';
import { hasUnreadBody, type RequestContext, sendError } from '../../core/http.ts';
import type { Logger } from '../../core/logger.ts';
import type { Incidents } from '../../diagnostics/incidents.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import {
  answerErrcode,
  diagnoseIp,
  IP_ERRCODES,
  parseJsonObject,
  unreachableReason,
  type WecomApi,
  WecomApiError,
  type WecomAppKind,
} from '../api/index.ts';
import type { RelayClient, RelayClients } from './clients.ts';

export interface ApiRelayDeps {
  readonly clients: RelayClients;
  readonly wecom: WecomApi;
  /** The `wecom:` section the client was built from (api_base, timeouts, size cap, app kinds). */
  readonly wecomConfig: WecomConfig;
  readonly maxBodyBytes: number;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'wecomApiCalls' | 'wecomApiDuration'>;
  readonly incidents?: Incidents;
}

/** Handles `relay/…` under the gateway prefix; `api` is the rest of the path ("/cgi-bin/…"). */
export type ApiRelayHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  ctx: RequestContext,
  api: string,
  expectContinue: boolean,
) => void;

/** errcodes that mean "this access token is no good": drop it and retry once (as src/wecom/api does). */
const TOKEN_STALE = new Set([40001, 40014, 42001]);
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);
/** WeCom's success answers start with these bytes. */
const OK_PREFIX = Buffer.from('{"errcode":0,');
const ACCEPT_JSON = { accept: 'application/json' };
const TOKEN_MEMO_MS = 1000;

class TooLarge extends Error {}

interface Answer {
  readonly status: number;
  readonly type: string;
  readonly data: Buffer;
}

/**
 * One WeCom exchange on undici's dispatch API: the answer collected into one Buffer (capped) and
 * handed to `resolve`. Cheaper than `request()`, which wraps every body in a Readable read through
 * an async iterator (the proxy's forward.ts uses the same handler API).
 */
class Exchange implements Dispatcher.DispatchHandler {
  #status = 0;
  #type = 'application/json';
  #chunks: Buffer[] = [];
  #size = 0;
  readonly #max: number;
  readonly #resolve: (a: Answer) => void;
  readonly #reject: (e: unknown) => void;
  constructor(max: number, resolve: (a: Answer) => void, reject: (e: unknown) => void) {
    this.#max = max;
    this.#resolve = resolve;
    this.#reject = reject;
  }
  /** undici requires it; nothing to keep (the exchange is never aborted from outside). */
  onRequestStart(): void {}
  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    this.#status = statusCode;
    const ct = headers['content-type'];
    if (typeof ct === 'string') this.#type = ct;
    if (Number(headers['content-length']) > this.#max) controller.abort(new TooLarge());
  }
  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#size += chunk.length;
    if (this.#size > this.#max) return controller.abort(new TooLarge());
    this.#chunks.push(chunk);
  }
  onResponseEnd(): void {
    const c = this.#chunks;
    this.#resolve({ status: this.#status, type: this.#type, data: c.length === 1 ? (c[0] as Buffer) : Buffer.concat(c, this.#size) });
  }
  onResponseError(_controller: Dispatcher.DispatchController | null, err: Error): void {
    this.#reject(err);
  }
}

const dispatchOnce = (dispatcher: Dispatcher, opts: Dispatcher.DispatchOptions, max: number): Promise<Answer> =>
  new Promise((resolve, reject) => {
    try {
      dispatcher.dispatch(opts, new Exchange(max, resolve, reject));
    } catch (e) {
      reject(e);
    }
  });

/** The vendor's query without any access_token (in any case or percent-encoding), "" or "a=1&b=2". */
export function stripAccessToken(query: string): string {
  if (query.length <= 1) return '';
  const q = query.slice(1);
  if (!/token|%/i.test(q)) return q;
  const kept: string[] = [];
  for (const pair of q.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    let name = eq === -1 ? pair : pair.slice(0, eq);
    try {
      name = decodeURIComponent(name.replace(/\+/g, ' '));
    } catch {
      // A name that does not decode cannot be access_token; keep it as sent.
    }
    if (name.trim().toLowerCase() !== 'access_token') kept.push(pair);
  }
  return kept.join('&');
}

/** Searched for after the prefix (a string needle: ~250 ns on a 170-byte answer here, a Buffer needle ~370 ns). */
const ERRCODE_KEY = '"errcode"';

interface ErrcodeRead {
  readonly errcode: number | undefined;
  readonly json?: Record<string, unknown>;
}
const OK: ErrcodeRead = { errcode: 0 };
const NOT_JSON: ErrcodeRead = { errcode: undefined };

/**
 * Top-level errcode of a WeCom answer, read as the client reads it (answerErrcode on parseJsonObject:
 * 0 when absent, "60020" is 60020); undefined when not a JSON object or the errcode is malformed.
 * The fast path skips the parse for WeCom's success shape, unless a second "errcode" key follows
 * (JSON.parse keeps the last one, and so does the client). The parsed object comes back for errmsg.
 */
function errcodeOf(body: Buffer): ErrcodeRead {
  if (
    body.length > OK_PREFIX.length &&
    body.compare(OK_PREFIX, 0, OK_PREFIX.length, 0, OK_PREFIX.length) === 0 &&
    body.indexOf(ERRCODE_KEY, OK_PREFIX.length, 'latin1') === -1
  )
    return OK;
  try {
    const json = parseJsonObject(body.toString('utf8'));
    return { errcode: answerErrcode(json), json };
  } catch {
    return NOT_JSON;
  }
}
/** Read a stream to a Buffer, failing with TooLarge past `max` bytes. */
async function readCapped(stream: AsyncIterable<unknown>, max: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    const chunk = c as Buffer;
    size += chunk.length;
    if (size > max) throw new TooLarge();
    chunks.push(chunk);
  }
  return chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
}

export function createApiRelay(deps: ApiRelayDeps): ApiRelayHandler {
  const { clients, wecom, wecomConfig: wc, logger, metrics, incidents } = deps;
  const base = new URL(wc.api_base);
  const origin = base.origin;
  // The dispatcher is read per exchange (as the client does): a reload that changes `egress:` closes
  // the old profiles with their dispatchers and the profile egress hands out the new one.
  const egress = wecom.egress;
  const timeoutMs = wc.timeouts.response_ms;
  const maxResponse = wc.max_response_bytes;
  const kinds = new Map<string, WecomAppKind>(wc.apps.map((a) => [a.name, a.kind]));
  // Metric children per API path (allow-listed paths only: bounded), resolved once.
  const okCalls = new Map<string, { inc(): void }>();
  const durations = new Map<string, { observe(v: number): void }>();
  const countCall = (api: string, errcode: string, seconds: number) => {
    let d = durations.get(api);
    if (!d) durations.set(api, (d = metrics.wecomApiDuration.labels({ api })));
    d.observe(seconds);
    if (errcode !== '0') return metrics.wecomApiCalls.inc({ api, errcode });
    let c = okCalls.get(api);
    if (!c) okCalls.set(api, (c = metrics.wecomApiCalls.labels({ api, errcode })));
    c.inc();
  };

  // The app's token, held for up to a second between calls to the client (its accessToken() costs
  // ~2 µs per request: a credential hash and three promise hops); the client still refreshes it
  // ahead of expiry, and a stale-token answer drops it here too.
  const tokens = new Map<string, { token: string; until: number }>();
  const freshToken = async (app: string) => {
    const token = await wecom.accessToken(app);
    tokens.set(app, { token, until: performance.now() + TOKEN_MEMO_MS });
    return token;
  };

  const refuse = (
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    client: RelayClient | undefined,
    result: string,
    code: ErrorCode,
    headers?: Record<string, string>,
  ) => {
    clients.count(client, result);
    sendError(req, res, ctx, code, headers);
  };

  /** One exchange with WeCom; resolves with its status, content type and body bytes. */
  const exchange = async (api: string, query: string, token: string, method: 'GET' | 'POST', body: Buffer | undefined, type: string) => {
    const started = performance.now();
    const path = `${api}?${query}${query === '' ? '' : '&'}access_token=${encodeURIComponent(token)}`;
    let res: Answer;
    try {
      res = await dispatchOnce(
        egress.dispatcher,
        {
          origin,
          path,
          method,
          headers: body !== undefined ? { 'content-type': type, accept: 'application/json' } : ACCEPT_JSON,
          body: body ?? null,
          headersTimeout: timeoutMs,
          bodyTimeout: timeoutMs,
        },
        maxResponse,
      );
    } catch (e) {
      const large = e instanceof TooLarge;
      const code = (e as { code?: unknown }).code;
      const kind = large ? 'too_large' : typeof code === 'string' && TIMEOUT_CODES.has(code) ? 'timeout' : 'unreachable';
      countCall(api, kind, (performance.now() - started) / 1000);
      const what = large
        ? `WeCom's answer exceeded the ${maxResponse}-byte cap`
        : kind === 'timeout'
          ? 'WeCom did not answer in time'
          : `WeCom could not be reached (${unreachableReason(e)})`;
      throw new WecomApiError(`relay: ${api}: ${what}`, { kind, app: '-', api, cause: e });
    }
    const read = res.status === 200 ? errcodeOf(res.data) : NOT_JSON;
    const errcode = read.errcode;
    countCall(api, errcode === undefined ? 'bad_response' : String(errcode), (performance.now() - started) / 1000);
    return { status: res.status, type: res.type, data: res.data, errcode, json: read.json };
  };

  const serve = async (req: IncomingMessage, res: ServerResponse, ctx: RequestContext, api: string, expectContinue: boolean) => {
    const method = req.method;
    if (method !== 'GET' && method !== 'POST')
      return refuse(req, res, ctx, undefined, 'bad_request', 'WG_METHOD_NOT_ALLOWED', { allow: 'GET, POST' });
    // An address that failed authentication too often is refused before its token is looked at.
    const locked = clients.authWait(ctx.clientIp);
    if (locked > 0) return refuse(req, res, ctx, undefined, 'auth_throttled', 'WG_RELAY_RATE_LIMITED', { 'retry-after': String(locked) });
    const client = clients.byBearer(req.headers.authorization);
    if (client === undefined || client.app === undefined) {
      clients.authFailed(ctx.clientIp);
      return refuse(req, res, ctx, undefined, 'unauthorized', 'WG_RELAY_UNAUTHORIZED', {
        'www-authenticate': 'Bearer realm="wegate relay"',
      });
    }
    if (!client.allowsSource(ctx.clientIp)) return refuse(req, res, ctx, client, 'forbidden_source', 'WG_RELAY_FORBIDDEN_SOURCE');
    if (!client.apis.has(api)) return refuse(req, res, ctx, client, 'forbidden_api', 'WG_RELAY_FORBIDDEN_API');
    const wait = client.bucket.take();
    if (wait > 0) return refuse(req, res, ctx, client, 'rate_limited', 'WG_RELAY_RATE_LIMITED', { 'retry-after': String(wait) });

    let body: Buffer | undefined;
    if (hasUnreadBody(req)) {
      const declared = Number(req.headers['content-length']);
      if (declared > deps.maxBodyBytes) return refuse(req, res, ctx, client, 'too_large', 'WG_BODY_TOO_LARGE');
      if (expectContinue) res.writeContinue();
      try {
        body = await readCapped(req, deps.maxBodyBytes);
      } catch (e) {
        if (e instanceof TooLarge) return refuse(req, res, ctx, client, 'too_large', 'WG_BODY_TOO_LARGE');
        // The vendor went away mid-body: nobody to answer.
        clients.count(client, 'bad_request');
        res.destroy();
        return;
      }
    }
    const type = typeof req.headers['content-type'] === 'string' ? req.headers['content-type'] : 'application/json';
    const query = stripAccessToken(ctx.query);
    const app = client.app;

    let answer: Awaited<ReturnType<typeof exchange>>;
    try {
      for (let retried = false; ; retried = true) {
        const memo = tokens.get(app);
        const token = memo !== undefined && performance.now() < memo.until ? memo.token : await freshToken(app);
        answer = await exchange(api, query, token, method, body, type);
        if (answer.errcode !== undefined && TOKEN_STALE.has(answer.errcode) && !retried) {
          logger.info({ client: client.name, app, api, errcode: answer.errcode }, 'relay: WeCom refused the cached token: refreshing once');
          tokens.delete(app);
          wecom.invalidateToken(app, token);
          continue;
        }
        break;
      }
    } catch (e) {
      if (!(e instanceof WecomApiError)) throw e;
      // Token refresh refused (credentials, 60020 on gettoken's chain …) or transport: wegate's own error page.
      const result = e.api === '/cgi-bin/gettoken' || e.kind === 'credentials' || e.kind === 'not_ready' ? 'token_error' : 'upstream_error';
      // The cause (undici's or WeCom's) goes to the log, redacted there; never to the vendor.
      logger.warn(
        { client: client.name, app, api, error_code: e.code, kind: e.kind, err: e.cause ?? e, req_id: ctx.id },
        'relay: WeCom call failed',
      );
      const diag = e.diagnosis !== undefined ? { 'x-wegate-diagnosis': e.diagnosis.cause } : undefined;
      return refuse(req, res, ctx, client, result, e.code, diag);
    }

    const headers: Record<string, string | number> = {
      'content-type': answer.type,
      'content-length': answer.data.length,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-request-id': ctx.id,
    };
    let result = 'ok';
    const errcode = answer.errcode;
    if (errcode === undefined) result = 'upstream_error';
    else if (IP_ERRCODES.has(errcode)) {
      result = 'ip_refused';
      const errmsg = answer.json?.['errmsg'];
      const d = diagnoseIp({ errcode, errmsg, app: { name: app, kind: kinds.get(app) ?? 'self_built' }, api, egress: wecom.egress });
      if (d) {
        headers['x-wegate-diagnosis'] = d.cause;
        incidents?.record({
          app,
          api,
          cause: d.cause,
          errcode,
          ...(d.fromIp !== undefined ? { fromIp: d.fromIp } : {}),
          ...(d.expectedIp !== undefined ? { expectedIp: d.expectedIp } : {}),
          ...(d.localAddress !== undefined ? { localAddress: d.localAddress } : {}),
          ...(d.hint !== undefined ? { hint: d.hint } : {}),
          en: d.en,
          zh: d.zh,
        });
      }
    } else if (errcode !== 0) result = 'wecom_error';
    clients.count(client, result);
    res.writeHead(answer.status, headers);
    // A small answer goes as a latin1 string (the same bytes): Node joins it to the head in one write
    // instead of a writev of head + Buffer, as the proxy does (src/proxy/forward.ts, JOIN_MAX_BYTES).
    if (answer.data.length <= 16 * 1024) res.end(answer.data.toString('latin1'), 'latin1');
    else res.end(answer.data);
  };

  return (req, res, ctx, api, expectContinue) => {
    ctx.route = 'relay';
    serve(req, res, ctx, api, expectContinue).catch((e: unknown) => {
      logger.error({ err: e, req_id: ctx.id }, 'relay: request failed unexpectedly');
      sendError(req, res, ctx, 'WG_INTERNAL');
    });
  };
}
