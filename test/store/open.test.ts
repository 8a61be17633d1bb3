/**
 * Opening the store: a non-SQLite or damaged file, a newer schema, a second user of the directory
 * and a bad key file are clear start-up errors naming the file (English + 简体中文); an older schema
 * is migrated in place; files are private to the wegate user.
 */
import { stat, writeFile, readFile, open as openFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import t from 'tap';
import { GatewayError } from '../../src/core/errors.ts';
import { createStore, StoreOpenError } from '../../src/store/index.ts';
import { SCHEMA_VERSION } from '../../src/store/migrations.ts';
import { captureLogger, openStore, tempDir } from './helpers.ts';

const openError = async (p: Promise<unknown>): Promise<StoreOpenError> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof StoreOpenError)) throw new Error(`expected a StoreOpenError, got ${String(err)}`);
  return err;
};
const cjk = /[\u4e00-\u9fff]/;

t.test('createStore: a file that is not SQLite is a start-up error naming it when state.db holds other bytes', async (t) => {
  const dir = join(await tempDir(t), 'state');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir);
  const file = join(dir, 'state.db');
  await writeFile(file, Buffer.from('this is a YAML file that someone copied here by mistake\n'.repeat(200)));
  const err = await openError(openStore(t, { dir }));
  t.equal(err.code, 'WG_STORE_UNAVAILABLE');
  t.equal(err.file, file);
  t.match(err.message, `state store ${file}: is not a SQLite database or is damaged`);
  t.match(err.message, 'file is not a database (SQLITE_NOTADB)');
  t.match(err.message, cjk, 'bilingual');
  t.equal((await readFile(file)).subarray(0, 7).toString(), 'this is', 'the file is left as it was');
});

t.test('createStore: a damaged database is a start-up error naming it when a page is overwritten', async (t) => {
  const first = await openStore(t);
  for (let i = 0; i < 200; i++)
    await first.store.queue.enqueue('ecard', { idempotencyKey: `k${i}`, eventType: 'text', payload: 'x'.repeat(300) });
  await first.store.close();
  const file = join(first.dir, 'state.db');
  const size = (await stat(file)).size;
  t.ok(size >= 8 * 4096, `the database has several pages (${size} bytes)`);
  const fh = await openFile(file, 'r+');
  await fh.write(Buffer.alloc(4096, 0xa5), 0, 4096, 4 * 4096); // page 5: garbage
  await fh.close();
  const err = await openError(openStore(t, { dir: first.dir }));
  t.equal(err.file, file);
  t.match(err.message, /is (damaged|not a SQLite database or is damaged)/);
  t.match(err.message, 'restore it from a backup');
  t.match(err.message, cjk);
});

t.test('createStore: an older schema is migrated on start when the file is at version 1', async (t) => {
  const dir = join(await tempDir(t), 'state');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(dir);
  // Schema version 1 as the first layout shipped it, written by hand.
  const old = new DatabaseSync(join(dir, 'state.db'));
  old.exec(`
    PRAGMA journal_mode = WAL;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
    CREATE TABLE suite_tickets (suite_id TEXT PRIMARY KEY, ticket TEXT NOT NULL, ts INTEGER NOT NULL, received_at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE permanent_codes (suite_id TEXT NOT NULL, corp_id TEXT NOT NULL, code BLOB, corp_name TEXT, auth_info TEXT,
      status TEXT NOT NULL CHECK (status IN ('active', 'cancelled')), created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
      PRIMARY KEY (suite_id, corp_id)) WITHOUT ROWID;
    CREATE TABLE dedup (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
    CREATE INDEX dedup_expiry ON dedup (expires_at);
    CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, idempotency_key TEXT NOT NULL, event_type TEXT NOT NULL,
      payload BLOB NOT NULL, state TEXT NOT NULL CHECK (state IN ('pending', 'dead')), attempts INTEGER NOT NULL DEFAULT 0,
      next_attempt_at INTEGER NOT NULL, created_at INTEGER NOT NULL, last_error TEXT);
    CREATE INDEX queue_app_state ON queue (app, state, id);
    INSERT INTO suite_tickets VALUES ('dk1', 'OLD-TICKET', 100, 1000);
    INSERT INTO queue (app, idempotency_key, event_type, payload, state, attempts, next_attempt_at, created_at)
      VALUES ('ecard', 'old-1', 'text', X'7B7D', 'pending', 2, 0, 0);
    PRAGMA user_version = 1;
  `);
  old.close();

  const { store, clock } = await openStore(t, { dir });
  t.equal(await store.suiteTickets.get('dk1'), 'OLD-TICKET', 'data kept');
  const head = await store.queue.next('ecard');
  t.match(head, { idempotencyKey: 'old-1', attempts: 2, deadReason: undefined, deadAt: undefined }, 'old row read with the new columns');
  t.equal(await store.queue.deadLetter(head?.id as number, 'too old'), true, 'the new columns are written');
  t.match(await store.queue.list({ state: 'dead' }), [{ deadReason: 'too old', deadAt: clock() }]);
  await store.permanentCodes.put({ suiteId: 'dk1', corpId: 'ww1', permanentCode: 'P' });
  t.equal(await store.permanentCodes.cancel('dk1', 'ww1'), true);
  t.match(await store.permanentCodes.info('dk1', 'ww1'), { cancelledAt: clock() });
  await store.close();
  const check = new DatabaseSync(join(dir, 'state.db'));
  t.equal((check.prepare('PRAGMA user_version').get() as { user_version: number }).user_version, SCHEMA_VERSION, 'at the current version');
  check.close();
});

