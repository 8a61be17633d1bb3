/**
 * The embedded state store: one SQLite file (`<state.dir>/state.db`) through node:sqlite.
 *
 * Durability: WAL journal with `synchronous=FULL`, so every commit fsyncs the WAL before it returns.
 * NORMAL would survive `kill -9` (the WAL is in the page cache) but not a power cut: the last commits
 * before the cut would be gone although WeCom was acknowledged — so FULL.
 *
 * Group commit: a write does not run at once; it joins the batch of the current event-loop turn and
 * its promise settles after that batch's single COMMIT (one fsync). The batch runs from setImmediate,
 * i.e. after the poll phase, so every callback whose bytes arrived in that turn shares the fsync;
 * while a commit (one fsync) blocks the thread, new requests wait in the
 * kernel and form the next batch. Each write is a SAVEPOINT inside the batch: one write's own error
 * (a constraint) rejects only that write; an I/O error (disk full, read-only, …) rolls the whole batch
 * back and rejects every write in it with WG_STORE_UNAVAILABLE — none of them was acknowledged.
 * node:sqlite is synchronous, so the fsync runs on the main thread and holds it for one fsync per
 * batch (p99 0.7 – 7 ms on this machine's shared disk; `npx node test/store/bench.ts`). A writer in
 * a worker thread would free the thread but costs ≈ 14 MB RSS (measured) against the 150 MB budget;
 * the way out if the stall ever shows in the proxy's p99.
 *
 * The file is opened in EXCLUSIVE locking mode: a second process using the same directory is refused
 * at start (two gateways draining one queue would deliver twice), and WAL needs no -shm file.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, statSync, chmodSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { GatewayError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { StoreOpenError } from './errors.ts';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.ts';
import { createSealer, loadKeyFile, type Sealer } from './sealing.ts';
import { createHash } from 'node:crypto';
import type {
  AuthCodeRecord,
  AuthCodeState,
  AuthCodeStore,
  AuthCorpRecord,
  AuthStatus,
  CallbackQueue,
  DedupStore,
  EnqueueResult,
  PendingAuthCode,
  PermanentCodeStore,
  QueueAppStats,
  QueueEntry,
  QueueItem,
  QueueListQuery,
  QueueState,
  StateStore,
  StoreCounters,
  StoreHealth,
  SuiteTicketRecord,
  SuiteTicketStore,
} from './types.ts';

export interface SqliteStoreOptions {
  /** The state directory (created 0700 when missing). */
  readonly dir: string;
  /** Key file sealing the permanent codes; default `<dir>/state.key`, created on first start. */
  readonly keyFile?: string;
  readonly logger: Logger;
  /** Wall clock in ms. */
  readonly clock: () => number;
  readonly randomBytes: (n: number) => Buffer;
  /** Largest queue payload accepted (bytes); default 1 MiB. */
  readonly maxPayloadBytes?: number;
  /** How often expired de-duplication keys are purged; default 60 s. */
  readonly purgeIntervalMs?: number;
  /** Keys deleted per purge transaction (bounded, so a purge never holds the writer long); default 1000. */
  readonly purgeBatch?: number;
  /** While unhealthy, how often a small write checks whether writing works again; default 1 s. */
  readonly probeIntervalMs?: number;
  /** Called when health changes (metrics, alerts). */
  readonly onHealthChange?: (health: StoreHealth) => void;
}

export const DB_FILE = 'state.db';
export const KEY_FILE = 'state.key';
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
const MAX_KEY_CHARS = 512;
const MAX_TEXT_CHARS = 1000;
/** Writes per transaction at most (a burst of 5,000 callers is ten commits, not one long one). */
const MAX_BATCH = 512;

/** Primary SQLite result codes meaning "this database cannot take writes now", not "this write is wrong". */
const UNAVAILABLE_CODES: Readonly<Record<number, string>> = {
  5: 'SQLITE_BUSY',
  6: 'SQLITE_LOCKED',
  7: 'SQLITE_NOMEM',
  8: 'SQLITE_READONLY',
  10: 'SQLITE_IOERR',
  11: 'SQLITE_CORRUPT',
  13: 'SQLITE_FULL',
  14: 'SQLITE_CANTOPEN',
  15: 'SQLITE_PROTOCOL',
  26: 'SQLITE_NOTADB',
};

interface SqliteError extends Error {
  readonly code: string;
  readonly errcode: number;
  readonly errstr: string;
}
const isSqliteError = (e: unknown): e is SqliteError =>
  e instanceof Error && (e as Partial<SqliteError>).code === 'ERR_SQLITE_ERROR' && typeof (e as Partial<SqliteError>).errcode === 'number';
