/**
 * Nothing acknowledged is lost: a child process enqueues a burst and prints each id once its
 * enqueue resolved; it is SIGKILLed mid-burst, the store is reopened, and every printed id must be
 * there. Group commit: concurrent writes share transactions and are all durable.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import { openStore, tempDir } from './helpers.ts';

const CHILD = join(import.meta.dirname, 'burst-child.ts');

/** Run the child until it printed `killAfter` acknowledged ids, SIGKILL it, return what it printed. */
function burstAndKill(dir: string, tag: string, killAfter: number): Promise<{ acked: Map<number, string>; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, '5000', '32', tag], { stdio: ['ignore', 'pipe', 'inherit'] });
    const acked = new Map<number, string>();
    let buf = '';
    let killed = false;
    const guard = setTimeout(() => child.kill('SIGKILL'), 15_000); // a stuck child never outlives the test
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const [id, key] = line.split(' ');
        if (key !== undefined) acked.set(Number(id), key);
      }
      if (!killed && acked.size >= killAfter) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('close', (_code, signal) => {
      clearTimeout(guard);
      // Lines already in the pipe when the signal landed were printed after their enqueue resolved too.
      for (const line of buf.split('\n')) {
        const [id, key] = line.split(' ');
        if (key !== undefined) acked.set(Number(id), key);
      }
      resolve({ acked, signal });
    });
  });
}

t.test('store: every acknowledged enqueue survives when the process is SIGKILLed mid-burst, repeatedly', async (t) => {
  const dir = join(await tempDir(t), 'state');
  const all = new Map<number, string>();
  const killPoints = [1, 37, 150, 260, 420];
  for (const [round, killAfter] of killPoints.entries()) {
    const { acked, signal } = await burstAndKill(dir, `r${round}`, killAfter);
    t.equal(signal, 'SIGKILL', `round ${round}: killed, not finished`);
    t.ok(acked.size >= killAfter, `round ${round}: ${acked.size} acknowledged before the kill`);
    for (const [id, key] of acked) all.set(id, key);

    const { store } = await openStore(t, { dir });
    let lost = 0;
    for (const [id, key] of all) {
      const got = await store.queue.get(id);
      if (got?.idempotencyKey !== key || JSON.parse(got.payload.toString()).key !== key) lost++;
    }
    t.equal(lost, 0, `round ${round}: none of the ${all.size} acknowledged items lost`);
    await store.close();
  }
});

t.test('store: concurrent enqueues share transactions and are all durable when issued together', async (t) => {
  const { store, dir, clock } = await openStore(t);
  const n = 200;
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) => store.queue.enqueue('ecard', { idempotencyKey: `k${i}`, eventType: 'text', payload: `p${i}` })),
  );
  const c = store.counters();
  t.equal(c.writes, n, 'every write committed');
  t.ok(c.transactions < n, `${c.transactions} transactions for ${n} writes`);
  t.equal(c.transactions, 1, 'writes of one event-loop turn share one transaction');

  // Writes issued while a batch is pending join it; writes issued from its completions form the next.
  const second = results
    .slice(0, 10)
    .map((r, i) => store.queue.enqueue('ecard', { idempotencyKey: `again${i}`, eventType: 'text', payload: String(r.duplicate) }));
  await Promise.all(second);
  t.equal(store.counters().transactions, 2);
  await store.close();

  const again = await openStore(t, { dir, clock });
  const ids = results.map((r) => (r.duplicate ? -1 : r.id));
  t.equal(new Set(ids).size, n, 'distinct ids');
  const stats = await again.store.queue.stats();
  t.match(stats, [{ app: 'ecard', depth: n + 10 }], 'all durable after reopen');
});

t.test('store: a burst larger than one batch is split into bounded transactions when 1200 writes arrive at once', async (t) => {
  const { store } = await openStore(t);
  const results = await Promise.all(Array.from({ length: 1200 }, (_, i) => store.dedup.claim(`burst-${i}`, 60_000)));
  t.equal(results.filter(Boolean).length, 1200, 'all claimed');
  t.same(store.counters(), { transactions: 3, writes: 1200, failedWrites: 0, purgedKeys: 0 }, '512 + 512 + 176');
});
