/**
 * Provider events (指令回调 of a third-party suite or 代开发 template, issue 12 item 6), handled by
 * wegate itself and kept in the state store, so token chains rotate with no config edit:
 *
 * - suite_ticket: stored, the newest by TimeStamp (an older push arriving late never replaces a newer
 *   one); the WeCom client's suite_access_token uses it through SuiteTickets.
 * - create_auth / reset_permanent_code: the AuthCode is recorded durably (sealed, one row per code, so
 *   WeCom's retries of one event are exchanged once) *before* WeCom gets "success" — WeCom wants it
 *   within 1000 ms ("建议在接收到此事件时，先记录下AuthCode，并立即回应企业微信，之后再做相关业务的处理",
 *   document/path/90642). The exchange (service/v2/get_permanent_code with the template's own
 *   suite_access_token, through the client and so the pinned egress) runs after the answer. It is
 *   retried with exponential backoff and jitter (1 s doubling to 60 s) while the AuthCode can still
 *   be valid (10 minutes from its arrival), also across restarts (the row stays pending); a WeCom
 *   errcode that refuses the code itself (not -1 / 45009 / 45033) ends it at once. The permanent code
 *   is stored sealed in the same transaction that closes the AuthCode row; the cached tokens of that
 *   corp are dropped (the old code's token must not outlive reset_permanent_code).
 * - change_auth: the corp's row is touched and its corp name / auth info refreshed with
 *   service/v2/get_auth_info after the answer (best effort: the event itself carries only the corp id).
 * - cancel_auth: the permanent code is forgotten, the row kept (status cancelled) as the audit trail,
 *   the corp's cached tokens dropped; calls for that corp are then refused, saying so.
 *
 * An event is handled only for a suite in wecom.suites (the callback's `suite`, or the one whose
 * suite_id is the event's SuiteId); anything else goes to the vendor as before. Handled events are
 * also sent to the vendor, with SuiteTicket and AuthCode removed (the vendor must not race wegate for
 * a single-use AuthCode; README "Provider events"). No ticket, AuthCode or permanent code is ever in
 * a log line, metric label or the diagnostics.
 */
import type { WecomConfig } from '../../config/schema.ts';
import { GatewayError } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import type { AuthCodeRecord, AuthCorpRecord, PendingAuthCode, StateStore } from '../../store/types.ts';
import { type WecomApi, WecomApiError } from '../api/index.ts';
import { textField, type XmlFields } from './xml.ts';

/** The InfoTypes wegate handles; anything else is "other" in metrics and goes to the vendor. */
export const PROVIDER_EVENTS = ['suite_ticket', 'create_auth', 'reset_permanent_code', 'change_auth', 'cancel_auth'] as const;
export type ProviderEventType = (typeof PROVIDER_EVENTS)[number];
const HANDLED = new Set<string>(PROVIDER_EVENTS);

/** Elements never sent on to the vendor (secrets of the suite). */
const SECRET_ELEMENTS = ['SuiteTicket', 'AuthCode'] as const;
const SECRET_ELEMENT_RE = /<(SuiteTicket|AuthCode)>[\s\S]*?<\/\1>/g;

/** errcodes worth another exchange attempt (busy, rate limit, concurrency); any other errcode refuses the code. */
const RETRYABLE_ERRCODES = new Set([-1, 45009, 45033]);
/** "AuthCode … 有效期为10分钟" (document/path/90642, 97175). */
const AUTH_CODE_VALIDITY_MS = 10 * 60_000;
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 60_000;

export interface ProviderEventsDeps {
  readonly config: WecomConfig;
  readonly store: Pick<StateStore, 'suiteTickets' | 'permanentCodes' | 'authCodes'>;
  readonly wecom: Pick<WecomApi, 'getPermanentCode' | 'invalidateCorp' | 'callSuite'>;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'wecomProviderEvents' | 'wecomPermanentCodeExchanges'>;
  /** Wall clock, ms. */
  readonly clock?: () => number;
  /** [0, 1) for the backoff jitter. */
  readonly random?: () => number;
  /** Backoff tuning (tests): first delay, longest delay, how long an AuthCode is tried. */
  readonly retry?: { readonly baseMs?: number; readonly maxMs?: number; readonly validityMs?: number };
}

/** A handled event: what the vendor is sent instead of the raw event. */
export interface HandledEvent {
  readonly type: ProviderEventType;
  readonly suite: string;
  /** The fields without SuiteTicket / AuthCode. */
  readonly fields: XmlFields;
  /** The inner XML without the SuiteTicket / AuthCode elements. */
  readonly xml: string;
}

