/**
 * Token cache and retry policy against the fake WeCom: single-flight refresh, refresh-once on a
 * stale token, bounded backoff, no loop on a wrong secret, timeouts and the size cap.
 */
import t from 'tap';
import { parseExposition, valueOf } from '../../helpers/prom-text.ts';
import { CORP, ECARD, rejection, SECRET, setup } from './helpers.ts';

t.test('WecomApi: 100 concurrent callers make one gettoken when the token has expired', async (t) => {
  const s = await setup(t, { wecom: ECARD });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  await s.api.call('ecard', '/cgi-bin/get_api_domain_ip');
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 1);
  // Both sides agree the token is past its life: the fake expires it, the client's clock moves on.
  s.fake.expireTokens('ecard');
  const results = await Promise.all(Array.from({ length: 100 }, () => s.api.call('ecard', '/cgi-bin/get_api_domain_ip')));
  t.equal(results.length, 100);
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 2, 'one refresh for 100 callers that all saw 42001');
});

t.test('WecomApi: 100 concurrent callers make one gettoken when the client clock says the token has expired', async (t) => {
  let now = 1_000_000;
  const s = await setup(t, { wecom: ECARD, extra: { clock: () => now } });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  await s.api.call('ecard', '/cgi-bin/get_api_domain_ip');
  now += 7_200_001;
  s.fake.expireTokens('ecard');
  await Promise.all(Array.from({ length: 100 }, () => s.api.call('ecard', '/cgi-bin/get_api_domain_ip')));
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 2, 'one refresh, no caller used the stale token');
  t.equal(s.fake.calls('/cgi-bin/get_api_domain_ip'), 101);
});

t.test('WecomApi: 100 concurrent callers make one gettoken when nothing is cached yet', async (t) => {
  const s = await setup(t, { wecom: ECARD });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  await Promise.all(Array.from({ length: 100 }, () => s.api.call('ecard', '/cgi-bin/user/get', { query: { userid: 'u1' } })));
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 1);
  t.equal(s.fake.calls('/cgi-bin/user/get'), 100);
});

t.test('WecomApi: the token is refreshed ahead of expiry when 85 % of expires_in has passed', async (t) => {
  let now = 1_000_000;
  const s = await setup(t, { wecom: ECARD, extra: { clock: () => now } });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, expiresIn: 100 });
  await s.api.accessToken('ecard');
  now += 80_000;
  await s.api.accessToken('ecard');
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 1, 'still fresh at 80 %');
  now += 6_000;
  await s.api.accessToken('ecard');
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 2, 'refreshed at 86 %');
  const [st] = s.api.tokenStatus();
  t.match(st, { name: 'ecard', kind: 'self_built', lastErrcode: 0, lastRefreshAt: now, expiresAt: now + 100_000 });
});

t.test('WecomApi: 40014 makes one refresh and one retry when WeCom invalidates the token early', async (t) => {
  const s = await setup(t, { wecom: ECARD });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  const before = await s.api.accessToken('ecard');
  s.fake.invalidateTokens('ecard');
  const r = await s.api.call('ecard', '/cgi-bin/message/send', { body: { touser: 'u1', msgtype: 'text', text: { content: 'hi' } } });
  t.equal(r['errcode'], 0);
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 2, 'one refresh');
  t.equal(s.fake.calls('/cgi-bin/message/send'), 2, 'one retry');
  t.not(await s.api.accessToken('ecard'), before, 'the new token is cached');
});

t.test('WecomApi: a second 40014 is an error, not a loop, when the fresh token is refused too', async (t) => {
  const s = await setup(t, { wecom: ECARD });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  s.fake.failNext('/cgi-bin/user/get', 40014, 10);
  const e = await rejection(t, s.api.call('ecard', '/cgi-bin/user/get'));
  t.equal(e['errcode'], 40014);
  t.equal(e['code'], 'WG_WECOM_ERROR');
  t.equal(s.fake.calls('/cgi-bin/user/get'), 2);
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 2);
});

t.test('WecomApi: 45009 is retried with bounded backoff when WeCom rate-limits', async (t) => {
  const delays: number[] = [];
  const s = await setup(t, {
    wecom: { ...ECARD, retry: { attempts: 3, base_delay_ms: 100 } },
    extra: { random: () => 0.5, sleep: async (ms) => void delays.push(ms) },
  });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  s.fake.failNext('/cgi-bin/user/get', 45009, 10);
  const e = await rejection(t, s.api.call('ecard', '/cgi-bin/user/get'));
  t.equal(e['errcode'], 45009);
  t.equal(s.fake.calls('/cgi-bin/user/get'), 3, 'three attempts in all');
  t.same(delays, [75, 150], 'exponential with jitter (random 0.5 → 0.75 of the step)');
});

t.test('WecomApi: -1 succeeds on a later attempt when WeCom is busy twice', async (t) => {
  const s = await setup(t, { wecom: ECARD });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  s.fake.failNext('/cgi-bin/gettoken', -1, 2);
  const r = await s.api.call('ecard', '/cgi-bin/get_api_domain_ip');
  t.equal(r['errcode'], 0);
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 3);
});

