/**
 * The WeCom API client: every WeCom call wegate makes goes through `createWecomApi(deps).call()`.
 *
 * - Token chains: self_built (gettoken corp id + app secret), authorized / 代开发 (gettoken with the
 *   authorising corp id + the permanent code), third_party (suite_access_token from the stored
 *   suite_ticket → get_corp_token). Tokens cached per credential (tokens.ts), refreshed ahead of
 *   expiry, one refresh in flight per credential.
 * - Retries: refresh once and retry on 40001/40014/42001 (42009/40082 for suite tokens); bounded
 *   backoff with jitter on -1 and 45009; never on 60020; a rejected secret is held off, not looped
 *   (WeCom blocks gettoken for an hour after ~2000 failures).
 * - 60020 / 48009 are diagnosed (diagnose.ts) and recorded as incidents.
 * - Secrets are read at creation from a file or an environment variable; tokens and secrets never
 *   appear in a log line, error, metric label or status.
 */
import { readFileSync } from 'node:fs';
import type { WecomAppConfig, WecomConfig, WecomSuiteConfig, SecretRef } from '../../config/schema.ts';
import type { Logger } from '../../core/logger.ts';
import type { Incidents } from '../../diagnostics/incidents.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import { CREDENTIAL_ERRCODES, credentialAdvice, diagnoseIp, parseErrmsg } from './diagnose.ts';
import { WecomApiError } from './errors.ts';
import { answerErrcode, ExchangeError, exchange } from './http.ts';
import { credentialKey, type Issued, TokenCache } from './tokens.ts';
import type { PermanentCodes, SuiteTickets, WecomAppKind, WecomEgress } from './types.ts';

export { WecomApiError, type WecomErrorKind } from './errors.ts';
export { answerErrcode, parseJsonObject, unreachableReason } from './http.ts';
export {
  CREDENTIAL_ERRCODES,
  credentialAdvice,
  diagnoseIp,
  IP_ERRCODES,
  type IpCause,
  type IpDiagnosis,
  type IpDiagnosisInput,
  normaliseIp,
  parseErrmsg,
} from './diagnose.ts';
export type { PermanentCodes, SuiteTickets, WecomAppKind, WecomEgress, WecomSuiteKind } from './types.ts';

export interface WecomApiDeps {
  /** The validated `wecom:` section. */
  readonly config: WecomConfig;
  readonly egress: WecomEgress;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'wecomApiCalls' | 'wecomApiDuration' | 'wecomTokenRefreshes'>;
  /** Where 60020 and credential refusals are recorded (/diagnostics). */
  readonly incidents?: Incidents;
  /** Environment for `secret: { env }` (cli/ passes process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly suiteTickets?: SuiteTickets;
  readonly permanentCodes?: PermanentCodes;
  /** Wall clock, ms (token expiry, hold-offs, status). */
  readonly clock?: () => number;
  /** [0, 1) for backoff jitter. */
  readonly random?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
}

export interface CallOptions {
  readonly method?: 'GET' | 'POST';
  /** Query parameters besides the token. */
  readonly query?: Readonly<Record<string, string>>;
  /** JSON body (POST). */
  readonly body?: unknown;
}

/** What /diagnostics shows per app and suite: never the token. */
export interface TokenStatus {
  readonly name: string;
  readonly kind: WecomAppKind | 'suite';
  readonly lastRefreshAt?: number;
  readonly expiresAt?: number;
  /** errcode of the last refresh attempt (0 = ok). */
  readonly lastErrcode?: number;
  /** Safe one-line reason of the last failure. */
  readonly lastError?: string;
  /** A rejected credential is not retried before this time. */
  readonly heldUntil?: number;
}

export interface PermanentCodeGrant {
  /** The permanent code (for 代开发: the app's secret). Store it; never log it. */
  readonly permanentCode: string;
  readonly corpId: string;
  readonly corpName?: string;
  /** The rest of WeCom's answer (auth_corp_info, auth_info, auth_user_info, state …), secrets removed. */
  readonly info: Readonly<Record<string, unknown>>;
}

