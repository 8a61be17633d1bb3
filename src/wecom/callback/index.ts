/**
 * The WeCom callback endpoints (issue 12 items 2–5): every configured callback path answers WeCom's
 * URL check (GET) and its messages and events (POST) on every host, before routing — never proxied,
 * never behind login. POST: body limit → no markup declarations → outer XML → signature → freshness →
 * decrypt → receiveid → inner XML → de-duplication → delivery to the vendor (`sync`) → the answer.
 *
 * Nothing acknowledged is lost: WeCom gets a 200 (or "success") only once the vendor took the
 * message; when the vendor fails or misses the deadline the answer is 503, and WeCom retries (up to
 * three times for app callbacks). The durable queue (`deliver.mode: queue`) comes with the store.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { WecomCallbackConfig, WecomConfig } from '../../config/schema.ts';
import { SUITE_CALLBACK_MAX_TIMEOUT_MS } from '../../config/wecom-callback-check.ts';
import type { ErrorCode } from '../../core/errors.ts';
import { hasUnreadBody, type RequestContext, sendError } from '../../core/http.ts';
import type { Logger } from '../../core/logger.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import type { QueueAppStats, StateStore } from '../../store/index.ts';
import { readSecret } from '../api/index.ts';
import {
  type CallbackCipher,
  CallbackCryptoError,
  checkCallbackToken,
  checkEncodingAesKey,
  checkReceiveId,
  createCallbackCipher,
  createReceiveIdSet,
  type Decrypted,
  type ReceiveIdSet,
} from '../crypto/index.ts';
import { createMemoryDedupe, type DedupeKeys, dedupeKey } from './dedupe.ts';
import { createDeliverer, type DeliverTarget, type Delivery, type DeliveryResult } from './deliver.ts';
import { createDeliveryWorker, type DeliveryWorker, type QueueTarget } from './delivery-worker.ts';
import { type HandledEvent, isStoreUnavailable, type ProviderEvents } from './provider-events.ts';
import { parseCallbackQuery } from './query.ts';
import { createSafeXml, textField } from './xml.ts';

export { createMemoryDedupe, type DedupeKeys, dedupeKey } from './dedupe.ts';
export { signDelivery } from './deliver.ts';
export { backoffMs, createDeliveryWorker, type DeliveryWorker } from './delivery-worker.ts';
export { parseCallbackQuery } from './query.ts';
export { createSafeXml } from './xml.ts';

/** What a callback answer is counted as (wegate_wecom_callbacks_total{outcome}). */
export type CallbackOutcome = 'ok' | 'bad_signature' | 'bad_payload' | 'duplicate' | 'stale' | 'refused' | 'not_delivered';

/** Default deadline of the vendor's answer: app callbacks have 5 s in all, suite callbacks 1000 ms. */
const APP_TIMEOUT_MS = 4_000;
const SUITE_TIMEOUT_MS = 800;
/** A body not received within this is refused (a trickled body must not hold a slot forever). */
const BODY_TIMEOUT_MS = 3_000;
/** De-dup keys kept in memory (about 100 bytes each). */
const DEDUPE_MAX = 100_000;

/** One configured callback path. */
export interface CallbackEndpoint {
  readonly name: string;
  readonly kind: WecomCallbackConfig['kind'];
  readonly path: string;
  /** The label of wegate_http_requests_total for this path. */
  readonly route: string;
  readonly cipher: CallbackCipher;
  readonly receiveIds: ReceiveIdSet;
  readonly maxAgeS: number;
  readonly maxBodyBytes: number;
  readonly target: DeliverTarget;
  readonly mode: WecomCallbackConfig['deliver']['mode'];
}

/** The pipeline stage: an exact-path Map lookup, then the handler. */
export interface CallbackStage {
  match(path: string): CallbackEndpoint | undefined;
  /** `expectContinue`: the request waits for `100 Continue`, sent only when its size is acceptable. */
  handle(req: IncomingMessage, res: ServerResponse, ctx: RequestContext, endpoint: CallbackEndpoint, expectContinue: boolean): void;
}

