/**
 * The API relay end to end: a vendor server calls `/.wegate/relay/cgi-bin/…` on a real gateway, the
 * gateway calls the real fake WeCom over TLS from the pinned 127.0.0.2 with its own access token.
 */
import t from 'tap';
import { parseExposition, valueOf } from '../../helpers/prom-text.ts';
import { send } from '../../helpers/gateway.ts';
import { bearer, relaySetup, SECRET, sha256, TOKEN, VENDOR } from './helpers.ts';

const HOST = 'api1.school.edu.cn';
const USER_GET = '/.wegate/relay/cgi-bin/user/get?userid=zhangsan';

t.test("relay: a WeCom call succeeds with wegate's token injected when the vendor sends its bearer token", async (t) => {
  const { fake, gw, upstream } = await relaySetup(t);
  const seenTokens: string[][] = [];
  fake.route('/cgi-bin/user/get', ({ query }) => {
    seenTokens.push(query.getAll('access_token'));
    return { userid: query.get('userid') ?? '', name: '张三' };
  });
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(r.status, 200);
  const body = JSON.parse(r.body) as Record<string, unknown>;
  t.match(body, { errcode: 0, errmsg: 'ok', userid: 'zhangsan', name: '张三' });
  const token = await gw.gw.wecom?.accessToken('ecard');
  t.ok(token);
  t.same(seenTokens, [[token]], "WeCom got exactly one access_token: wegate's");
  t.notOk(r.body.includes(token as string), 'the vendor never sees the token');
  t.notOk(JSON.stringify(r.headers).includes(token as string));
  const calls = fake.requests.map((q) => [q.path, q.from, q.app]);
  t.same(
    calls,
    [
      ['/cgi-bin/gettoken', '127.0.0.2', 'ecard'],
      ['/cgi-bin/user/get', '127.0.0.2', 'ecard'],
    ],
    'WeCom saw the pinned source address',
  );
  t.equal(upstream.seen.length, 0, 'the vendor site behind the route never saw the relay request');
  t.equal(r.headers['x-wegate-diagnosis'], undefined);
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: 'vendor', result: 'ok' }), 1);
  t.equal(valueOf(m, 'wegate_http_requests_total', { route: 'relay', status_class: '2xx' }), 1);
});

t.test('relay: a POST body is forwarded as sent when the API takes JSON', async (t) => {
  const { fake, gw } = await relaySetup(t);
  let got: unknown;
  fake.route('/cgi-bin/message/send', ({ body }) => {
    got = body;
    return { invaliduser: '', msgid: 'm1' };
  });
  const payload = { touser: 'zhangsan', msgtype: 'text', agentid: 1000002, text: { content: '你好' } };
  const r = await send(gw.httpPort, HOST, {
    method: 'POST',
    path: '/.wegate/relay/cgi-bin/message/send',
    headers: { ...bearer(), 'content-type': 'application/json' },
    body: JSON.stringify(payload),
  });
  t.equal(r.status, 200);
  t.match(JSON.parse(r.body), { errcode: 0, msgid: 'm1' });
  t.same(got, payload);
});

t.test('relay: 401 when the vendor sends no token', async (t) => {
  const { fake, gw } = await relaySetup(t);
  const r = await send(gw.httpPort, HOST, { path: USER_GET });
  t.equal(r.status, 401);
  t.equal(JSON.parse(r.body).error, 'WG_RELAY_UNAUTHORIZED');
  t.match(r.headers['www-authenticate'], /^Bearer /);
  t.equal(fake.requests.length, 0, 'WeCom was not called');
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: '-', result: 'unauthorized' }), 1);
});

t.test('relay: 401 when the vendor sends a wrong token or another scheme', async (t) => {
  const { fake, gw } = await relaySetup(t);
  for (const authorization of [
    `Bearer ${TOKEN}x`,
    `Bearer ${sha256(TOKEN)}`,
    `Basic ${Buffer.from(`vendor:${TOKEN}`).toString('base64')}`,
    'Bearer ',
  ]) {
    const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: { authorization } });
    t.equal(r.status, 401, authorization.slice(0, 12));
  }
  t.equal(fake.requests.length, 0);
});

