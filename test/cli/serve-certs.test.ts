/**
 * `wegate serve` and certificates, as a real CLI process: what check refuses serve refuses with the
 * config exit code (78), and the certificate warnings of check reach the log at start-up and reload.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { cliTempDir, MAIN, runCli } from '../helpers/cli.ts';

async function upstream(t: Test): Promise<string> {
  const server = createServer((req, res) => res.end(`up:${req.url}`));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** `wegate serve` with its JSON log lines collected as they arrive. */
function serve(t: Test, file: string) {
  const proc = spawn(process.execPath, [MAIN, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  proc.stdout.on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
      lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
      buf = buf.slice(i + 1);
    }
  });
  const exit = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  return { proc, lines, exit };
}

async function waitFor(what: string, fn: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const TLS = join(import.meta.dirname, '../fixtures/tls');
const httpsYaml = (up: string, cert: string) => `listen:
  http: "127.0.0.1:0"
  https: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
tls:
  certs:
    - cert: ${JSON.stringify(cert)}
      key: ${JSON.stringify(join(TLS, 'api1.key'))}
routes:
  - { host: api1.school.test, path: /, upstream: "${up}" }
`;

t.test('wegate serve: exits 78 when a certificate file has a corrupt second PEM block, as check refuses it (F5)', async (t) => {
  const dir = await cliTempDir(t);
  const cert = join(dir, 'broken.pem');
  await writeFile(cert, `${await readFile(join(TLS, 'api1.pem'), 'utf8')}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`);
  const file = join(dir, 'wegate.yaml');
  await writeFile(file, httpsYaml('http://127.0.0.1:9', cert));
  const checked = await runCli(['check', '--config', file]);
  t.equal(checked.code, 78, 'check refuses it');
  const served = await runCli(['serve', '--config', file]);
  t.equal(served.code, 78, 'serve exits with the config error code, not 1');
  t.match(served.stderr, /tls\.certs\[0\]\.cert .*certificate block 2 of 2 is corrupt/);
});

t.test(
  'wegate serve: logs the certificate warnings of check at warn level, once each, when starting and after each reload (F6)',
  async (t) => {
    const up = await upstream(t);
    const dir = await cliTempDir(t);
    const file = join(dir, 'wegate.yaml');
    // api1.pem holds the leaf only: check warns about the missing intermediate.
    await writeFile(file, httpsYaml(up, join(TLS, 'api1.pem')));
    const checked = await runCli(['check', '--config', file]);
    t.match(checked.stderr, /^warning \(警告\): tls\.certs\[0\]\.cert .*not followed by the intermediate/);
    const gw = serve(t, file);
    await waitFor('start-up', () => gw.lines.some((l) => l.msg === 'wegate started'));
    const warnings = () => gw.lines.filter((l) => l.msg === 'certificate warning (证书警告)');
    await waitFor('the start-up warning', () => warnings().length === 1);
    t.equal(warnings()[0]?.level, 'warn', 'warn level');
    t.match(String(warnings()[0]?.warning), /^tls\.certs\[0\]\.cert .*not followed by the intermediate.*\(缺少中间证书/);
    gw.proc.kill('SIGHUP');
    await waitFor('the reload', () => gw.lines.some((l) => l.msg === 'configuration reloaded'));
    await waitFor('the warning after the reload', () => warnings().length === 2);
    gw.proc.kill('SIGTERM');
    t.equal(await gw.exit, 0, 'clean exit');
    t.equal(warnings().length, 2, 'once at start-up, once for the reload');
  },
);