t.test('WecomApi: a wrong secret is asked once and then held off when WeCom answers 40001', async (t) => {
  let now = 5_000_000;
  const s = await setup(t, { wecom: ECARD, env: { ECARD_SECRET: 'wrong-secret-of-32-characters-xx' }, extra: { clock: () => now } });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  for (let i = 0; i < 20; i++) {
    const e = await rejection(t, s.api.call('ecard', '/cgi-bin/user/get'));
    t.equal(e['code'], 'WG_WECOM_CREDENTIALS');
  }
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 1, 'gettoken asked once for 20 calls');
  const e = await rejection(t, s.api.call('ecard', '/cgi-bin/user/get'));
  t.equal(e['errcode'], 40001);
  t.match(e['message'], /应用管理 › ecard › Secret/);
  t.match(e['message'], /env ECARD_SECRET/, 'names where the secret comes from');
  const [st] = s.api.tokenStatus();
  t.equal(st?.lastErrcode, 40001);
  t.equal(st?.heldUntil, now + 900_000);
  now += 900_001;
  await rejection(t, s.api.call('ecard', '/cgi-bin/user/get'));
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 2, 'asked again once the hold-off passed');
  const m = parseExposition(await s.registry.metrics());
  t.equal(valueOf(m, 'wegate_wecom_token_refreshes_total', { app: 'ecard', result: 'rejected' }), 2);
  t.equal(s.incidents.list()[0]?.cause, 'bad_credentials');
});

t.test('WecomApi: a wrong corp id is a config error when WeCom answers 40013', async (t) => {
  const s = await setup(t, { wecom: { ...ECARD, corp_id: 'wwnotthecorp' } });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  const e = await rejection(t, s.api.call('ecard', '/cgi-bin/user/get'));
  t.equal(e['errcode'], 40013);
  t.match(e['message'], /企业ID/);
  await rejection(t, s.api.call('ecard', '/cgi-bin/user/get'));
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 1);
});

t.test('WecomApi: a call times out when WeCom never answers', async (t) => {
  const s = await setup(t, { wecom: { ...ECARD, timeouts: { connect_ms: 100, response_ms: 200 } } });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  s.fake.hang('/cgi-bin/user/get');
  const e = await rejection(t, s.api.call('ecard', '/cgi-bin/user/get'));
  t.equal(e['code'], 'WG_WECOM_TIMEOUT');
  t.equal(e['kind'], 'timeout');
  const m = parseExposition(await s.registry.metrics());
  t.equal(valueOf(m, 'wegate_wecom_api_calls_total', { api: '/cgi-bin/user/get', errcode: 'timeout' }), 1);
});

t.test('WecomApi: a 50 MB answer is aborted at the cap when WeCom sends a huge body', async (t) => {
  const s = await setup(t, { wecom: { ...ECARD, max_response_bytes: 1024 * 1024 } });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  s.fake.hugeBody('/cgi-bin/user/get', 50 * 1024 * 1024);
  const e = await rejection(t, s.api.call('ecard', '/cgi-bin/user/get'));
  t.equal(e['kind'], 'too_large');
  t.equal(e['code'], 'WG_WECOM_BAD_RESPONSE');
  t.match(e['message'], /1048576-byte cap/);
  // The client is still usable after the abort.
  t.equal((await s.api.call('ecard', '/cgi-bin/user/get'))['errcode'], 0);
});

t.test('WecomApi: a non-JSON answer is a clear error when WeCom sends HTML', async (t) => {
  const s = await setup(t, { wecom: ECARD });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  s.fake.route('/cgi-bin/user/get', ({ res }) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<html>502 Bad Gateway</html>');
  });
  const e = await rejection(t, s.api.call('ecard', '/cgi-bin/user/get'));
  t.equal(e['kind'], 'bad_response');
  t.match(e['message'], /not JSON/);
});

t.test('WecomApi: __proto__ keys are dropped when WeCom JSON carries them', async (t) => {
  const s = await setup(t, { wecom: ECARD });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  s.fake.route('/cgi-bin/user/get', ({ res }) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"errcode":0,"userid":"u1","__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}');
  });
  const r = await s.api.call('ecard', '/cgi-bin/user/get');
  t.equal(r['userid'], 'u1');
  t.notOk(Object.hasOwn(r, '__proto__'));
  t.notOk(Object.hasOwn(r, 'constructor'));
  t.equal(({} as Record<string, unknown>)['polluted'], undefined);
  t.equal(Object.getPrototypeOf(r), Object.prototype);
});

t.test('WecomApi: an API path with a query or odd characters is refused when a caller passes one', async (t) => {
  const s = await setup(t, { wecom: ECARD });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET });
  for (const bad of ['/cgi-bin/user/get?access_token=x', '/other/path', '/cgi-bin/../x', 'https://evil.example/cgi-bin/x']) {
    const e = await rejection(t, s.api.call('ecard', bad));
    t.equal(e['kind'], 'config', bad);
  }
  t.equal(s.fake.requests.length, 0, 'nothing reached WeCom');
  const e = await rejection(t, s.api.call('nope', '/cgi-bin/user/get'));
  t.match(e['message'], /unknown WeCom app "nope" \(configured: ecard\)/);
});
