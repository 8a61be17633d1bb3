/** `wegate wecom queue list|redrive` against a running `wegate serve` (through its admin listener). */
import { execFile } from 'node:child_process';
import t from 'tap';
import { waitFor } from '../helpers/gateway.ts';
import { startVendor, textMessage } from '../wecom/callback/helpers.ts';
import { ENV, freePort, MAIN, post, sender, serve, setup } from './queue-serve-helpers.ts';

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
  // Wait through the admin listener itself (one CLI start costs a second on a loaded machine).
  const deadLettered = await waitFor(async () => {
    const r = await fetch(`http://${admin}/callbacks/queue?state=dead`);
    return ((await r.json()) as { items: unknown[] }).items.length === 1;
  }, 10_000);
  t.ok(deadLettered, 'dead-lettered after max_attempts');
  const dead = await cli(['list', '--config', file, '--state', 'dead']);
  t.equal(dead.code, 0, dead.stderr);
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
