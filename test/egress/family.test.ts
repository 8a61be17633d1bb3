/**
 * The address family of a profile without local_address (review F2): pinned from `family`, else
 * from expected_ip when there is no proxy. "localhost" resolves to 127.0.0.1 only on this host, so a
 * connection pinned to IPv6 cannot be made to it, and one pinned to IPv4 is.
 */
import { join } from 'node:path';
import t from 'tap';
import { type Dispatcher, request } from 'undici';
import { loadConfigText } from '../../src/config/load.ts';
import { buildEgress, startWhoAmI, TLS_DIR } from './helpers.ts';

const get = async (dispatcher: Dispatcher, url: string): Promise<string> => {
  const r = await request(url, { dispatcher });
  return r.body.text();
};
const failure = (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (e: Error & { code?: string }) => e.code ?? e.message,
  );

t.test('egress: connections take the family of expected_ip when local_address is unset (review F2)', async (t) => {
  const who = await startWhoAmI(t);
  const { egress } = await buildEgress(t, {
    v4: { expected_ip: '127.0.0.1' },
    v6: { expected_ip: '::1' },
    explicit6: { family: 6, expected_ip: '127.0.0.1' },
    proxied: { proxy: { url: 'http://127.0.0.1:1' }, expected_ip: '::1' },
    none: {},
  });
  const family = Object.fromEntries(egress.snapshot().map((s) => [s.name, s.family]));
  t.same(family, { v4: 4, v6: 6, explicit6: 6, proxied: undefined, none: undefined }, 'the pinned family per profile');
  const url = `http://localhost:${who.port}/`;
  t.equal(await get(egress.profile('v4')?.dispatcher as Dispatcher, url), '127.0.0.1', 'IPv4 expected_ip: connected over IPv4');
  for (const name of ['v6', 'explicit6']) {
    const code = await failure(get(egress.profile(name)?.dispatcher as Dispatcher, url));
    t.match(code, /ENOTFOUND|EAI_|EADDRNOTAVAIL|ECONNREFUSED/, `${name}: the IPv6 pin is applied (localhost has no IPv6 address here)`);
  }
  t.same(who.seen, ['127.0.0.1'], 'only the IPv4-pinned request reached the server');
});

const load = (yaml: string) => loadConfigText(yaml, join(TLS_DIR, 'test.yaml'));
const head = 'listen: { http: ":8080" }\nroutes: [{ upstream: "https://a.example" }]\n';
const wecom = (apiBase: string) =>
  `wecom:\n  api_base: "${apiBase}"\n  corp_id: ww0123456789abcdef\n  egress: pin\n  apps:\n    - name: ecard\n      secret: { env: S }\n`;

t.test('config: refuses an IPv6-literal api_base when the WeCom egress pins IPv4 (review F2)', async (t) => {
  const r = load(`${head}egress:\n  pin:\n    expected_ip: 127.0.0.1\n${wecom('https://[::1]:8443')}`);
  t.notOk(r.ok);
  if (r.ok) return;
  t.match(r.problems, [
    {
      path: 'wecom.api_base',
      line: 7,
      message: /must be reachable over IPv4, the family the egress profile "pin" pins \(from its expected_ip\), got the IPv6 literal/,
    },
  ]);
  const ok = load(`${head}egress:\n  pin:\n    expected_ip: 127.0.0.1\n${wecom('https://127.0.0.1:8443')}`);
  t.ok(ok.ok, 'an IPv4 literal is fine');
  const named = load(`${head}egress:\n  pin:\n    expected_ip: 127.0.0.1\n${wecom('https://localhost:8443')}`);
  t.ok(named.ok, 'a host name is fine (the pin picks its IPv4 address)');
  const proxied = load(
    `${head}egress:\n  pin:\n    proxy: { url: "http://127.0.0.1:3128" }\n    expected_ip: 127.0.0.1\n${wecom('https://[::1]:8443')}`,
  );
  t.ok(proxied.ok, 'through a proxy the proxy connects to api_base');
});

t.test('config: refuses a family that disagrees with local_address (review F2)', async (t) => {
  const r = load(`${head}egress:\n  pin:\n    local_address: 127.0.0.2\n    family: 6\n`);
  t.notOk(r.ok);
  if (!r.ok)
    t.match(r.problems, [{ path: 'egress.pin.family', message: /must agree with local_address "?127\.0\.0\.2"? \(IPv4\), got 6/ }]);
  const bad = load(`${head}egress:\n  pin:\n    family: 5\n`);
  t.notOk(bad.ok, 'family is 4 or 6');
});
