/**
 * `deliver.mode: queue` on the real state store: a callback is acknowledged once it is durable,
 * delivered by the worker in order with backoff, dead-lettered after bounded attempts, re-driven
 * from the admin listener; de-dup keys survive a restart; `sync` falls back to the queue.
 */
import { createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import t from 'tap';
import { backoffMs } from '../../../src/wecom/callback/index.ts';
import { parseExposition, valueOf } from '../../helpers/prom-text.ts';
import { type CallbackGateway, type CallbackSetup, SHARED, startCallbackGateway, textMessage } from './helpers.ts';

const until = async (cond: () => boolean | Promise<boolean>, what: string) => {
  for (let i = 0; i < 500; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
};
const stateDir = async (t: Test) => {
  const dir = await mkdtemp(join(tmpdir(), 'wegate-queue-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
};
const metric = async (cg: CallbackGateway, family: string, labels: Record<string, string>) =>
  valueOf(parseExposition(await (await fetch(`http://127.0.0.1:${cg.gw.adminPort}/metrics`)).text()), family, labels);
const admin = async (cg: CallbackGateway, path: string, method = 'GET') =>
  (await (await fetch(`http://127.0.0.1:${cg.gw.adminPort}${path}`, { method })).json()) as Record<string, unknown>;

/** A queue-mode callback with a fast retry policy (so a test sees several attempts in milliseconds). */
const queued = async (t: Test, dir?: string, deliver: Record<string, unknown> = {}, extra: CallbackSetup = {}) =>
  startCallbackGateway(t, {
    ...extra,
    config: { state: { dir: dir ?? (await stateDir(t)) } },
    deliver: { mode: 'queue', backoff_base_ms: 10, backoff_max_ms: 40, ...deliver },
  });

t.test('callback queue: the vendor gets the signed delivery after WeCom was acknowledged when the callback is queued', async (t) => {
  const cg = await queued(t);
  const r = await cg.sender.send(textMessage('1001', 'queued hello'));
  t.equal(r.attempts.length, 1);
  t.equal(r.last.status, 200);
  t.equal(r.last.body, '', 'an empty 200: no passive reply in queue mode');
  await until(() => cg.vendor.deliveries.length === 1, 'the delivery');
  const d = cg.vendor.deliveries[0];
  if (d === undefined) throw new Error('nothing delivered');
  const ts = d.headers['x-wegate-timestamp'] as string;
  t.equal(d.headers['x-wegate-signature'], `sha256=${createHmac('sha256', SHARED).update(`${ts}.${d.raw}`).digest('hex')}`);
  t.match(d.json, { callback: 'cb', event: 'text', msg_id: '1001', idempotency_key: /^[0-9a-f]{64}$/ });
  t.equal(d.headers['x-wegate-idempotency-key'], d.json['idempotency_key']);
  await until(async () => (await metric(cg, 'wegate_wecom_callback_queue_depth', { callback: 'cb' })) === 0, 'an empty queue');
  t.equal(await metric(cg, 'wegate_wecom_callbacks_total', { callback: 'cb', outcome: 'ok' }), 1);
  t.equal(await metric(cg, 'wegate_wecom_callback_deliveries_total', { callback: 'cb', result: 'ok' }), 1);
});

t.test('callback queue: acknowledged while the vendor is down and delivered exactly once when it is back', async (t) => {
  const cg = await queued(t);
  cg.vendor.behaviour = { status: 503, body: '' };
  const msg = textMessage('2001', 'while down');
  t.ok((await cg.sender.send(msg)).acked, 'WeCom is acknowledged although the vendor is down');
  await until(() => cg.vendor.requests >= 3, 'three failed attempts');
  const listed = await admin(cg, '/callbacks/queue?app=cb');
  const items = listed['items'] as Record<string, unknown>[];
  t.equal(items.length, 1);
  t.match(items[0], { callback: 'cb', event: 'text', state: 'pending', lastError: 'rejected: status 503' });
  t.ok((items[0]?.['attempts'] as number) >= 2, 'the failed attempts are counted');
  t.notOk(JSON.stringify(listed).includes('while down'), 'no payload content in the listing');
  t.ok((await cg.sender.send(msg)).acked, "WeCom's retry of it is acknowledged");
  cg.vendor.behaviour = { status: 200, body: '' };
  await until(() => cg.vendor.deliveries.length === 1, 'the delivery');
  await until(async () => (await metric(cg, 'wegate_wecom_callback_queue_depth', { callback: 'cb' })) === 0, 'an empty queue');
  t.equal(cg.vendor.deliveries.length, 1, 'once: the retry was a duplicate');
  t.equal(await metric(cg, 'wegate_wecom_callbacks_total', { callback: 'cb', outcome: 'duplicate' }), 1);
  t.ok(((await metric(cg, 'wegate_wecom_callback_deliveries_total', { callback: 'cb', result: 'rejected' })) ?? 0) >= 3);
});

t.test('callback queue: deliveries keep the order of arrival per callback when the vendor recovers', async (t) => {
  const cg = await queued(t);
  cg.vendor.behaviour = { status: 500, body: '' };
  for (let i = 0; i < 8; i++) t.ok((await cg.sender.send(textMessage(`30${i}`, `m${i}`))).acked);
  await until(() => cg.vendor.requests >= 2, 'a failed attempt');
  cg.vendor.behaviour = { status: 200, body: '' };
  await until(() => cg.vendor.deliveries.length === 8, 'eight deliveries');
  t.same(
    cg.vendor.deliveries.map((d) => d.json['msg_id']),
    ['300', '301', '302', '303', '304', '305', '306', '307'],
  );
});

t.test('callback queue: dead-lettered after max_attempts and re-driven from the admin listener when the vendor is fixed', async (t) => {
  const cg = await queued(t, undefined, { max_attempts: 3 });
  cg.vendor.behaviour = { status: 500, body: '' };
  t.ok((await cg.sender.send(textMessage('4001', 'doomed'))).acked);
  await until(async () => (await metric(cg, 'wegate_wecom_callback_dead_letters', { callback: 'cb' })) === 1, 'a dead letter');
  t.equal(cg.vendor.requests, 3, 'exactly max_attempts attempts');
  t.equal(await metric(cg, 'wegate_wecom_callback_deliveries_total', { callback: 'cb', result: 'rejected' }), 3);
  t.equal(await metric(cg, 'wegate_wecom_callback_deliveries_total', { callback: 'cb', result: 'dead_letter' }), 1);
  const dead = (await admin(cg, '/callbacks/queue?state=dead'))['items'] as Record<string, unknown>[];
  t.match(dead, [{ state: 'dead', attempts: 3, deadReason: /^3 attempts failed, last rejected: status 500/ }]);
  const diag = await admin(cg, '/diagnostics?format=json');
  t.match(diag['callbackQueue'], [{ callback: 'cb', depth: 0, deadLetters: 1 }]);

  cg.vendor.behaviour = { status: 200, body: '' };
  t.same(await admin(cg, `/callbacks/queue/redrive?id=${String(dead[0]?.['id'])}`, 'POST'), { redriven: 1 });
  await until(() => cg.vendor.deliveries.length === 1, 'the re-driven delivery');
  t.equal(cg.vendor.deliveries[0]?.json['msg_id'], '4001');
  t.same(await admin(cg, '/callbacks/queue/redrive?app=cb', 'POST'), { redriven: 0 }, 'nothing dead any more');
  const bad = await fetch(`http://127.0.0.1:${cg.gw.adminPort}/callbacks/queue/redrive?id=x`, { method: 'POST' });
  t.equal(bad.status, 400);
  const page = await fetch(`http://127.0.0.1:${cg.gw.adminPort}/callbacks/queue/redrive?app=cb`, {
    method: 'POST',
    headers: { origin: 'http://evil.example' },
  });
  t.equal(page.status, 403, 'a web page cannot re-drive through the browser');
});

t.test(
  'callback queue: a retry after a restart is still recognised and a pending item is delivered when the gateway starts again',
  async (t) => {
    const dir = await stateDir(t);
    const msg = textMessage('5001', 'across restarts');
    const first = await queued(t, dir);
    first.vendor.behaviour = { status: 503, body: '' };
    t.ok((await first.sender.send(msg)).acked);
    await until(() => first.vendor.requests >= 1, 'an attempt');
    await first.gw.gw.close({ drainTimeoutMs: 0 });

    const second = await queued(t, dir, { url: first.vendor.url });
    t.ok((await second.sender.send(msg)).acked, "WeCom's retry after the restart is acknowledged");
    await until(() => first.vendor.requests >= 2 && first.vendor.deliveries.length === 0, 'a further attempt');
    first.vendor.behaviour = { status: 200, body: '' };
    await until(() => first.vendor.deliveries.length === 1, 'the delivery');
    await until(async () => (await metric(second, 'wegate_wecom_callback_queue_depth', { callback: 'cb' })) === 0, 'an empty queue');
    t.equal(first.vendor.deliveries.length, 1, 'delivered once');
    t.equal(second.vendor.requests, 0);
    t.equal(await metric(second, 'wegate_wecom_callbacks_total', { callback: 'cb', outcome: 'duplicate' }), 1);
  },
);

t.test('callback sync: falls back to the queue and delivers once later when the vendor fails and state is set', async (t) => {
  const cg = await startCallbackGateway(t, {
    config: { state: { dir: await stateDir(t) } },
    deliver: { mode: 'sync', backoff_base_ms: 10, backoff_max_ms: 40 },
  });
  cg.vendor.behaviour = { status: 502, body: '' };
  const msg = textMessage('6001', 'sync fallback');
  const r = await cg.sender.send(msg);
  t.equal(r.attempts.length, 1, 'acknowledged at the first attempt');
  t.equal(r.last.status, 200);
  t.ok((await cg.sender.send(msg)).acked, 'a retry');
  cg.vendor.behaviour = { status: 200, body: '' };
  await until(() => cg.vendor.deliveries.length === 1, 'the delivery');
  await until(async () => (await metric(cg, 'wegate_wecom_callback_queue_depth', { callback: 'cb' })) === 0, 'an empty queue');
  t.equal(cg.vendor.deliveries.length, 1);
  t.equal(await metric(cg, 'wegate_wecom_callback_deliveries_total', { callback: 'cb', result: 'queued' }), 1);
  t.ok(
    ((await metric(cg, 'wegate_wecom_callback_deliveries_total', { callback: 'cb', result: 'rejected' })) ?? 0) >= 1,
    'the sync attempt',
  );
  t.equal(await metric(cg, 'wegate_wecom_callback_deliveries_total', { callback: 'cb', result: 'ok' }), 1, 'the queued delivery only');
});

t.test('callback queue: backoff doubles per attempt up to the cap with jitter from the injected random', async (t) => {
  const p = { maxAttempts: 10, maxAgeMs: 1e9, backoffBaseMs: 1000, backoffMaxMs: 8000 };
  t.same(
    [1, 2, 3, 4, 5, 6].map((a) => backoffMs(p, a, () => 0)),
    [500, 1000, 2000, 4000, 4000, 4000],
  );
  t.same(
    [1, 2, 3, 4, 5].map((a) => backoffMs(p, a, () => 0.999999)),
    [1000, 2000, 4000, 8000, 8000],
  );
  t.equal(
    backoffMs(p, 3, () => 0.5),
    3000,
  );
});
