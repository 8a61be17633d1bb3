/**
 * Delivery of a decrypted callback to the vendor in `sync` mode: one signed JSON POST through a
 * bounded undici pool, a deadline, a response-size cap. The answer says whether the vendor took it
 * (2xx) and carries its reply (the XML WeCom gets back, encrypted, as a passive reply).
 *
 * Signature (README "Callback delivery"): X-Wegate-Signature: `sha256=` + hex HMAC-SHA256 over
 * `${X-Wegate-Timestamp}.${body}` with the callback's shared secret.
 */
import { createHmac } from 'node:crypto';
import type { Agent, Dispatcher } from 'undici';
import { undici } from '../../egress/undici.ts';

export interface Delivery {
  readonly callback: string;
  readonly kind: string;
  readonly idempotencyKey: string;
  /** MsgType, Event (for MsgType=event) or InfoType (指令回调). */
  readonly event: string;
  readonly msgId: string | undefined;
  readonly receiveId: string;
  readonly fields: unknown;
  /** The decrypted inner XML as WeCom sent it. */
  readonly xml: string;
}

export type DeliveryResult = { ok: true; reply: string } | { ok: false; result: 'rejected' | 'timeout' | 'error'; detail: string };

export interface DeliverTarget {
  readonly url: string;
  readonly secret: string;
  readonly timeoutMs: number;
  readonly maxResponseBytes: number;
}

export interface Deliverer {
  deliver(target: DeliverTarget, d: Delivery): Promise<DeliveryResult>;
  close(): Promise<void>;
}

export interface DelivererDeps {
  /** Seconds-resolution wall clock in ms (the X-Wegate-Timestamp). */
  readonly now: () => number;
  /** Default: an Agent with a bounded pool made here (and closed by close()). */
  readonly dispatcher?: Dispatcher;
}

/** Connections per vendor origin: WeCom sends callbacks one at a time per app, bursts are small. */
const POOL = 16;

export function signDelivery(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export function createDeliverer(deps: DelivererDeps): Deliverer {
  const own =
    deps.dispatcher === undefined
      ? new (undici().Agent)({ connections: POOL, connect: { timeout: 3_000 }, keepAliveTimeout: 30_000 })
      : undefined;
  const dispatcher = deps.dispatcher ?? (own as Agent);

  async function deliver(target: DeliverTarget, d: Delivery): Promise<DeliveryResult> {
    const timestamp = String(Math.floor(deps.now() / 1000));
    const body = JSON.stringify({
      callback: d.callback,
      kind: d.kind,
      idempotency_key: d.idempotencyKey,
      event: d.event,
      msg_id: d.msgId,
      receive_id: d.receiveId,
      timestamp: Number(timestamp),
      fields: d.fields,
      xml: d.xml,
    });
    const signal = AbortSignal.timeout(target.timeoutMs);
    try {
      const url = new URL(target.url);
      const res = await undici().request.call(dispatcher, {
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: 'POST',
        signal,
        headersTimeout: target.timeoutMs,
        bodyTimeout: target.timeoutMs,
        headers: {
          'content-type': 'application/json; charset=utf-8',
          'x-wegate-timestamp': timestamp,
          'x-wegate-signature': signDelivery(target.secret, timestamp, body),
          'x-wegate-idempotency-key': d.idempotencyKey,
          'x-wegate-event': d.event,
          'x-wegate-callback': d.callback,
        },
        body,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > target.maxResponseBytes) {
          res.body.destroy();
          return { ok: false, result: 'error', detail: `answer larger than ${target.maxResponseBytes} bytes` };
        }
        chunks.push(chunk);
      }
      if (res.statusCode < 200 || res.statusCode > 299) return { ok: false, result: 'rejected', detail: `status ${res.statusCode}` };
      return { ok: true, reply: Buffer.concat(chunks).toString('utf8') };
    } catch (e) {
      if (signal.aborted) return { ok: false, result: 'timeout', detail: `no answer within ${target.timeoutMs} ms` };
      const err = e as Error & { code?: string; cause?: { code?: string } };
      return { ok: false, result: 'error', detail: err.cause?.code ?? err.code ?? err.name };
    }
  }

  return {
    deliver,
    async close() {
      await own?.close();
    },
  };
}