export interface WecomApi {
  /** Call `api` (a path such as /cgi-bin/message/send) as `app`; resolves with WeCom's JSON (errcode 0). */
  call(app: string, api: string, opts?: CallOptions): Promise<Record<string, unknown>>;
  /** Call an API that takes the suite_access_token of `suite` (e.g. service/auth/getuserinfo3rd). */
  callSuite(suite: string, api: string, opts?: CallOptions): Promise<Record<string, unknown>>;
  /** The app's current access token (for a relay that injects it). Never log it. */
  accessToken(app: string): Promise<string>;
  /** A caller that used `token` got 40014/42001 from WeCom: drop it so the next accessToken() refreshes. */
  invalidateToken(app: string, token: string): void;
  /** Exchange a create_auth / reset_permanent_code AuthCode (single use) for the permanent code (service/v2/get_permanent_code). */
  getPermanentCode(suite: string, authCode: string): Promise<PermanentCodeGrant>;
  /**
   * The permanent code of (suite id, corp) was replaced (reset_permanent_code) or withdrawn
   * (cancel_auth): drop the cached tokens of the apps that use it, so the next call starts the chain again.
   */
  invalidateCorp(suiteId: string, corpId: string): void;
  /**
   * For a WeCom answer that did not come through call() (the relay passes answers through): the
   * error it means, diagnosed and recorded like call()'s own (60020 → incident), or undefined for errcode 0.
   */
  explain(app: string, api: string, answer: Readonly<Record<string, unknown>>): WecomApiError | undefined;
  /**
   * Readiness / doctor probe: a token, then one call WeCom guards with 企业可信IP (get_api_domain_ip;
   * gettoken alone succeeds from any IP and proves nothing).
   */
  probe(
    app: string,
  ): Promise<{ readonly app: string; readonly ok: true } | { readonly app: string; readonly ok: false; readonly error: WecomApiError }>;
  /** Token status per app and suite, for /diagnostics. */
  tokenStatus(): TokenStatus[];
  /** Configured app names. */
  readonly apps: readonly string[];
  readonly egress: WecomEgress;
  /** Refuse further calls; the egress dispatcher belongs to the caller. */
  close(): Promise<void>;
}

/** errcodes that mean "this access token is no good": refresh once and retry. */
const TOKEN_STALE = new Set([40001, 40014, 42001]);
const SUITE_TOKEN_STALE = new Set([42009, 40082]);
/** errcodes worth a bounded backoff: -1 (系统繁忙, "建议重试次数不超过3次"), 45009 (rate limit). */
const BUSY = new Set([-1, 45009]);
/** An API path WeCom serves: letters, digits, "_", "/" under /cgi-bin/. Bounded metric label, no query. */
const API_PATH = /^\/cgi-bin\/[A-Za-z0-9_/]{1,120}$/;

interface Secret {
  readonly value: string;
  /** "file /etc/…", "env NAME": for messages. */
  readonly where: string;
}

interface AppRuntime {
  readonly cfg: WecomAppConfig;
  readonly kind: WecomAppKind;
  readonly corpId: string;
  readonly secret: Secret | undefined;
  readonly suite: SuiteRuntime | undefined;
  /** Credential key of the token last handed out (status). */
  key?: string;
}

interface SuiteRuntime {
  readonly cfg: WecomSuiteConfig;
  readonly secret: Secret;
  key?: string;
}

interface StatusEntry {
  lastRefreshAt?: number;
  lastErrcode?: number;
  lastError?: string;
}

