/**
 * The API relay across a reload: the relay follows the WeCom egress profile the running config
 * holds (review F1: a reload that changed `egress:` closed the dispatcher the relay had kept).
 */
import { join } from 'node:path';
import t from 'tap';
import { FakeWecom } from '../../helpers/fake-wecom.ts';
import { ADMIN, LOOPBACK, makeConfig, send, startGateway, TLS_DIR } from '../../helpers/gateway.ts';
import { bearer, CORP, SECRET, VENDOR } from './helpers.ts';

const HOST = 'api1.school.edu.cn';
const USER_GET = '/.wegate/relay/cgi-bin/user/get?userid=zhangsan';

t.test('relay: answers 200 from the pinned address when a reload adds an unrelated egress profile', async (t) => {
  const fake = await FakeWecom.start(t);
  fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.2'] });
  fake.route('/cgi-bin/user/get', ({ query }) => ({ userid: query.get('userid') ?? '' }));
  const cfg = (egress: Record<string, unknown>) =>
    makeConfig({
      listen: LOOPBACK,
      admin: ADMIN,
      routes: [{ upstream: 'http://127.0.0.1:1' }],
      egress,
      wecom: {
        api_base: fake.url,
        ca_file: join(TLS_DIR, 'ca.pem'),
        corp_id: CORP,
        egress: 'wecom',
        apps: [{ name: 'ecard', secret: { env: 'ECARD_SECRET' } }],
        probe: { enabled: false },
      },
      relay: { clients: [VENDOR] },
    });
  const pinned = { wecom: { local_address: '127.0.0.2', expected_ip: '127.0.0.2' } };
  const gw = await startGateway(t, cfg(pinned), { env: { ECARD_SECRET: SECRET } });
  const before = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
  t.equal(before.status, 200);

  const oldEgress = gw.gw.egress;
  await gw.gw.reload(cfg({ ...pinned, other: { local_address: '127.0.0.3' } }));
  t.not(gw.gw.egress, oldEgress, 'the reload built new egress profiles');
  await oldEgress.close(); // what the reload does in the background: the old dispatchers are gone

  for (let i = 0; i < 3; i++) {
    const r = await send(gw.httpPort, HOST, { path: USER_GET, headers: bearer() });
    t.equal(r.status, 200, `relay call ${i + 1} after the reload`);
    t.match(JSON.parse(r.body), { errcode: 0, userid: 'zhangsan' });
  }
  const userGets = fake.requests.filter((q) => q.path === '/cgi-bin/user/get').map((q) => q.from);
  t.same(userGets, ['127.0.0.2', '127.0.0.2', '127.0.0.2', '127.0.0.2'], 'WeCom saw the pinned address every time');
});
