/**
 * runDoctor in-process against real peers: certificates from a real openssl PKI, an https upstream
 * with the test CA, a real tinyproxy whose outgoing address is 127.0.0.3, an address that is not on
 * this host (192.0.2.55, TEST-NET-1), and the checks list itself (an added check, a throwing one).
 * The CLI process, the fake WeCom and the exit codes are in test/cli/doctor.test.ts.
 */
import { join } from 'node:path';
import t from 'tap';
import { DOCTOR_CHECKS, type DoctorCheck, type DoctorReport, result, runDoctor } from '../../src/diagnostics/doctor/index.ts';
import { startWhoAmI } from '../egress/helpers.ts';
import { startForwardProxy } from '../helpers/forward-proxy.ts';
import { makeConfig, TLS_DIR } from '../helpers/gateway.ts';
import { makePki } from '../helpers/pki.ts';

const HOST = 'api1.school.test';
const pki = makePki(t, HOST);

const base = { listen: { http: '127.0.0.1:0' }, admin: { listen: '127.0.0.1:0' } };
const doctor = (partial: Record<string, unknown>, checks?: readonly DoctorCheck[]) =>
  runDoctor('wegate.yaml', makeConfig({ ...base, ...partial }), { env: {}, ...(checks ? { checks } : {}) });
const of = (r: DoctorReport, check: string) => r.results.filter((x) => x.check === check);

t.test('runDoctor: certificates show the days left, ⚠ when one expires soon and ✗ when one has expired', async (t) => {
  const r = await doctor({
    listen: { https: '127.0.0.1:0' },
    tls: {
      certs: [
        { cert: pki.file('leaf-fullchain.pem'), key: pki.file('leaf.key') },
        { cert: pki.file('soon-fullchain.pem'), key: pki.file('soon.key') },
        { cert: pki.file('expired-fullchain.pem'), key: pki.file('expired.key') },
      ],
    },
    routes: [{ host: HOST, upstream: 'http://127.0.0.1:1' }],
  });
  t.match(of(r, 'certificates'), [
    {
      subject: /^tls\.certs\[0\] /,
      status: 'ok',
      en: /^api1\.school\.test: valid until \d{4}-\d\d-\d\d \((364|365) days left\)$/,
      zh: /剩余 \d+ 天/,
    },
    { subject: /^tls\.certs\[1\] /, status: 'ok', en: /\((2|3) days left\)/ },
    { subject: /^tls\.certs\[1\] /, status: 'warn', en: /expires in 3 days/ },
    { subject: /^tls\.certs\[2\] /, status: 'fail', en: /expired on 2020-02-01/, fix: { en: /renew it/, zh: /续期/ } },
  ]);
  t.equal(r.exitCode, 1);
});