t.test('createStore: a schema from a newer wegate is refused naming both versions when user_version is higher', async (t) => {
  const first = await openStore(t);
  await first.store.close();
  const db = new DatabaseSync(join(first.dir, 'state.db'));
  db.exec('PRAGMA user_version = 99');
  db.close();
  const err = await openError(openStore(t, { dir: first.dir }));
  t.match(err.message, `was written by a newer wegate (schema 99, this one knows up to ${SCHEMA_VERSION})`);
  t.match(err.message, cjk);
});

t.test('createStore: a second user of one state directory is refused when the first still has it open', async (t) => {
  const first = await openStore(t);
  const err = await openError(openStore(t, { dir: first.dir }));
  t.match(err.message, 'is in use by another process');
  t.match(err.message, cjk);
  t.notOk(
    (await first.store.queue.enqueue('ecard', { idempotencyKey: 'k', eventType: 'text', payload: 'p' })).duplicate,
    'the first keeps working',
  );
});

t.test('createStore: a state.dir that cannot be created is a start-up error naming the file when a parent is a file', async (t) => {
  const base = await tempDir(t);
  await writeFile(join(base, 'plain-file'), 'x');
  const dir = join(base, 'plain-file', 'state');
  const err = await openError(openStore(t, { dir }));
  t.match(err.message, `state store ${join(dir, 'state.db')}: cannot be created or opened for writing (ENOTDIR)`);
});

t.test('createStore: no state section is an error saying what needs it when a feature asks for the store', async (t) => {
  const { logger } = captureLogger();
  const err = await createStore({ config: undefined, neededBy: 'wecom.apps[0].callback', logger, clock: Date.now }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, GatewayError);
  t.match((err as GatewayError).message, 'wecom.apps[0].callback needs the state store: set state.dir');
});

t.test('createStore: a key file of the wrong shape is refused naming it, not showing it, when it is not 32 bytes', async (t) => {
  const base = await tempDir(t);
  const keyFile = join(base, 'state.key');
  await writeFile(keyFile, 'hunter2-not-a-key\n', { mode: 0o600 });
  const err = await openError(openStore(t, { config: { dir: join(base, 'state'), key_file: keyFile } }));
  t.match(err.message, `state key file ${keyFile} must hold 32 random bytes`);
  t.notOk(err.message.includes('hunter2'), 'content hidden');
});

t.test('createStore: the directory is 0700 and the files 0600 when the store creates them', async (t) => {
  const { store, dir } = await openStore(t);
  await store.queue.enqueue('ecard', { idempotencyKey: 'k', eventType: 'text', payload: 'p' });
  t.equal((await stat(dir)).mode & 0o777, 0o700, 'directory');
  for (const f of ['state.db', 'state.db-wal', 'state.key']) t.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f);
});

t.test('createStore: warns about the state directory when other users can enter it, not when it is 0750', async (t) => {
  const { mkdir, chmod } = await import('node:fs/promises');
  const base = await tempDir(t);
  for (const [mode, warned] of [
    [0o750, false],
    [0o755, true],
    [0o770, true],
  ] as const) {
    const dir = join(base, mode.toString(8));
    await mkdir(dir);
    await chmod(dir, mode);
    const { logs } = await openStore(t, { dir });
    t.equal(
      logs.lines.some((l) => l['level'] === 'warn' && /state directory/.test(String(l['msg']))),
      warned,
      `mode ${mode.toString(8)}: ${warned ? 'warned' : 'quiet'}`,
    );
  }
});