t.test('relay: 403 when the API path is not allow-listed for the client', async (t) => {
  const { fake, gw, upstream } = await relaySetup(t);
  for (const path of [
    '/.wegate/relay/cgi-bin/get_api_domain_ip',
    '/.wegate/relay/cgi-bin/gettoken?corpid=x&corpsecret=y',
    '/.wegate/relay/cgi-bin/user/get/../delete',
  ]) {
    const r = await send(gw.httpPort, HOST, { path, headers: bearer() });
    t.equal(r.status, 403, path);
    t.equal(JSON.parse(r.body).error, 'WG_RELAY_FORBIDDEN_API');
  }
  t.equal(fake.requests.length, 0);
  t.equal(upstream.seen.length, 0);
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: 'vendor', result: 'forbidden_api' }), 3);
});

t.test("relay: 403 when the source address is outside the client's CIDRs", async (t) => {
  const { fake, gw } = await relaySetup(t, {
    clients: [
      { ...VENDOR, source_cidrs: ['10.0.0.0/8', '2001:db8::/32'] },
      { name: 'local', app: 'ecard', token_sha256: sha256('local-token'), apis: ['/cgi-bin/user/get'], source_cidrs: ['127.0.0.0/8'] },
    ],
  });
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(r.status, 403);
  t.equal(JSON.parse(r.body).error, 'WG_RELAY_FORBIDDEN_SOURCE');
  t.equal(fake.calls('/cgi-bin/user/get'), 0);
  const ok = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer('local-token') });
  t.equal(ok.status, 200, 'a client whose CIDRs hold 127.0.0.1 gets through');
});

t.test('relay: 429 with Retry-After when the client goes over its rate limit', async (t) => {
  const { fake, gw } = await relaySetup(t, { clients: [{ ...VENDOR, rate: { per_second: 0.01, burst: 2 } }] });
  const statuses: number[] = [];
  let last;
  for (let i = 0; i < 4; i++) {
    last = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
    statuses.push(last.status);
  }
  t.same(statuses, [200, 200, 429, 429]);
  t.equal(JSON.parse(last?.body ?? '{}').error, 'WG_RELAY_RATE_LIMITED');
  t.match(last?.headers['retry-after'], /^\d+$/);
  t.equal(fake.calls('/cgi-bin/user/get'), 2, 'refused calls never reach WeCom');
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: 'vendor', result: 'rate_limited' }), 2);
});

t.test("relay: WeCom's 60020 is passed through with the diagnosis header when the pin is not effective", async (t) => {
  const { fake, gw } = await relaySetup(t, { localAddress: '127.0.0.3', expectedIp: '127.0.0.2' });
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(r.status, 200, "WeCom's own status");
  const body = JSON.parse(r.body) as Record<string, unknown>;
  t.equal(body['errcode'], 60020);
  t.match(
    body['errmsg'],
    /^not allow to access from your ip, hint: \[\d+\], from ip: 127\.0\.0\.3, more info at/,
    "WeCom's text as it sent it",
  );
  t.equal(r.headers['x-wegate-diagnosis'], 'pin_not_effective');
  t.equal(fake.calls('/cgi-bin/user/get'), 1, '60020 is never retried');
  const [incident] = gw.gw.incidents.list();
  t.match(incident, { app: 'ecard', api: '/cgi-bin/user/get', cause: 'pin_not_effective', fromIp: '127.0.0.3', expectedIp: '127.0.0.2' });
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: 'vendor', result: 'ip_refused' }), 1);
});

t.test('relay: 60020 is diagnosed as "not in 企业可信IP" when the pinned address is the expected one', async (t) => {
  const { gw } = await relaySetup(t, { localAddress: '127.0.0.3', expectedIp: '127.0.0.3' });
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(JSON.parse(r.body).errcode, 60020);
  t.equal(r.headers['x-wegate-diagnosis'], 'not_in_trusted_ip');
});

t.test('relay: a vendor-sent access_token is stripped when it is in the query, in any spelling', async (t) => {
  const { fake, gw } = await relaySetup(t);
  const seen: string[] = [];
  fake.route('/cgi-bin/user/get', ({ req }) => {
    seen.push(new URL(req.url ?? '/', 'https://x').search);
    return { userid: 'zhangsan' };
  });
  const r = await send(gw.httpPort, HOST, {
    path: '/.wegate/relay/cgi-bin/user/get?access_token=VENDOR-OWN&userid=zhangsan&ACCESS_TOKEN=two&access%5Ftoken=three',
    headers: bearer(),
  });
  t.equal(r.status, 200);
  t.equal(JSON.parse(r.body).errcode, 0, "WeCom accepted the token: the vendor's was not used");
  const token = (await gw.gw.wecom?.accessToken('ecard')) as string;
  t.same(seen, [`?userid=zhangsan&access_token=${token}`]);
});

