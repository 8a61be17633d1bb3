/** The URL check (GET ?msg_signature&timestamp&nonce&echostr) through the real public listener. */
import { join } from 'node:path';
import t from 'tap';
import { LOOPBACK, send, startUpstream, TLS_DIR } from '../../helpers/gateway.ts';
import { parseExposition, valueOf } from '../../helpers/prom-text.ts';
import { SAMPLE } from '../crypto/helpers.ts';
import { CORP, SAMPLE_SETUP, startCallbackGateway, TOKEN } from './helpers.ts';

t.test('callback URL check: answers the official vector with the bare plaintext when the sample GET arrives', async (t) => {
  const { sender, path } = await startCallbackGateway(t, SAMPLE_SETUP);
  const a = await sender.request('GET', `${path}?${SAMPLE.get.query}`);
  t.equal(a.status, 200);
  t.equal(a.body, SAMPLE.get.plaintext, 'exactly the plaintext: no quotes, newline or BOM');
  t.equal(a.headers['content-length'], String(SAMPLE.get.plaintext.length));
  t.match(a.headers['content-type'], /^text\/plain/);
});

t.test('callback URL check: a raw "+" in echostr is kept as "+" when WeCom does not encode it', async (t) => {
  const { sender, path } = await startCallbackGateway(t, SAMPLE_SETUP);
  t.ok(SAMPLE.get.query.includes('%2B'), 'the vector has an encoded +');
  const raw = SAMPLE.get.query.replaceAll('%2B', '+');
  const a = await sender.request('GET', `${path}?${raw}`);
  t.equal(a.status, 200);
  t.equal(a.body, SAMPLE.get.plaintext);
});

t.test('callback URL check: 403 and no plaintext when echostr arrives URL-encoded twice', async (t) => {
  const { sender, path } = await startCallbackGateway(t, SAMPLE_SETUP);
  // echostr encoded twice (%252B): one decoding leaves "%2B" in the value, which is not base64.
  const twice = SAMPLE.get.query.replace(/echostr=(.*)$/, (_m, v: string) => `echostr=${encodeURIComponent(v)}`);
  const a = await sender.request('GET', `${path}?${twice}`);
  t.equal(a.status, 403, 'the signature covers the once-decoded value, so it fails first');
  t.notOk(a.body.includes(SAMPLE.get.plaintext));
});

t.test('callback URL check: round trip of a fresh echostr for every pad length when the sender encrypts independently', async (t) => {
  const { sender } = await startCallbackGateway(t);
  // content = 20 + len + receiveid(18): lengths 0..31 give every pad 1..32.
  for (let n = 0; n < 32; n++) {
    const plaintext = '7'.repeat(n + 1);
    const a = await sender.urlCheck(plaintext);
    t.equal(a.status, 200, `length ${n + 1}`);
    t.equal(a.body, plaintext);
  }
});

