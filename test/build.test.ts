/**
 * The production artifact: `npm run build` output (compiled JavaScript) started the way systemd,
 * Docker and `npm start` start it. Built into a temporary directory, so the test never depends on
 * (or disturbs) a local dist/.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { PRODUCTION_ENTRY, PRODUCTION_NODE_FLAGS } from './bench/production.ts';

const ROOT = join(import.meta.dirname, '..');

t.test(
  'build: the compiled CLI checks the example config and serves, then stops on SIGTERM, when built with tsconfig.build.json',
  async (t) => {
    const out = await mkdtemp(join(tmpdir(), 'wegate-build-'));
    t.teardown(() => rm(out, { recursive: true, force: true }));
    const tsc = spawnSync(
      process.execPath,
      [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', out],
      {
        cwd: ROOT,
        encoding: 'utf8',
      },
    );
    t.equal(tsc.status, 0, `tsc succeeded ${tsc.stdout}${tsc.stderr}`);
    // PRODUCTION_ENTRY is relative to the repository root, i.e. dist/…: the same path under `out`.
    const main = join(out, PRODUCTION_ENTRY.replace(/^dist\//, ''));
    // The compiled tree finds node_modules one level up, as /opt/wegate/dist does in /opt/wegate.
    await symlink(join(ROOT, 'node_modules'), join(out, 'node_modules'), 'dir');
    const env = process.env;

    const check = spawnSync(
      process.execPath,
      [...PRODUCTION_NODE_FLAGS, main, 'check', '--config', join(ROOT, 'config/wegate.example.yaml')],
      {
        encoding: 'utf8',
        env,
      },
    );
    t.equal(check.status, 0, check.stderr);
    t.match(check.stdout, 'configuration is valid');

    const conf = join(out, 'wegate.yaml');
    await writeFile(
      conf,
      'listen:\n  http: "127.0.0.1:0"\nadmin:\n  listen: "127.0.0.1:0"\nreload:\n  watch_config: false\nroutes:\n  - name: main\n    upstream: "http://127.0.0.1:9"\n',
    );
    const proc = spawn(process.execPath, [...PRODUCTION_NODE_FLAGS, main, 'serve', '--config', conf], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    t.teardown(() => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    const admin = await new Promise<AddressInfo>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`compiled wegate did not start in 15 s: ${stderr}`)), 15_000);
      proc.stdout.on('data', (d) => {
        buf += d;
        for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
          const line = JSON.parse(buf.slice(0, i)) as { msg?: string; listen?: { admin: AddressInfo } };
          buf = buf.slice(i + 1);
          if (line.msg === 'wegate started' && line.listen) {
            clearTimeout(timer);
            resolve(line.listen.admin);
          }
        }
      });
      void exited.then((code) => reject(new Error(`compiled wegate exited ${code}: ${stderr}`)));
    });
    const status = await new Promise<number | undefined>((resolve, reject) =>
      get({ host: '127.0.0.1', port: admin.port, path: '/healthz' }, (res) => {
        res.resume();
        resolve(res.statusCode);
      }).on('error', reject),
    );
    t.equal(status, 200, '/healthz answers');
    proc.kill('SIGTERM');
    t.equal(await exited, 0, 'exit 0 after SIGTERM');
  },
);