export interface Callbacks extends CallbackStage {
  readonly endpoints: readonly CallbackEndpoint[];
  /** The queue of queue-mode callbacks (and sync ones' fallback) when a state store was given. */
  readonly queue?: CallbackQueueAdmin;
  /** Closes the delivery pool after the deliveries in flight. */
  close(): Promise<void>;
}

export interface CallbacksDeps {
  readonly config: WecomConfig;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Wall clock, ms (freshness window, delivery and passive-reply timestamps). */
  readonly now?: () => number;
  readonly randomBytes?: (n: number) => Uint8Array;
  /** Dispatcher of the deliveries; default a bounded undici Agent owned by the stage. */
  readonly dispatcher?: Dispatcher;
  /** The de-dup keys; default in memory (the durable store implements DedupeKeys later). */
  readonly dedupe?: DedupeKeys;
  /** Provider events of suite callbacks handled by wegate (provider-events.ts); without it they go to the vendor. */
  readonly provider?: ProviderEvents;
  /**
   * The state store: `queue` callbacks enqueue into it (de-dup keys claimed there, durable across
   * restarts), `sync` callbacks fall back to it when the vendor fails; a delivery worker drains it.
   */
  readonly store?: StateStore;
  /** Uniform in [0, 1): the jitter of the queue's backoff. */
  readonly random?: () => number;
}

/** What the admin listener lists and re-drives (no payload content ever leaves here). */
export interface CallbackQueueAdmin {
  readonly store: StateStore;
  /** Figures per callback, refreshed by refreshStats (metrics scrape, /diagnostics). */
  lastStats(): readonly QueueAppStats[];
  refreshStats(): Promise<readonly QueueAppStats[]>;
  /** Dead letters back to pending, then delivered at once. */
  redrive(target: { readonly id: number } | { readonly app: string }): Promise<number>;
}

/** The accepted receiveids of a callback: its app's corp id, its suite's id, receive_ids. */
export function receiveIdsOf(cb: WecomCallbackConfig, wecom: WecomConfig): string[] {
  const ids = [...cb.receive_ids];
  if (cb.app !== undefined) {
    const app = wecom.apps.find((a) => a.name === cb.app);
    const corp = app?.corp_id ?? wecom.corp_id;
    if (corp !== undefined) ids.push(corp);
  } else if (cb.kind === 'app' && wecom.corp_id !== undefined) {
    ids.push(wecom.corp_id);
  }
  if (cb.suite !== undefined) {
    const suite = wecom.suites.find((s) => s.name === cb.suite);
    if (suite !== undefined) ids.push(suite.suite_id);
  }
  return ids;
}

/** Read a Token / EncodingAESKey and check its format; the error names the key and the source, never the value. */
export function readCallbackSecret(
  label: string,
  ref: WecomCallbackConfig['token'],
  env: CallbacksDeps['env'],
  check: (v: unknown) => string | undefined,
): string {
  const secret = readSecret(ref, env, label);
  const problem = check(secret.value);
  if (problem !== undefined) throw new Error(`${label} (${secret.where}): ${problem}`);
  return secret.value;
}

