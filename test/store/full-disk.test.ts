/**
 * A full disk, made for real: a 4 MiB tmpfs mounted by the test (the test and CI machines run as
 * root), the state store on it, a filler file taking the rest. The durable write rejects (so WeCom is
 * not acknowledged), health says why, and once the filler is removed writes succeed again — same
 * store, no reopen — and nothing acknowledged before is lost.
 * Read-only: Linux refuses to remount a filesystem read-only while a file on it is open for writing
 * (EBUSY, as the open store holds state.db), so the read-only case is shown at start-up.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { createStore, type StoreHealth } from '../../src/store/index.ts';
import { fillDisk, mountSmallTmpfs } from '../helpers/tmpfs.ts';
import { captureLogger, tempDir } from './helpers.ts';

t.test('store: a durable write rejects on a full disk and succeeds again without reopening when space is freed', async (t) => {
  const mnt = await mountSmallTmpfs(t, 'wegate-store-disk-');
  let close = async () => {};
  t.teardown(() => close());

  const { logger, logs } = captureLogger();
  const changes: StoreHealth[] = [];
  const store = await createStore({
    config: { dir: join(mnt, 'state') },
    logger,
    clock: Date.now,
    onHealthChange: (h) => changes.push(h),
    tuning: { probeIntervalMs: 50 },
  });
  close = () => store.close();
  const item = (key: string, bytes: number) => ({ idempotencyKey: key, eventType: 'text', payload: Buffer.alloc(bytes, 0x61) });

  const acked: number[] = [];
  for (let i = 0; i < 20; i++) {
    const r = await store.queue.enqueue('ecard', item(`before-${i}`, 2000));
    if (!r.duplicate) acked.push(r.id);
  }

  const filler = join(mnt, 'filler');
  await fillDisk(filler);
  const err = await store.queue.enqueue('ecard', item('while-full', 512 * 1024)).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(err, { code: 'WG_STORE_UNAVAILABLE', status: 503 }, 'the write rejects: nothing to acknowledge');
  t.match((err as Error).message, 'database or disk is full (SQLITE_FULL)');
  t.match(store.health(), { healthy: false, reason: 'database or disk is full (SQLITE_FULL)' }, 'health says why');
  t.equal(store.counters().failedWrites, 1);
  const alert = logs.lines.find((l) => l['level'] === 'error');
  t.match(alert, { error_code: 'SQLITE_FULL', msg: /cannot write; callbacks are not acknowledged/ }, 'one error line');
  await t.rejects(
    store.queue.enqueue('ecard', item('still-full', 512 * 1024)),
    { code: 'WG_STORE_UNAVAILABLE' },
    'still full: still rejected',
  );

  await rm(filler);
  // The probe (every 50 ms) notices by itself; no write of ours in between.
  const deadline = Date.now() + 5000;
  while (!store.health().healthy && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.equal(store.health().healthy, true, 'healthy again without a restart');
  const after = await store.queue.enqueue('ecard', item('after', 512 * 1024));
  t.equal(after.duplicate, false, 'the large write succeeds on the same open store');
  t.same(
    changes.map((h) => h.healthy),
    [false, true],
    'one alert, one recovery',
  );
  t.ok(
    logs.lines.some((l) => l['level'] === 'warn' && /writes work again/.test(String(l['msg']))),
    'recovery logged',
  );

  for (const id of acked) t.ok(await store.queue.get(id), `acknowledged item ${id} kept`);
  t.match(await store.queue.stats(), [{ app: 'ecard', depth: acked.length + 1 }], 'nothing else was stored');
});

t.test('createStore: a read-only filesystem is a start-up error naming the file when state.dir is mounted read-only', async (t) => {
  const base = await tempDir(t);
  const mnt = join(base, 'mnt');
  await mkdir(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mnt]);
  t.teardown(() => execFileSync('umount', [mnt]));
  const { logger } = captureLogger();
  const config = { dir: join(mnt, 'state') };
  const first = await createStore({ config, logger, clock: Date.now });
  await first.queue.enqueue('ecard', { idempotencyKey: 'k', eventType: 'text', payload: 'p' });
  await first.close();
  // A remount needs no file open for writing (Linux refuses it with EBUSY otherwise): the store is closed.
  execFileSync('mount', ['-o', 'remount,ro', mnt]);
  const err = await createStore({ config, logger, clock: Date.now }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.match(err, { code: 'WG_STORE_UNAVAILABLE', file: join(mnt, 'state', 'state.db') });
  t.match((err as Error).message, 'cannot be created or opened for writing (EROFS)');
  t.match((err as Error).message, /[\u4e00-\u9fff]/);
});
