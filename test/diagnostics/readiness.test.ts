/**
 * The gateway's WeCom client leaves through the egress profile `wecom.egress` names, end to end:
 * the fake WeCom (TLS, test CA) trusts 127.0.0.2; the profile is pinned to a loopback alias or goes
 * through a real tinyproxy bound to 127.0.0.3. The readiness probe (get_api_domain_ip per app) runs
 * on the real gateway, shows in wegate_wecom_ready{app} and never turns /readyz to 503. A reload
 * that replaces the egress profiles hands the client the new profile.
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { Config } from '../../src/config/schema.ts';
import { FakeWecom } from '../helpers/fake-wecom.ts';
import { startForwardProxy } from '../helpers/forward-proxy.ts';
import { ADMIN, LOOPBACK, makeConfig, send, startGateway, TLS_DIR, waitFor } from '../helpers/gateway.ts';
import { parseExposition, valueOf } from '../helpers/prom-text.ts';

const CORP = 'wwreadycorp0001';
const SECRET = 'ready-app-secret-0123456789abcdefghijklmnop';
const ENV = { ECARD_SECRET: SECRET };

async function fakeWecom(t: Test): Promise<FakeWecom> {
  const fake = await FakeWecom.start(t);
  fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.2'] });
  return fake;
}

function config(fake: FakeWecom, profile: Record<string, unknown>, probeMs = 0): Config {
  return makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [{ upstream: 'http://127.0.0.1:1' }],
    egress: { wecom: profile },
    wecom: {
      api_base: fake.url,
      ca_file: join(TLS_DIR, 'ca.pem'),
      corp_id: CORP,
      egress: 'wecom',
      probe: { interval_ms: probeMs },
      apps: [{ name: 'ecard', secret: { env: 'ECARD_SECRET' } }],
    },
  });
}

async function ready(port: number, app: string): Promise<number | undefined> {
  const r = await send(port, '127.0.0.1', { path: '/metrics' });
  return valueOf(parseExposition(r.body), 'wegate_wecom_ready', { app });
}

t.test('createGateway: the WeCom probe succeeds from 127.0.0.2 when wecom.egress is pinned to the trusted 127.0.0.2', async (t) => {
  const fake = await fakeWecom(t);
  const { gw, adminPort } = await startGateway(t, config(fake, { local_address: '127.0.0.2', expected_ip: '127.0.0.2' }), { env: ENV });
  const [r, ...more] = (await gw.readiness?.checkNow()) ?? [];
  t.same(more, []);
  t.match(r, { app: 'ecard', ok: true });
  t.same(
    fake.requests.map((q) => [q.path, q.from]),
    [
      ['/cgi-bin/gettoken', '127.0.0.2'],
      ['/cgi-bin/get_api_domain_ip', '127.0.0.2'],
    ],
    'every WeCom call left from the pinned address',
  );
  t.equal(gw.wecom?.egress.name, 'wecom');
  t.equal(await ready(adminPort, 'ecard'), 1);
  t.same(gw.incidents.list(), []);
});

t.test('createGateway: the probe is diagnosed as 60020 naming 127.0.0.3, /readyz stays 200, when pinned to 127.0.0.3', async (t) => {
  const fake = await fakeWecom(t);
  const { gw, adminPort } = await startGateway(t, config(fake, { local_address: '127.0.0.3', expected_ip: '127.0.0.3' }), { env: ENV });
  const [r] = (await gw.readiness?.checkNow()) ?? [];
  t.match(r, {
    app: 'ecard',
    ok: false,
    errcode: 60020,
    code: 'WG_WECOM_IP_NOT_ALLOWED',
    en: /^IP not in 企业可信IP: .*from 127\.0\.0\.3\. Add 127\.0\.0\.3 to 应用管理 › ecard › 企业可信IP/,
    zh: /127\.0\.0\.3.*应用管理 › ecard › 企业可信IP/,
  });
  t.match(gw.incidents.list(), [{ app: 'ecard', cause: 'not_in_trusted_ip', fromIp: '127.0.0.3', localAddress: '127.0.0.3' }]);
  t.equal(await ready(adminPort, 'ecard'), 0);
  const readyz = await send(adminPort, '127.0.0.1', { path: '/readyz' });
  t.equal(readyz.status, 200, 'routes that need no WeCom keep serving');
});

t.test(
  'createGateway: the fake sees the proxy and the incident says the pin is not effective when WeCom calls go through tinyproxy',
  async (t) => {
    const fake = await fakeWecom(t);
    const proxy = await startForwardProxy(t, { bind: '127.0.0.3', connectPorts: [fake.port] });
    const { gw } = await startGateway(t, config(fake, { proxy: { url: proxy.url }, expected_ip: '127.0.0.2' }), { env: ENV });
    t.equal(gw.wecom?.egress.viaProxy, true);
    const [r] = (await gw.readiness?.checkNow()) ?? [];
    t.same([...new Set(fake.requests.map((q) => q.from))], ['127.0.0.3'], "WeCom saw the proxy's outgoing address");
    t.match(r, {
      ok: false,
      errcode: 60020,
      en: /^Egress pin not effective: WeCom saw 127\.0\.0\.3, expected 127\.0\.0\.2 \(egress "wecom" through its forward proxy\)/,
    });
    t.match(gw.incidents.list(), [{ cause: 'pin_not_effective', fromIp: '127.0.0.3', expectedIp: '127.0.0.2' }]);
  },
);

t.test('createGateway: a WeCom call leaves from the new address when a reload changes the egress profile', async (t) => {
  const fake = await fakeWecom(t);
  const first = config(fake, { local_address: '127.0.0.3', expected_ip: '127.0.0.3' });
  const { gw } = await startGateway(t, first, { env: ENV });
  const wecom = gw.wecom;
  if (!wecom) throw new Error('no WeCom client');
  const refused = await wecom.call('ecard', '/cgi-bin/get_api_domain_ip').then(
    () => ({}),
    (e: unknown) => e as Record<string, unknown>,
  );
  t.match(refused, { errcode: 60020, fromIp: '127.0.0.3' }, 'refused before the reload');
  const oldProfile = gw.egress.profile('wecom');
  await gw.reload(config(fake, { local_address: '127.0.0.2', expected_ip: '127.0.0.2' }));
  t.not(gw.egress.profile('wecom'), oldProfile, 'the reload replaced the profile (and closed the old one)');
  const answer = await gw.wecom?.call('ecard', '/cgi-bin/get_api_domain_ip');
  t.same(answer?.['ip_list'], ['182.254.11.176', '182.254.78.66']);
  t.equal(fake.requests.at(-1)?.from, '127.0.0.2', 'the call after the reload used the new pin');
  t.equal(gw.wecom?.egress.localAddress, '127.0.0.2');
});

t.test('createGateway: a reload that drops the egress section wecom.egress needs is refused and keeps the running profile', async (t) => {
  const fake = await fakeWecom(t);
  const first = config(fake, { local_address: '127.0.0.2' });
  const { gw } = await startGateway(t, first, { env: ENV });
  // The validator names a missing profile when an egress section exists; without one, the gateway has to.
  const { egress: _dropped, ...rest } = JSON.parse(JSON.stringify(first)) as Record<string, unknown>;
  await t.rejects(
    gw.reload(makeConfig(rest)),
    /wecom\.egress names the egress profile "wecom", which the egress section does not define \(defined: none\)/,
  );
  t.ok(await gw.wecom?.call('ecard', '/cgi-bin/get_api_domain_ip'), 'WeCom calls still work on the running profile');
  t.equal(fake.requests.at(-1)?.from, '127.0.0.2');
});

t.test('createGateway: the readiness probe runs by itself once listening when probe.interval_ms is set', async (t) => {
  const fake = await fakeWecom(t);
  const { gw, adminPort } = await startGateway(t, config(fake, { local_address: '127.0.0.2' }, 60_000), { env: ENV });
  t.ok(await waitFor(() => gw.readiness?.results().length === 1), 'the first probe ran at start');
  t.match(gw.readiness?.results(), [{ app: 'ecard', ok: true }]);
  t.equal(await ready(adminPort, 'ecard'), 1);
});
