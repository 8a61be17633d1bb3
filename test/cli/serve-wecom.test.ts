/**
 * `wegate serve` as a real process with a `wecom:` section: the app secret comes from the
 * environment (serve did not hand process.env to the gateway, so `secret: { env }` failed at start),
 * WeCom calls leave through the pinned egress profile, the readiness probe runs at start and
 * /diagnostics names the process.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { FakeWecom } from '../helpers/fake-wecom.ts';
import { send, TLS_DIR, waitFor } from '../helpers/gateway.ts';

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');
const CORP = 'wwservecorp0001';
const SECRET = 'serve-app-secret-0123456789abcdefghijklmnop';

t.test(
  'wegate serve: reads the WeCom secret from the environment and probes WeCom from the pinned egress when secret.env is set',
  async (t) => {
    const fake = await FakeWecom.start(t);
    fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.2'] });
    const file = join(t.testdir({}), 'wegate.yaml');
    writeFileSync(
      file,
      `listen: { http: "127.0.0.1:0" }
admin: { listen: "127.0.0.1:0" }
reload: { watch_config: false }
egress:
  wecom: { local_address: 127.0.0.2, expected_ip: 127.0.0.2 }
wecom:
  api_base: "${fake.url}"
  ca_file: ${JSON.stringify(join(TLS_DIR, 'ca.pem'))}
  egress: wecom
  corp_id: ${CORP}
  apps:
    - { name: ecard, secret: { env: WEGATE_ECARD_SECRET } }
routes:
  - upstream: "http://127.0.0.1:1"
`,
    );
    const proc = spawn(process.execPath, [MAIN, 'serve', '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, WEGATE_ECARD_SECRET: SECRET },
      timeout: 20_000,
      killSignal: 'SIGKILL',
    });
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    t.teardown(() => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (err += d));
    const started = await waitFor(
      () => out.split('\n').find((l) => l.includes('"wegate started"')) ?? (proc.exitCode !== null ? 'exit' : ''),
      15_000,
    );
    t.not(started, 'exit', `wegate started: ${err}${out}`);
    t.ok(started, 'wegate started');
    const admin = (JSON.parse(started) as { listen: { admin: AddressInfo } }).listen.admin.port;

    const probed = await waitFor(async () => {
      const d = JSON.parse((await send(admin, '127.0.0.1', { path: '/diagnostics?format=json' })).body) as {
        wegate: { pid: number; version: string };
        wecom: { readiness: { ok: boolean }[] };
      };
      return d.wecom.readiness.length > 0 ? d : undefined;
    }, 10_000);
    t.match(probed, { wegate: { pid: proc.pid, version: /^\d+\.\d+\.\d+/ }, wecom: { readiness: [{ app: 'ecard', ok: true }] } });
    t.same([...new Set(fake.requests.map((r) => r.from))], ['127.0.0.2'], 'WeCom saw the pinned address');
    t.notOk(out.includes(SECRET) || err.includes(SECRET), 'the secret is never logged');

    proc.kill('SIGTERM');
    t.equal(await exited, 0, 'stops cleanly with the probe timer running');
  },
);
