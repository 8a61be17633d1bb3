/**
 * The state store: what must survive a restart (issue 12 item 7) — the newest suite_ticket per
 * suite, the permanent codes of the authorising corps, de-duplication keys and the callback queue.
 *
 * Every write resolves only once it is durable (on disk and fsync'd for the embedded store); a write
 * that cannot be made durable rejects with WG_STORE_UNAVAILABLE, so the caller does not acknowledge
 * WeCom (which then retries). The embedded SQLite store (src/store/sqlite.ts) is the default; a Redis
 * implementation for several instances behind one load balancer fills the same interface later, so
 * every method returns a Promise even where SQLite answers synchronously.
 */
import type { PermanentCodes, SuiteTickets } from '../wecom/api/types.ts';

/** The latest suite_ticket of a suite. */
export interface SuiteTicketRecord {
  readonly suiteId: string;
  readonly ticket: string;
  /** WeCom's `TimeStamp` of the event, seconds since the epoch (decides which ticket is newest). */
  readonly timestamp: number;
  /** When wegate stored it (ms, injected clock). */
  readonly receivedAt: number;
  /** now − receivedAt in ms (a ticket is valid for 30 minutes from issue; WeCom pushes one every 10). */
  readonly ageMs: number;
}

export interface SuiteTicketStore extends SuiteTickets {
  /**
   * Keep `ticket` if its timestamp is at least that of the stored one: an older ticket arriving late
   * (a WeCom retry) never replaces a newer one. Resolves to whether it is now the stored ticket.
   */
  put(suiteId: string, ticket: string, timestamp: number): Promise<boolean>;
  get(suiteId: string): Promise<string | undefined>;
  latest(suiteId: string): Promise<SuiteTicketRecord | undefined>;
}

export type AuthStatus = 'active' | 'cancelled';

/** What create_auth / reset_permanent_code / change_auth tell about an authorising corp (no secret). */
export interface AuthCorpInput {
  readonly suiteId: string;
  readonly corpId: string;
  readonly corpName?: string;
  /** auth_corp_info / auth_info as WeCom returned them (JSON; must not hold a secret). */
  readonly authInfo?: Readonly<Record<string, unknown>>;
}

/** One authorised corp, as /diagnostics shows it: never the permanent code. */
export interface AuthCorpRecord {
  readonly suiteId: string;
  readonly corpId: string;
  readonly corpName: string | undefined;
  readonly status: AuthStatus;
  readonly authInfo: Readonly<Record<string, unknown>> | undefined;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** When cancel_auth arrived (the code was forgotten then), undefined while active. */
  readonly cancelledAt: number | undefined;
}

export interface PermanentCodeStore extends PermanentCodes {
  /** Store (or replace) the permanent code of (suite, corp), encrypted at rest; status becomes active. */
  put(input: AuthCorpInput & { readonly permanentCode: string }): Promise<void>;
  /** change_auth: new corp name / auth info, the code unchanged. Resolves false when the corp is unknown. */
  update(input: AuthCorpInput): Promise<boolean>;
  /** cancel_auth: forget the code, keep the row (status cancelled) as the audit trail. */
  cancel(suiteId: string, corpId: string): Promise<boolean>;
  /** The permanent code of an active authorisation, undefined when unknown or cancelled. */
  get(suiteId: string, corpId: string): Promise<string | undefined>;
  info(suiteId: string, corpId: string): Promise<AuthCorpRecord | undefined>;
  list(suiteId?: string): Promise<AuthCorpRecord[]>;
}

export type AuthCodeState = 'pending' | 'done' | 'failed';

/** A create_auth / reset_permanent_code AuthCode waiting for (or past) its exchange; `authCode` only while pending. */
export interface AuthCodeRecord {
  readonly id: number;
  readonly suiteId: string;
  /** create_auth or reset_permanent_code. */
  readonly infoType: string;
  readonly state: AuthCodeState;
  readonly attempts: number;
  readonly receivedAt: number;
  readonly nextAttemptAt: number;
  readonly lastError: string | undefined;
  /** The authorising corp, once the exchange told it. */
  readonly corpId: string | undefined;
  readonly finishedAt: number | undefined;
}

export interface PendingAuthCode extends AuthCodeRecord {
  /** The AuthCode itself (single use, valid about 10 minutes). Never log it. */
  readonly authCode: string;
}

/**
 * AuthCodes recorded durably before WeCom is answered (it wants "success" within 1000 ms), then
 * exchanged for the permanent code. Sealed at rest like the permanent codes.
 */
export interface AuthCodeStore {
  /** Record an AuthCode; `duplicate` when this code of this suite was recorded before (a WeCom retry). */
  add(input: { readonly suiteId: string; readonly infoType: string; readonly authCode: string }): Promise<{
    readonly duplicate: boolean;
    readonly id: number;
  }>;
  /** Every pending AuthCode, soonest due first, with the code opened. */
  pending(): Promise<PendingAuthCode[]>;
  /** The exchange failed and will be tried again at `nextAttemptAt`. */
  retry(id: number, nextAttemptAt: number, error: string): Promise<void>;
  /** The exchange succeeded: store the permanent code (as PermanentCodeStore.put) and forget the AuthCode, in one transaction. */
  complete(id: number, grant: AuthCorpInput & { readonly permanentCode: string }): Promise<void>;
  /** Give up (expired or refused by WeCom): the AuthCode is forgotten, the row stays as the audit line. */
  giveUp(id: number, error: string): Promise<void>;
  /** Every recorded AuthCode, newest first, without the codes (diagnostics). */
  list(limit?: number): Promise<AuthCodeRecord[]>;
}