/** What /diagnostics shows: ages and corps, never a ticket or code. */
export interface ProviderView {
  readonly suites: readonly {
    readonly name: string;
    readonly suiteId: string;
    readonly kind: string;
    readonly ticketReceivedAt: number | undefined;
    readonly ticketTimestamp: number | undefined;
  }[];
  readonly corps: readonly AuthCorpRecord[];
  readonly authCodes: readonly AuthCodeRecord[];
}

export interface ProviderEvents {
  /**
   * Handle a decrypted suite-callback event when it is a provider event of a configured suite;
   * resolves once what must survive is durable (then WeCom may get "success"), undefined when the
   * event is not one wegate handles. Rejects with WG_STORE_UNAVAILABLE when it cannot be stored.
   */
  handle(callback: string, fields: XmlFields, xml: string): Promise<HandledEvent | undefined>;
  /** Load the diagnostics view and resume the exchanges left pending (a restart). */
  start(): Promise<void>;
  snapshot(): ProviderView;
  /** Stop the retry timer and wait for the exchange in flight. */
  close(): Promise<void>;
}

const str = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);

export function createProviderEvents(deps: ProviderEventsDeps): ProviderEvents {
  const { config, store, wecom, logger, metrics } = deps;
  const clock = deps.clock ?? Date.now;
  const random = deps.random ?? Math.random;
  const baseMs = deps.retry?.baseMs ?? RETRY_BASE_MS;
  const maxMs = deps.retry?.maxMs ?? RETRY_MAX_MS;
  const validityMs = deps.retry?.validityMs ?? AUTH_CODE_VALIDITY_MS;
  const suiteByName = new Map(config.suites.map((s) => [s.name, s]));
  const suiteById = new Map(config.suites.map((s) => [s.suite_id, s]));
  const suiteOfCallback = new Map(config.callbacks.flatMap((c) => (c.suite !== undefined ? [[c.name, c.suite] as const] : [])));

  let view: ProviderView = {
    suites: config.suites.map((s) => ({
      name: s.name,
      suiteId: s.suite_id,
      kind: s.kind,
      ticketReceivedAt: undefined,
      ticketTimestamp: undefined,
    })),
    corps: [],
    authCodes: [],
  };
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;
  /** Grants WeCom gave whose store write failed: written before anything else is exchanged. */
  const unsaved = new Map<number, Parameters<StateStore['authCodes']['complete']>[1]>();

  const count = (suite: string, type: string, outcome: string) => metrics.wecomProviderEvents.inc({ suite, type, outcome });

  const refresh = async () => {
    const suites = await Promise.all(
      config.suites.map(async (s) => {
        const t = await store.suiteTickets.latest(s.suite_id);
        return { name: s.name, suiteId: s.suite_id, kind: s.kind, ticketReceivedAt: t?.receivedAt, ticketTimestamp: t?.timestamp };
      }),
    );
    view = { suites, corps: await store.permanentCodes.list(), authCodes: await store.authCodes.list(20) };
  };
  const refreshLater = () => {
    refresh().catch((err: unknown) => logger.warn({ err }, 'provider events: the diagnostics view could not be refreshed'));
  };

  // --- the exchange of AuthCodes -------------------------------------------------------------------

  const schedule = (atMs: number) => {
    if (closed) return;
    clearTimeout(timer);
    timer = setTimeout(kick, Math.max(0, atMs - clock()));
    timer.unref();
  };

  function kick(): void {
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    running = runOnce()
      .catch((err: unknown) => {
        // The store is unavailable (it recovers by itself): look again soon.
        logger.warn({ err }, 'provider events: the pending AuthCodes could not be read; trying again');
        schedule(clock() + maxMs);
      })
      .finally(() => {
        running = undefined;
        if (again && !closed) {
          again = false;
          kick();
        }
      });
  }

  async function runOnce(): Promise<void> {
    for (const [id, grant] of unsaved) {
      await store.authCodes.complete(id, grant);
      unsaved.delete(id);
      stored(grant.suiteId, grant.corpId, 'the permanent code could be stored now');
    }
    const pending = await store.authCodes.pending();
    let next: number | undefined;
    for (const item of pending) {
      if (closed) return;
      const due = item.nextAttemptAt <= clock() ? await exchange(item) : item.nextAttemptAt;
      if (due !== undefined) next = next === undefined ? due : Math.min(next, due);
    }
    if (next !== undefined) schedule(next);
    refreshLater();
  }

  const stored = (suiteId: string, corpId: string, msg: string) => {
    wecom.invalidateCorp(suiteId, corpId);
    logger.info({ suite_id: suiteId, corp_id: corpId }, `provider events: ${msg}`);
  };

  /** One attempt; resolves to when to try again, or undefined when the AuthCode is done with. */
  async function exchange(item: PendingAuthCode): Promise<number | undefined> {
    const suite = suiteById.get(item.suiteId);
    const log = { suite_id: item.suiteId, info_type: item.infoType, auth_code_id: item.id, attempt: item.attempts + 1 };
    if (suite === undefined) {
      await store.authCodes.giveUp(item.id, 'the suite is no longer in wecom.suites');
      metrics.wecomPermanentCodeExchanges.inc({ suite: '-', result: 'rejected' });
      logger.error(log, 'provider events: AuthCode dropped: its suite is no longer configured');
      return undefined;
    }
    if (clock() - item.receivedAt > validityMs) {
      await store.authCodes.giveUp(item.id, `not exchanged within ${Math.round(validityMs / 60_000)} minutes: ${item.lastError ?? ''}`);
      metrics.wecomPermanentCodeExchanges.inc({ suite: suite.name, result: 'expired' });
      logger.error(
        { ...log, suite: suite.name, last_error: item.lastError },
        'provider events: the AuthCode expired before it could be exchanged for the permanent code: the school has to authorise the app again (代开发: 重新获取secret / 重新授权) / 临时授权码已过期，未能换取永久授权码：请学校重新授权',
      );
      return undefined;
    }
    let grant: Awaited<ReturnType<WecomApi['getPermanentCode']>>;
    try {
      grant = await wecom.getPermanentCode(suite.name, item.authCode);
    } catch (err) {
      if (!(err instanceof WecomApiError)) throw err;
      const refused = err.kind === 'wecom' && err.errcode !== undefined && !RETRYABLE_ERRCODES.has(err.errcode);
      if (refused || err.kind === 'config') {
        await store.authCodes.giveUp(item.id, `WeCom refused the AuthCode: ${err.message}`);
        metrics.wecomPermanentCodeExchanges.inc({ suite: suite.name, result: 'rejected' });
        logger.error(
          { ...log, suite: suite.name, errcode: err.errcode, error_code: err.code, err: err.message },
          'provider events: WeCom refused the AuthCode (used or expired?): the school has to authorise the app again / 企业微信拒绝了临时授权码：请学校重新授权',
        );
        return undefined;
      }
      const delay = Math.min(maxMs, baseMs * 2 ** item.attempts) * (0.5 + random() / 2);
      const at = clock() + Math.round(delay);
      await store.authCodes.retry(item.id, at, err.message);
      metrics.wecomPermanentCodeExchanges.inc({ suite: suite.name, result: 'retry' });
      logger.warn(
        { ...log, suite: suite.name, kind: err.kind, errcode: err.errcode, err: err.message, retry_in_ms: Math.round(delay) },
        'provider events: the permanent-code exchange failed; retrying',
      );
      return at;
    }
    const input = {
      suiteId: suite.suite_id,
      corpId: grant.corpId,
      ...(grant.corpName !== undefined ? { corpName: grant.corpName } : {}),
      authInfo: grant.info,
      permanentCode: grant.permanentCode,
    };
    try {
      await store.authCodes.complete(item.id, input);
    } catch (err) {
      // WeCom handed the code out once; keep it in memory and write it when the store takes writes again.
      unsaved.set(item.id, input);
      logger.error({ ...log, err }, 'provider events: the permanent code could not be stored yet; kept in memory and retried');
      return clock() + baseMs;
    }
    metrics.wecomPermanentCodeExchanges.inc({ suite: suite.name, result: 'ok' });
    stored(
      suite.suite_id,
      grant.corpId,
      `${item.infoType}: permanent code obtained and stored (sealed) for corp ${grant.corpId}${grant.corpName !== undefined ? ` (${grant.corpName})` : ''}`,
    );
    return undefined;
  }

  // --- change_auth: refresh the auth info after the answer ------------------------------------------

  const refreshAuthInfo = async (suiteName: string, suiteId: string, corpId: string) => {
    const code = await store.permanentCodes.get(suiteId, corpId);
    if (code === undefined) return;
    const json = await wecom.callSuite(suiteName, '/cgi-bin/service/v2/get_auth_info', {
      method: 'POST',
      body: { auth_corpid: corpId, permanent_code: code },
    });
    const corp = json['auth_corp_info'];
    const name = typeof corp === 'object' && corp !== null ? (corp as Record<string, unknown>)['corp_name'] : undefined;
    const { errcode: _e, errmsg: _m, permanent_code: _p, access_token: _a, ...info } = json;
    await store.permanentCodes.update({ suiteId, corpId, ...(typeof name === 'string' ? { corpName: name } : {}), authInfo: info });
    refreshLater();
  };

  // --- the events -------------------------------------------------------------------------------------

  const resolveSuite = (callback: string, suiteId: string | undefined) => {
    const named = suiteOfCallback.get(callback);
    if (named !== undefined) {
      const s = suiteByName.get(named);
      // The signature and receiveid held; an event of another suite on this URL is the vendor's business.
      return s !== undefined && (suiteId === undefined || suiteId === s.suite_id) ? s : undefined;
    }
    return suiteId === undefined ? undefined : suiteById.get(suiteId);
  };

  async function handle(callback: string, fields: XmlFields, xml: string): Promise<HandledEvent | undefined> {
    const type = textField(fields, 'InfoType');
    if (type === undefined || !HANDLED.has(type)) return undefined;
    const suite = resolveSuite(callback, str(textField(fields, 'SuiteId')));
    if (suite === undefined) return undefined;
    const t = type as ProviderEventType;
    const log = { callback, suite: suite.name, suite_id: suite.suite_id, info_type: t };
    let outcome: string;
    switch (t) {
      case 'suite_ticket': {
        const ticket = str(textField(fields, 'SuiteTicket'));
        const ts = Number(textField(fields, 'TimeStamp'));
        if (ticket === undefined || ticket.length > 512 || !Number.isSafeInteger(ts) || ts < 0) {
          outcome = 'invalid';
          logger.warn(log, 'provider events: suite_ticket without a usable SuiteTicket / TimeStamp ignored');
          break;
        }
        const newest = await store.suiteTickets.put(suite.suite_id, ticket, ts);
        outcome = newest ? 'stored' : 'older';
        logger.info({ ...log, timestamp: ts, outcome }, 'provider events: suite_ticket received');
        // An AuthCode waiting for a suite token may go now.
        if (newest) setImmediate(kick);
        break;
      }
      case 'create_auth':
      case 'reset_permanent_code': {
        const authCode = str(textField(fields, 'AuthCode'));
        if (authCode === undefined || authCode.length > 512) {
          outcome = 'invalid';
          logger.warn(log, `provider events: ${t} without a usable AuthCode ignored`);
          break;
        }
        const r = await store.authCodes.add({ suiteId: suite.suite_id, infoType: t, authCode });
        outcome = r.duplicate ? 'duplicate' : 'recorded';
        logger.info({ ...log, auth_code_id: r.id, outcome }, `provider events: ${t} AuthCode recorded; exchanging it after the answer`);
        // After the answer: setImmediate runs once this turn's I/O (the "success") is written.
        if (!r.duplicate) setImmediate(kick);
        break;
      }
      case 'change_auth': {
        const corpId = str(textField(fields, 'AuthCorpId'));
        if (corpId === undefined) {
          outcome = 'invalid';
          break;
        }
        const known = await store.permanentCodes.update({ suiteId: suite.suite_id, corpId });
        outcome = known ? 'updated' : 'unknown_corp';
        logger.info({ ...log, corp_id: corpId, outcome }, 'provider events: change_auth received');
        if (known) {
          setImmediate(() => {
            refreshAuthInfo(suite.name, suite.suite_id, corpId).catch((err: unknown) =>
              logger.warn(
                { ...log, corp_id: corpId, err: (err as Error).message },
                'provider events: get_auth_info after change_auth failed',
              ),
            );
          });
        }
        break;
      }
      case 'cancel_auth': {
        const corpId = str(textField(fields, 'AuthCorpId'));
        if (corpId === undefined) {
          outcome = 'invalid';
          break;
        }
        const known = await store.permanentCodes.cancel(suite.suite_id, corpId);
        wecom.invalidateCorp(suite.suite_id, corpId);
        outcome = known ? 'cancelled' : 'unknown_corp';
        // The audit line of the withdrawal (WeCom: "应当确保删除该企业所有相关的数据").
        logger.warn(
          { ...log, corp_id: corpId, outcome },
          'provider events: cancel_auth: the corp withdrew its authorisation; its permanent code is forgotten / 企业已取消授权，永久授权码已删除',
        );
        break;
      }
    }
    count(suite.name, t, outcome);
    refreshLater();
    return { type: t, suite: suite.name, fields: withoutSecrets(fields), xml: xml.replace(SECRET_ELEMENT_RE, '') };
  }

  return {
    handle,
    async start() {
      await refresh();
      kick();
    },
    snapshot: () => view,
    async close() {
      closed = true;
      clearTimeout(timer);
      await running;
    },
  };
}

function withoutSecrets(fields: XmlFields): XmlFields {
  const out: Record<string, XmlFields[string]> = {};
  for (const [k, v] of Object.entries(fields)) if (!(SECRET_ELEMENTS as readonly string[]).includes(k)) out[k] = v;
  return out;
}

/** A store failure while handling: the event is not acknowledged (WeCom retries). */
export const isStoreUnavailable = (err: unknown): boolean => err instanceof GatewayError && err.code === 'WG_STORE_UNAVAILABLE';