t.test('runDoctor: ✓ "TLS verified" with the route\'s ca_file, ✗ naming ca_file without it, ⚠ when verification is off', async (t) => {
  const who = await startWhoAmI(t, { tls: true });
  const r = await doctor({
    routes: [
      { name: 'withca', path: '/a', upstream: who.url, tls: { ca_file: join(TLS_DIR, 'ca.pem') } },
      { name: 'noca', path: '/b', upstream: `https://localhost:${who.port}` },
      { name: 'off', path: '/c', upstream: `https://127.0.0.1:${who.port}/x`, tls: { insecure_skip_verify: true } },
    ],
  });
  t.match(of(r, 'upstreams'), [
    { subject: /^routes\[0\] \(withca\) → https:\/\/127\.0\.0\.1:\d+$/, status: 'ok', en: /answered HTTP 200 in \d+ ms \(TLS verified\)/ },
    {
      subject: /^routes\[1\] \(noca\)/,
      status: 'fail',
      en: /TLS certificate not accepted \((UNABLE_TO|SELF_SIGNED|DEPTH_ZERO)/,
      fix: { en: /routes\[1\]\.tls\.ca_file/ },
    },
    { subject: /^routes\[2\] \(off\)/, status: 'warn', en: /TLS NOT verified/, fix: { en: /remove tls\.insecure_skip_verify/ } },
  ]);
  t.same(who.seen.length, 2, 'the two accepted handshakes made a request each');
});

t.test('runDoctor: ✗ for an egress address not on this host, and the route and WeCom through it are not tried', async (t) => {
  const r = await doctor({
    egress: { gone: { local_address: '192.0.2.55' } },
    routes: [{ upstream: 'http://127.0.0.1:1', egress: 'gone' }],
    wecom: { corp_id: 'wwcorp', egress: 'gone', apps: [{ name: 'ecard', secret: { env: 'NOT_USED' } }] },
  });
  t.match(of(r, 'egress'), [{ subject: 'egress gone', status: 'fail', en: /192\.0\.2\.55.*EADDRNOTAVAIL.*该地址不在本机任何网卡上/ }]);
  t.match(of(r, 'public_ip'), [{ status: 'skip' }]);
  t.match(of(r, 'upstreams'), [{ status: 'skip', en: /egress gone is unusable/ }]);
  t.match(of(r, 'wecom_token'), [{ status: 'fail', en: /the egress profile gone is unusable/ }]);
  t.same(of(r, 'wecom_trusted_ip'), []);
  t.equal(r.exitCode, 1);
});

t.test(
  'runDoctor: public IP ✗ and the upstream ✓ through tinyproxy when the proxy leaves from 127.0.0.3 but expected_ip is 127.0.0.2',
  async (t) => {
    const echo = await startWhoAmI(t);
    const proxy = await startForwardProxy(t, { bind: '127.0.0.3', connectPorts: [echo.port] });
    const r = await doctor({
      egress: { fwd: { proxy: { url: proxy.url }, expected_ip: '127.0.0.2', ip_echo: { url: `${echo.url}/ip` } } },
      routes: [{ upstream: echo.url, egress: 'fwd' }],
    });
    t.match(of(r, 'egress'), [{ status: 'ok', en: /the forward proxy 127\.0\.0\.1:\d+ accepts connections/ }]);
    t.match(of(r, 'public_ip'), [
      {
        status: 'fail',
        en: 'public IP is 127.0.0.3, but expected_ip is 127.0.0.2: WeCom will answer 60020',
        fix: { en: /add it to 应用管理 › <app> › 企业可信IP/ },
      },
    ]);
    t.match(of(r, 'upstreams'), [{ status: 'ok', en: /answered HTTP 200 .* through egress fwd/ }]);
    t.same([...new Set(echo.seen)], ['127.0.0.3'], "both went out through the proxy's address");
  },
);

t.test('runDoctor: ⚠ for verification files when the directory holds no WW_verify file or there is no verify_files section', async (t) => {
  const empty = t.testdir({ 'MP_verify_abc.txt': 'abc' });
  const wecom = { corp_id: 'wwcorp', apps: [] };
  const none = await doctor(
    { verify_files: { dir: empty }, routes: [{ host: HOST, upstream: 'http://127.0.0.1:1' }] },
    DOCTOR_CHECKS.filter((c) => c.name === 'verify_files'),
  );
  t.match(of(none, 'verify_files'), [
    {
      status: 'warn',
      en: /no WW_verify_\*\.txt in .*: WeCom's 可信域名 check of api1\.school\.test will get 404/,
      fix: { zh: /申请校验域名/ },
    },
  ]);
  const missing = await doctor(
    { wecom, routes: [{ upstream: 'http://127.0.0.1:1' }] },
    DOCTOR_CHECKS.filter((c) => c.name === 'verify_files'),
  );
  t.match(of(missing, 'verify_files'), [{ status: 'warn', en: /no verify_files section/ }]);
  t.equal(missing.exitCode, 0, '⚠ does not fail');
});

t.test('runDoctor: runs an added check and reports a check that throws as a ✗ of its own', async (t) => {
  const added: DoctorCheck = { name: 'callbacks', run: async () => [result('callbacks', 'app ecard', 'ok', { en: 'fine', zh: '正常' })] };
  const broken: DoctorCheck = {
    name: 'login',
    run: async () => {
      throw new Error('boom');
    },
  };
  const r = await doctor({ routes: [{ upstream: 'http://127.0.0.1:1' }] }, [added, broken]);
  t.match(r.results, [
    { check: 'config', status: 'ok' },
    { check: 'callbacks', subject: 'app ecard', status: 'ok', en: 'fine' },
    { check: 'login', status: 'fail', en: 'the check failed: boom' },
  ]);
  t.same(r.summary, { ok: 2, warn: 0, fail: 1, skip: 0 });
  t.equal(r.exitCode, 1);
});
