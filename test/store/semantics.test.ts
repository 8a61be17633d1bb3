/**
 * The state store's methods against a real SQLite file: suite tickets (newest wins), permanent codes
 * (sealed at rest, cancel forgets the code), de-duplication keys (atomic claim, expiry, bounded
 * purge) and the callback queue (order per app, one in flight, backoff, dead letters, redrive).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { GatewayError } from '../../src/core/errors.ts';
import { openStore, tempDir } from './helpers.ts';

t.test('suiteTickets: the newest by TimeStamp is kept when tickets arrive out of order', async (t) => {
  const { store, clock } = await openStore(t);
  const cases: { name: string; ticket: string; ts: number; stored: boolean; expect: string }[] = [
    { name: 'first ticket', ticket: 'T100', ts: 100, stored: true, expect: 'T100' },
    { name: 'newer ticket', ticket: 'T200', ts: 200, stored: true, expect: 'T200' },
    { name: 'older one arriving late', ticket: 'T150', ts: 150, stored: false, expect: 'T200' },
    { name: 'same TimeStamp again (a WeCom retry)', ticket: 'T200', ts: 200, stored: true, expect: 'T200' },
    { name: 'much older one', ticket: 'T1', ts: 1, stored: false, expect: 'T200' },
    { name: 'newest', ticket: 'T300', ts: 300, stored: true, expect: 'T300' },
  ];
  for (const c of cases) {
    t.equal(await store.suiteTickets.put('dk-suite', c.ticket, c.ts), c.stored, `${c.name}: stored`);
    t.equal(await store.suiteTickets.get('dk-suite'), c.expect, `${c.name}: latest`);
  }
  clock.advance(90_000);
  const latest = await store.suiteTickets.latest('dk-suite');
  t.match(latest, { suiteId: 'dk-suite', ticket: 'T300', timestamp: 300, ageMs: 90_000 });
  t.equal(await store.suiteTickets.get('other-suite'), undefined, 'another suite has none');
  t.equal(await store.suiteTickets.latest('other-suite'), undefined);
  await t.rejects(store.suiteTickets.put('dk-suite', 'T', -1), RangeError, 'a negative TimeStamp is refused');
});

t.test('suiteTickets: the ticket survives a reopen when the store is closed and opened again', async (t) => {
  const first = await openStore(t);
  await first.store.suiteTickets.put('ww-suite', 'TICKET-A', 1_700_000_000);
  await first.store.close();
  const again = await openStore(t, { dir: first.dir });
  t.equal(await again.store.suiteTickets.get('ww-suite'), 'TICKET-A');
});

t.test('permanentCodes: put, get, update, cancel and list when a corp authorises and leaves', async (t) => {
  const { store, clock } = await openStore(t);
  t.equal(await store.permanentCodes.get('dk1', 'wwcorp'), undefined, 'unknown before create_auth');
  await store.permanentCodes.put({
    suiteId: 'dk1',
    corpId: 'wwcorp',
    permanentCode: 'PERM-1',
    corpName: 'No. 1 School',
    authInfo: { agent: [{ agentid: 1000002 }] },
  });
  t.equal(await store.permanentCodes.get('dk1', 'wwcorp'), 'PERM-1');
  t.equal(await store.permanentCodes.get('dk1', 'wwother'), undefined, 'per corp');
  t.equal(await store.permanentCodes.get('dk2', 'wwcorp'), undefined, 'per suite');

  clock.advance(1000);
  await store.permanentCodes.put({ suiteId: 'dk1', corpId: 'wwcorp', permanentCode: 'PERM-2' }); // reset_permanent_code
  t.equal(await store.permanentCodes.get('dk1', 'wwcorp'), 'PERM-2', 'reset replaces the code');
  t.match(
    await store.permanentCodes.info('dk1', 'wwcorp'),
    { corpName: 'No. 1 School', authInfo: { agent: [{ agentid: 1000002 }] } },
    'info kept when the reset omits it',
  );

  t.equal(await store.permanentCodes.update({ suiteId: 'dk1', corpId: 'wwcorp', corpName: 'No. 1 Middle School' }), true, 'change_auth');
  t.equal(await store.permanentCodes.update({ suiteId: 'dk1', corpId: 'nobody' }), false, 'change_auth of an unknown corp');
  t.equal(await store.permanentCodes.get('dk1', 'wwcorp'), 'PERM-2', 'change_auth keeps the code');

  clock.advance(1000);
  t.equal(await store.permanentCodes.cancel('dk1', 'wwcorp'), true, 'cancel_auth');
  t.equal(await store.permanentCodes.cancel('dk1', 'nobody'), false);
  t.equal(await store.permanentCodes.get('dk1', 'wwcorp'), undefined, 'the code is forgotten');
  const info = await store.permanentCodes.info('dk1', 'wwcorp');
  t.match(info, { status: 'cancelled', corpName: 'No. 1 Middle School', cancelledAt: clock() }, 'the audit row stays');
  t.notOk(JSON.stringify(info).includes('PERM'), 'info never carries the code');

  await store.permanentCodes.put({ suiteId: 'dk1', corpId: 'wwcorp', permanentCode: 'PERM-3' });
  t.match(await store.permanentCodes.info('dk1', 'wwcorp'), { status: 'active', cancelledAt: undefined }, 'authorised again');
  await store.permanentCodes.put({ suiteId: 'ww-suite', corpId: 'wwa', permanentCode: 'PERM-X' });
  t.same(
    (await store.permanentCodes.list()).map((r) => `${r.suiteId}/${r.corpId}`),
    ['dk1/wwcorp', 'ww-suite/wwa'],
  );
  t.same(
    (await store.permanentCodes.list('ww-suite')).map((r) => r.corpId),
    ['wwa'],
  );
});

t.test('permanentCodes: the code is sealed at rest when it is stored', async (t) => {
  const { store, dir, logs } = await openStore(t);
  const code = 'PERMANENT-CODE-7f3a9c1e5b';
  await store.permanentCodes.put({ suiteId: 'dk1', corpId: 'wwcorp', permanentCode: code });
  await store.close();
  for (const f of ['state.db', 'state.db-wal']) {
    const bytes = await readFile(join(dir, f)).catch(() => Buffer.alloc(0));
    t.equal(bytes.indexOf(code), -1, `${f} does not hold the code in clear`);
  }
  const again = await openStore(t, { dir });
  t.equal(await again.store.permanentCodes.get('dk1', 'wwcorp'), code, 'readable with the key file');
  t.notOk(logs.text().includes(code) || again.logs.text().includes(code), 'no log line holds the code');
  t.ok(logs.lines.length > 0, 'the store did log (opened)');
});

t.test('createStore: refuses a different key file naming it when the store was sealed with another key', async (t) => {
  const base = await tempDir(t);
  const dir = join(base, 'state');
  const first = await openStore(t, { dir });
  await first.store.permanentCodes.put({ suiteId: 'dk1', corpId: 'wwcorp', permanentCode: 'SECRET-CODE' });
  await first.store.close();
  const keyFile = join(base, 'other.key');
  const { writeFile } = await import('node:fs/promises');
  await writeFile(keyFile, `${'ab'.repeat(32)}\n`, { mode: 0o600 });
  const err = await openStore(t, { dir, config: { dir, key_file: keyFile } }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, GatewayError);
  t.match((err as GatewayError).code, 'WG_STORE_UNAVAILABLE');
  t.match((err as Error).message, `${keyFile} is not the key this store was written with`);
  t.match((err as Error).message, '密钥文件');
  t.notOk((err as Error).message.includes('abab'), 'the key is not in the message');
});

t.test('dedup.claim: true only the first time while the claim lives, again after it expired', async (t) => {
  const { store, clock } = await openStore(t);
  t.equal(await store.dedup.claim('msg:1', 1000), true, 'first');
  t.equal(await store.dedup.claim('msg:1', 1000), false, 'second');
  t.equal(await store.dedup.claim('msg:2', 1000), true, 'another key');
  clock.advance(999);
  t.equal(await store.dedup.claim('msg:1', 1000), false, 'still live 1 ms before expiry');
  clock.advance(1);
  t.equal(await store.dedup.claim('msg:1', 1000), true, 'claimable again once expired');
  t.equal(await store.dedup.claim('msg:1', 1000), false);
  await store.dedup.release('msg:1');
  t.equal(await store.dedup.claim('msg:1', 1000), true, 'claimable again after release');
  await t.rejects(store.dedup.claim('', 1000), RangeError);
  await t.rejects(store.dedup.claim('k', 0), RangeError);
});

t.test('dedup.claim: exactly one of concurrent claims of one key wins when they share a transaction', async (t) => {
  const { store } = await openStore(t);
  const results = await Promise.all(Array.from({ length: 20 }, () => store.dedup.claim('event:change_contact:abc', 60_000)));
  t.equal(results.filter(Boolean).length, 1);
  t.equal(store.counters().transactions, 1, 'one transaction');
});

t.test('dedup purge: expired keys are removed in bounded batches when the timer runs', async (t) => {
  const { store, clock } = await openStore(t, { tuning: { purgeIntervalMs: 20, purgeBatch: 7 } });
  await Promise.all(Array.from({ length: 30 }, (_, i) => store.dedup.claim(`k${i}`, i < 25 ? 1000 : 10_000_000)));
  clock.advance(5000);
  // 25 expired keys at 7 per transaction: 4 purge transactions.
  const deadline = Date.now() + 5000;
  while (store.counters().purgedKeys < 25 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.equal(store.counters().purgedKeys, 25, 'every expired key purged, the live ones kept');
  t.equal(await store.dedup.claim('k29', 1000), false, 'a live key is still claimed');
  t.equal(await store.dedup.claim('k0', 1000), true, 'an expired key is free');
});

const item = (n: number, extra: object = {}) => ({
  idempotencyKey: `idem-${n}`,
  eventType: 'text',
  payload: JSON.stringify({ n }),
  ...extra,
});

t.test('queue: items of an app are leased one at a time in order when each is acked', async (t) => {
  const { store } = await openStore(t);
  const ids: number[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await store.queue.enqueue('ecard', item(i));
    if (!r.duplicate) ids.push(r.id);
  }
  await store.queue.enqueue('library', item(100));
  const seen: number[] = [];
  for (;;) {
    const a = await store.queue.next('ecard');
    if (a === undefined) break;
    t.equal(await store.queue.next('ecard'), undefined, 'nothing else while one is in flight');
    t.equal(JSON.parse(a.payload.toString()).n, seen.length, 'payload round-trips');
    t.equal(a.idempotencyKey, `idem-${seen.length}`);
    seen.push(a.id);
    t.equal(await store.queue.ack(a.id), true);
  }
  t.same(seen, ids, 'in enqueue order');
  t.equal(await store.queue.ack(ids[0] as number), false, 'a second ack finds nothing');
  const other = await store.queue.next('library');
  t.equal(other?.idempotencyKey, 'idem-100', 'apps are independent');
});

t.test('queue: a failed head blocks its app until due, then is retried with its attempt count', async (t) => {
  const { store, clock } = await openStore(t);
  await store.queue.enqueue('ecard', item(1));
  await store.queue.enqueue('ecard', item(2));
  const head = await store.queue.next('ecard');
  t.ok(head);
  const id = head?.id as number;
  t.equal(await store.queue.fail(id, clock() + 5000, 'upstream answered 503'), 1, 'attempt 1');
  t.equal(await store.queue.next('ecard'), undefined, 'head not due: nothing (order kept)');
  t.match(await store.queue.stats(), [{ app: 'ecard', depth: 2, headDueAt: clock() + 5000 }]);
  clock.advance(5000);
  const again = await store.queue.next('ecard');
  t.match(again, { id, attempts: 1, lastError: 'upstream answered 503' }, 'the same head, once due');
  t.equal(await store.queue.fail(id, clock() + 10, 'timeout'), 2, 'attempt 2');
  t.equal(await store.queue.fail(987654, clock(), 'x'), undefined, 'unknown id');
});

t.test('queue: dead letters are skipped, listed and re-driven when delivery gives up', async (t) => {
  const { store, clock } = await openStore(t);
  const r1 = await store.queue.enqueue('ecard', item(1));
  await store.queue.enqueue('ecard', item(2));
  const head = await store.queue.next('ecard');
  t.equal(await store.queue.deadLetter(head?.id as number, 'attempts exhausted (8)'), true);
  const second = await store.queue.next('ecard');
  t.equal(second?.idempotencyKey, 'idem-2', 'the next item is delivered past the dead letter');
  t.match(await store.queue.list({ app: 'ecard', state: 'dead' }), [
    { idempotencyKey: 'idem-1', state: 'dead', deadReason: 'attempts exhausted (8)', deadAt: clock(), inFlight: false },
  ]);
  t.match(await store.queue.list({ app: 'ecard', state: 'pending' }), [{ idempotencyKey: 'idem-2', inFlight: true }]);
  t.equal((await store.queue.list()).length, 2, 'unfiltered');
  t.equal((await store.queue.list({ limit: 1 })).length, 1, 'limit');
  t.match(await store.queue.stats(), [{ app: 'ecard', depth: 1, dead: 1 }]);
  await store.queue.ack(second?.id as number);
  if (r1.duplicate) throw new Error('unexpected');
  t.equal(await store.queue.redrive({ id: r1.id }), 1, 'redrive one');
  t.equal(await store.queue.redrive({ id: r1.id }), 0, 'only dead letters are re-driven');
  const redriven = await store.queue.next('ecard');
  t.match(redriven, { id: r1.id, attempts: 0, state: 'pending', deadReason: undefined });
  await store.queue.deadLetter(r1.id, 'again');
  await store.queue.enqueue('ecard', item(3));
  const h3 = await store.queue.next('ecard');
  await store.queue.deadLetter(h3?.id as number, 'again');
  t.equal(await store.queue.redrive({ app: 'ecard' }), 2, 'redrive a whole app');
  t.equal(await store.queue.redrive({ app: 'library' }), 0);
});

t.test('queue: enqueue with a dedup key stores one item when WeCom delivers a message four times', async (t) => {
  const { store } = await openStore(t);
  const dedup = { key: 'ecard:msgid:1234567890', ttlMs: 600_000 };
  const results = await Promise.all([1, 2, 3, 4].map(() => store.queue.enqueue('ecard', item(1, { dedup }))));
  t.equal(results.filter((r) => !r.duplicate).length, 1, 'one stored');
  t.equal(results.filter((r) => r.duplicate).length, 3, 'three duplicates');
  t.equal((await store.queue.list()).length, 1);
  t.equal(await store.dedup.claim(dedup.key, 1000), false, 'the key is claimed');
});

t.test('queue: an oversized payload is refused before anything is written when it exceeds the bound', async (t) => {
  const { store } = await openStore(t, { tuning: { maxPayloadBytes: 1024 } });
  t.notOk((await store.queue.enqueue('ecard', item(1, { payload: Buffer.alloc(1024) }))).duplicate, 'exactly the bound fits');
  const err = await store.queue.enqueue('ecard', item(2, { payload: 'x'.repeat(1025) })).catch((e: unknown) => e);
  t.match(err, { code: 'WG_BODY_TOO_LARGE' });
  await t.rejects(store.queue.enqueue('', item(3)), RangeError, 'an empty app name');
  t.equal((await store.queue.list()).length, 1);
});

t.test('queue: depth and oldest age per app when items wait', async (t) => {
  const { store, clock } = await openStore(t);
  await store.queue.enqueue('a', item(1));
  clock.advance(1000);
  await store.queue.enqueue('a', item(2));
  await store.queue.enqueue('b', item(3));
  clock.advance(500);
  t.same(
    (await store.queue.stats()).map(({ app, depth, oldestAgeMs, dead }) => ({ app, depth, oldestAgeMs, dead })),
    [
      { app: 'a', depth: 2, oldestAgeMs: 1500, dead: 0 },
      { app: 'b', depth: 1, oldestAgeMs: 500, dead: 0 },
    ],
  );
});

t.test('queue: a lease ends with the process when the store is reopened', async (t) => {
  const first = await openStore(t);
  await first.store.queue.enqueue('ecard', item(1));
  const leased = await first.store.queue.next('ecard');
  t.ok(leased);
  await first.store.close();
  const again = await openStore(t, { dir: first.dir, clock: first.clock });
  t.equal((await again.store.queue.next('ecard'))?.id, leased?.id, 'delivered again (at least once)');
});

t.test('store: writes after close reject with WG_STORE_UNAVAILABLE when the store was closed', async (t) => {
  const { store } = await openStore(t);
  const early = Array.from({ length: 600 }, (_, i) => store.queue.enqueue('ecard', item(i)));
  await store.close();
  t.equal((await Promise.all(early)).filter((r) => !r.duplicate).length, 600, 'writes asked for before close are committed (two batches)');
  await t.rejects(store.queue.enqueue('ecard', item(2)), { code: 'WG_STORE_UNAVAILABLE' });
  await t.rejects(store.queue.list(), { code: 'WG_STORE_UNAVAILABLE' });
});
