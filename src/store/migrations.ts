/**
 * The embedded store's schema, versioned with SQLite's `user_version`. On open every migration above
 * the file's version runs, in order, each in its own transaction with the version bump, so a crash
 * mid-migration leaves the previous version intact. A file from a newer wegate is refused (an older
 * binary must not guess at a newer layout). Never edit a released migration: add the next one.
 */

export interface Migration {
  readonly version: number;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    sql: `
      CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID;
      CREATE TABLE suite_tickets (
        suite_id TEXT PRIMARY KEY,
        ticket TEXT NOT NULL,
        ts INTEGER NOT NULL,
        received_at INTEGER NOT NULL
      ) WITHOUT ROWID;
      CREATE TABLE permanent_codes (
        suite_id TEXT NOT NULL,
        corp_id TEXT NOT NULL,
        code BLOB,
        corp_name TEXT,
        auth_info TEXT,
        status TEXT NOT NULL CHECK (status IN ('active', 'cancelled')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (suite_id, corp_id)
      ) WITHOUT ROWID;
      CREATE TABLE dedup (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
      CREATE INDEX dedup_expiry ON dedup (expires_at);
      CREATE TABLE queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        app TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        event_type TEXT NOT NULL,
        payload BLOB NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        last_error TEXT
      );
      CREATE INDEX queue_app_state ON queue (app, state, id);
    `,
  },
  {
    // Dead letters say why and when; a cancelled authorisation says when (the audit line of cancel_auth).
    version: 2,
    sql: `
      ALTER TABLE queue ADD COLUMN dead_reason TEXT;
      ALTER TABLE queue ADD COLUMN dead_at INTEGER;
      ALTER TABLE permanent_codes ADD COLUMN cancelled_at INTEGER;
    `,
  },
  {
    // The AuthCodes of create_auth / reset_permanent_code, kept (sealed) from the moment WeCom is
    // answered until the exchange for the permanent code succeeds or is given up; one row per code
    // (digest = sha256 of suite and code), so WeCom's retries of one event are exchanged once.
    version: 3,
    sql: `
      CREATE TABLE auth_codes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        digest TEXT NOT NULL UNIQUE,
        suite_id TEXT NOT NULL,
        info_type TEXT NOT NULL,
        code BLOB,
        state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        received_at INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        corp_id TEXT,
        finished_at INTEGER
      );
      CREATE INDEX auth_codes_state ON auth_codes (state, next_attempt_at);
    `,
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;
