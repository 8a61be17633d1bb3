/**
 * `wegate check` as a real process: certificate warnings (expired, expiring, foreign, missing
 * intermediate) with exit 0, and secrets redacted from its problem list.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { makePki } from '../helpers/pki.ts';

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');
const HOST = 'api1.school.test';
const pki = makePki(t, HOST);

function check(file: string, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MAIN, 'check', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let configs = 0;
/** A config file in the PKI dir (removed with it): an HTTPS listener with these certificates (name → key) and route hosts. */
function config(certs: [cert: string, key: string][], hosts: string[] = [HOST, '*.school.test']): string {
  const file = pki.file(`wegate-${++configs}.yaml`);
  const tls = certs.map(([c, k]) => `    - { cert: ${JSON.stringify(pki.file(c))}, key: ${JSON.stringify(pki.file(k))} }\n`).join('');
  const routes = hosts.map((h, i) => `  - { host: ${JSON.stringify(h)}, path: /r${i}, upstream: "http://127.0.0.1:8080" }\n`).join('');
  writeFileSync(file, `listen: { https: "127.0.0.1:0" }\nadmin: { listen: "127.0.0.1:0" }\ntls:\n  certs:\n${tls}routes:\n${routes}`);
  return file;
}

// Four check processes (each a Node start-up), started at once; each test waits for its own.
const runs = {
  clean: check(
    config([
      ['leaf-fullchain.pem', 'leaf.key'],
      ['self.pem', 'self.key'],
      ['direct.pem', 'direct.key'],
    ]),
    // The root that issued direct.pem becomes one the process knows.
    { NODE_EXTRA_CA_CERTS: pki.file('root.pem') },
  ),
  mixed: check(
    config([
      ['leaf-fullchain.pem', 'leaf.key'],
      ['leaf.pem', 'leaf.key'],
      ['soon-fullchain.pem', 'soon.key'],
      ['expired-fullchain.pem', 'expired.key'],
      ['direct.pem', 'direct.key'],
    ]),
  ),
  foreign: check(config([['leaf-fullchain.pem', 'leaf.key']], ['api2.school.test', '*.other.test'])),
  secrets: check(
    ((file) => {
      writeFileSync(
        file,
        'listen: { http: "127.0.0.1:0" }\nroutes:\n' +
          '  - upstream: "https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=ww1&corpsecret=CORPSECRET-1"\n' +
          '  - { path: /b, upstream: "http://admin:PASSWORD-2@10.0.0.1:0/" }\n' +
          '  - { path: /c, upstream: "qyapi.weixin.qq.com/?access_token=TOKEN-3" }\n',
      );
      return file;
    })(pki.file('secrets.yaml')),
  ),
};

const warnings = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('warning (警告): '));

t.test('wegate check: prints no warning and exits 0 when every chain is complete, valid and covers a route host', async (t) => {
  const r = await runs.clean;
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '', 'full chain, self-signed, and a leaf issued directly by a known root');
  t.match(r.stdout, /configuration is valid \(配置有效\): 2 route\(s\)\n$/);
});

t.test(
  'wegate check: warns once per problem and exits 0 when certificates lack the intermediate, expire soon or have expired',
  async (t) => {
    const r = await runs.mixed;
    t.equal(r.code, 0, r.stderr);
    const w = warnings(r.stderr);
    t.equal(w.length, 4, r.stderr);
    t.match(
      w[0],
      /^warning \(警告\): tls\.certs\[1\]\.cert \(".*\/leaf\.pem"\): the certificate for api1\.school\.test is not followed by the intermediate/,
    );
    t.match(
      w[0],
      /\(CN=wegate test intermediate\): use the full chain \(fullchain\.pem, not cert\.pem\), or WeChat's in-app browser on Android cannot connect \(缺少中间证书/,
    );
    t.match(
      w[1],
      /^warning \(警告\): tls\.certs\[2\]\.cert .*expires in 3 days, on \d{4}-\d\d-\d\d \d\d:\d\d UTC; renew it \(证书将在 3 天后/,
    );
    t.match(
      w[2],
      /^warning \(警告\): tls\.certs\[3\]\.cert .*expired on 2020-02-01 00:00 UTC; renew it \(证书已于 2020-02-01 00:00 UTC 过期，请续期\)/,
    );
    t.match(
      w[3],
      /^warning \(警告\): tls\.certs\[4\]\.cert \(".*\/direct\.pem"\): .*not followed by the intermediate .*\(CN=wegate test root\)/,
    );
    t.match(r.stdout, /configuration is valid \(配置有效\): 2 route\(s\), 4 warning\(s\) \(警告\)/);
  },
);

t.test('wegate check: warns and exits 0 when the certificate covers none of the route hosts', async (t) => {
  const r = await runs.foreign;
  t.equal(r.code, 0, r.stderr);
  t.match(warnings(r.stderr), [
    /certificate for api1\.school\.test covers none of the route hosts \(api2\.school\.test, \*\.other\.test\).*证书不包含任何路由域名/,
  ]);
});

t.test('wegate check: prints no secret when an invalid upstream carries corpsecret, a token or a password', async (t) => {
  const r = await runs.secrets;
  t.equal(r.code, 78);
  t.match(r.stderr, /invalid \(3 problems\)/);
  t.match(r.stderr, /routes\[0\]\.upstream \(line 3\): must not contain a query .*corpsecret=\[REDACTED\]/);
  t.match(r.stderr, /routes\[1\]\.upstream \(line 4\): must not contain credentials .*http:\/\/\[REDACTED\]@10\.0\.0\.1:0\//);
  for (const secret of ['CORPSECRET-1', 'PASSWORD-2', 'TOKEN-3']) t.notMatch(r.stderr + r.stdout, secret, `${secret} not printed`);
});