t.test('callback URL check: 403 without plaintext when msg_signature is wrong, short, long, non-hex or duplicated', async (t) => {
  const { sender, path, gw } = await startCallbackGateway(t);
  const echostr = sender.encrypt('424242');
  const q = sender.query(echostr, { echostr: true });
  const good = /msg_signature=([0-9a-f]{40})/.exec(q)?.[1] as string;
  const flip = (good[0] === 'a' ? 'b' : 'a') + good.slice(1);
  const cases: [string, string, number][] = [
    ['wrong', q.replace(good, flip), 403],
    ['short', q.replace(good, good.slice(0, 39)), 403],
    ['long', q.replace(good, `${good}0`), 403],
    ['non-hex', q.replace(good, `${good.slice(0, 39)}g`), 403],
    ['upper-case', q.replace(good, good.toUpperCase()), 403],
    ['empty', q.replace(good, ''), 400],
    ['duplicated', `${q}&msg_signature=${good}`, 400],
    ['missing', q.replace(`msg_signature=${good}&`, ''), 400],
  ];
  for (const [name, query, status] of cases) {
    const a = await sender.request('GET', `${path}?${query}`);
    t.equal(a.status, status, name);
    t.notOk(a.body.includes('424242'), `${name}: no plaintext`);
  }
  const ok = await sender.request('GET', `${path}?${q}`);
  t.equal(ok.body, '424242', 'the untouched query passes');
  const metrics = parseExposition(await (await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`)).text());
  const sample = (outcome: string) => valueOf(metrics, 'wegate_wecom_callbacks_total', { callback: 'cb', outcome });
  t.equal(sample('bad_signature'), 5);
  t.equal(sample('bad_payload'), 3);
  t.equal(sample('ok'), 1);
});

t.test('callback URL check: 400 when the query is malformed', async (t) => {
  const { sender, path } = await startCallbackGateway(t);
  const echostr = sender.encrypt('1');
  const q = sender.query(echostr, { echostr: true });
  for (const [name, query] of [
    ['no query', ''],
    ['no echostr', q.replace(/&echostr=.*$/, '')],
    ['bad percent-encoding', q.replace(/echostr=/, 'echostr=%zz')],
    ['timestamp not digits', q.replace(/timestamp=\d+/, 'timestamp=12a')],
    ['no nonce', q.replace(/&nonce=\d+/, '')],
  ] as const) {
    const a = await sender.request('GET', `${path}${query ? `?${query}` : ''}`);
    t.equal(a.status, 400, name);
    t.match(JSON.parse(a.body), { error: 'WG_CALLBACK_BAD_PAYLOAD' }, name);
  }
});

t.test('callback URL check: 403 naming the id seen in the log when the receiveid is not configured', async (t) => {
  const { sender, gw } = await startCallbackGateway(t);
  const a = await sender.urlCheck('99', { receiveId: 'wwSomeOtherCorp' });
  t.equal(a.status, 403);
  t.match(JSON.parse(a.body), { error: 'WG_CALLBACK_BAD_RECEIVE_ID' });
  t.notOk(a.body.includes('99"'), 'no plaintext');
  t.ok(gw.logs.lines.some((l) => l['receive_id_seen'] === 'wwSomeOtherCorp' && l['outcome'] === 'refused'));
  const lower = await sender.urlCheck('99', { receiveId: CORP.toUpperCase() });
  t.equal(lower.status, 403, 'receiveids are case-sensitive');
  t.notOk(gw.logs.text().includes(TOKEN), 'the Token is never logged');
});

t.test('callback URL check: accepts any id of the set when a path has several receiveids', async (t) => {
  const { sender } = await startCallbackGateway(t, { kind: 'suite', receiveIds: ['dkTemplateId01', 'wwProviderCorp'] });
  t.equal((await sender.urlCheck('1', { receiveId: 'wwProviderCorp' })).body, '1', "the 服务商's own corp id (URL check)");
  t.equal((await sender.urlCheck('2', { receiveId: 'dkTemplateId01' })).body, '2', 'the template id');
});

t.test('callback URL check: answered on every host and never proxied when a catch-all route and the HTTP redirect exist', async (t) => {
  const up = await startUpstream(t);
  const { sender, path, gw } = await startCallbackGateway(t, {
    config: {
      listen: { ...LOOPBACK, https: '127.0.0.1:0', redirect_http: true },
      tls: { certs: [{ cert: join(TLS_DIR, 'api1.pem'), key: join(TLS_DIR, 'api1.key') }], watch: false },
      routes: [{ upstream: up.url }],
    },
  });
  for (const host of ['api1.school.edu.cn', 'other.example', '127.0.0.1']) {
    const echostr = sender.encrypt(`h${host.length}`);
    const r = await send(gw.httpPort, host, { path: `${path}?${sender.query(echostr, { echostr: true })}` });
    t.equal(r.status, 200, host);
    t.equal(r.body, `h${host.length}`);
  }
  t.equal(up.seen.length, 0, 'the upstream never saw a callback request');
  const other = await send(gw.httpPort, 'a.example', { path: `${path}/x` });
  t.equal(other.status, 301, 'a path below the callback path is not a callback: redirected as usual');
});

t.test('callback URL check: 405 with Allow when the method is neither GET nor POST', async (t) => {
  const { sender, path } = await startCallbackGateway(t);
  for (const method of ['PUT', 'DELETE', 'HEAD']) {
    const a = await sender.request(method, path);
    t.equal(a.status, 405, method);
    t.equal(a.headers['allow'], 'GET, POST');
  }
});
