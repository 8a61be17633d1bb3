/**
 * Durable enqueues per second of the embedded store, run by hand (not part of `npm test`):
 *   npx node test/store/bench.ts [seconds-per-case=3] [dir=os.tmpdir()]
 * Cases, each on a fresh database on the same disk, ~1.5 KB payloads (a callback's JSON + raw XML):
 * - raw-1tx:   node:sqlite alone, same pragmas, one transaction (one fsync) per insert — the ceiling
 *              without group commit;
 * - store-1:   the store, one caller awaiting each enqueue (every batch holds one write);
 * - store-N:   the store, N concurrent callers (as N callbacks in flight), group commit batching.
 * Prints one JSON line per case: acks/s, transactions, writes per transaction, p50/p99 ack latency,
 * and the event loop's longest stall (the fsync runs on the main thread).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DatabaseSync } from 'node:sqlite';
import { createLogger } from '../../src/core/logger.ts';
import { createStore } from '../../src/store/index.ts';

const seconds = Number(process.argv[2] ?? 3);
const root = process.argv[3] ?? tmpdir();
const payload = Buffer.alloc(1500, 0x61);

function pct(sorted: number[], p: number): number {
  return sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] as number);
}

function rawOneTx(): Record<string, unknown> {
  const dir = mkdtempSync(join(root, 'wegate-bench-'));
  try {
    const db = new DatabaseSync(join(dir, 'raw.db'));
    db.exec('PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL');
    db.exec('CREATE TABLE q (id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT, k TEXT, payload BLOB)');
    const ins = db.prepare('INSERT INTO q (app, k, payload) VALUES (?, ?, ?)');
    const begin = db.prepare('BEGIN IMMEDIATE');
    const commit = db.prepare('COMMIT');
    const lat: number[] = [];
    const end = performance.now() + seconds * 1000;
    let n = 0;
    while (performance.now() < end) {
      const t0 = performance.now();
      begin.run();
      ins.run('bench', `k${n}`, payload);
      commit.run();
      lat.push(performance.now() - t0);
      n++;
    }
    db.close();
    lat.sort((a, b) => a - b);
    return {
      case: 'raw-1tx',
      acks_per_s: Math.round(n / seconds),
      transactions: n,
      writes_per_tx: 1,
      p50_ms: +pct(lat, 50).toFixed(2),
      p99_ms: +pct(lat, 99).toFixed(2),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function storeCase(concurrency: number): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(root, 'wegate-bench-'));
  const store = await createStore({ config: { dir: join(dir, 'state') }, logger: createLogger({ level: 'silent' }), clock: Date.now });
  const stall = monitorEventLoopDelay({ resolution: 1 });
  try {
    const lat: number[] = [];
    let n = 0;
    const end = performance.now() + seconds * 1000;
    stall.enable();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < end) {
          const t0 = performance.now();
          await store.queue.enqueue('bench', { idempotencyKey: `k${n}`, eventType: 'text', payload });
          lat.push(performance.now() - t0);
          n++;
        }
      }),
    );
    stall.disable();
    const { transactions, writes } = store.counters();
    lat.sort((a, b) => a - b);
    return {
      case: `store-${concurrency}`,
      acks_per_s: Math.round(n / seconds),
      transactions,
      writes_per_tx: +(writes / transactions).toFixed(1),
      p50_ms: +pct(lat, 50).toFixed(2),
      p99_ms: +pct(lat, 99).toFixed(2),
      loop_stall_max_ms: +(stall.max / 1e6).toFixed(1),
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(JSON.stringify({ node: process.version, dir: root, seconds, payload_bytes: payload.length }));
console.log(JSON.stringify(rawOneTx()));
for (const c of [1, 8, 64, 256]) console.log(JSON.stringify(await storeCase(c)));
