/**
 * Shared pieces of the callback tests: a fake vendor upstream that records the signed deliveries,
 * and a gateway with one callback configured (secrets from env) plus a CallbackSender aimed at it.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';
import { CallbackSender, type CallbackSenderOptions } from '../../helpers/fake-wecom.ts';
import { ADMIN, LOOPBACK, makeConfig, type Running, startGateway } from '../../helpers/gateway.ts';
import { SAMPLE } from '../crypto/helpers.ts';

export const SHARED = 'vendor-shared-secret-0123456789';
export const CORP = 'ww1234567890abcdef';
export const TOKEN = 'T0kenForTests12';
export const AES_KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';

export interface Delivered {
  readonly headers: IncomingMessage['headers'];
  readonly raw: string;
  readonly json: Record<string, unknown>;
}

export interface Vendor {
  readonly url: string;
  readonly deliveries: Delivered[];
  /** What the vendor does with the next requests: answer (status, body), or hold for `delayMs` first. */
  behaviour: { status: number; body: string; delayMs?: number };
  /** Every request, also those answered with an error. */
  requests: number;
}

export async function startVendor(t: Test): Promise<Vendor> {
  const vendor: Vendor = { url: '', deliveries: [], behaviour: { status: 200, body: '' }, requests: 0 };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    vendor.requests++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const { status, body, delayMs } = vendor.behaviour;
      const answer = () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        if (status >= 200 && status < 300)
          vendor.deliveries.push({ headers: req.headers, raw, json: JSON.parse(raw) as Record<string, unknown> });
        res.writeHead(status, { 'content-type': body.startsWith('<') ? 'application/xml' : 'text/plain' });
        res.end(body);
      };
      if (delayMs) setTimeout(answer, delayMs).unref();
      else answer();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  (vendor as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/wecom/in`;
  return vendor;
}

export interface CallbackSetup {
  readonly kind?: 'app' | 'suite' | 'data';
  readonly token?: string;
  readonly aesKey?: string;
  readonly receiveIds?: string[];
  readonly maxAgeS?: number;
  readonly deliver?: Record<string, unknown>;
  readonly path?: string;
  /** Extra top-level config (routes, listen …). */
  readonly config?: Record<string, unknown>;
  readonly wecom?: Record<string, unknown>;
  readonly sender?: Partial<CallbackSenderOptions>;
  readonly now?: () => number;
}

export interface CallbackGateway {
  readonly gw: Running;
  readonly vendor: Vendor;
  readonly sender: CallbackSender;
  readonly path: string;
}

/** A gateway with one callback `cb` (secrets in env), a vendor, and a sender for the callback. */
export async function startCallbackGateway(t: Test, setup: CallbackSetup = {}): Promise<CallbackGateway> {
  const vendor = await startVendor(t);
  const path = setup.path ?? '/wecom/cb';
  const token = setup.token ?? TOKEN;
  const aesKey = setup.aesKey ?? AES_KEY;
  const receiveIds = setup.receiveIds ?? [CORP];
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [{ upstream: 'http://127.0.0.1:1' }],
    ...setup.config,
    wecom: {
      callbacks: [
        {
          name: 'cb',
          kind: setup.kind ?? 'app',
          path,
          receive_ids: receiveIds,
          token: { env: 'CB_TOKEN' },
          encoding_aes_key: { env: 'CB_AES_KEY' },
          ...(setup.maxAgeS !== undefined ? { max_age_s: setup.maxAgeS } : {}),
          deliver: { url: vendor.url, secret: { env: 'CB_SHARED' }, ...setup.deliver },
        },
      ],
      ...setup.wecom,
    },
  });
  const gw = await startGateway(t, config, {
    env: { CB_TOKEN: token, CB_AES_KEY: aesKey, CB_SHARED: SHARED },
    ...(setup.now ? { now: setup.now } : {}),
  });
  const sender = new CallbackSender({
    origin: `http://127.0.0.1:${gw.httpPort}`,
    path,
    token,
    encodingAesKey: aesKey,
    receiveId: receiveIds[0] ?? '',
    answerTimeoutMs: 5_000,
    retryIntervalMs: 50,
    ...setup.sender,
  });
  return { gw, vendor, sender, path };
}

/** The official sample's settings as a callback setup. */
export const SAMPLE_SETUP: CallbackSetup = {
  token: SAMPLE.token,
  aesKey: SAMPLE.encodingAesKey,
  receiveIds: [SAMPLE.receiveId],
  maxAgeS: 0,
};

/** A text message in WeCom's layout. */
export function textMessage(msgId: string, content: string, from = 'zhangsan', corp = CORP): string {
  return `<xml><ToUserName><![CDATA[${corp}]]></ToUserName><FromUserName><![CDATA[${from}]]></FromUserName><CreateTime>${Math.floor(Date.now() / 1000)}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${content}]]></Content><MsgId>${msgId}</MsgId><AgentID>1000002</AgentID></xml>`;
}

/** A change_contact event from sys (no MsgId) for `userId`, at `createTime`. */
export function contactEvent(userId: string, createTime: number, changeType = 'update_user', corp = CORP): string {
  return `<xml><ToUserName><![CDATA[${corp}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>${createTime}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event><ChangeType>${changeType}</ChangeType><UserID><![CDATA[${userId}]]></UserID></xml>`;
}