const unavailableName = (e: unknown): string | undefined => (isSqliteError(e) ? UNAVAILABLE_CODES[e.errcode & 0xff] : undefined);
/** SQLite's own text and code name: no value of ours is ever in it. */
const describe = (e: unknown): string =>
  isSqliteError(e)
    ? `${e.errstr} (${UNAVAILABLE_CODES[e.errcode & 0xff] ?? `SQLite error ${e.errcode}`})`
    : e instanceof Error
      ? e.message
      : String(e);

interface Pending {
  readonly run: () => unknown;
  readonly resolve: (v: never) => void;
  readonly reject: (e: unknown) => void;
}

type Row = Record<string, unknown>;
const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v));
const optNum = (v: unknown): number | undefined => (v === null || v === undefined ? undefined : num(v));
const optStr = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const clip = (s: string): string => (s.length > MAX_TEXT_CHARS ? `${s.slice(0, MAX_TEXT_CHARS)}…` : s);

function checkKey(what: string, v: string): void {
  if (typeof v !== 'string' || v.length === 0 || v.length > MAX_KEY_CHARS) {
    throw new RangeError(`${what} must be a string of 1 to ${MAX_KEY_CHARS} characters`);
  }
}

/** Open (create, migrate) the store. Throws StoreOpenError with a clear reason when it cannot. */
export function openSqliteStore(opts: SqliteStoreOptions): StateStore {
  const { logger, clock } = opts;
  const dir = resolve(opts.dir);
  const file = join(dir, DB_FILE);
  const maxPayload = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD;
  const purgeBatch = opts.purgeBatch ?? 1000;

  prepareFiles(dir, file, logger);
  const db = openDatabase(file);
  let sealer: Sealer;
  try {
    migrate(db, file);
    const keyFile = opts.keyFile ?? join(dir, KEY_FILE);
    sealer = openKey(db, file, keyFile, opts.keyFile === undefined, opts.randomBytes, dir, logger);
  } catch (err) {
    db.close();
    throw err;
  }

  // --- statements (prepared once) --------------------------------------------------------------
  const s = (sql: string): StatementSync => db.prepare(sql);
  const begin = s('BEGIN IMMEDIATE');
  const commit = s('COMMIT');
  const rollback = s('ROLLBACK');
  const savepoint = s('SAVEPOINT w');
  const release = s('RELEASE w');
  const rollbackTo = s('ROLLBACK TO w');
  const probeStmt = s("INSERT INTO meta (key, value) VALUES ('probe', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");

  const ticketPut = s(
    `INSERT INTO suite_tickets (suite_id, ticket, ts, received_at) VALUES (?, ?, ?, ?)
     ON CONFLICT (suite_id) DO UPDATE SET ticket = excluded.ticket, ts = excluded.ts, received_at = excluded.received_at
     WHERE excluded.ts >= suite_tickets.ts`,
  );
  const ticketGet = s('SELECT ticket, ts, received_at FROM suite_tickets WHERE suite_id = ?');

  const codePut = s(
    `INSERT INTO permanent_codes (suite_id, corp_id, code, corp_name, auth_info, status, created_at, updated_at, cancelled_at)
     VALUES (?, ?, ?, ?, ?, 'active', ?, ?, NULL)
     ON CONFLICT (suite_id, corp_id) DO UPDATE SET code = excluded.code,
       corp_name = coalesce(excluded.corp_name, permanent_codes.corp_name),
       auth_info = coalesce(excluded.auth_info, permanent_codes.auth_info),
       status = 'active', updated_at = excluded.updated_at, cancelled_at = NULL`,
  );
  const codeUpdate = s(
    `UPDATE permanent_codes SET corp_name = coalesce(?, corp_name), auth_info = coalesce(?, auth_info), updated_at = ?
     WHERE suite_id = ? AND corp_id = ?`,
  );
  const codeCancel = s(
    `UPDATE permanent_codes SET code = NULL, status = 'cancelled', updated_at = ?, cancelled_at = ? WHERE suite_id = ? AND corp_id = ?`,
  );
  const codeGet = s("SELECT code FROM permanent_codes WHERE suite_id = ? AND corp_id = ? AND status = 'active'");
  const codeInfoCols = 'suite_id, corp_id, corp_name, auth_info, status, created_at, updated_at, cancelled_at';
  const codeInfo = s(`SELECT ${codeInfoCols} FROM permanent_codes WHERE suite_id = ? AND corp_id = ?`);
  const codeListAll = s(`SELECT ${codeInfoCols} FROM permanent_codes ORDER BY suite_id, corp_id`);
  const codeListSuite = s(`SELECT ${codeInfoCols} FROM permanent_codes WHERE suite_id = ? ORDER BY corp_id`);

  const acCols = 'id, suite_id, info_type, state, attempts, received_at, next_attempt_at, last_error, corp_id, finished_at';
  const acInsert = s(
    `INSERT INTO auth_codes (digest, suite_id, info_type, code, state, attempts, received_at, next_attempt_at)
     VALUES (?, ?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT (digest) DO NOTHING`,
  );
  const acByDigest = s('SELECT id FROM auth_codes WHERE digest = ?');
  const acPending = s(`SELECT ${acCols}, digest, code FROM auth_codes WHERE state = 'pending' ORDER BY next_attempt_at, id`);
  const acRetry = s(
    "UPDATE auth_codes SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ? AND state = 'pending'",
  );
  const acFinish = s(
    "UPDATE auth_codes SET state = ?, code = NULL, attempts = attempts + 1, last_error = ?, corp_id = ?, finished_at = ? WHERE id = ? AND state = 'pending'",
  );
  const acList = s(`SELECT ${acCols} FROM auth_codes ORDER BY id DESC LIMIT ?`);

  // The WHERE makes the upsert a no-op while a claim is live: changes = 1 exactly when claimed.
  const claimStmt = s(
    `INSERT INTO dedup (key, expires_at) VALUES (?, ?)
     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE dedup.expires_at <= ?`,
  );
  const releaseStmt = s('DELETE FROM dedup WHERE key = ?');
  const purgeStmt = s('DELETE FROM dedup WHERE key IN (SELECT key FROM dedup WHERE expires_at <= ? LIMIT ?)');

  const entryCols =
    'id, app, idempotency_key, event_type, state, attempts, length(payload) AS payload_bytes, created_at, next_attempt_at, last_error, dead_reason, dead_at';
  const qInsert = s(
    `INSERT INTO queue (app, idempotency_key, event_type, payload, state, attempts, next_attempt_at, created_at)
     VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)`,
  );
  const qHead = s(`SELECT ${entryCols}, payload FROM queue WHERE app = ? AND state = 'pending' ORDER BY id LIMIT 1`);
  const qGet = s(`SELECT ${entryCols}, payload FROM queue WHERE id = ?`);
  const qAck = s("DELETE FROM queue WHERE id = ? AND state = 'pending'");
  const qFail = s(
    "UPDATE queue SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ? AND state = 'pending' RETURNING attempts",
  );
  const qDead = s("UPDATE queue SET state = 'dead', dead_reason = ?, dead_at = ? WHERE id = ? AND state = 'pending'");
  const qList = s(
    `SELECT ${entryCols} FROM queue WHERE (:app IS NULL OR app = :app) AND (:state IS NULL OR state = :state) ORDER BY id LIMIT :limit`,
  );
  const redriveCols = "state = 'pending', attempts = 0, next_attempt_at = ?, dead_reason = NULL, dead_at = NULL";
  const qRedriveId = s(`UPDATE queue SET ${redriveCols} WHERE id = ? AND state = 'dead'`);
  const qRedriveApp = s(`UPDATE queue SET ${redriveCols} WHERE app = ? AND state = 'dead'`);
  const qStats = s(
    `SELECT app, sum(state = 'pending') AS depth, min(CASE WHEN state = 'pending' THEN created_at END) AS oldest, sum(state = 'dead') AS dead,
       (SELECT h.next_attempt_at FROM queue h WHERE h.app = q.app AND h.state = 'pending' ORDER BY h.id LIMIT 1) AS head_due
     FROM queue q GROUP BY app ORDER BY app`,
  );

  // --- group commit ------------------------------------------------------------------------------
  let pending: Pending[] = [];
  let scheduled = false;
  let closed = false;
  let transactions = 0;
  let writes = 0;
  let failedWrites = 0;
  let purgedKeys = 0;
  let health: StoreHealth = { healthy: true, reason: undefined, since: clock() };
  let probeTimer: NodeJS.Timeout | undefined;

  const unavailable = (why: string, cause?: unknown) =>
    new GatewayError('WG_STORE_UNAVAILABLE', `state store ${file} cannot write: ${why}`, cause === undefined ? undefined : { cause });

  function write<T>(run: () => T): Promise<T> {
    if (closed) return Promise.reject(unavailable('the store is closed'));
    return new Promise<T>((res, rej) => {
      pending.push({ run, resolve: res as (v: never) => void, reject: rej });
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
  }

  function flush(): void {
    scheduled = false;
    if (pending.length === 0) return;
    let batch = pending;
    pending = [];
    if (batch.length > MAX_BATCH) {
      // Bounded transactions bound the time the thread is held; the rest is the next turn's batch.
      pending = batch.slice(MAX_BATCH);
      batch = batch.slice(0, MAX_BATCH);
      scheduled = true;
      setImmediate(flush);
    }
    const results: unknown[] = new Array(batch.length);
    const failed: boolean[] = new Array(batch.length).fill(false);
    try {
      begin.run();
      for (let i = 0; i < batch.length; i++) {
        savepoint.run();
        try {
          results[i] = (batch[i] as Pending).run();
          release.run();
        } catch (err) {
          if (unavailableName(err) !== undefined) throw err;
          rollbackTo.run();
          release.run();
          results[i] = err;
          failed[i] = true;
        }
      }
      commit.run();
    } catch (err) {
      if (db.isTransaction) {
        try {
          rollback.run();
        } catch {
          // SQLite may have rolled back already (SQLITE_FULL / IOERR do); nothing else to undo.
        }
      }
      failedWrites += batch.length;
      setHealth(false, describe(err), err);
      const e = unavailable(describe(err), err);
      for (const p of batch) p.reject(e);
      return;
    }
    transactions++;
    writes += batch.length;
    if (!health.healthy) setHealth(true, undefined);
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i] as Pending;
      if (failed[i]) p.reject(results[i]);
      else p.resolve(results[i] as never);
    }
  }

  function setHealth(healthy: boolean, reason: string | undefined, err?: unknown): void {
    if (health.healthy === healthy) return;
    health = { healthy, reason, since: clock() };
    if (healthy) {
      clearInterval(probeTimer);
      probeTimer = undefined;
      logger.warn({ store: file }, 'state store: writes work again (状态存储已恢复写入)');
    } else {
      logger.error(
        { store: file, error_code: unavailableName(err), reason },
        'state store: cannot write; callbacks are not acknowledged until it can (disk full or read-only?) (状态存储无法写入，恢复前不会应答企业微信回调：磁盘已满或只读？)',
      );
      probeTimer = setInterval(probe, opts.probeIntervalMs ?? 1_000);
      probeTimer.unref();
    }
    opts.onHealthChange?.(health);
  }

  function probe(): void {
    if (closed || scheduled || pending.length > 0) return;
    write(() => probeStmt.run(clock())).catch(() => {
      // Still unavailable: already logged once and reported by health().
    });
  }

  // Expired de-duplication keys, at most purgeBatch per transaction; again soon while batches are full.
  let purgeTimer: NodeJS.Timeout | undefined;
  function schedulePurge(ms: number): void {
    purgeTimer = setTimeout(purge, ms);
    purgeTimer.unref();
  }
  function purge(): void {
    if (closed) return;
    write(() => Number(purgeStmt.run(clock(), purgeBatch).changes)).then(
      (n) => {
        purgedKeys += n;
        if (!closed) schedulePurge(n >= purgeBatch ? 10 : (opts.purgeIntervalMs ?? 60_000));
      },
      () => {
        if (!closed) schedulePurge(opts.purgeIntervalMs ?? 60_000);
      },
    );
  }
  schedulePurge(opts.purgeIntervalMs ?? 60_000);

  /** Reads answer from committed data; an I/O error is WG_STORE_UNAVAILABLE. */
  function read<T>(run: () => T): Promise<T> {
    if (closed) return Promise.reject(unavailable('the store is closed'));
    try {
      return Promise.resolve(run());
    } catch (err) {
      return Promise.reject(
        unavailableName(err) !== undefined
          ? new GatewayError('WG_STORE_UNAVAILABLE', `state store ${file} cannot read: ${describe(err)}`, { cause: err })
          : err,
      );
    }
  }

  const fail = (err: unknown) => Promise.reject(err);

  // --- suite tickets ------------------------------------------------------------------------------
  const suiteTickets: SuiteTicketStore = {
    put(suiteId, ticket, timestamp) {
      try {
        checkKey('suiteId', suiteId);
        checkKey('ticket', ticket);
        if (!Number.isSafeInteger(timestamp) || timestamp < 0) throw new RangeError('timestamp must be a non-negative integer (seconds)');
      } catch (err) {
        return fail(err);
      }
      const now = clock();
      return write(() => Number(ticketPut.run(suiteId, ticket, timestamp, now).changes) === 1);
    },
    get(suiteId) {
      return read(() => optStr((ticketGet.get(suiteId) as Row | undefined)?.['ticket']));
    },
    latest(suiteId) {
      return read((): SuiteTicketRecord | undefined => {
        const r = ticketGet.get(suiteId) as Row | undefined;
        if (r === undefined) return undefined;
        const receivedAt = num(r['received_at']);
        return { suiteId, ticket: String(r['ticket']), timestamp: num(r['ts']), receivedAt, ageMs: Math.max(0, clock() - receivedAt) };
      });
    },
  };

  // --- permanent codes ------------------------------------------------------------------------------
  const aad = (suiteId: string, corpId: string) => `permanent_code\0${suiteId}\0${corpId}`;
  const infoText = (info: Readonly<Record<string, unknown>> | undefined) => (info === undefined ? null : JSON.stringify(info));
  const toRecord = (r: Row): AuthCorpRecord => {
    const info = optStr(r['auth_info']);
    return {
      suiteId: String(r['suite_id']),
      corpId: String(r['corp_id']),
      corpName: optStr(r['corp_name']),
      status: String(r['status']) as AuthStatus,
      authInfo: info === undefined ? undefined : (JSON.parse(info) as Record<string, unknown>),
      createdAt: num(r['created_at']),
      updatedAt: num(r['updated_at']),
      cancelledAt: optNum(r['cancelled_at']),
    };
  };
  const permanentCodes: PermanentCodeStore = {
    put(input) {
      try {
        checkKey('suiteId', input.suiteId);
        checkKey('corpId', input.corpId);
        checkKey('permanentCode', input.permanentCode);
      } catch (err) {
        return fail(err);
      }
      const now = clock();
      const sealed = sealer.seal(input.permanentCode, aad(input.suiteId, input.corpId));
      const info = infoText(input.authInfo);
      return write(() => {
        codePut.run(input.suiteId, input.corpId, sealed, input.corpName ?? null, info, now, now);
      });
    },
    update(input) {
      const now = clock();
      const info = infoText(input.authInfo);
      return write(() => Number(codeUpdate.run(input.corpName ?? null, info, now, input.suiteId, input.corpId).changes) === 1);
    },
    cancel(suiteId, corpId) {
      const now = clock();
      return write(() => Number(codeCancel.run(now, now, suiteId, corpId).changes) === 1);
    },
    get(suiteId, corpId) {
      return read(() => {
        const r = codeGet.get(suiteId, corpId) as Row | undefined;
        const sealed = r?.['code'];
        if (!(sealed instanceof Uint8Array)) return undefined;
        try {
          return sealer.open(sealed, aad(suiteId, corpId));
        } catch (err) {
          // Tampered row or a different key: say which row, never what it holds.
          throw new GatewayError(
            'WG_STORE_UNAVAILABLE',
            `state store ${file}: the permanent code of suite ${suiteId} / corp ${corpId} cannot be decrypted`,
            {
              cause: err,
            },
          );
        }
      });
    },
    info(suiteId, corpId) {
      return read(() => {
        const r = codeInfo.get(suiteId, corpId) as Row | undefined;
        return r === undefined ? undefined : toRecord(r);
      });
    },
    list(suiteId) {
      return read(() => (suiteId === undefined ? codeListAll.all() : codeListSuite.all(suiteId)).map((r) => toRecord(r as Row)));
    },
  };

  // --- AuthCodes (create_auth / reset_permanent_code) ---------------------------------------------
  const acDigest = (suiteId: string, code: string) => createHash('sha256').update(suiteId).update('\0').update(code).digest('hex');
  const acAad = (digest: string) => `auth_code\0${digest}`;
  const toAuthCode = (r: Row): AuthCodeRecord => ({
    id: num(r['id']),
    suiteId: String(r['suite_id']),
    infoType: String(r['info_type']),
    state: String(r['state']) as AuthCodeState,
    attempts: num(r['attempts']),
    receivedAt: num(r['received_at']),
    nextAttemptAt: num(r['next_attempt_at']),
    lastError: optStr(r['last_error']),
    corpId: optStr(r['corp_id']),
    finishedAt: optNum(r['finished_at']),
  });
  const authCodes: AuthCodeStore = {
    add(input) {
      try {
        checkKey('suiteId', input.suiteId);
        checkKey('infoType', input.infoType);
        checkKey('authCode', input.authCode);
      } catch (err) {
        return fail(err);
      }
      const now = clock();
      const digest = acDigest(input.suiteId, input.authCode);
      const sealed = sealer.seal(input.authCode, acAad(digest));
      return write(() => {
        const r = acInsert.run(digest, input.suiteId, input.infoType, sealed, now, now);
        if (Number(r.changes) === 1) return { duplicate: false, id: Number(r.lastInsertRowid) };
        return { duplicate: true, id: num((acByDigest.get(digest) as Row)['id']) };
      });
    },
    pending() {
      return read(() =>
        acPending.all().map((r): PendingAuthCode => {
          const rec = toAuthCode(r as Row);
          let authCode: string;
          try {
            authCode = sealer.open(r['code'] as Uint8Array, acAad(String(r['digest'])));
          } catch (err) {
            throw new GatewayError('WG_STORE_UNAVAILABLE', `state store ${file}: the AuthCode of row ${rec.id} cannot be decrypted`, {
              cause: err,
            });
          }
          return { ...rec, authCode };
        }),
      );
    },
    retry(id, nextAttemptAt, error) {
      return write(() => {
        acRetry.run(nextAttemptAt, clip(error), id);
      });
    },
    complete(id, grant) {
      try {
        checkKey('suiteId', grant.suiteId);
        checkKey('corpId', grant.corpId);
        checkKey('permanentCode', grant.permanentCode);
      } catch (err) {
        return fail(err);
      }
      const now = clock();
      const sealed = sealer.seal(grant.permanentCode, aad(grant.suiteId, grant.corpId));
      const info = infoText(grant.authInfo);
      // One savepoint: the permanent code is stored exactly when the AuthCode is marked done.
      return write(() => {
        codePut.run(grant.suiteId, grant.corpId, sealed, grant.corpName ?? null, info, now, now);
        acFinish.run('done', null, grant.corpId, now, id);
      });
    },
    giveUp(id, error) {
      const now = clock();
      return write(() => {
        acFinish.run('failed', clip(error), null, now, id);
      });
    },
    list(limit = 100) {
      return read(() => acList.all(Math.max(1, Math.min(1000, Math.trunc(limit)))).map((r) => toAuthCode(r as Row)));
    },
  };

  // --- de-duplication -------------------------------------------------------------------------------
  const dedup: DedupStore = {
    claim(key, ttlMs) {
      try {
        checkKey('key', key);
        if (!Number.isSafeInteger(ttlMs) || ttlMs < 1) throw new RangeError('ttlMs must be a positive integer');
      } catch (err) {
        return fail(err);
      }
      const now = clock();
      return write(() => Number(claimStmt.run(key, now + ttlMs, now).changes) === 1);
    },
    release(key) {
      return write(() => {
        releaseStmt.run(key);
      });
    },
  };

  // --- callback queue --------------------------------------------------------------------------------
  // One item in flight per app; a lease lives in memory only (after a restart nothing is in flight,
  // and the head is delivered again: at-least-once, the idempotency key lets the vendor drop it).
  const leaseByApp = new Map<string, number>();
  const appByLease = new Map<number, string>();
  const endLease = (id: number) => {
    const app = appByLease.get(id);
    if (app === undefined) return;
    appByLease.delete(id);
    if (leaseByApp.get(app) === id) leaseByApp.delete(app);
  };
  const toEntry = (r: Row): QueueEntry => {
    const id = num(r['id']);
    return {
      id,
      app: String(r['app']),
      idempotencyKey: String(r['idempotency_key']),
      eventType: String(r['event_type']),
      state: String(r['state']) as QueueState,
      inFlight: appByLease.has(id),
      attempts: num(r['attempts']),
      payloadBytes: num(r['payload_bytes']),
      createdAt: num(r['created_at']),
      nextAttemptAt: num(r['next_attempt_at']),
      lastError: optStr(r['last_error']),
      deadReason: optStr(r['dead_reason']),
      deadAt: optNum(r['dead_at']),
    };
  };
  const toItem = (r: Row): QueueItem => {
    const p = r['payload'] as Uint8Array;
    return { ...toEntry(r), payload: Buffer.from(p.buffer, p.byteOffset, p.byteLength) };
  };
  /** Settle-then-unlease: the lease holds until the write is durable (or failed), so next() never races it. */
  const leased = <T>(id: number, p: Promise<T>): Promise<T> => p.finally(() => endLease(id));

  const queue: CallbackQueue = {
    enqueue(app, item): Promise<EnqueueResult> {
      let payload: Uint8Array;
      try {
        checkKey('app', app);
        checkKey('idempotencyKey', item.idempotencyKey);
        checkKey('eventType', item.eventType);
        payload = typeof item.payload === 'string' ? Buffer.from(item.payload, 'utf8') : item.payload;
        if (payload.byteLength > maxPayload) {
          throw new GatewayError('WG_BODY_TOO_LARGE', `queue payload of ${payload.byteLength} bytes exceeds the ${maxPayload}-byte limit`);
        }
        if (item.dedup !== undefined) {
          checkKey('dedup.key', item.dedup.key);
          if (!Number.isSafeInteger(item.dedup.ttlMs) || item.dedup.ttlMs < 1)
            throw new RangeError('dedup.ttlMs must be a positive integer');
        }
      } catch (err) {
        return fail(err);
      }
      const now = clock();
      const d = item.dedup;
      return write((): EnqueueResult => {
        if (d !== undefined && Number(claimStmt.run(d.key, now + d.ttlMs, now).changes) === 0) return { duplicate: true };
        const r = qInsert.run(app, item.idempotencyKey, item.eventType, payload, now, now);
        return { duplicate: false, id: Number(r.lastInsertRowid) };
      });
    },
    next(app) {
      return read(() => {
        if (leaseByApp.has(app)) return undefined;
        const r = qHead.get(app) as Row | undefined;
        if (r === undefined || num(r['next_attempt_at']) > clock()) return undefined;
        const item = toItem(r);
        leaseByApp.set(app, item.id);
        appByLease.set(item.id, app);
        return { ...item, inFlight: true };
      });
    },
    ack(id) {
      return leased(
        id,
        write(() => Number(qAck.run(id).changes) === 1),
      );
    },
    fail(id, nextAttemptAt, error) {
      return leased(
        id,
        write(() => optNum((qFail.get(nextAttemptAt, clip(error), id) as Row | undefined)?.['attempts'])),
      );
    },
    deadLetter(id, reason) {
      const now = clock();
      return leased(
        id,
        write(() => Number(qDead.run(clip(reason), now, id).changes) === 1),
      );
    },
    get(id) {
      return read(() => {
        const r = qGet.get(id) as Row | undefined;
        return r === undefined ? undefined : toItem(r);
      });
    },
    list(query: QueueListQuery = {}) {
      const limit = Math.max(1, Math.min(1000, Math.trunc(query.limit ?? 100)));
      return read(() => qList.all({ app: query.app ?? null, state: query.state ?? null, limit }).map((r) => toEntry(r as Row)));
    },
    redrive(target) {
      const now = clock();
      return write(() => Number(('id' in target ? qRedriveId.run(now, target.id) : qRedriveApp.run(now, target.app)).changes));
    },
    stats() {
      return read(() => {
        const now = clock();
        return qStats.all().map((r): QueueAppStats => ({
          app: String(r['app']),
          depth: num(r['depth']),
          oldestAgeMs: r['oldest'] === null ? 0 : Math.max(0, now - num(r['oldest'])),
          dead: num(r['dead']),
          headDueAt: optNum(r['head_due']),
        }));
      });
    },
  };

  logger.info({ store: file, schema: SCHEMA_VERSION }, 'state store opened');

  return {
    kind: 'sqlite',
    location: file,
    suiteTickets,
    permanentCodes,
    authCodes,
    dedup,
    queue,
    health: () => health,
    counters: (): StoreCounters => ({ transactions, writes, failedWrites, purgedKeys }),
    close() {
      if (closed) return Promise.resolve();
      clearTimeout(purgeTimer);
      clearInterval(probeTimer);
      // Writes already asked for are committed (or rejected) before the file is closed.
      while (pending.length > 0) flush();
      closed = true;
      db.close();
      return Promise.resolve();
    },
  };
}