t.test('relay: a stale token is refreshed once and the call retried when WeCom answers 40014', async (t) => {
  const { fake, gw } = await relaySetup(t);
  t.equal((await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() })).status, 200);
  fake.invalidateTokens('ecard');
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(JSON.parse(r.body).errcode, 0);
  t.equal(fake.calls('/cgi-bin/gettoken'), 2, 'one refresh');
  t.equal(fake.calls('/cgi-bin/user/get'), 3, 'one retry');
});

t.test('relay: 413 when the body is larger than relay.max_body_bytes', async (t) => {
  const { fake, gw } = await relaySetup(t, { relay: { max_body_bytes: 100 } });
  const r = await send(gw.httpPort, HOST, {
    method: 'POST',
    path: '/.wegate/relay/cgi-bin/message/send',
    headers: { ...bearer(), 'content-type': 'application/json' },
    body: JSON.stringify({ text: { content: 'x'.repeat(200) } }),
  });
  t.equal(r.status, 413);
  t.equal(fake.calls('/cgi-bin/message/send'), 0);
});

t.test('relay: WeCom errors other than 60020 pass through unchanged when WeCom answers them', async (t) => {
  const { fake, gw } = await relaySetup(t);
  fake.failNext('/cgi-bin/user/get', 45009, 1);
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(r.status, 200);
  t.match(JSON.parse(r.body), { errcode: 45009, errmsg: /^api freq out of limit/ });
  t.equal(r.headers['x-wegate-diagnosis'], undefined);
});

t.test("relay: 502 when WeCom's answer is larger than wecom.max_response_bytes", async (t) => {
  const { fake, gw } = await relaySetup(t, { wecom: { max_response_bytes: 4096 } });
  fake.hugeBody('/cgi-bin/user/get', 10 * 1024 * 1024);
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(r.status, 502);
  t.equal(JSON.parse(r.body).error, 'WG_WECOM_BAD_RESPONSE');
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_wecom_api_calls_total', { api: '/cgi-bin/user/get', errcode: 'too_large' }), 1);
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: 'vendor', result: 'upstream_error' }), 1);
});

t.test('relay: 504 when WeCom does not answer within wecom.timeouts.response_ms', async (t) => {
  const { fake, gw } = await relaySetup(t, { wecom: { timeouts: { response_ms: 200 } } });
  fake.hang('/cgi-bin/user/get');
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(r.status, 504);
  t.equal(JSON.parse(r.body).error, 'WG_WECOM_TIMEOUT');
});

t.test('relay: 502 with the credentials error when WeCom rejects the app secret', async (t) => {
  const { fake, gw } = await relaySetup(t);
  const app = fake.apps[0];
  if (app) (app as { secret: string }).secret = 'rotated-in-the-console';
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(r.status, 502);
  t.equal(JSON.parse(r.body).error, 'WG_WECOM_CREDENTIALS');
  t.equal(fake.calls('/cgi-bin/user/get'), 0);
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: 'vendor', result: 'token_error' }), 1);
});

t.test('relay: 405 when the method is neither GET nor POST', async (t) => {
  const { fake, gw } = await relaySetup(t);
  const r = await send(gw.httpPort, HOST, { method: 'DELETE', path: USER_GET, headers: bearer() });
  t.equal(r.status, 405);
  t.equal(r.headers['allow'], 'GET, POST');
  t.equal(fake.requests.length, 0);
});

t.test('gateway paths: the reserved prefix is never proxied when nothing is registered under it', async (t) => {
  const { gw, upstream } = await relaySetup(t);
  const cases: [string, number][] = [
    ['/.wegate/', 404],
    ['/.wegate/jwks', 404],
    ['/.wegate/relayx/cgi-bin/user/get', 404],
    ['/.wegate/relay', 401],
    ['/x/../.wegate/relay/cgi-bin/user/get', 401],
  ];
  for (const [path, status] of cases) t.equal((await send(gw.httpPort, HOST, { path })).status, status, path);
  t.equal(upstream.seen.length, 0);
  const other = await send(gw.httpPort, HOST, { path: '/.wegatex/a' });
  t.equal(other.status, 200, 'a path that only looks alike is proxied');
});

t.test('gateway paths: the prefix is configurable when gateway.prefix is set', async (t) => {
  const { gw, upstream } = await relaySetup(t, { gateway: { prefix: '/_gw/' } });
  const r = await send(gw.httpPort, HOST, { path: '/_gw/relay/cgi-bin/user/get?userid=a', headers: bearer() });
  t.equal(r.status, 200);
  const old = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(old.status, 200);
  t.equal(upstream.seen.length, 1, 'the default prefix is an ordinary path then');
});

