/**
 * The store's AuthCodes (create_auth / reset_permanent_code) against a real SQLite file: one row per
 * code (WeCom's retries of an event are one), sealed at rest, pending across a reopen, completed
 * together with the permanent code, given up with the code forgotten.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { openStore } from './helpers.ts';

const CODE = 'auth-code-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const PERMANENT = 'permanent-0123456789abcdefghijklmnopqrstuvwxyz';

t.test('authCodes: one row per code of a suite when WeCom sends the same create_auth again', async (t) => {
  const { store } = await openStore(t);
  const a = await store.authCodes.add({ suiteId: 'dk1', infoType: 'create_auth', authCode: CODE });
  const b = await store.authCodes.add({ suiteId: 'dk1', infoType: 'create_auth', authCode: CODE });
  const other = await store.authCodes.add({ suiteId: 'dk2', infoType: 'create_auth', authCode: CODE });
  t.same([a.duplicate, b.duplicate, other.duplicate], [false, true, false]);
  t.equal(b.id, a.id, 'the retry names the first row');
  t.same(
    (await store.authCodes.pending()).map((p) => [p.suiteId, p.authCode, p.state]),
    [
      ['dk1', CODE, 'pending'],
      ['dk2', CODE, 'pending'],
    ],
  );
});

t.test('authCodes: sealed at rest and still pending after a reopen when the process stopped before the exchange', async (t) => {
  const first = await openStore(t);
  const { id } = await first.store.authCodes.add({ suiteId: 'dk1', infoType: 'reset_permanent_code', authCode: CODE });
  await first.store.authCodes.retry(id, first.clock() + 5_000, 'WeCom busy (-1)');
  await first.store.close();
  const bytes = Buffer.concat(
    await Promise.all(['state.db', 'state.db-wal'].map((f) => readFile(join(first.dir, f)).catch(() => Buffer.alloc(0)))),
  ).toString('latin1');
  t.ok(bytes.includes('reset_permanent_code'), 'the row is in the file');
  t.notOk(bytes.includes(CODE), 'the AuthCode is not in the file in clear');
  const again = await openStore(t, { dir: first.dir, clock: first.clock });
  t.match(await again.store.authCodes.pending(), [
    { id, authCode: CODE, attempts: 1, nextAttemptAt: first.clock() + 5_000, lastError: 'WeCom busy (-1)' },
  ]);
});

t.test('authCodes: complete stores the permanent code and closes the row when the exchange succeeds', async (t) => {
  const { store } = await openStore(t);
  const { id } = await store.authCodes.add({ suiteId: 'dk1', infoType: 'create_auth', authCode: CODE });
  await store.authCodes.complete(id, { suiteId: 'dk1', corpId: 'wwcorp', corpName: 'School', permanentCode: PERMANENT });
  t.equal(await store.permanentCodes.get('dk1', 'wwcorp'), PERMANENT);
  t.same(await store.authCodes.pending(), [], 'nothing left to exchange');
  t.match(await store.authCodes.list(), [{ id, state: 'done', corpId: 'wwcorp', attempts: 1, finishedAt: Number }]);
  t.notOk('authCode' in ((await store.authCodes.list())[0] ?? {}), 'the listing carries no code');
});

t.test('authCodes: giveUp forgets the code and keeps the reason when WeCom refused it', async (t) => {
  const { store } = await openStore(t);
  const { id } = await store.authCodes.add({ suiteId: 'dk1', infoType: 'create_auth', authCode: CODE });
  await store.authCodes.giveUp(id, 'WeCom refused the AuthCode: 40029');
  t.same(await store.authCodes.pending(), []);
  t.match(await store.authCodes.list(), [{ id, state: 'failed', lastError: 'WeCom refused the AuthCode: 40029' }]);
  const again = await store.authCodes.add({ suiteId: 'dk1', infoType: 'create_auth', authCode: CODE });
  t.same(again, { duplicate: true, id }, 'a late retry of the refused event is not tried again');
});
