/**
 * `deliver.mode: queue` in a real `wegate serve` process: callbacks are SIGKILLed mid-burst and the
 * gateway restarted, several times; every callback WeCom got a 200 for reaches the vendor (zero
 * lost), and a callback delivered twice carries the same idempotency key both times. And the CLI verb
 * `wegate wecom queue list|redrive` against the running gateway's admin listener.
 */
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import t from 'tap';
import { CallbackSender } from '../helpers/fake-wecom.ts';
import { waitFor } from '../helpers/gateway.ts';
import { AES_KEY, CORP, SHARED, startVendor, TOKEN, textMessage } from '../wecom/callback/helpers.ts';

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');
const ENV = { ...process.env, CB_TOKEN: TOKEN, CB_AES_KEY: AES_KEY, CB_SHARED: SHARED };

async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function setup(t: Test, vendorUrl: string, adminListen = '127.0.0.1:0', deliver = '') {
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

interface Proc {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly http: number;
  readonly admin: number;
  readonly exited: Promise<number | null>;
  readonly output: () => string;
}

async function serve(t: Test, file: string): Promise<Proc> {
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

const sender = (port: number) =>
  new CallbackSender({
    origin: `http://127.0.0.1:${port}`,
    path: '/wecom/cb',
    token: TOKEN,
    encodingAesKey: AES_KEY,
    receiveId: CORP,
    answerTimeoutMs: 3_000,
    retries: 0,
  });

t.test(
  'wegate serve: every acknowledged queued callback reaches the vendor when the gateway is SIGKILLed mid-burst and restarted',
  async (t) => {
    const vendor = await startVendor(t);
    const file = await setup(t, vendor.url);
    const acked = new Set<string>();
    let unanswered = 0;
    let next = 0;
    const ROUNDS = 3;
    for (let round = 0; round < ROUNDS; round++) {
      const p = await serve(t, file);
      const s = sender(p.http);
      let ackedThisRound = 0;
      let killed = false;
      // Eight WeCom connections sending distinct messages until the kill (bounded: 200 per round).
      const workers = Array.from({ length: 8 }, async () => {
        for (let i = 0; i < 25 && !killed; i++) {
          const id = String(10_000 + next++);
          const a = await s.request('POST', ...post(s, textMessage(id, `burst ${id}`)));
          if (a.status === 200) {
            acked.add(id);
            if (++ackedThisRound === 30) {
              killed = true;
              p.proc.kill('SIGKILL');
            }
          } else unanswered++;
        }
      });
      await Promise.all(workers);
      if (!killed) p.proc.kill('SIGKILL');
      await p.exited;
    }
    // The last start: it drains what the killed ones left in the queue.
    const last = await serve(t, file);
    const delivered = () => new Set(vendor.deliveries.map((d) => String(d.json['msg_id'])));
    await waitFor(() => [...acked].every((id) => delivered().has(id)), 15_000);
    const got = delivered();
    const lost = [...acked].filter((id) => !got.has(id));
    t.same(lost, [], `zero lost of ${acked.size} acknowledged (${unanswered} unanswered, retried by WeCom in real life)`);
    t.ok(acked.size >= ROUNDS * 30, 'each round acknowledged callbacks before its kill');
    const keys = new Map<string, Set<string>>();
    for (const d of vendor.deliveries) {
      const id = String(d.json['msg_id']);
      keys.set(id, (keys.get(id) ?? new Set()).add(String(d.headers['x-wegate-idempotency-key'])));
    }
    t.same(
      [...keys].filter(([, k]) => k.size !== 1).map(([id]) => id),
      [],
      'a message delivered more than once always carried the same idempotency key',
    );
    t.comment(`acknowledged ${acked.size}, deliveries ${vendor.deliveries.length}, distinct ${got.size}, unanswered ${unanswered}`);
    last.proc.kill('SIGTERM');
    t.equal(await last.exited, 0, 'stops cleanly with the worker idle');
  },
);

/** The path+query and body of one POST of `message` (one attempt, no retry: the test counts answers). */
function post(s: CallbackSender, message: string): [string, string] {
  const c = s.encrypt(message);
  return [`/wecom/cb?${s.query(c)}`, s.envelope(c)];
}

const cli = (args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [MAIN, 'wecom', 'queue', ...args], { env: ENV, timeout: 15_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });

t.test('wegate wecom queue: lists the dead letters and re-drives them through the running gateway when asked', async (t) => {
  const vendor = await startVendor(t);
  vendor.behaviour = { status: 500, body: '' };
  const admin = `127.0.0.1:${await freePort()}`;
  const file = await setup(t, vendor.url, admin, ', max_attempts: 2');
  const p = await serve(t, file);
  const s = sender(p.http);
  t.equal((await s.request('POST', ...post(s, textMessage('777', 'secret content')))).status, 200);
  const dead = await waitFor(async () => {
    const r = await cli(['list', '--config', file, '--state', 'dead']);
    return r.stdout.includes('#1 cb text dead') ? r : undefined;
  }, 10_000);
  if (!dead) return t.fail('no dead letter listed');
  t.equal(dead.code, 0);
  t.match(dead.stdout, /^cb: 0 queued \(排队\), oldest 0 s, 1 dead letter\(s\) \(死信\)$/m);
  t.match(dead.stdout, /#1 cb text dead attempts=2 age=\d+s 2 attempts failed, last rejected: status 500/);
  t.notOk(dead.stdout.includes('secret content'), 'no payload content');
  t.equal(vendor.requests, 2);

  vendor.behaviour = { status: 200, body: '' };
  const r = await cli(['redrive', '--config', file, '--id', '1']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^1 dead letter\(s\) re-driven/);
  await waitFor(() => vendor.deliveries.length === 1, 5_000);
  t.equal(vendor.deliveries[0]?.json['msg_id'], '777');
  const empty = await cli(['list', '--config', file]);
  t.equal(empty.stdout, 'queue empty (队列为空)\n', 'delivered: nothing left');

  t.equal((await cli(['redrive', '--config', file])).code, 2, 'redrive needs --app or --id');
  p.proc.kill('SIGTERM');
  t.equal(await p.exited, 0);
  const gone = await cli(['list', '--config', file]);
  t.equal(gone.code, 1, 'no gateway running');
  t.match(gone.stderr, /no answer from the admin listener at http:\/\/127\.0\.0\.1:\d+/);
});