/** Build the callback endpoints; reads their secrets now and throws, naming the key, when one is missing or malformed. */
export function createCallbacks(deps: CallbacksDeps): Callbacks {
  const { logger, metrics, config } = deps;
  const now = deps.now ?? Date.now;
  const random = deps.randomBytes ?? randomBytes;
  const xml = createSafeXml();
  const endpoints: CallbackEndpoint[] = [];
  const byPath = new Map<string, CallbackEndpoint>();
  let ttlMs = 0;
  const queueTargets = new Map<string, QueueTarget>();
  config.callbacks.forEach((cb, i) => {
    const at = `wecom.callbacks[${i}] (${cb.name})`;
    const token = readCallbackSecret(`${at}.token`, cb.token, deps.env, checkCallbackToken);
    const encodingAesKey = readCallbackSecret(`${at}.encoding_aes_key`, cb.encoding_aes_key, deps.env, checkEncodingAesKey);
    const shared = readSecret(cb.deliver.secret, deps.env, `${at}.deliver.secret`).value;
    const timeoutMs = Math.min(
      cb.deliver.timeout_ms ?? (cb.kind === 'suite' ? SUITE_TIMEOUT_MS : APP_TIMEOUT_MS),
      cb.kind === 'suite' ? SUITE_CALLBACK_MAX_TIMEOUT_MS : Infinity,
    );
    const endpoint: CallbackEndpoint = {
      name: cb.name,
      kind: cb.kind,
      path: cb.path,
      route: `wecom_callback:${cb.name}`,
      cipher: createCallbackCipher({ token, encodingAesKey, maxCiphertextBytes: cb.max_body_bytes }),
      receiveIds: createReceiveIdSet(receiveIdsOf(cb, config)),
      maxAgeS: cb.max_age_s,
      maxBodyBytes: cb.max_body_bytes,
      target: { url: cb.deliver.url, secret: shared, timeoutMs, maxResponseBytes: cb.deliver.max_response_bytes },
      mode: cb.deliver.mode,
    };
    queueTargets.set(cb.name, {
      target: endpoint.target,
      retry: {
        maxAttempts: cb.deliver.max_attempts,
        maxAgeMs: cb.deliver.max_queue_age_s * 1000,
        backoffBaseMs: cb.deliver.backoff_base_ms,
        backoffMaxMs: Math.max(cb.deliver.backoff_base_ms, cb.deliver.backoff_max_ms),
      },
    });
    ttlMs = Math.max(ttlMs, cb.dedupe_ttl_s * 1000);
    endpoints.push(endpoint);
    byPath.set(cb.path, endpoint);
  });
  const dedupe = deps.dedupe ?? createMemoryDedupe({ max: DEDUPE_MAX, ttlMs: Math.max(ttlMs, 1000), now });
  const deliverer = createDeliverer({ now, ...(deps.dispatcher ? { dispatcher: deps.dispatcher } : {}) });
  /** Deliveries in flight by idempotency key: a retry arriving meanwhile waits for the same outcome. */
  const inflight = new Map<string, Promise<DeliveryResult>>();
  const pending = new Set<Promise<unknown>>();
  /** Sync deliveries that fell back to the queue (counted as result "queued", not "ok"). */
  const fellBack = new WeakSet<DeliveryResult>();
  const store = deps.store;
  const worker: DeliveryWorker | undefined =
    store === undefined
      ? undefined
      : createDeliveryWorker({ store, targets: queueTargets, deliverer, logger, metrics, now, random: deps.random ?? Math.random });
  let stats: readonly QueueAppStats[] = [];
  const dedupTtlMs = new Map(config.callbacks.map((cb) => [cb.name, Math.max(cb.dedupe_ttl_s * 1000, 1000)]));

  /**
   * Store a callback durably (its de-dup key claimed in the same transaction) and wake the worker.
   * Rejects with WG_STORE_UNAVAILABLE when the store cannot write: then WeCom must not be acknowledged.
   */
  const enqueue = async (s: StateStore, e: CallbackEndpoint, message: Delivery): Promise<boolean> => {
    const r = await s.queue.enqueue(e.name, {
      idempotencyKey: message.idempotencyKey,
      eventType: message.event,
      payload: JSON.stringify(message),
      dedup: { key: `cb:${message.idempotencyKey}`, ttlMs: dedupTtlMs.get(e.name) ?? 900_000 },
    });
    if (!r.duplicate) worker?.wake(e.name);
    return !r.duplicate;
  };

  /** queue mode: durable before the ack; a duplicate (also one from before a restart) is acknowledged without a second copy. */
  const receiveQueued = async (
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    e: CallbackEndpoint,
    s: StateStore,
    message: Delivery,
    log: Record<string, unknown>,
  ) => {
    let fresh: boolean;
    try {
      fresh = await enqueue(s, e, message);
    } catch (err) {
      count(e, 'not_delivered');
      logger.error(
        { ...log, outcome: 'not_delivered', err: (err as Error).message },
        'wecom callback not queued (state store unavailable): not acknowledged, WeCom retries',
      );
      return sendError(req, res, ctx, 'WG_STORE_UNAVAILABLE');
    }
    count(e, fresh ? 'ok' : 'duplicate');
    logger.info({ ...log, outcome: fresh ? 'ok' : 'duplicate' }, fresh ? 'wecom callback queued' : 'wecom callback duplicate acknowledged');
    acknowledge(req, res, ctx, e, '', message.receiveId);
  };

  const count = (e: CallbackEndpoint, outcome: CallbackOutcome) => metrics.wecomCallbacks.inc({ callback: e.name, outcome });

  const refuse = (
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    e: CallbackEndpoint,
    outcome: CallbackOutcome,
    code: ErrorCode,
    detail: string,
    extra?: Record<string, unknown>,
  ) => {
    count(e, outcome);
    logger.info(
      { req_id: ctx.id, callback: e.name, method: req.method, outcome, error_code: code, detail, ...extra },
      'wecom callback refused',
    );
    sendError(req, res, ctx, code);
  };

  /** The outcome and code of a crypto failure (the receiveid one is logged with the id seen). */
  const cryptoRefusal = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext, e: CallbackEndpoint, err: unknown) => {
    if (!(err instanceof CallbackCryptoError)) throw err;
    if (err.code === 'WG_CALLBACK_BAD_RECEIVE_ID') {
      return refuse(req, res, ctx, e, 'refused', err.code, 'receiveid not configured for this callback', {
        receive_id_seen: err.receiveId,
      });
    }
    return refuse(req, res, ctx, e, 'bad_payload', err.code, err.message);
  };

  const decryptChecked = (e: CallbackEndpoint, ciphertext: string): Decrypted => {
    const d = e.cipher.decrypt(ciphertext);
    checkReceiveId(d, e.receiveIds);
    return d;
  };

  const plain = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext, status: number, body: string, type: string) => {
    if (res.destroyed || res.headersSent) return;
    const headers: Record<string, string | number> = {
      'content-type': type,
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-request-id': ctx.id,
    };
    if (hasUnreadBody(req)) headers.connection = 'close';
    res.writeHead(status, headers);
    res.end(body);
  };

  /** URL check: the bare plaintext of echostr, no quotes, newline or BOM (document/path/90238). */
  const verifyUrl = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext, e: CallbackEndpoint) => {
    const q = parseCallbackQuery(ctx.query);
    if (!q.ok) return refuse(req, res, ctx, e, 'bad_payload', 'WG_CALLBACK_BAD_PAYLOAD', q.reason);
    const { msgSignature, timestamp, nonce, echostr } = q.query;
    if (echostr === undefined || echostr === '')
      return refuse(req, res, ctx, e, 'bad_payload', 'WG_CALLBACK_BAD_PAYLOAD', 'echostr is missing');
    if (!e.cipher.verify(msgSignature, timestamp, nonce, echostr)) {
      return refuse(req, res, ctx, e, 'bad_signature', 'WG_CALLBACK_BAD_SIGNATURE', 'msg_signature does not match');
    }
    let d: Decrypted;
    try {
      d = decryptChecked(e, echostr);
    } catch (err) {
      return cryptoRefusal(req, res, ctx, e, err);
    }
    count(e, 'ok');
    logger.info({ req_id: ctx.id, callback: e.name, method: 'GET', outcome: 'ok' }, 'wecom callback URL check answered');
    plain(req, res, ctx, 200, d.message, 'text/plain; charset=utf-8');
  };

  /** The ack of a delivered message: "success" for suite callbacks, else the encrypted passive reply or an empty 200. */
  const acknowledge = (
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    e: CallbackEndpoint,
    reply: string,
    receiveId: string,
  ) => {
    if (e.kind === 'suite') return plain(req, res, ctx, 200, 'success', 'text/plain; charset=utf-8');
    const text = reply.trim();
    // Only XML is a passive reply; anything else (an empty body, "ok", "success") is an empty 200.
    if (!text.startsWith('<')) return plain(req, res, ctx, 200, '', 'text/plain; charset=utf-8');
    const timestamp = String(Math.floor(now() / 1000));
    const nonce = String(Buffer.from(random(4)).readUInt32BE(0));
    let body: string;
    try {
      body = e.cipher.passiveReply(text, receiveId, timestamp, nonce, random(16));
    } catch (err) {
      // Too long or not XML-safe: the vendor did take the message, so acknowledge without the reply.
      logger.warn(
        { req_id: ctx.id, callback: e.name, err: (err as Error).message },
        'the upstream reply cannot be sent as a passive reply',
      );
      return plain(req, res, ctx, 200, '', 'text/plain; charset=utf-8');
    }
    plain(req, res, ctx, 200, body, 'application/xml; charset=utf-8');
  };

  const receive = async (req: IncomingMessage, res: ServerResponse, ctx: RequestContext, e: CallbackEndpoint, body: Buffer) => {
    const q = parseCallbackQuery(ctx.query);
    if (!q.ok) return refuse(req, res, ctx, e, 'bad_payload', 'WG_CALLBACK_BAD_PAYLOAD', q.reason);
    const { msgSignature, timestamp, nonce } = q.query;
    const outer = xml.parse(body.toString('utf8'));
    if (!outer.ok) return refuse(req, res, ctx, e, 'bad_payload', 'WG_CALLBACK_BAD_PAYLOAD', outer.reason);
    const encrypt = textField(outer.fields, 'Encrypt');
    if (encrypt === undefined || encrypt === '')
      return refuse(req, res, ctx, e, 'bad_payload', 'WG_CALLBACK_BAD_PAYLOAD', 'no <Encrypt> element');
    if (!e.cipher.verify(msgSignature, timestamp, nonce, encrypt)) {
      return refuse(req, res, ctx, e, 'bad_signature', 'WG_CALLBACK_BAD_SIGNATURE', 'msg_signature does not match');
    }
    if (e.maxAgeS > 0 && Math.abs(now() / 1000 - Number(timestamp)) > e.maxAgeS) {
      return refuse(req, res, ctx, e, 'stale', 'WG_CALLBACK_STALE', `timestamp more than ${e.maxAgeS} s from the clock`);
    }
    let d: Decrypted;
    try {
      d = decryptChecked(e, encrypt);
    } catch (err) {
      return cryptoRefusal(req, res, ctx, e, err);
    }
    const inner = xml.parse(d.message);
    if (!inner.ok) return refuse(req, res, ctx, e, 'bad_payload', 'WG_CALLBACK_BAD_PAYLOAD', `decrypted message: ${inner.reason}`);
    const f = inner.fields;
    const msgId = textField(f, 'MsgId');
    const msgType = textField(f, 'MsgType');
    const event = (msgType === 'event' ? textField(f, 'Event') : msgType) ?? textField(f, 'InfoType') ?? 'unknown';
    const key = dedupeKey(e.name, msgId, d.message);
    const log = { req_id: ctx.id, callback: e.name, event, msg_id: msgId };
    if (e.mode === 'queue' && store !== undefined) {
      const message = {
        callback: e.name,
        kind: e.kind,
        idempotencyKey: key,
        event,
        msgId,
        receiveId: d.receiveId,
        fields: f,
        xml: d.message,
      };
      return receiveQueued(req, res, ctx, e, store, message, log);
    }

    if (await dedupe.has(key)) {
      count(e, 'duplicate');
      logger.info({ ...log, outcome: 'duplicate' }, 'wecom callback duplicate acknowledged');
      return acknowledge(req, res, ctx, e, '', d.receiveId);
    }
    if (e.kind === 'suite' && deps.provider !== undefined) {
      let handled: HandledEvent | undefined;
      try {
        handled = await deps.provider.handle(e.name, f, d.message);
      } catch (err) {
        if (!isStoreUnavailable(err)) throw err;
        count(e, 'not_delivered');
        logger.warn(
          { ...log, outcome: 'not_delivered', err: (err as Error).message },
          'wecom provider event not stored: not acknowledged, WeCom retries',
        );
        return sendError(req, res, ctx, 'WG_STORE_UNAVAILABLE');
      }
      if (handled !== undefined) {
        await dedupe.add(key);
        count(e, 'ok');
        logger.info({ ...log, outcome: 'ok' }, 'wecom provider event handled by wegate');
        acknowledge(req, res, ctx, e, '', d.receiveId);
        const notice = { callback: e.name, kind: e.kind, idempotencyKey: key, event, msgId, receiveId: d.receiveId, ...handled };
        return notify(e, notice);
      }
    }
    let delivery = inflight.get(key);
    const first = delivery === undefined;
    if (delivery === undefined) {
      // The deadline counts from the request's arrival: WeCom waits 5 s (1 s for suite callbacks) in all.
      const elapsedMs = Number(process.hrtime.bigint() - ctx.startedAt) / 1e6;
      const timeoutMs = Math.floor(e.target.timeoutMs - elapsedMs);
      const message = {
        callback: e.name,
        kind: e.kind,
        idempotencyKey: key,
        event,
        msgId,
        receiveId: d.receiveId,
        fields: f,
        xml: d.message,
      };
      // The key is recorded before the delivery leaves `inflight`: a retry sees one or the other, never neither.
      delivery = (
        timeoutMs < 1
          ? Promise.resolve<DeliveryResult>({ ok: false, result: 'timeout', detail: 'no time left before WeCom gives up' })
          : deliverer.deliver({ ...e.target, timeoutMs }, message)
      ).then(async (r): Promise<DeliveryResult> => {
        if (r.ok) await dedupe.add(key);
        else if (store !== undefined) {
          // The vendor failed or missed the deadline: queue it (durably) and acknowledge; the worker
          // delivers it later with the same idempotency key. A store that cannot write: no ack.
          try {
            await enqueue(store, e, message);
            await dedupe.add(key);
            metrics.wecomCallbackDeliveries.inc({ callback: e.name, result: r.result });
            metrics.wecomCallbackDeliveries.inc({ callback: e.name, result: 'queued' });
            logger.warn(
              { ...log, delivery: r.result, detail: r.detail },
              'wecom callback not delivered in time: queued for a later delivery',
            );
            const queued: DeliveryResult = { ok: true, reply: '' };
            fellBack.add(queued);
            return queued;
          } catch (err) {
            logger.error({ ...log, err: (err as Error).message }, 'wecom callback could not be queued (state store unavailable)');
          }
        }
        return r;
      });
      inflight.set(key, delivery);
      const done = delivery.finally(() => {
        inflight.delete(key);
        pending.delete(done);
      });
      pending.add(done);
    }
    const result = await delivery;
    if (first && !fellBack.has(result)) metrics.wecomCallbackDeliveries.inc({ callback: e.name, result: result.ok ? 'ok' : result.result });
    if (!result.ok) {
      count(e, 'not_delivered');
      logger.warn(
        { ...log, outcome: 'not_delivered', delivery: result.result, detail: result.detail },
        'wecom callback not delivered: not acknowledged, WeCom retries',
      );
      return sendError(req, res, ctx, 'WG_CALLBACK_NOT_DELIVERED');
    }
    count(e, first ? 'ok' : 'duplicate');
    logger.info({ ...log, outcome: first ? 'ok' : 'duplicate' }, 'wecom callback delivered');
    acknowledge(req, res, ctx, e, first ? result.reply : '', d.receiveId);
  };

  /** A handled provider event goes to the vendor after WeCom's answer: one attempt, SuiteTicket / AuthCode removed. */
  const notify = (e: CallbackEndpoint, notice: Delivery) => {
    const p: Promise<void> = deliverer
      .deliver(e.target, notice)
      .then((r) => {
        metrics.wecomCallbackDeliveries.inc({ callback: e.name, result: r.ok ? 'ok' : r.result });
        if (!r.ok)
          logger.warn(
            { callback: e.name, event: notice.event, delivery: r.result, detail: r.detail },
            'provider event notice not taken by the vendor',
          );
      })
      .finally(() => pending.delete(p));
    pending.add(p);
  };

  /** Read the POST body with the size limit and a deadline; answers the refusal itself and resolves undefined. */
  const readBody = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext, e: CallbackEndpoint): Promise<Buffer | undefined> =>
    new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let settled = false;
      const finish = (value: Buffer | undefined, refusal?: [CallbackOutcome, ErrorCode, string]) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.off('data', onData);
        req.off('end', onEnd);
        req.off('error', onAbort);
        req.off('aborted', onAbort);
        if (refusal) {
          refuse(req, res, ctx, e, refusal[0], refusal[1], refusal[2]);
          // Stop reading what is left: the refusal closes the connection.
          req.resume();
        }
        resolve(value);
      };
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size > e.maxBodyBytes)
          return finish(undefined, ['bad_payload', 'WG_BODY_TOO_LARGE', `body larger than ${e.maxBodyBytes} bytes`]);
        chunks.push(chunk);
      };
      const onEnd = () => finish(Buffer.concat(chunks, size));
      const onAbort = () => finish(undefined);
      const timer = setTimeout(
        () => finish(undefined, ['bad_payload', 'WG_REQUEST_TIMEOUT', `body not received within ${BODY_TIMEOUT_MS} ms`]),
        BODY_TIMEOUT_MS,
      );
      req.on('data', onData);
      req.on('end', onEnd);
      req.on('error', onAbort);
      req.on('aborted', onAbort);
    });

  const handle = (req: IncomingMessage, res: ServerResponse, ctx: RequestContext, e: CallbackEndpoint, expectContinue: boolean) => {
    ctx.route = e.route;
    if (req.method === 'GET') return verifyUrl(req, res, ctx, e);
    if (req.method !== 'POST') {
      count(e, 'bad_payload');
      return sendError(req, res, ctx, 'WG_CALLBACK_METHOD', { allow: 'GET, POST' });
    }
    const cl = req.headers['content-length'];
    if (cl !== undefined && Number(cl) > e.maxBodyBytes) {
      return refuse(req, res, ctx, e, 'bad_payload', 'WG_BODY_TOO_LARGE', `content-length above ${e.maxBodyBytes}`);
    }
    if (expectContinue) res.writeContinue();
    const work = readBody(req, res, ctx, e)
      .then((body) => (body === undefined ? undefined : receive(req, res, ctx, e, body)))
      .catch((err: unknown) => {
        logger.error({ err, req_id: ctx.id, callback: e.name }, 'wecom callback failed unexpectedly');
        sendError(req, res, ctx, 'WG_INTERNAL');
      })
      .finally(() => pending.delete(work));
    pending.add(work);
  };

  return {
    endpoints,
    match: (path) => byPath.get(path),
    handle,
    ...(store === undefined
      ? {}
      : {
          queue: {
            store,
            lastStats: () => stats,
            async refreshStats() {
              stats = await store.queue.stats();
              // Every queue-mode callback has its series, also at 0 (an alert on depth needs one).
              for (const name of queueTargets.keys()) {
                const st = stats.find((x) => x.app === name);
                metrics.wecomCallbackQueueDepth.set({ callback: name }, st?.depth ?? 0);
                metrics.wecomCallbackQueueOldestAge.set({ callback: name }, (st?.oldestAgeMs ?? 0) / 1000);
                metrics.wecomCallbackDeadLetters.set({ callback: name }, st?.dead ?? 0);
              }
              return stats;
            },
            async redrive(target: { readonly id: number } | { readonly app: string }) {
              const n = await store.queue.redrive(target);
              if ('app' in target) worker?.wake(target.app);
              else for (const name of queueTargets.keys()) worker?.wake(name);
              return n;
            },
          },
        }),
    async close() {
      await Promise.allSettled([...pending]);
      await worker?.close();
      await deliverer.close();
    },
  };
}