// --- opening ---------------------------------------------------------------------------------------

/** The directory (0700) and an empty database file (0600) so SQLite's WAL inherits 0600. */
function prepareFiles(dir: string, file: string, logger: Logger): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const mode = statSync(dir).mode & 0o777;
    // 0750 (systemd's StateDirectoryMode=, the Docker image) is fine: the files in it are 0600.
    if ((mode & 0o027) !== 0) {
      logger.warn(
        { dir, mode: mode.toString(8) },
        'state directory is writable by its group or open to other users; chmod 700 it (状态目录对其他用户开放或组可写，请 chmod 700)',
      );
    }
    closeSync(openSync(file, 'a', 0o600));
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new StoreOpenError(
      file,
      `cannot be created or opened for writing (${code}); state.dir must be a writable directory of the wegate user`,
      `无法创建或以写方式打开（${code}）；state.dir 必须是 wegate 用户可写的目录`,
      err,
    );
  }
}

function openDatabase(file: string): DatabaseSync {
  let db: DatabaseSync | undefined;
  try {
    db = new DatabaseSync(file, { timeout: 1_000 });
    // EXCLUSIVE before the first access: WAL then keeps its index in memory (no -shm) and the lock
    // is held for the life of the process.
    db.exec('PRAGMA locking_mode = EXCLUSIVE');
    const mode = (db.prepare('PRAGMA journal_mode = WAL').get() as Row | undefined)?.['journal_mode'];
    if (mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, not wal`);
    db.exec('PRAGMA synchronous = FULL; PRAGMA journal_size_limit = 8388608; PRAGMA foreign_keys = ON');
    db.exec('BEGIN EXCLUSIVE; COMMIT'); // take the lock now: a second process fails here, not later
    const check = db.prepare('PRAGMA quick_check(1)').get() as Row | undefined;
    const verdict = check === undefined ? 'no answer' : String(Object.values(check)[0]).replace(/\s+/g, ' ');
    if (verdict !== 'ok') {
      throw new StoreOpenError(
        file,
        `is damaged (integrity check: ${verdict.slice(0, 200)}); restore it from a backup or move it away to start with an empty store`,
        `已损坏（完整性检查：${verdict.slice(0, 200)}）；请从备份恢复，或将其移走后以空存储启动`,
      );
    }
    return db;
  } catch (err) {
    db?.close();
    if (err instanceof StoreOpenError) throw err;
    const primary = isSqliteError(err) ? err.errcode & 0xff : -1;
    if (primary === 26 || primary === 11) {
      throw new StoreOpenError(
        file,
        `is not a SQLite database or is damaged (${describe(err)}); restore it from a backup or move it away to start with an empty store`,
        `不是 SQLite 数据库或已损坏（${describe(err)}）；请从备份恢复，或将其移走后以空存储启动`,
        err,
      );
    }
    if (primary === 5 || primary === 6) {
      throw new StoreOpenError(
        file,
        'is in use by another process (another wegate with the same state.dir?); one state directory serves one instance',
        '正被其他进程使用（另一个 wegate 使用了相同的 state.dir？）；一个状态目录只能供一个实例使用',
        err,
      );
    }
    throw new StoreOpenError(file, `cannot be opened (${describe(err)})`, `无法打开（${describe(err)}）`, err);
  }
}

function migrate(db: DatabaseSync, file: string): void {
  const version = num((db.prepare('PRAGMA user_version').get() as Row)['user_version']);
  if (version > SCHEMA_VERSION) {
    throw new StoreOpenError(
      file,
      `was written by a newer wegate (schema ${version}, this one knows up to ${SCHEMA_VERSION}); run that version or restore a backup`,
      `由更新版本的 wegate 写入（结构版本 ${version}，本版本最高支持 ${SCHEMA_VERSION}）；请使用该版本或从备份恢复`,
    );
  }
  for (const m of MIGRATIONS) {
    if (m.version <= version) continue;
    try {
      db.exec('BEGIN IMMEDIATE');
      db.exec(m.sql);
      db.exec(`PRAGMA user_version = ${m.version}`);
      db.exec('COMMIT');
    } catch (err) {
      if (db.isTransaction) db.exec('ROLLBACK');
      throw new StoreOpenError(
        file,
        `cannot be migrated to schema ${m.version} (${describe(err)}); the file is unchanged`,
        `无法迁移到结构版本 ${m.version}（${describe(err)}）；文件未被修改`,
        err,
      );
    }
  }
}

const KEY_CHECK_PLAINTEXT = 'wegate state key check';

/** Load (or create) the key file and check it is the key the stored secrets were sealed with. */
function openKey(
  db: DatabaseSync,
  file: string,
  keyFile: string,
  create: boolean,
  randomBytes: (n: number) => Buffer,
  dir: string,
  logger: Logger,
): Sealer {
  let sealer: Sealer;
  try {
    const { key, created } = loadKeyFile(keyFile, create, randomBytes);
    if (created) {
      fsyncDir(dir); // the key must survive a power cut as surely as what it seals
      logger.info(
        { keyFile },
        'state store: created a new key file for the permanent codes (keep it with backups of the state, apart from them)',
      );
    }
    sealer = createSealer(key, randomBytes);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new StoreOpenError(
      file,
      code === undefined ? (err as Error).message : `the key file ${keyFile} cannot be read (${code})`,
      code === undefined ? '密钥文件无效（见上文）' : `无法读取密钥文件 ${keyFile}（${code}）`,
      err,
    );
  }
  const row = db.prepare("SELECT value FROM meta WHERE key = 'key_check'").get() as Row | undefined;
  if (row === undefined) {
    db.prepare("INSERT INTO meta (key, value) VALUES ('key_check', ?)").run(sealer.seal(KEY_CHECK_PLAINTEXT, 'key_check'));
    return sealer;
  }
  try {
    if (sealer.open(row['value'] as Uint8Array, 'key_check') === KEY_CHECK_PLAINTEXT) return sealer;
  } catch {
    // falls through to the error below
  }
  throw new StoreOpenError(
    file,
    `the key file ${keyFile} is not the key this store was written with (the permanent codes in it could not be read); restore the right key file`,
    `密钥文件 ${keyFile} 与写入此存储时使用的密钥不一致（其中的永久授权码无法解密）；请恢复正确的密钥文件`,
  );
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * When each suite's ticket was received, read from the database file of a wegate that is not running
 * (`wegate doctor`): opened read-only, never created or migrated, never the ticket itself.
 */
export function readSuiteTicketTimes(dir: string): Map<string, number> | undefined {
  const file = join(resolve(dir), DB_FILE);
  try {
    statSync(file);
  } catch {
    return undefined;
  }
  const db = new DatabaseSync(file, { readOnly: true, timeout: 200 });
  try {
    const rows = db.prepare('SELECT suite_id, received_at FROM suite_tickets').all() as Row[];
    return new Map(rows.map((r) => [String(r['suite_id']), num(r['received_at'])]));
  } finally {
    db.close();
  }
}
