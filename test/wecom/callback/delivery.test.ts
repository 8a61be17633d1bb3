/** Sync delivery to the vendor: signed JSON, de-duplication, passive replies, and no ack unless the vendor took it. */
import { createHmac } from 'node:crypto';
import t from 'tap';
import { parseExposition, valueOf } from '../../helpers/prom-text.ts';
import { CORP, type CallbackGateway, contactEvent, SHARED, startCallbackGateway, textMessage } from './helpers.ts';

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
};
const metric = async (cg: CallbackGateway, family: string, labels: Record<string, string>) =>
  valueOf(parseExposition(await (await fetch(`http://127.0.0.1:${cg.gw.adminPort}/metrics`)).text()), family, labels);

t.test('callback delivery: signed with HMAC-SHA256 over timestamp.body the vendor can verify when a message arrives', async (t) => {
  const cg = await startCallbackGateway(t);
  t.ok((await cg.sender.send(textMessage('100', 'hi'))).acked);
  const d = cg.vendor.deliveries[0];
  if (d === undefined) throw new Error('nothing delivered');
  const ts = d.headers['x-wegate-timestamp'] as string;
  const expected = `sha256=${createHmac('sha256', SHARED).update(`${ts}.${d.raw}`).digest('hex')}`;
  t.equal(d.headers['x-wegate-signature'], expected);
  t.equal(d.headers['x-wegate-idempotency-key'], d.json['idempotency_key']);
  t.match(d.json['idempotency_key'], /^[0-9a-f]{64}$/);
  t.equal(d.headers['x-wegate-event'], 'text');
  t.match(d.json, { callback: 'cb', kind: 'app', event: 'text', msg_id: '100', receive_id: CORP });
  const forged = `sha256=${createHmac('sha256', 'another secret').update(`${ts}.${d.raw}`).digest('hex')}`;
  t.not(d.headers['x-wegate-signature'], forged, 'another key gives another signature');
});

t.test('callback delivery: four deliveries of one message reach the vendor once when WeCom retries after a 200', async (t) => {
  const cg = await startCallbackGateway(t);
  const msg = textMessage('200', 'once');
  for (let i = 0; i < 4; i++) {
    // Each delivery re-encrypted (new random, nonce, signature), as a WeCom retry may be.
    const r = await cg.sender.send(msg);
    t.equal(r.last.status, 200, `delivery ${i + 1} acknowledged`);
  }
  t.equal(cg.vendor.requests, 1);
  t.equal(await metric(cg, 'wegate_wecom_callbacks_total', { callback: 'cb', outcome: 'duplicate' }), 3);
  t.equal(await metric(cg, 'wegate_wecom_callback_deliveries_total', { callback: 'cb', result: 'ok' }), 1);
});

t.test('callback delivery: a retry arriving while the first is in flight waits for it instead of delivering twice', async (t) => {
  const cg = await startCallbackGateway(t);
  cg.vendor.behaviour = { status: 200, body: '', delayMs: 300 };
  const msg = textMessage('300', 'concurrent');
  const [a, b] = await Promise.all([cg.sender.send(msg), cg.sender.send(msg)]);
  t.equal(a.last.status, 200);
  t.equal(b.last.status, 200);
  t.equal(cg.vendor.requests, 1);
});

t.test('callback delivery: several distinct sys events of one second are all delivered when they have no MsgId', async (t) => {
  const cg = await startCallbackGateway(t);
  const second = Math.floor(Date.now() / 1000);
  const events = [
    contactEvent('zhangsan', second),
    contactEvent('lisi', second),
    contactEvent('wangwu', second),
    contactEvent('zhangsan', second, 'create_user'),
    contactEvent('zhangsan', second, 'delete_user'),
  ];
  for (const e of events) t.ok((await cg.sender.send(e)).acked);
  t.equal(cg.vendor.deliveries.length, 5, 'FromUserName=sys + CreateTime would have merged them');
  t.equal(new Set(cg.vendor.deliveries.map((d) => d.json['idempotency_key'])).size, 5);
  t.same(
    cg.vendor.deliveries.map((d) => d.json['event']),
    ['change_contact', 'change_contact', 'change_contact', 'change_contact', 'change_contact'],
  );
  t.ok((await cg.sender.send(events[1] as string)).acked, 'a real retry of one of them');
  t.equal(cg.vendor.deliveries.length, 5, 'is still dropped');
});

t.test('callback delivery: a suite callback answers the literal "success" when a suite_ticket arrives', async (t) => {
  const cg = await startCallbackGateway(t, { kind: 'suite', receiveIds: ['dkTemplate01'] });
  cg.vendor.behaviour = { status: 200, body: '<xml><Ignored>1</Ignored></xml>' };
  const ticket =
    '<xml><SuiteId><![CDATA[dkTemplate01]]></SuiteId><InfoType><![CDATA[suite_ticket]]></InfoType><TimeStamp>1403610513</TimeStamp><SuiteTicket><![CDATA[asdfasfdasdfasdf]]></SuiteTicket></xml>';
  const r = await cg.sender.send(ticket);
  t.equal(r.last.status, 200);
  t.equal(r.last.body, 'success', 'exactly "success", no reply for 指令回调');
  t.equal(cg.vendor.deliveries[0]?.json['event'], 'suite_ticket');
  t.equal(cg.vendor.deliveries[0]?.json['msg_id'], undefined);
  const again = await cg.sender.send(ticket);
  t.equal(again.last.body, 'success', 'a duplicate is acknowledged the same way');
  t.equal(cg.vendor.requests, 1);
});