export interface DedupStore {
  /**
   * Atomically claim `key` for `ttlMs`: true the first time (or once an earlier claim expired), false
   * while a claim is live. Durable before it resolves. Expired keys are purged in bounded batches.
   */
  claim(key: string, ttlMs: number): Promise<boolean>;
  /** Give a claim back (the work it guarded could not be made durable). */
  release(key: string): Promise<void>;
}

export type QueueState = 'pending' | 'dead';

export interface QueueItemInput {
  /** Idempotency key handed to the vendor with each delivery attempt. */
  readonly idempotencyKey: string;
  /** Event or message type (logs, metrics, listing). */
  readonly eventType: string;
  /** What is delivered (the JSON body); bounded by maxPayloadBytes. */
  readonly payload: string | Uint8Array;
  /**
   * Claim this de-duplication key in the same transaction as the insert: when the key is live the
   * item is not stored and the result says `duplicate`. A claim never outlives a failed insert.
   */
  readonly dedup?: { readonly key: string; readonly ttlMs: number };
}

export type EnqueueResult = { readonly duplicate: false; readonly id: number } | { readonly duplicate: true };

/** An item as listed (no payload). */
export interface QueueEntry {
  readonly id: number;
  readonly app: string;
  readonly idempotencyKey: string;
  readonly eventType: string;
  readonly state: QueueState;
  /** Leased by next() and not yet acked, failed or dead-lettered. */
  readonly inFlight: boolean;
  readonly attempts: number;
  readonly payloadBytes: number;
  readonly createdAt: number;
  readonly nextAttemptAt: number;
  readonly lastError: string | undefined;
  readonly deadReason: string | undefined;
  readonly deadAt: number | undefined;
}

export interface QueueItem extends QueueEntry {
  readonly payload: Buffer;
}

export interface QueueListQuery {
  readonly app?: string;
  readonly state?: QueueState;
  /** Default 100, at most 1000. */
  readonly limit?: number;
}

/** Per-app figures for metrics and /diagnostics. */
export interface QueueAppStats {
  readonly app: string;
  /** Pending items (in flight included). */
  readonly depth: number;
  /** now − createdAt of the oldest pending item, 0 when none. */
  readonly oldestAgeMs: number;
  readonly dead: number;
  /** next_attempt_at of the head of the app's queue (when the delivery loop should look again). */
  readonly headDueAt: number | undefined;
}

export interface CallbackQueue {
  /** Store an item for `app`; resolves once it is durable (then WeCom may be acknowledged). */
  enqueue(app: string, item: QueueItemInput): Promise<EnqueueResult>;
  /**
   * Lease the oldest pending item of `app` if it is due (next_attempt_at ≤ now). One item in flight
   * per app: while one is leased, or while the head is not due yet, resolves undefined (order kept).
   */
  next(app: string): Promise<QueueItem | undefined>;
  /** Delivered: the item is removed. Resolves false when no pending item has this id. */
  ack(id: number): Promise<boolean>;
  /** Delivery failed: attempts + 1, retry at `nextAttemptAt`. Resolves to the attempt count, undefined when unknown. */
  fail(id: number, nextAttemptAt: number, error: string): Promise<number | undefined>;
  /** Give up on the item (bounded attempts or age reached); it stays listable and re-drivable. */
  deadLetter(id: number, reason: string): Promise<boolean>;
  get(id: number): Promise<QueueItem | undefined>;
  list(query?: QueueListQuery): Promise<QueueEntry[]>;
  /** Dead letters back to pending (attempts reset, due now): one by id, or all of an app. Resolves to how many. */
  redrive(target: { readonly id: number } | { readonly app: string }): Promise<number>;
  stats(): Promise<QueueAppStats[]>;
}

export interface StoreHealth {
  /** False after a durable write failed (disk full, read-only, I/O error) until one succeeds again. */
  readonly healthy: boolean;
  /** Why it is unhealthy (no secret), e.g. "database or disk is full (SQLITE_FULL)". */
  readonly reason: string | undefined;
  /** Since when (ms) it has been in the current state. */
  readonly since: number;
}

export interface StoreCounters {
  /** Write transactions committed (each one fsync on the embedded store). */
  readonly transactions: number;
  /** Write operations committed (≥ transactions: group commit batches them). */
  readonly writes: number;
  /** Write operations rejected because the store was unavailable. */
  readonly failedWrites: number;
  /** Expired de-duplication keys purged. */
  readonly purgedKeys: number;
}

export interface StateStore {
  /** "sqlite" (embedded) or "redis". */
  readonly kind: string;
  /** Where it lives (the database file); shown in logs and diagnostics. */
  readonly location: string;
  readonly suiteTickets: SuiteTicketStore;
  readonly permanentCodes: PermanentCodeStore;
  readonly authCodes: AuthCodeStore;
  readonly dedup: DedupStore;
  readonly queue: CallbackQueue;
  health(): StoreHealth;
  counters(): StoreCounters;
  /** Finish the pending writes, stop the timers, close the database. */
  close(): Promise<void>;
}