/** Read a `{ file } | { env }` secret at start-up; errors name the source, never the value. */
export function readSecret(ref: SecretRef, env: Readonly<Record<string, string | undefined>>, label: string): Secret {
  if (ref.file !== undefined && ref.env !== undefined) throw new Error(`${label}: set either secret.file or secret.env, not both`);
  if (ref.file !== undefined) {
    let text: string;
    try {
      text = readFileSync(ref.file, 'utf8');
    } catch (e) {
      throw new Error(`${label}: the secret file ${ref.file} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, {
        cause: e,
      });
    }
    const value = text.replace(/\r?\n$/, '');
    if (value === '' || /[\r\n]/.test(value))
      throw new Error(`${label}: the secret file ${ref.file} must hold one line (got ${value.length} characters)`);
    return { value, where: `file ${ref.file}` };
  }
  if (ref.env !== undefined) {
    const value = env[ref.env];
    if (value === undefined || value === '') throw new Error(`${label}: the environment variable ${ref.env} is not set`);
    return { value, where: `env ${ref.env}` };
  }
  throw new Error(`${label}: secret must have \`file\` or \`env\``);
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
/** WeCom's errcode (answerErrcode); a malformed one was refused in send(), so it reads as 0 only there. */
const errcodeOf = (json: Record<string, unknown>): number => answerErrcode(json) ?? 0;
/** Longest single backoff: WeCom's rate-limit blocks last 60 s or more, so waiting longer in a request helps nobody. */
const MAX_BACKOFF_MS = 10_000;

/** Build the client. Reads the secrets now; throws (naming the key, never the value) when one is missing. */
export function createWecomApi(deps: WecomApiDeps): WecomApi {
  const { config, egress, logger, metrics, incidents } = deps;
  const clock = deps.clock ?? Date.now;
  const random = deps.random ?? Math.random;
  const sleep = deps.sleep ?? defaultSleep;
  const env = deps.env ?? {};
  const base = new URL(config.api_base);
  const cache = new TokenCache({ clock, holdOffMs: config.bad_secret_holdoff_ms });
  const status = new Map<string, StatusEntry>();
  const reported = new WeakSet<object>();
  let closed = false;

  const suites = new Map<string, SuiteRuntime>();
  config.suites.forEach((s, i) => {
    suites.set(s.name, { cfg: s, secret: readSecret(s.secret, env, `wecom.suites[${i}] (${s.name})`) });
  });
  const apps = new Map<string, AppRuntime>();
  config.apps.forEach((a, i) => {
    const label = `wecom.apps[${i}] (${a.name})`;
    const corpId = a.corp_id ?? config.corp_id;
    if (corpId === undefined) throw new Error(`${label}: corp_id is not set (and wecom.corp_id neither)`);
    const suite = a.suite !== undefined ? suites.get(a.suite) : undefined;
    if (a.suite !== undefined && !suite) throw new Error(`${label}: suite "${a.suite}" is not in wecom.suites`);
    const kind = a.kind;
    if (kind === 'self_built' && !a.secret) throw new Error(`${label}: a self_built app needs secret`);
    if (kind === 'third_party' && !suite) throw new Error(`${label}: a third_party app needs suite`);
    if (kind === 'authorized' && !a.secret && !suite)
      throw new Error(`${label}: a 代开发 (authorized) app needs secret (its permanent code) or suite (its template)`);
    apps.set(a.name, { cfg: a, kind, corpId, secret: a.secret ? readSecret(a.secret, env, label) : undefined, suite });
  });

  // The dispatcher is read per exchange: a reload that replaces the egress profile hands in a new one.
  const exchangeOpts = {
    connectMs: config.timeouts.connect_ms,
    responseMs: config.timeouts.response_ms,
    maxBytes: config.max_response_bytes,
  };

  /** One exchange, measured; transport failures become WecomApiError. */
  const send = async (who: { name: string }, api: string, query: Record<string, string>, method: 'GET' | 'POST', body?: unknown) => {
    if (closed) throw new WecomApiError('the WeCom API client is closed', { kind: 'config', app: who.name, api });
    const url = new URL(api, base);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    const end = metrics.wecomApiDuration.startTimer({ api });
    try {
      const json = await exchange(url, {
        ...exchangeOpts,
        dispatcher: egress.dispatcher,
        method,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      if (answerErrcode(json) === undefined)
        throw new ExchangeError('bad_response', 'WeCom answered an errcode that is not a whole number');
      metrics.wecomApiCalls.inc({ api, errcode: String(errcodeOf(json)) });
      return json;
    } catch (e) {
      if (!(e instanceof ExchangeError)) throw e;
      metrics.wecomApiCalls.inc({ api, errcode: e.failure });
      throw new WecomApiError(`${who.name}: ${api}: ${e.message}`, { kind: e.failure, app: who.name, api, cause: e.cause ?? e });
    } finally {
      end();
    }
  };

  /** `send` with bounded, jittered backoff on -1 / 45009. */
  const sendRetrying = async (
    who: { name: string },
    api: string,
    query: Record<string, string>,
    method: 'GET' | 'POST',
    body?: unknown,
  ) => {
    for (let attempt = 1; ; attempt++) {
      const json = await send(who, api, query, method, body);
      const errcode = errcodeOf(json);
      if (!BUSY.has(errcode) || attempt >= config.retry.attempts) return json;
      const delay = Math.min(MAX_BACKOFF_MS, config.retry.base_delay_ms * 2 ** (attempt - 1)) * (0.5 + random() / 2);
      logger.debug({ app: who.name, api, errcode, attempt, delay_ms: Math.round(delay) }, 'WeCom busy or rate-limited: backing off');
      await sleep(delay);
    }
  };

  /** A WeCom errcode answer → WecomApiError (diagnosed, recorded when it is an IP refusal). */
  const failure = (who: { name: string; kind: WecomAppKind | 'suite' }, api: string, json: Record<string, unknown>): WecomApiError => {
    const errcode = errcodeOf(json);
    const { hint, fromIp } = parseErrmsg(json['errmsg']);
    const diagnosis = diagnoseIp({ errcode, errmsg: json['errmsg'], app: who, api, egress });
    if (diagnosis) {
      incidents?.record({
        app: who.name,
        api,
        cause: diagnosis.cause,
        errcode,
        ...(diagnosis.fromIp !== undefined ? { fromIp: diagnosis.fromIp } : {}),
        ...(diagnosis.expectedIp !== undefined ? { expectedIp: diagnosis.expectedIp } : {}),
        ...(diagnosis.localAddress !== undefined ? { localAddress: diagnosis.localAddress } : {}),
        ...(diagnosis.hint !== undefined ? { hint: diagnosis.hint } : {}),
        en: diagnosis.en,
        zh: diagnosis.zh,
      });
      return new WecomApiError(diagnosis.en, {
        kind: 'ip',
        app: who.name,
        api,
        errcode,
        diagnosis,
        response: json,
        ...opt({ hint, fromIp }),
      });
    }
    return new WecomApiError(`${who.name}: ${api}: WeCom errcode ${errcode}`, {
      kind: 'wecom',
      app: who.name,
      api,
      errcode,
      response: json,
      ...opt({ hint, fromIp }),
    });
  };

  /** A token endpoint answered an errcode: credential refusal (held off) or another failure. */
  const tokenFailure = (who: { name: string; kind: WecomAppKind | 'suite' }, api: string, json: Record<string, unknown>, where: string) => {
    const errcode = errcodeOf(json);
    if (!CREDENTIAL_ERRCODES.has(errcode)) return failure(who, api, json);
    const { hint, fromIp } = parseErrmsg(json['errmsg']);
    const advice = credentialAdvice(errcode, who, where);
    incidents?.record({ app: who.name, api, cause: 'bad_credentials', errcode, ...opt({ hint, fromIp }), en: advice.en, zh: advice.zh });
    return new WecomApiError(advice.en, {
      kind: 'credentials',
      app: who.name,
      api,
      errcode,
      advice,
      response: json,
      ...opt({ hint, fromIp }),
    });
  };

  const isRejection = (e: unknown) => e instanceof WecomApiError && e.kind === 'credentials';
  /**
   * Hold off a credential only for its own refusal: a suite token refused for its ticket (40085)
   * must not hold off the corp token that needed it, or a new ticket would not be tried.
   */
  const rejectionOf = (api: string) => (e: unknown) => isRejection(e) && (e as WecomApiError).api === api;

  /** Refresh bookkeeping: metric, status, log (never the token). */
  const refreshed = async (who: { name: string; kind: WecomAppKind | 'suite' }, fetch: () => Promise<Issued>): Promise<Issued> => {
    const sk = statusKey(who);
    const st = status.get(sk) ?? {};
    status.set(sk, st);
    try {
      const issued = await fetch();
      metrics.wecomTokenRefreshes.inc({ app: who.name, result: 'ok' });
      st.lastRefreshAt = clock();
      st.lastErrcode = 0;
      delete st.lastError;
      logger.debug({ app: who.name, expires_in: issued.expiresIn }, 'WeCom token refreshed');
      return issued;
    } catch (e) {
      // A held-off refusal is re-thrown as the same object, and a suite failure passes through the
      // corp token that needed it: count and log each failure once, and a repeated reason not again.
      const fresh = !(typeof e === 'object' && e !== null && reported.has(e));
      if (typeof e === 'object' && e !== null) reported.add(e);
      const repeated = e instanceof Error && st.lastError === e.message;
      if (e instanceof WecomApiError) {
        if (e.errcode !== undefined) st.lastErrcode = e.errcode;
        st.lastError = e.message;
      }
      if (!fresh) throw e;
      const rejected = isRejection(e);
      const notReady = e instanceof WecomApiError && e.kind === 'not_ready';
      if (!notReady) metrics.wecomTokenRefreshes.inc({ app: who.name, result: rejected ? 'rejected' : 'error' });
      if (repeated) logger.debug({ app: who.name, err: e }, 'WeCom token still unavailable');
      else if (rejected)
        logger.error(
          { app: who.name, errcode: (e as WecomApiError).errcode, hold_off_ms: config.bad_secret_holdoff_ms },
          (e as Error).message,
        );
      else logger.warn({ app: who.name, err: e }, 'WeCom token refresh failed');
      throw e;
    }
  };

  const issuedFrom = (json: Record<string, unknown>, field: string, who: { name: string }, api: string): Issued => {
    const token = str(json[field]);
    const expiresIn = typeof json['expires_in'] === 'number' && json['expires_in'] > 0 ? json['expires_in'] : 7200;
    if (!token || token.length > 2048)
      throw new WecomApiError(`${who.name}: ${api}: WeCom's answer has no ${field}`, { kind: 'bad_response', app: who.name, api });
    return { token, expiresIn };
  };

  // --- token chains ------------------------------------------------------------------------------

  const gettoken = (who: { name: string; kind: WecomAppKind }, corpId: string, secret: Secret) => async (): Promise<Issued> => {
    const api = '/cgi-bin/gettoken';
    const json = await sendRetrying(who, api, { corpid: corpId, corpsecret: secret.value }, 'GET');
    if (errcodeOf(json) !== 0) throw tokenFailure(who, api, json, secret.where);
    return issuedFrom(json, 'access_token', who, api);
  };

  const suiteToken = async (s: SuiteRuntime): Promise<{ token: string; key: string }> => {
    const who = { name: s.cfg.name, kind: 'suite' as const };
    const ticket = str(await deps.suiteTickets?.get(s.cfg.suite_id));
    if (!ticket) {
      throw new WecomApiError(
        `${s.cfg.name}: no suite_ticket received yet for suite ${s.cfg.suite_id}: check that the 指令回调URL / 回调URL reaches wegate (WeCom pushes one every 10 minutes; 刷新Ticket pushes one at once)`,
        { kind: 'not_ready', app: s.cfg.name, api: '/cgi-bin/service/get_suite_token' },
      );
    }
    const key = credentialKey('suite', s.cfg.suite_id, s.secret.value, ticket);
    s.key = key;
    const api = '/cgi-bin/service/get_suite_token';
    const token = await cache.get(
      key,
      () =>
        refreshed(who, async () => {
          const json = await sendRetrying(who, api, {}, 'POST', {
            suite_id: s.cfg.suite_id,
            suite_secret: s.secret.value,
            suite_ticket: ticket,
          });
          // "因历史原因，该接口在调用失败时才返回errcode": no errcode means success.
          if (errcodeOf(json) !== 0) throw tokenFailure(who, api, json, s.secret.where);
          return issuedFrom(json, 'suite_access_token', who, api);
        }),
      rejectionOf(api),
    );
    return { token, key };
  };

  /** The permanent code of an authorized / third_party app: configured, else from the store. */
  const permanentCode = async (a: AppRuntime): Promise<Secret> => {
    if (a.secret) return a.secret;
    const suite = a.suite as SuiteRuntime;
    const code = str(await deps.permanentCodes?.get(suite.cfg.suite_id, a.corpId));
    if (!code) {
      const auth = await deps.permanentCodes?.info?.(suite.cfg.suite_id, a.corpId);
      if (auth?.status === 'cancelled') {
        const at = auth.cancelledAt !== undefined ? ` at ${new Date(auth.cancelledAt).toISOString()}` : '';
        throw new WecomApiError(
          `${a.cfg.name}: corp ${a.corpId} cancelled its authorisation of suite ${suite.cfg.suite_id} (cancel_auth${at}), its permanent code is forgotten: the school has to authorise (授权安装) the app again`,
          { kind: 'not_ready', app: a.cfg.name, api: '/cgi-bin/gettoken' },
        );
      }
      throw new WecomApiError(
        `${a.cfg.name}: no permanent code stored for corp ${a.corpId} under suite ${suite.cfg.suite_id} yet: the school has to authorise (授权安装) the app, which sends create_auth to wegate`,
        { kind: 'not_ready', app: a.cfg.name, api: '/cgi-bin/gettoken' },
      );
    }
    return { value: code, where: 'the state store (create_auth / reset_permanent_code)' };
  };

  const appToken = async (a: AppRuntime): Promise<{ token: string; key: string }> => {
    const who = { name: a.cfg.name, kind: a.kind };
    if (a.kind === 'third_party') {
      const suite = a.suite as SuiteRuntime;
      const code = await permanentCode(a);
      const key = credentialKey('corp3', a.corpId, suite.cfg.suite_id, code.value);
      a.key = key;
      const api = '/cgi-bin/service/get_corp_token';
      const token = await cache.get(
        key,
        () =>
          refreshed(who, async () => {
            for (let retried = false; ; retried = true) {
              const st = await suiteToken(suite);
              const json = await sendRetrying(who, api, { suite_access_token: st.token }, 'POST', {
                auth_corpid: a.corpId,
                permanent_code: code.value,
              });
              const errcode = errcodeOf(json);
              if (SUITE_TOKEN_STALE.has(errcode) && !retried) {
                cache.invalidate(st.key, st.token);
                continue;
              }
              if (errcode !== 0) throw tokenFailure(who, api, json, code.where);
              return issuedFrom(json, 'access_token', who, api);
            }
          }),
        rejectionOf(api),
      );
      return { token, key };
    }
    const secret = a.kind === 'authorized' ? await permanentCode(a) : (a.secret as Secret);
    const key = credentialKey('corp', a.corpId, secret.value);
    a.key = key;
    return { token: await cache.get(key, () => refreshed(who, gettoken(who, a.corpId, secret)), rejectionOf('/cgi-bin/gettoken')), key };
  };

  const appOf = (name: string, api: string): AppRuntime => {
    const a = apps.get(name);
    if (!a)
      throw new WecomApiError(`unknown WeCom app "${name}" (configured: ${[...apps.keys()].join(', ') || 'none'})`, {
        kind: 'config',
        app: name,
        api,
      });
    return a;
  };
  const suiteOf = (name: string, api: string): SuiteRuntime => {
    const s = suites.get(name);
    if (!s) throw new WecomApiError(`unknown WeCom suite "${name}"`, { kind: 'config', app: name, api });
    return s;
  };
  const checkApi = (who: string, api: string) => {
    if (!API_PATH.test(api))
      throw new WecomApiError(`${who}: not a WeCom API path: ${JSON.stringify(api.slice(0, 80))}`, { kind: 'config', app: who, api: '-' });
  };

  /** Token-carrying call with one refresh-and-retry on a stale token. */
  const invoke = async (
    who: { name: string; kind: WecomAppKind | 'suite' },
    api: string,
    opts: CallOptions,
    token: () => Promise<{ token: string; key: string }>,
    param: 'access_token' | 'suite_access_token',
    stale: ReadonlySet<number>,
  ) => {
    checkApi(who.name, api);
    const method = opts.method ?? (opts.body !== undefined ? 'POST' : 'GET');
    for (let retried = false; ; retried = true) {
      const t = await token();
      const json = await sendRetrying(who, api, { ...opts.query, [param]: t.token }, method, opts.body);
      const errcode = errcodeOf(json);
      if (errcode === 0) return json;
      if (stale.has(errcode) && !retried) {
        logger.info({ app: who.name, api, errcode }, 'WeCom refused the cached token: refreshing once');
        cache.invalidate(t.key, t.token);
        continue;
      }
      throw failure(who, api, json);
    }
  };

  return {
    apps: [...apps.keys()],
    egress,
    call(app, api, opts = {}) {
      return Promise.resolve().then(() => {
        const a = appOf(app, api);
        return invoke({ name: a.cfg.name, kind: a.kind }, api, opts, () => appToken(a), 'access_token', TOKEN_STALE);
      });
    },
    callSuite(suite, api, opts = {}) {
      return Promise.resolve().then(() => {
        const s = suiteOf(suite, api);
        return invoke({ name: s.cfg.name, kind: 'suite' }, api, opts, () => suiteToken(s), 'suite_access_token', SUITE_TOKEN_STALE);
      });
    },
    async accessToken(app) {
      return (await appToken(appOf(app, '/cgi-bin/gettoken'))).token;
    },
    invalidateToken(app, token) {
      const key = apps.get(app)?.key;
      if (key !== undefined) cache.invalidate(key, token);
    },
    invalidateCorp(suiteId, corpId) {
      for (const a of apps.values()) {
        if (a.secret === undefined && a.suite?.cfg.suite_id === suiteId && a.corpId === corpId && a.key !== undefined) cache.drop(a.key);
      }
    },
    async getPermanentCode(suite, authCode) {
      // v2: "旧获取企业永久授权码接口耗时长 … 推荐使用该文档中v2接口" (document/path/100776); same answer fields used here.
      const api = '/cgi-bin/service/v2/get_permanent_code';
      const s = suiteOf(suite, api);
      const json = await invoke(
        { name: s.cfg.name, kind: 'suite' },
        api,
        { method: 'POST', body: { auth_code: authCode } },
        () => suiteToken(s),
        'suite_access_token',
        SUITE_TOKEN_STALE,
      );
      const code = str(json['permanent_code']);
      const corp = json['auth_corp_info'];
      const corpId = typeof corp === 'object' && corp !== null ? str((corp as Record<string, unknown>)['corpid']) : undefined;
      if (!code || !corpId) {
        throw new WecomApiError(`${s.cfg.name}: get_permanent_code answered without permanent_code / auth_corp_info.corpid`, {
          kind: 'bad_response',
          app: s.cfg.name,
          api,
        });
      }
      const { permanent_code: _p, access_token: _a, ...info } = json;
      const corpName = str((corp as Record<string, unknown>)['corp_name']);
      return { permanentCode: code, corpId, ...(corpName !== undefined ? { corpName } : {}), info };
    },
    explain(app, api, answer) {
      const a = appOf(app, api);
      return answerErrcode(answer) === 0 ? undefined : failure({ name: a.cfg.name, kind: a.kind }, api, { ...answer });
    },
    async probe(app) {
      try {
        const a = appOf(app, '/cgi-bin/get_api_domain_ip');
        await invoke({ name: a.cfg.name, kind: a.kind }, '/cgi-bin/get_api_domain_ip', {}, () => appToken(a), 'access_token', TOKEN_STALE);
        return { app, ok: true as const };
      } catch (e) {
        if (e instanceof WecomApiError) return { app, ok: false as const, error: e };
        throw e;
      }
    },
    tokenStatus() {
      const out: TokenStatus[] = [];
      const row = (name: string, kind: WecomAppKind | 'suite', key: string | undefined) => {
        const st = status.get(statusKey({ name, kind })) ?? {};
        const expiresAt = key !== undefined ? cache.expiresAt(key) : undefined;
        const heldUntil = key !== undefined ? cache.heldUntil(key) : undefined;
        out.push({
          name,
          kind,
          ...(st.lastRefreshAt !== undefined ? { lastRefreshAt: st.lastRefreshAt } : {}),
          ...(expiresAt !== undefined ? { expiresAt } : {}),
          ...(st.lastErrcode !== undefined ? { lastErrcode: st.lastErrcode } : {}),
          ...(st.lastError !== undefined ? { lastError: st.lastError } : {}),
          ...(heldUntil !== undefined ? { heldUntil } : {}),
        });
      };
      for (const a of apps.values()) row(a.cfg.name, a.kind, a.key);
      for (const s of suites.values()) row(s.cfg.name, 'suite', s.key);
      return out;
    },
    async close() {
      closed = true;
      cache.clear();
    },
  };
}

/** Apps and suites may share a name: their status rows must not. */
const statusKey = (who: { name: string; kind: WecomAppKind | 'suite' }) => `${who.kind === 'suite' ? 'suite' : 'app'}:${who.name}`;

function opt(v: { hint: string | undefined; fromIp: string | undefined }): { hint?: string; fromIp?: string } {
  return { ...(v.hint !== undefined ? { hint: v.hint } : {}), ...(v.fromIp !== undefined ? { fromIp: v.fromIp } : {}) };
}
