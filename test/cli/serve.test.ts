/**
 * The real CLI process end to end: `wegate check`, `wegate serve` with SIGHUP reload (valid and
 * invalid files, under load) and SIGTERM drain with an in-flight request and an open WebSocket.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { rename, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { cliTempDir, MAIN, runCli } from '../helpers/cli.ts';
import { WebSocket, WebSocketServer } from 'ws';

async function upstream(t: Test, name: string): Promise<{ server: Server; url: string; hold: Set<() => void> }> {
  const hold = new Set<() => void>();
  const server = createServer((req, res) => {
    if (req.url === '/slow') {
      // Held until the test releases it: an in-flight request during SIGTERM.
      hold.add(() => res.end(`${name} slow done`));
      return;
    }
    res.setHeader('content-type', 'text/plain');
    res.end(`${name}:${req.url}`);
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${m}`)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    server.close();
  });
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hold };
}

function configYaml(up: string, opts: { prefix?: string; drainMs?: number; watch?: boolean } = {}): string {
  return `listen:
  http: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
log:
  level: info
reload:
  watch_config: ${opts.watch === true}
shutdown:
  drain_timeout_ms: ${opts.drainMs ?? 3000}
routes:
  - name: main
    path: ${opts.prefix ?? '/'}
    upstream: "${up}"
`;
}

interface Started {
  proc: ChildProcess;
  http: number;
  admin: number;
  lines: Record<string, unknown>[];
  exit: Promise<number | null>;
}

async function serve(t: Test, file: string): Promise<Started> {
  const proc = spawn(process.execPath, [MAIN, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let buf = '';
  let stderr = '';
  proc.stderr?.on('data', (d) => (stderr += d));
  const exit = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  t.teardown(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  const started = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`wegate did not start in 15 s: ${stderr}`)), 15_000);
    proc.stdout?.on('data', (d) => {
      buf += d;
      let i = buf.indexOf('\n');
      while (i !== -1) {
        const line = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
        buf = buf.slice(i + 1);
        lines.push(line);
        if (line.msg === 'wegate started') {
          clearTimeout(timer);
          resolve(line);
        }
        i = buf.indexOf('\n');
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`wegate exited ${code}: ${stderr}`));
    });
  });
  const listen = started.listen as { http: AddressInfo; admin: AddressInfo };
  return { proc, http: listen.http.port, admin: listen.admin.port, lines, exit };
}

function get(port: number, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { host: 'api1.school.test', ...headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function waitFor(what: string, fn: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

t.test('wegate check: prints "configuration is valid" and exits 0 when the example config is valid', async (t) => {
  const r = await runCli(['check', '--config', join(import.meta.dirname, '../../config/wegate.example.yaml')]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, 'configuration is valid');
});

t.test('wegate check: lists every problem with its line and exits 78 when the config is invalid', async (t) => {
  const dir = await cliTempDir(t);
  const file = join(dir, 'bad.yaml');
  await writeFile(file, 'listen:\n  htp: ":8080"\nroutes:\n  - upstream: "localhost:8080"\n    max_body_bytes: -1\n');
  const r = await runCli(['check', '--config', file]);
  t.equal(r.code, 78);
  t.match(r.stderr, /invalid \(\d+ problems\)/);
  t.match(r.stderr, /htp/);
  t.match(r.stderr, /did you mean `?http`?/);
  t.match(r.stderr, /routes\[0\]\.upstream \(line 4\)/);
  t.match(r.stderr, /routes\[0\]\.max_body_bytes \(line 5\)/);
});

t.test('cli: --version and --help print and exit 0, and usage exits 2 when the arguments are bad', async (t) => {
  const v = await runCli(['--version']);
  t.equal(v.code, 0);
  t.match(v.stdout, /^wegate \d+\.\d+\.\d+ \(node v2[2-9]/);
  const h = await runCli(['--help']);
  t.equal(h.code, 0);
  t.match(h.stdout, /wegate serve/);
  const u = await runCli(['frobnicate']);
  t.equal(u.code, 2);
  t.match(u.stderr, /unknown command/);
});

t.test('wegate serve: exits 78 without starting when the config is invalid', async (t) => {
  const dir = await cliTempDir(t);
  const file = join(dir, 'w.yaml');
  await writeFile(file, 'routes: []\n');
  const r = await runCli(['serve', '--config', file]);
  t.equal(r.code, 78);
  t.match(r.stderr, /routes/);
});

t.test(
  'wegate serve: SIGHUP under load keeps serving with zero failures when the new config is invalid, then applies a valid one',
  async (t) => {
    const a = await upstream(t, 'A');
    const b = await upstream(t, 'B');
    const dir = await cliTempDir(t);
    const file = join(dir, 'wegate.yaml');
    await writeFile(file, configYaml(a.url));
    const gw = await serve(t, file);

    // Load until both reloads are done: 4 concurrent clients, bounded by 20 s.
    let ok = 0;
    const failures: string[] = [];
    let stop = false;
    const deadline = Date.now() + 20_000;
    const worker = async () => {
      while (!stop && Date.now() < deadline) {
        try {
          const r = await get(gw.http, '/ping');
          if (r.status === 200 && /^[AB]:\/ping$/.test(r.body)) ok++;
          else failures.push(`${r.status} ${r.body.slice(0, 80)}`);
        } catch (e) {
          failures.push(String(e));
        }
      }
    };
    const load = Promise.all([worker(), worker(), worker(), worker()]);

    // The reloads happen while requests are in flight, not after the load is over.
    await waitFor('load to be running', () => ok >= 20);
    await writeFile(file, `${configYaml(b.url)}  - bogus_key: 1\n`);
    gw.proc.kill('SIGHUP');
    await waitFor('invalid reload to be logged', () =>
      gw.lines.some((l) => typeof l.msg === 'string' && l.msg.includes('new configuration is invalid')),
    );
    const okAtInvalid = ok;
    const m = await get(gw.admin, '/metrics');
    t.match(m.body, /wegate_config_reloads_total\{result="invalid"\} 1/);
    t.equal((await get(gw.http, '/after-invalid')).body, 'A:/after-invalid', 'old config still serving');

    await writeFile(file, configYaml(b.url));
    gw.proc.kill('SIGHUP');
    await waitFor('valid reload to apply', async () => (await get(gw.http, '/x')).body === 'B:/x');
    const okAtValid = ok;
    await waitFor('load to go on after the valid reload', () => ok >= okAtValid + 20);
    stop = true;
    await load;
    t.same(failures, [], 'no request failed during reloads');
    t.ok(okAtValid > okAtInvalid, `requests completed between the two reloads (${okAtValid - okAtInvalid})`);
    t.ok(ok > okAtValid, `requests completed after the valid reload (${ok - okAtValid})`);
    const m2 = await get(gw.admin, '/metrics');
    t.match(m2.body, /wegate_config_reloads_total\{result="success"\} 1/);

    gw.proc.kill('SIGTERM');
    t.equal(await gw.exit, 0, 'clean exit');
  },
);

t.test('wegate serve: reloads when the config file changes and keeps the old config when the changed file is invalid', async (t) => {
  const a = await upstream(t, 'A');
  const b = await upstream(t, 'B');
  const dir = await cliTempDir(t);
  const file = join(dir, 'wegate.yaml');
  await writeFile(file, configYaml(a.url, { watch: true }));
  const gw = await serve(t, file);
  t.equal((await get(gw.http, '/x')).body, 'A:/x');

  // Edited in place, invalid: logged, counted, the running config stays.
  await writeFile(file, `${configYaml(b.url, { watch: true })}  - bogus_key: 1\n`);
  await waitFor('invalid change to be logged', () =>
    gw.lines.some((l) => l.reason === 'config file changed' && String(l.msg).includes('new configuration is invalid')),
  );
  t.match((await get(gw.admin, '/metrics')).body, /wegate_config_reloads_total\{result="invalid"\} 1/);
  t.equal((await get(gw.http, '/still')).body, 'A:/still', 'old config still serving');

  // Replaced the way editors and config management do (write a temp file, rename it over): applied.
  const next = join(dir, '.wegate.yaml.tmp');
  await writeFile(next, configYaml(b.url, { watch: true }));
  await rename(next, file);
  await waitFor('valid change to apply', async () => (await get(gw.http, '/y')).body === 'B:/y');
  // Log lines are written in batches: wait for the line rather than expecting it at once.
  await waitFor('reload to be logged', () =>
    gw.lines.some((l) => l.reason === 'config file changed' && l.msg === 'configuration reloaded'),
  );
  t.pass('reload logged with its reason');
  t.match((await get(gw.admin, '/metrics')).body, /wegate_config_reloads_total\{result="success"\} 1/);

  gw.proc.kill('SIGTERM');
  t.equal(await gw.exit, 0, 'clean exit');
});

t.test('wegate serve: SIGTERM drains an in-flight request, closes an open WebSocket and exits 0 when stopping', async (t) => {
  const a = await upstream(t, 'A');
  const dir = await cliTempDir(t);
  const file = join(dir, 'wegate.yaml');
  await writeFile(file, configYaml(a.url, { drainMs: 1500 }));
  const gw = await serve(t, file);

  const ws = new WebSocket(`ws://127.0.0.1:${gw.http}/ws`, { headers: { host: 'api1.school.test' } });
  await once(ws, 'open');
  ws.send('hi');
  const [echo] = await once(ws, 'message');
  t.equal(String(echo), 'echo:hi', 'WebSocket proxied');
  const wsClosed = once(ws, 'close');

  const slow = get(gw.http, '/slow');
  await waitFor('slow request to reach the upstream', () => a.hold.size === 1);

  gw.proc.kill('SIGTERM');
  await waitFor('readiness to drop', async () => {
    try {
      return (await get(gw.admin, '/readyz')).status === 503;
    } catch {
      return false;
    }
  });
  for (const release of a.hold) release();
  const r = await slow;
  t.equal(r.status, 200, 'in-flight request completed during drain');
  t.equal(r.body, 'A slow done');
  await wsClosed;
  t.pass('WebSocket closed by the drain deadline');
  t.equal(await gw.exit, 0, 'exit 0');
});

t.test('wegate serve: logs no secret when a reloaded config with corpsecret or a password in an upstream is invalid', async (t) => {
  const a = await upstream(t, 'A');
  const dir = await cliTempDir(t);
  const file = join(dir, 'wegate.yaml');
  await writeFile(file, configYaml(a.url));
  const gw = await serve(t, file);
  await writeFile(
    file,
    `${configYaml(a.url)}  - { path: /wx, upstream: "https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=ww1&corpsecret=RELOAD-SECRET-1" }\n` +
      '  - { path: /pw, upstream: "http://admin:RELOAD-PASSWORD-2@10.0.0.1:8080/" }\n',
  );
  gw.proc.kill('SIGHUP');
  await waitFor('invalid reload to be logged', () => gw.lines.some((l) => String(l.msg).includes('new configuration is invalid')));
  const line = gw.lines.find((l) => String(l.msg).includes('new configuration is invalid'));
  t.match(line?.problems, [
    /routes\[1\]\.upstream \(line \d+\): must not contain a query.*corpsecret=\[REDACTED\]/,
    /routes\[2\]\.upstream .*credentials.*\[REDACTED\]@/,
  ]);
  const all = JSON.stringify(gw.lines);
  for (const secret of ['RELOAD-SECRET-1', 'RELOAD-PASSWORD-2']) t.notMatch(all, secret, `${secret} not logged`);
  t.equal((await get(gw.http, '/still')).body, 'A:/still', 'old config still serving');
  gw.proc.kill('SIGTERM');
  t.equal(await gw.exit, 0, 'clean exit');
});
