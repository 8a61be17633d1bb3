/** The composition root builds the WeCom client from the `wecom:` section, and starts without one. */
import { join } from 'node:path';
import t from 'tap';
import { FakeWecom } from '../../helpers/fake-wecom.ts';
import { ADMIN, LOOPBACK, makeConfig, startGateway, TLS_DIR } from '../../helpers/gateway.ts';
import { CORP, rejection, SECRET } from './helpers.ts';

t.test('createGateway: starts without a WeCom client when the config has no wecom section', async (t) => {
  const { gw } = await startGateway(t, makeConfig({ listen: LOOPBACK, admin: ADMIN, routes: [{ upstream: 'http://127.0.0.1:1' }] }));
  t.equal(gw.wecom, undefined);
  t.same(gw.incidents.list(), []);
});

t.test('createGateway: builds the WeCom client with the env secret and the ca_file when the config has a wecom section', async (t) => {
  const fake = await FakeWecom.start(t);
  fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.2'] });
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [{ upstream: 'http://127.0.0.1:1' }],
    wecom: {
      api_base: fake.url,
      ca_file: join(TLS_DIR, 'ca.pem'),
      corp_id: CORP,
      apps: [{ name: 'ecard', secret: { env: 'ECARD_SECRET' } }],
    },
  });
  const { gw, logs } = await startGateway(t, config, { env: { ECARD_SECRET: SECRET } });
  t.same(gw.wecom?.apps, ['ecard']);
  // The direct egress leaves from 127.0.0.1, which the fake does not trust: a diagnosed 60020.
  const e = await rejection(t, gw.wecom?.call('ecard', '/cgi-bin/get_api_domain_ip') ?? Promise.resolve());
  t.equal(e['errcode'], 60020);
  t.match(gw.incidents.list(), [{ app: 'ecard', cause: 'not_in_trusted_ip', fromIp: '127.0.0.1' }]);
  t.notOk(logs.text().includes(SECRET));
});

t.test('createGateway: refuses to start, naming the variable, when a WeCom secret env is missing', async (t) => {
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [{ upstream: 'http://127.0.0.1:1' }],
    wecom: { corp_id: CORP, apps: [{ name: 'ecard', secret: { env: 'ECARD_SECRET' } }] },
  });
  await t.rejects(startGateway(t, config, { env: {} }), /wecom\.apps\[0\] \(ecard\): the environment variable ECARD_SECRET is not set/);
});