t.test('callback delivery: the upstream XML reply comes back encrypted as a passive reply the sender can decrypt', async (t) => {
  const cg = await startCallbackGateway(t);
  const reply =
    '<xml><ToUserName><![CDATA[zhangsan]]></ToUserName><FromUserName><![CDATA[ww1234567890abcdef]]></FromUserName><CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[你好 007]]></Content></xml>';
  cg.vendor.behaviour = { status: 200, body: reply };
  const r = await cg.sender.send(textMessage('400', 'question'));
  t.equal(r.last.status, 200);
  t.match(r.last.headers['content-type'], /xml/);
  const m =
    /^<xml><Encrypt><!\[CDATA\[([A-Za-z0-9+/=]+)\]\]><\/Encrypt><MsgSignature><!\[CDATA\[([0-9a-f]{40})\]\]><\/MsgSignature><TimeStamp>(\d+)<\/TimeStamp><Nonce><!\[CDATA\[(\d+)\]\]><\/Nonce><\/xml>$/.exec(
      r.last.body,
    );
  if (m === null) throw new Error(`not a passive reply: ${r.last.body}`);
  const [, encrypt, signature, timestamp, nonce] = m as unknown as [string, string, string, string, string];
  t.equal(signature, cg.sender.sign(timestamp, nonce, encrypt), 'MsgSignature verifies with the Token');
  t.ok(Math.abs(Number(timestamp) - Date.now() / 1000) < 60, 'TimeStamp is now');
  t.same(cg.sender.decrypt(encrypt), { message: reply, receiveId: CORP });
});

t.test('callback delivery: a non-XML upstream answer is an empty 200 when the app callback was delivered', async (t) => {
  const cg = await startCallbackGateway(t);
  cg.vendor.behaviour = { status: 200, body: 'ok' };
  const r = await cg.sender.send(textMessage('450', 'x'));
  t.equal(r.last.status, 200);
  t.equal(r.last.body, '');
});

t.test("callback delivery: no ack while the vendor is down, and WeCom's retry delivers it once it is up", async (t) => {
  const cg = await startCallbackGateway(t);
  cg.vendor.behaviour = { status: 503, body: 'down' };
  const sending = cg.sender.send(textMessage('500', 'important'));
  await until(() => cg.vendor.requests >= 2);
  cg.vendor.behaviour = { status: 200, body: '' };
  const r = await sending;
  t.ok(r.acked);
  t.same(
    r.attempts.slice(0, 2).map((a) => a.status),
    [503, 503],
    'not acknowledged while the vendor refused',
  );
  t.equal(r.last.status, 200);
  t.equal(cg.vendor.deliveries.length, 1, 'delivered exactly once');
  t.equal(await metric(cg, 'wegate_wecom_callbacks_total', { callback: 'cb', outcome: 'not_delivered' }), r.attempts.length - 1);
  t.equal(await metric(cg, 'wegate_wecom_callback_deliveries_total', { callback: 'cb', result: 'rejected' }), r.attempts.length - 1);
});

t.test(
  'callback delivery: no ack when the vendor misses the deadline; the late and the retried copy share one idempotency key',
  async (t) => {
    const cg = await startCallbackGateway(t, { deliver: { timeout_ms: 200 } });
    cg.vendor.behaviour = { status: 200, body: '', delayMs: 600 };
    const first = await cg.sender.request(
      'POST',
      ...(() => {
        const enc = cg.sender.encrypt(textMessage('600', 'slow'));
        return [`${cg.path}?${cg.sender.query(enc)}`, cg.sender.envelope(enc)] as const;
      })(),
    );
    t.equal(first.status, 503, 'past the deadline: WeCom is not acknowledged');
    t.match(JSON.parse(first.body), { error: 'WG_CALLBACK_NOT_DELIVERED' });
    cg.vendor.behaviour = { status: 200, body: '' };
    const retry = await cg.sender.send(textMessage('600', 'slow'));
    t.ok(retry.acked);
    await until(() => cg.vendor.deliveries.length >= 2);
    const keys = new Set(cg.vendor.deliveries.map((d) => d.json['idempotency_key']));
    t.equal(keys.size, 1, 'the vendor de-duplicates on the idempotency key');
    t.equal(await metric(cg, 'wegate_wecom_callback_deliveries_total', { callback: 'cb', result: 'timeout' }), 1);
  },
);

t.test('callback delivery: 503 without a crash when the vendor cannot be reached', async (t) => {
  const cg = await startCallbackGateway(t, { deliver: { url: 'http://127.0.0.1:1/none' }, sender: { retries: 1 } });
  const r = await cg.sender.send(textMessage('700', 'x'));
  t.notOk(r.acked);
  t.same(
    r.attempts.map((a) => a.status),
    [503, 503],
  );
  t.equal(await metric(cg, 'wegate_wecom_callback_deliveries_total', { callback: 'cb', result: 'error' }), 2);
});
