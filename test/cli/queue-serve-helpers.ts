/** A real `wegate serve` process with one queue-mode callback (test/cli/serve-queue, wecom-queue). */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { CallbackSender } from '../helpers/fake-wecom.ts';
import { waitFor } from '../helpers/gateway.ts';
import { AES_KEY, CORP, SHARED, TOKEN } from '../wecom/callback/helpers.ts';

export const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');
export const ENV = { ...process.env, CB_TOKEN: TOKEN, CB_AES_KEY: AES_KEY, CB_SHARED: SHARED };

export async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

export async function setup(t: Test, vendorUrl: string, adminListen = '127.0.0.1:0', deliver = '') {
  const dir = await mkdtemp(join(tmpdir(), 'wegate-serve-queue-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'wegate.yaml');
  writeFileSync(
    file,
    `listen: { http: "127.0.0.1:0" }
admin: { listen: "${adminListen}" }
reload: { watch_config: false }
state: { dir: ${JSON.stringify(join(dir, 'state'))} }
wecom:
  callbacks:
    - name: cb
      path: /wecom/cb
      receive_ids: [${CORP}]
      token: { env: CB_TOKEN }
      encoding_aes_key: { env: CB_AES_KEY }
      deliver: { mode: queue, url: "${vendorUrl}", secret: { env: CB_SHARED }, backoff_base_ms: 20, backoff_max_ms: 100${deliver} }
routes:
  - upstream: "http://127.0.0.1:1"
`,
  );
  mkdirSync(join(dir, 'state'), { mode: 0o700 });
  return file;
}

export interface Proc {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly http: number;
  readonly admin: number;
  readonly exited: Promise<number | null>;
  readonly output: () => string;
}

export async function serve(t: Test, file: string): Promise<Proc> {
  const proc = spawn(process.execPath, [MAIN, 'serve', '--config', file], { env: ENV, timeout: 30_000, killSignal: 'SIGKILL' });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const line = await waitFor(
    () => out.split('\n').find((l) => l.includes('"wegate started"')) ?? (proc.exitCode !== null ? 'exit' : ''),
    15_000,
  );
  if (!line || line === 'exit') throw new Error(`wegate did not start: ${out}`);
  const listen = (JSON.parse(line) as { listen: { http: { port: number }; admin: { port: number } } }).listen;
  return { proc, http: listen.http.port, admin: listen.admin.port, exited, output: () => out };
}

export const sender = (port: number) =>
  new CallbackSender({
    origin: `http://127.0.0.1:${port}`,
    path: '/wecom/cb',
    token: TOKEN,
    encodingAesKey: AES_KEY,
    receiveId: CORP,
    answerTimeoutMs: 3_000,
    retries: 0,
  });

/** The path+query and body of one POST of `message` (one attempt, no retry: the test counts answers). */
export function post(s: CallbackSender, message: string): [string, string] {
  const c = s.encrypt(message);
  return [`/wecom/cb?${s.query(c)}`, s.envelope(c)];
}
