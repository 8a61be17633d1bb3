/**
 * A wrong forward-proxy password in front of WeCom is named in the client's error and in doctor's
 * wecom_token check (review F9): a real tinyproxy with BasicAuth, the real fake WeCom over TLS.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { runDoctor } from '../../../src/diagnostics/doctor/index.ts';
import { FakeWecom } from '../../helpers/fake-wecom.ts';
import { startForwardProxy } from '../../helpers/forward-proxy.ts';
import { makeConfig, TLS_DIR } from '../../helpers/gateway.ts';
import { CORP, SECRET } from './helpers.ts';

const PROXY_PASSWORD = 'right-proxy-pass-8812';

t.test('doctor wecom_token: says proxy authentication failed when the proxy password is wrong (review F9)', async (t) => {
  const fake = await FakeWecom.start(t);
  fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.3'] });
  const proxy = await startForwardProxy(t, { connectPorts: [fake.port], auth: { user: 'wegate', password: PROXY_PASSWORD } });
  const dir = await mkdtemp(join(tmpdir(), 'wegate-proxy-auth-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const doctor = async (password: string) => {
    const file = join(dir, `creds-${password}`);
    await writeFile(file, `wegate:${password}\n`, { mode: 0o600 });
    const config = makeConfig({
      listen: { http: '127.0.0.1:0' },
      admin: { listen: '127.0.0.1:0' },
      routes: [{ upstream: 'http://127.0.0.1:1' }],
      egress: { fwd: { proxy: { url: proxy.url, credentials_file: file }, expected_ip: '127.0.0.3' } },
      wecom: {
        api_base: fake.url,
        ca_file: join(TLS_DIR, 'ca.pem'),
        corp_id: CORP,
        egress: 'fwd',
        apps: [{ name: 'ecard', secret: { env: 'ECARD_SECRET' } }],
      },
    });
    const r = await runDoctor('wegate.yaml', config, { env: { ECARD_SECRET: SECRET } });
    return r.results.filter((x) => x.check === 'wecom_token');
  };

  t.match(await doctor(PROXY_PASSWORD), [{ status: 'ok' }], 'the right password gets a token through the proxy');
  const wrong = await doctor('wrong-proxy-pass-3390');
  t.match(wrong, [
    {
      status: 'fail',
      en: /WeCom could not be reached \(the egress proxy refused the tunnel with HTTP (401|407): proxy authentication failed, check proxy\.credentials_file/,
      zh: /代理认证失败/,
    },
  ]);
  const shown = JSON.stringify(wrong);
  for (const secret of ['wrong-proxy-pass-3390', PROXY_PASSWORD, Buffer.from('wegate:wrong-proxy-pass-3390').toString('base64')])
    t.notOk(shown.includes(secret), 'no password or Basic token shown');
  t.same(
    fake.requests.map((q) => [q.path, q.from]),
    [
      ['/cgi-bin/gettoken', '127.0.0.3'],
      ['/cgi-bin/get_api_domain_ip', '127.0.0.3'],
    ],
    'only the authenticated run (token, then the 企业可信IP check) reached WeCom',
  );
});