t.test('relay: tokens and secrets appear in no log line, metric or error when requests succeed and fail', async (t) => {
  const { fake, gw } = await relaySetup(t, { localAddress: '127.0.0.3', expectedIp: '127.0.0.2' });
  await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  await send(gw.httpPort, HOST, { path: `${USER_GET}&access_token=VENDORSECRET1`, headers: bearer() });
  await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer(`${TOKEN}-wrong`) });
  const errors = await send(gw.httpPort, HOST, { path: '/.wegate/relay/cgi-bin/gettoken', headers: bearer() });
  const token = (await gw.gw.wecom?.accessToken('ecard')) as string;
  t.ok(fake.requests.length > 0);
  const text = gw.logs.text() + (await gw.registry.metrics()) + errors.body + JSON.stringify(gw.gw.incidents.list());
  t.ok(gw.logs.lines.length > 0, 'something was logged');
  for (const secret of [TOKEN, token, SECRET, 'VENDORSECRET1']) t.notOk(text.includes(secret), `${secret.slice(0, 6)}… appears nowhere`);
});

/** A handler that answers `text` as WeCom's raw body (the fake's own JSON would normalise it). */
const rawAnswer =
  (text: () => string) =>
  ({ res }: { res: import('node:http').ServerResponse }) => {
    const body = text();
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
const REFUSED_MSG = 'not allow to access from your ip, hint: [1706848717432011565347844], from ip: 127.0.0.9, more info at x';

t.test('relay: 60020 is diagnosed as the client reads it when WeCom sends the errcode as a string (review F5)', async (t) => {
  const { fake, gw } = await relaySetup(t, { expectedIp: '127.0.0.2' });
  fake.route(
    '/cgi-bin/user/get',
    rawAnswer(() => JSON.stringify({ errcode: '60020', errmsg: REFUSED_MSG })),
  );
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(r.status, 200);
  t.equal(JSON.parse(r.body).errcode, '60020', "WeCom's answer as it sent it");
  t.equal(r.headers['x-wegate-diagnosis'], 'pin_not_effective');
  t.match(gw.gw.incidents.list(), [{ cause: 'pin_not_effective', fromIp: '127.0.0.9', errcode: 60020 }]);
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: 'vendor', result: 'ip_refused' }), 1);
  t.equal(valueOf(m, 'wegate_wecom_api_calls_total', { api: '/cgi-bin/user/get', errcode: '60020' }), 1);
});

t.test('relay: the last errcode counts when WeCom sends errcode 0 and then another errcode (review F5)', async (t) => {
  const { fake, gw } = await relaySetup(t, { expectedIp: '127.0.0.2' });
  fake.route(
    '/cgi-bin/user/get',
    rawAnswer(() => `{"errcode":0,"errmsg":"ok","errcode":60020,"errmsg":"${REFUSED_MSG}"}`),
  );
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(r.status, 200);
  t.equal(r.headers['x-wegate-diagnosis'], 'pin_not_effective');
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: 'vendor', result: 'ip_refused' }), 1);
});

t.test('relay: a stale token is refreshed once when WeCom sends errcode "42001" as a string (review F5)', async (t) => {
  const { fake, gw } = await relaySetup(t);
  let n = 0;
  fake.route(
    '/cgi-bin/user/get',
    rawAnswer(() =>
      ++n === 1 ? '{"errcode":"42001","errmsg":"access_token expired"}' : '{"errcode":0,"errmsg":"ok","userid":"zhangsan"}',
    ),
  );
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(r.status, 200);
  t.match(JSON.parse(r.body), { errcode: 0, userid: 'zhangsan' });
  t.equal(fake.calls('/cgi-bin/user/get'), 2, 'retried once');
  t.equal(fake.calls('/cgi-bin/gettoken'), 2, 'the token was refreshed');
});

t.test('relay: an errcode that is not a whole number is a bad response when WeCom sends one (review F5)', async (t) => {
  const { fake, gw } = await relaySetup(t);
  fake.route(
    '/cgi-bin/user/get',
    rawAnswer(() => '{"errcode":"0x1","errmsg":"?"}'),
  );
  const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(r.status, 200, "WeCom's answer is still handed back as sent");
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: 'vendor', result: 'upstream_error' }), 1);
  t.equal(valueOf(m, 'wegate_wecom_api_calls_total', { api: '/cgi-bin/user/get', errcode: 'bad_response' }), 1);
});
