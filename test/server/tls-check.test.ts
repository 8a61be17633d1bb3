import { readFileSync } from 'node:fs';
import t from 'tap';
import { checkCertificateFiles, EXPIRY_WARNING_DAYS } from '../../src/server/tls-check.ts';
import { makePki } from '../helpers/pki.ts';

const HOST = 'api1.school.test';
const pki = makePki(t, HOST);
const DAY = 86_400_000;
const NOW = Date.now();
const files = (...names: string[]) =>
  names.map((n, i) => ({ at: `tls.certs[${i}].cert`, file: pki.file(n), pem: readFileSync(pki.file(n)) }));
const check = (names: string[], opts: { hosts?: string[]; now?: number; roots?: string[] } = {}) =>
  checkCertificateFiles(files(...names), { hosts: opts.hosts ?? [HOST], now: opts.now ?? NOW, roots: () => opts.roots ?? [] });

t.test('checkCertificateFiles: no warning when the chain is complete, valid for months and covers a route host', async (t) => {
  t.same(check(['leaf-fullchain.pem']), []);
  t.same(check(['leaf-fullchain.pem'], { hosts: ['other.test', HOST] }), [], 'one covered host is enough');
  t.same(check(['leaf-fullchain.pem'], { hosts: ['*.school.test'] }), [], 'a wildcard route with a host the certificate names');
  t.same(check(['leaf-fullchain.pem'], { hosts: [] }), [], 'no host check when no route names a host');
  t.same(check(['self.pem']), [], 'a self-signed certificate has no intermediate to miss');
  t.same(check(['direct.pem'], { roots: [pki.rootPem] }), [], 'issued directly by a root clients know');
});

t.test(
  'checkCertificateFiles: warns once per problem with the key path when a certificate is expired, expiring, foreign or incomplete',
  async (t) => {
    const [soon] = check(['soon-fullchain.pem']);
    t.match(
      soon,
      /^tls\.certs\[0\]\.cert \(".*soon-fullchain\.pem"\): the certificate for api1\.school\.test expires in 3 days, on \d{4}-\d\d-\d\d \d\d:\d\d UTC; renew it \(证书将在 3 天后/,
    );
    t.equal(check(['soon-fullchain.pem']).length, 1);
    t.same(
      check(['leaf-fullchain.pem'], { now: NOW + 365 * DAY - (EXPIRY_WARNING_DAYS - 1) * DAY }).length,
      1,
      'inside the warning window',
    );
    t.same(check(['leaf-fullchain.pem'], { now: NOW + 365 * DAY - (EXPIRY_WARNING_DAYS + 1) * DAY }), [], 'outside the warning window');
    t.match(check(['expired-fullchain.pem']), [/expired on 2020-02-01 00:00 UTC; renew it \(证书已于 2020-02-01 00:00 UTC 过期/]);
    t.match(check(['leaf-fullchain.pem'], { now: NOW - 2 * DAY }), [/is not valid before .* \(证书在 .* 之前尚未生效\)/]);
    t.match(check(['leaf-fullchain.pem'], { hosts: ['api2.school.test', '*.other.test'] }), [
      /covers none of the route hosts \(api2\.school\.test, \*\.other\.test\).*\(证书不包含任何路由域名/,
    ]);
    t.match(check(['leaf-fullchain.pem'], { hosts: ['*.test'] }), [/covers none/], 'a wildcard route covers one label only');
    t.match(check(['leaf.pem']), [
      /is not followed by the intermediate certificate that issued it \(CN=wegate test intermediate\).*fullchain\.pem.*WeChat.*Android.*\(缺少中间证书/,
    ]);
    t.match(check(['direct.pem']), [/not followed by the intermediate/], 'the issuing root is not one clients know');
    const two = check(['leaf.pem', 'soon-fullchain.pem'], { hosts: ['x.test'] });
    t.equal(two.length, 4, two.join('\n'));
    t.match(two, [
      /^tls\.certs\[0\]\.cert .*covers none/,
      /^tls\.certs\[0\]\.cert .*intermediate/,
      /^tls\.certs\[1\]\.cert .*expires in 3 days/,
      /^tls\.certs\[1\]\.cert .*covers none/,
    ]);
  },
);

t.test(
  'checkCertificateFiles: warns when the leaf has no subjectAltName (CN only: Chrome and Android WebView refuse it) (F6)',
  async (t) => {
    const got = check(['cn-only-fullchain.pem']);
    t.equal(got.length, 1, got.join('\n'));
    t.match(
      got[0],
      /^tls\.certs\[0\]\.cert \(".*cn-only-fullchain\.pem"\): .* has no subjectAltName .*Chrome and Android WebView refuse it.*\(证书没有 subjectAltName/,
    );
    t.same(check(['leaf-fullchain.pem']), [], 'a leaf with a DNS SAN gets no such warning');
  },
);

t.test('checkCertificateFiles: warns when an intermediate of the file has expired though the leaf is valid (F6)', async (t) => {
  const got = check(['leaf-expired-int.pem']);
  t.equal(got.length, 1, got.join('\n'));
  t.match(
    got[0],
    /the intermediate certificate 1 \(CN=wegate test intermediate\) of the certificate for api1\.school\.test expired on 2021-01-01 00:00 UTC; renew it \(中间证书 1/,
  );
  t.match(
    check(['leaf-fullchain.pem'], { now: NOW + 3650 * DAY }),
    [/expired on/, /intermediate certificate 1 .* expired on/],
    'leaf and intermediate each counted',
  );
});
