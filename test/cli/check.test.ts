/**
 * `wegate check` as a real process: certificate warnings (expired, expiring, foreign, missing
 * intermediate) with exit 0, and secrets redacted from its problem list.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
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

async function config(t: Test, cert: string, key: string, hosts: string[] = [HOST]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wegate-check-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'wegate.yaml');
  const routes = hosts.map((h, i) => `  - { host: ${JSON.stringify(h)}, path: /r${i}, upstream: "http://127.0.0.1:8080" }\n`).join('');
  await writeFile(
    file,
    `listen: { https: "127.0.0.1:0" }\nadmin: { listen: "127.0.0.1:0" }\ntls:\n  certs:\n    - cert: ${JSON.stringify(pki.file(cert))}\n      key: ${JSON.stringify(pki.file(key))}\nroutes:\n${routes}`,
  );
  return file;
}

const warnings = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('warning (警告): '));

t.test('wegate check: prints no warning and exits 0 when the chain is complete, valid and covers a route host', async (t) => {
  const r = await check(await config(t, 'leaf-fullchain.pem', 'leaf.key', [HOST, '*.school.test']));
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '');
  t.match(r.stdout, /configuration is valid \(配置有效\): 2 route\(s\)\n$/);
});

t.test('wegate check: warns about the missing intermediate and exits 0 when the file holds only the leaf (cert.pem)', async (t) => {
  const r = await check(await config(t, 'leaf.pem', 'leaf.key'));
  t.equal(r.code, 0, r.stderr);
  const w = warnings(r.stderr);
  t.equal(w.length, 1, r.stderr);
  t.match(w[0], /tls\.certs\[0\]\.cert \(".*leaf\.pem"\): the certificate for api1\.school\.test is not followed by the intermediate/);
  t.match(w[0], /fullchain\.pem.*WeChat's in-app browser on Android.*缺少中间证书/);
  t.match(r.stdout, /configuration is valid \(配置有效\): 1 route\(s\), 1 warning\(s\) \(警告\)/);
});

t.test('wegate check: trusts a leaf issued directly by a known root when NODE_EXTRA_CA_CERTS adds that root', async (t) => {
  const file = await config(t, 'direct.pem', 'direct.key');
  const unknown = await check(file);
  t.match(warnings(unknown.stderr), [/not followed by the intermediate/], 'root unknown: the intermediate looks missing');
  const known = await check(file, { NODE_EXTRA_CA_CERTS: pki.file('root.pem') });
  t.equal(known.code, 0);
  t.same(warnings(known.stderr), [], known.stderr);
});

t.test('wegate check: warns with the date and exits 0 when the certificate expires within 14 days or has expired', async (t) => {
  const [soon, expired] = await Promise.all([
    check(await config(t, 'soon-fullchain.pem', 'soon.key')),
    check(await config(t, 'expired-fullchain.pem', 'expired.key')),
  ]);
  t.equal(soon.code, 0, soon.stderr);
  t.match(warnings(soon.stderr), [/expires in 3 days, on \d{4}-\d\d-\d\d \d\d:\d\d UTC; renew it \(证书将在 3 天后/]);
  t.equal(expired.code, 0, expired.stderr);
  t.match(warnings(expired.stderr), [/expired on 2020-02-01 00:00 UTC; renew it \(证书已于 2020-02-01 00:00 UTC 过期，请续期\)/]);
});

t.test('wegate check: warns and exits 0 when the certificate covers none of the route hosts', async (t) => {
  const r = await check(await config(t, 'leaf-fullchain.pem', 'leaf.key', ['api2.school.test', '*.other.test']));
  t.equal(r.code, 0, r.stderr);
  t.match(warnings(r.stderr), [
    /certificate for api1\.school\.test covers none of the route hosts \(api2\.school\.test, \*\.other\.test\).*证书不包含任何路由域名/,
  ]);
});

t.test('wegate check: prints no secret when an invalid upstream carries corpsecret, a token or a password', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wegate-check-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'wegate.yaml');
  await writeFile(
    file,
    'listen: { http: "127.0.0.1:0" }\nroutes:\n' +
      '  - upstream: "https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=ww1&corpsecret=CORPSECRET-1"\n' +
      '  - { path: /b, upstream: "http://admin:PASSWORD-2@10.0.0.1:0/" }\n' +
      '  - { path: /c, upstream: "qyapi.weixin.qq.com/?access_token=TOKEN-3" }\n',
  );
  const r = await check(file);
  t.equal(r.code, 78);
  t.match(r.stderr, /invalid \(3 problems\)/);
  t.match(r.stderr, /routes\[0\]\.upstream \(line 3\): must not contain a query .*corpsecret=\[REDACTED\]/);
  t.match(r.stderr, /routes\[1\]\.upstream \(line 4\): must not contain credentials .*http:\/\/\[REDACTED\]@10\.0\.0\.1:0\//);
  for (const secret of ['CORPSECRET-1', 'PASSWORD-2', 'TOKEN-3']) t.notMatch(r.stderr + r.stdout, secret, `${secret} not printed`);
});
