/**
 * /diagnostics on the admin listener of a real gateway: incidents (newest first, with the action
 * sentence), egress status, token status and the readiness probe, as JSON and as a bilingual HTML
 * page; every value escaped; none of the configured secrets (app secret, proxy password) nor any
 * token in either; never reachable through the public listener.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startWhoAmI } from '../egress/helpers.ts';
import { FakeWecom } from '../helpers/fake-wecom.ts';
import { ADMIN, LOOPBACK, makeConfig, send, startGateway, startUpstream, TLS_DIR } from '../helpers/gateway.ts';

const CORP = 'wwdiagcorp0001';
const SECRET = 'diag-app-secret-0123456789abcdefghijklmnop';
const PROXY_PASSWORD = 'proxy-pass-SECRET-7788';

interface DiagJson {
  service: string;
  incidents: Record<string, unknown>[];
  egress: Record<string, unknown>[];
  wecom: { egress: string; tokens: Record<string, unknown>[]; readiness: Record<string, unknown>[] };
}

const fake = await FakeWecom.start(t);
fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.2'] });
const echo = await startWhoAmI(t);
const up = await startUpstream(t, 'vendor');
const dir = t.testdir({});
const credentials = join(dir, 'proxy-credentials');
writeFileSync(credentials, `wegate:${PROXY_PASSWORD}\n`);

let clock = Date.now();
const { gw, adminPort, httpPort } = await startGateway(
  t,
  makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [{ host: 'api1.school.test', upstream: up.url }],
    egress: {
      wecom: { local_address: '127.0.0.3', expected_ip: '127.0.0.3', ip_echo: { url: `${echo.url}/ip` } },
      vendor: { proxy: { url: 'http://127.0.0.1:3128', credentials_file: credentials } },
    },
    wecom: {
      api_base: fake.url,
      ca_file: join(TLS_DIR, 'ca.pem'),
      corp_id: CORP,
      egress: 'wecom',
      probe: { interval_ms: 0 },
      apps: [{ name: 'ecard', secret: { env: 'ECARD_SECRET' } }],
    },
  }),
  { env: { ECARD_SECRET: SECRET }, now: () => clock },
);

// A 60020 (WeCom saw 127.0.0.3), the probe, the IP echo; then a vendor incident whose text holds markup.
await gw.wecom?.call('ecard', '/cgi-bin/user/get', { query: { userid: 'zhangsan' } }).catch(() => undefined);
clock += 1_000;
await gw.readiness?.checkNow();
await gw.egress.checkAll();
clock += 60_000;
gw.incidents.record({
  app: 'vendor-route',
  api: '/sso/<login>',
  cause: 'vendor_60020',
  source: 'vendor',
  fromIp: '120.27.208.144',
  en: 'Vendor said <script>alert("x")</script> & more',
  zh: '厂商返回 <b>粗体</b>',
});

const get = (path: string, headers: Record<string, string> = {}) => send(adminPort, '127.0.0.1', { path, headers });
const secrets = () => [SECRET, PROXY_PASSWORD, ...fake.issuedTokens()];

t.test('/diagnostics: JSON lists the 60020 incident, egress, token expiry and the probe when asked with ?format=json', async (t) => {
  const r = await get('/diagnostics?format=json');
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^application\/json/);
  t.equal(r.headers['cache-control'], 'no-store');
  const d = JSON.parse(r.body) as DiagJson;
  t.equal(d.service, 'wegate');
  t.match(d.incidents, [
    { app: 'vendor-route', source: 'vendor' },
    { app: 'ecard', api: '/cgi-bin/get_api_domain_ip', cause: 'not_in_trusted_ip', fromIp: '127.0.0.3' },
    {
      app: 'ecard',
      api: '/cgi-bin/user/get',
      cause: 'not_in_trusted_ip',
      errcode: 60020,
      fromIp: '127.0.0.3',
      expectedIp: '127.0.0.3',
      localAddress: '127.0.0.3',
      hint: /^\d+$/,
      en: /Add 127\.0\.0\.3 to 应用管理 › ecard › 企业可信IP/,
      zh: /应用管理 › ecard › 企业可信IP/,
    },
  ]);
  t.match(d.incidents[0]?.['lastSeen'], /^\d{4}-\d\d-\d\dT/, 'newest first');
  t.match(d.egress, [
    { name: 'wecom', localAddress: '127.0.0.3', family: 4, expectedIp: '127.0.0.3', observedIp: '127.0.0.3', matches: true, proxy: null },
    { name: 'vendor', proxy: /^http:\/\/127\.0\.0\.1:3128$/, localAddress: null },
  ]);
  t.equal(d.wecom.egress, 'wecom');
  const [token] = d.wecom.tokens;
  t.match(token, { name: 'ecard', kind: 'self_built', lastErrcode: 0, expiresAt: /^\d{4}-/, lastRefreshAt: /^\d{4}-/ });
  t.ok((token?.['expiresInSeconds'] as number) > 0, 'expiry shown');
  t.same(
    Object.keys(token ?? {}).filter((k) => /token|secret/i.test(k)),
    [],
    'no token field',
  );
  t.match(d.wecom.readiness, [{ app: 'ecard', ok: false, errcode: 60020, en: /127\.0\.0\.3/ }]);
  for (const s of secrets()) t.notOk(r.body.includes(s), 'no secret or token in the JSON');
});

t.test('/diagnostics: JSON when the Accept header asks for application/json', async (t) => {
  const r = await get('/diagnostics', { accept: 'application/json' });
  t.match(r.headers['content-type'], /^application\/json/);
  t.equal((JSON.parse(r.body) as DiagJson).service, 'wegate');
});

t.test('/diagnostics: a bilingual HTML page with every value escaped when a browser asks', async (t) => {
  const r = await get('/diagnostics', { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' });
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^text\/html; charset=utf-8/);
  t.match(r.headers['content-security-policy'], /default-src 'none'/);
  for (const heading of [
    'Incidents (newest first) / 故障记录（最新在前）',
    'Egress / 出口',
    'WeCom tokens / 企业微信令牌',
    'WeCom readiness probe / 企业微信就绪探测',
  ]) {
    t.ok(r.body.includes(heading), heading);
  }
  t.match(r.body, /Add 127\.0\.0\.3 to 应用管理 › ecard › 企业可信IP/);
  t.match(r.body, /请将 127\.0\.0\.3 加入 应用管理 › ecard › 企业可信IP/);
  t.ok(r.body.indexOf('vendor-route') < r.body.indexOf('/cgi-bin/user/get'), 'newest incident first');
  t.ok(r.body.includes('Vendor said &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more'), 'markup escaped');
  t.ok(r.body.includes('/sso/&lt;login&gt;'));
  t.notOk(r.body.includes('<script'), 'no script element');
  t.notOk(r.body.includes('<b>'), 'no element from the data');
  t.match(r.body, /127\.0\.0\.3/);
  for (const s of secrets()) t.notOk(r.body.includes(s), 'no secret or token in the HTML');
});

t.test('/diagnostics: never answered by the public listener when a route covers the path', async (t) => {
  for (const path of ['/diagnostics', '/diagnostics?format=json']) {
    const r = await send(httpPort, 'api1.school.test', { path, headers: { accept: 'application/json' } });
    t.equal(r.body, `vendor GET ${path}`, `${path} went to the upstream`);
  }
  const none = await send(httpPort, 'other.school.test', { path: '/diagnostics?format=json' });
  t.equal(none.status, 404);
  t.notOk(none.body.includes('incidents'));
});
