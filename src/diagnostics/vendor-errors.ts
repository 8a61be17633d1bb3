/**
 * WeCom errors in vendor responses (issue 11 item 4): when a vendor's own WeCom call fails, its
 * server often hands WeCom's raw `{"errcode":60020,"errmsg":"not allow to access from your ip, …,
 * from ip: X, …"}` to the employee's browser. The scan notices such bodies in what a route's upstream
 * sends through wegate, records the vendor's incident (the route as the app, X as the vendor's IP)
 * and, on routes with `explain`, shows a browser a bilingual page instead of the raw JSON.
 *
 * It is a response observer of the proxy (src/proxy/observer.ts), on the hot path, so it is cut to
 * be cheap when there is nothing to find:
 * - the head decides first: only identity-encoded JSON / text / HTML bodies of at most
 *   SCAN_MAX_BYTES are looked at (Content-Length when given, else the bytes as they come); compressed
 *   bodies are not inflated (that would cost every small gzip'd response a zlib stream) and pass
 *   unscanned, as do HEAD, 1xx, 204 and 304;
 * - the bytes are searched with Buffer.indexOf for `60020` and `48002`; only a body holding one of
 *   them is looked at further, with bounded work (findVendorError), and decided on the errcode,
 *   never on the errmsg (WeCom: errmsg may change, doc 90455); `from ip` and `hint` come from
 *   diagnose.ts's parseErrmsg.
 * Only a body that is WeCom's error (its JSON, or that JSON in the vendor's small JSON envelope)
 * becomes an incident; a page or text that merely shows the number is counted in
 * wegate_wecom_vendor_error_mentions_total and nothing else (a visitor can make a vendor page echo
 * it, with an IP of their choosing: review F3).
 * The measured cost with the scan on is `scan_cpu_overhead_pct` in `npm run bench`.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { RouteConfig } from '../config/schema.ts';
import type { RequestContext } from '../core/http.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { BodySink, Replacement, ResponseObserver } from '../proxy/observer.ts';
import { parseErrmsg } from '../wecom/api/diagnose.ts';
import type { Incidents } from './incidents.ts';

/** Largest body scanned (declared or actual); larger responses pass unscanned. */
export const SCAN_MAX_BYTES = 16 * 1024;

/** The errcodes looked for: 60020 (IP not trusted) and 48002 (API forbidden). */
export type VendorErrcode = 60020 | 48002;

/** Incident causes of a vendor's failed WeCom call. */
export const VENDOR_CAUSES: Readonly<Record<VendorErrcode, string>> = {
  60020: 'vendor_ip_not_trusted',
  48002: 'vendor_api_forbidden',
};

/**
 * How a body carries the error:
 * - `raw`: the body is WeCom's JSON itself (an object with that errcode, a JSON number, at the top);
 * - `envelope`: WeCom's error object inside the vendor's own small JSON (`{"code":500,"data":{"errcode":60020,…}}`);
 * - `text`: a page, a string or broken JSON merely showing the errcode. Anyone can make a vendor's
 *   404 or search page echo `errcode:60020 from ip: X`, so such a body is only counted, never
 *   recorded as an incident, and no IP or hint is taken from it (review F3).
 */
export type VendorErrorForm = 'raw' | 'envelope' | 'text';

export interface VendorError {
  readonly errcode: VendorErrcode;
  readonly form: VendorErrorForm;
  /** The address WeCom saw the vendor's call come from (never for `text`). */
  readonly fromIp?: string;
  /** WeCom's request id (never for `text`). */
  readonly hint?: string;
  /** `form` is `raw`: a "raw JSON page" a browser may be shown the explanation instead of. */
  readonly raw: boolean;
}

const NEEDLE_60020 = Buffer.from('60020');
const NEEDLE_48002 = Buffer.from('48002');
const ERRCODE_KEY = Buffer.from('"errcode"');

/**
 * The work on a body that holds a needle is bounded whatever the body (review F10: repeated needles,
 * `errcode` runs and deep JSON cost 0.25–1.4 ms per 16 KiB body with a whole-text regex and a
 * JSON.parse reviver): at most MAX_HITS occurrences of each needle and of `"errcode"` are looked at,
 * and JSON is parsed only when its structure is small (SMALL_JSON_STEPS, SMALL_JSON_DEPTH), checked
 * first by a scan that stops as soon as either bound is passed.
 */
const MAX_HITS = 8;
/** Strings and structural characters (`{ } [ ] , :`) a small JSON may hold: WeCom's error is ~10, an envelope a few dozen. */
const SMALL_JSON_STEPS = 256;
/** Nesting of a small JSON: WeCom's object is depth 1, `{"data":{"result":[{…}]}}` puts it at depth 4. */
const SMALL_JSON_DEPTH = 4;
/** Leading whitespace skipped before the `{` of a JSON body. */
const MAX_LEADING_SPACE = 64;

/** After `"errcode"`: a JSON number 60020 / 48002 (not a string, not 600201, not 60020.5). */
const NUMERIC_ERRCODE = /^[ \t\r\n]{0,8}:[ \t\r\n]{0,8}(?:60020|48002)(?![0-9.eE])/;
/** Just before a needle in a page or a string: `errcode` quoted, HTML-escaped or JSON-escaped, then `:` or `=`. */
const SHOWN_ERRCODE = /errcode(?:\\?"|&quot;|&#34;|&#x22;|')?\s{0,8}[:=]\s{0,8}(?:\\?"|&quot;|&#34;|&#x22;|')?$/i;
/** How far before a needle SHOWN_ERRCODE looks (`errcode&quot;` + 8 spaces + `:` + 8 spaces + `&quot;` is 36). */
const SHOWN_WINDOW = 48;

/** Keys never followed: JSON.parse makes them own properties; later code could mistake them for the prototype. */
const PROTO_KEYS: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);

const isDigit = (c: number | undefined) => c !== undefined && c >= 0x30 && c <= 0x39;

/** The first non-whitespace byte is `{` (within MAX_LEADING_SPACE bytes). */
function startsLikeObject(body: Buffer): boolean {
  const end = Math.min(body.length, MAX_LEADING_SPACE);
  for (let i = 0; i < end; i++) {
    const c = body[i];
    if (c === 0x7b) return true;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return false;
  }
  return false;
}

/** `"errcode"` with a numeric 60020 / 48002 somewhere, among the first MAX_HITS keys of that name. */
function hasNumericErrcode(body: Buffer): boolean {
  let at = body.indexOf(ERRCODE_KEY);
  for (let n = 0; at !== -1 && n < MAX_HITS; n++) {
    const after = at + ERRCODE_KEY.length;
    if (NUMERIC_ERRCODE.test(body.toString('latin1', after, after + 24))) return true;
    at = body.indexOf(ERRCODE_KEY, after);
  }
  return false;
}

/** The next string or structural character of a JSON text (`lastIndex` is set before each use). */
const JSON_STEP = /["{}[\],:]/g;

/**
 * Whether `text` (a JSON candidate) nests at most SMALL_JSON_DEPTH deep and holds at most
 * SMALL_JSON_STEPS strings and structural characters. Bounded: it stops at the first bound passed;
 * runs of anything else (digits, spaces) are skipped by a regex and strings by indexOf, both native
 * (a character loop in JS cost ~16 µs on 16 KiB of spaces); an escaped quote costs a step.
 */
function isSmallJson(text: string): boolean {
  const step = JSON_STEP;
  let depth = 0;
  let steps = 0;
  step.lastIndex = 0;
  while (step.test(text)) {
    if (++steps > SMALL_JSON_STEPS) return false;
    const i = step.lastIndex - 1;
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j === -1) return false;
        let k = j - 1;
        while (text.charCodeAt(k) === 0x5c) k--;
        if ((j - 1 - k) % 2 === 0) break;
        if (++steps > SMALL_JSON_STEPS) return false;
      }
      step.lastIndex = j + 1;
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > SMALL_JSON_DEPTH) return false;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return true;
}

const errcodeOf = (v: unknown): VendorErrcode | undefined => (v === 60020 ? 60020 : v === 48002 ? 48002 : undefined);

/** A WeCom error object (numeric errcode) nested in the vendor's small JSON; the depth is bounded by isSmallJson. */
function nested(v: object): Record<string, unknown> | undefined {
  const values = Array.isArray(v)
    ? (v as unknown[])
    : Object.keys(v).map((k) => (PROTO_KEYS.has(k) ? undefined : (v as Record<string, unknown>)[k]));
  for (const x of values) {
    if (typeof x !== 'object' || x === null) continue;
    if (!Array.isArray(x) && errcodeOf((x as Record<string, unknown>)['errcode']) !== undefined) return x as Record<string, unknown>;
    const deeper = nested(x);
    if (deeper !== undefined) return deeper;
  }
  return undefined;
}

/** WeCom's error as the body itself or in a small envelope; undefined for anything else. */
function wecomJson(body: Buffer): VendorError | undefined {
  if (!startsLikeObject(body) || !hasNumericErrcode(body)) return undefined;
  const text = body.toString('utf8');
  if (!isSmallJson(text)) return undefined;
  let json: unknown;
  try {
    // No reviver: only `errcode` / `errmsg` of plain objects are read, PROTO_KEYS are never followed.
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return undefined;
  const top = errcodeOf((json as Record<string, unknown>)['errcode']);
  if (top !== undefined) return found(top, (json as Record<string, unknown>)['errmsg'], 'raw');
  const inner = nested(json);
  const code = errcodeOf(inner?.['errcode']);
  return inner !== undefined && code !== undefined ? found(code, inner['errmsg'], 'envelope') : undefined;
}

const found = (errcode: VendorErrcode, errmsg: unknown, form: 'raw' | 'envelope'): VendorError => {
  const { hint, fromIp } = parseErrmsg(errmsg);
  return { errcode, form, raw: form === 'raw', ...(fromIp !== undefined ? { fromIp } : {}), ...(hint !== undefined ? { hint } : {}) };
};

/** Whether one of at most MAX_HITS occurrences of `needle` (the first at `at`) is an errcode shown as text (SHOWN_ERRCODE before it). */
function shown(body: Buffer, needle: Buffer, at: number): boolean {
  for (let n = 0; at !== -1 && n < MAX_HITS; n++) {
    const end = at + needle.length;
    const number = isDigit(body[end]) || (body[end] === 0x2e && isDigit(body[end + 1])); // 600201, 60020.5
    if (!number && SHOWN_ERRCODE.test(body.toString('latin1', Math.max(0, at - SHOWN_WINDOW), at))) return true;
    at = body.indexOf(needle, end);
  }
  return false;
}

/**
 * The WeCom 60020 / 48002 error a response body carries, if any, and in which form (see
 * VendorErrorForm: only `raw` and `envelope` are WeCom's error; `text` only shows the number).
 * Decided on the errcode, never on the errmsg. Bounded work, never throws.
 */
export function findVendorError(body: Buffer): VendorError | undefined {
  // The hot path: almost every body holds neither number (two Buffer.indexOf, ~150 ns for 200 B).
  const at60020 = body.indexOf(NEEDLE_60020);
  const at48002 = body.indexOf(NEEDLE_48002);
  if (at60020 === -1 && at48002 === -1) return undefined;
  const json = wecomJson(body);
  if (json !== undefined) return json;
  if (shown(body, NEEDLE_60020, at60020)) return { errcode: 60020, form: 'text', raw: false };
  if (shown(body, NEEDLE_48002, at48002)) return { errcode: 48002, form: 'text', raw: false };
  return undefined;
}

/** Content types scanned: JSON, plain text, HTML, JavaScript (JSONP). */
const SCANNED_TYPE = /^\s*(?:text\/(?:plain|html|json|javascript)|application\/(?:[\w.-]+\+)?json|application\/javascript)\s*(?:;|$)/i;

/** A top-level page load in a browser (not a script's fetch/XHR, which expects the JSON). */
function isNavigation(req: IncomingMessage): boolean {
  if (req.method !== 'GET') return false;
  const accept = req.headers.accept;
  if (typeof accept !== 'string' || !accept.includes('text/html')) return false;
  const mode = req.headers['sec-fetch-mode'];
  return mode === undefined || mode === 'navigate';
}

export interface ExplainText {
  readonly en: string;
  readonly zh: string;
}

/** What the admin should do about a vendor's failed call, in English and 简体中文. */
export function vendorAction(e: Pick<VendorError, 'errcode' | 'fromIp'>, route: string, app: string | undefined): ExplainText {
  const appEn = app ?? "<the vendor's app>";
  const appZh = app ?? '<该服务商的应用>';
  if (e.errcode === 60020) {
    const ip = e.fromIp ?? 'an address WeCom did not name';
    const ipZh = e.fromIp ?? '（企业微信未给出的地址）';
    const add = e.fromIp ?? "the vendor's server IP";
    const addZh = e.fromIp ?? '服务商服务器的 IP';
    return {
      en:
        `Vendor IP not trusted: WeCom refused a call the vendor behind route "${route}" made from ${ip} (errcode 60020). ` +
        `The vendor's server IP ${add} must be in 应用管理 › ${appEn} › 企业可信IP (for a third-party or 代开发 app, in the vendor's 服务商 IP白名单), ` +
        `or the vendor should call WeCom through wegate's relay so its calls leave from the school's pinned egress.`,
      zh:
        `服务商 IP 不受信任：路由 "${route}" 后的服务商从 ${ipZh} 调用企业微信被拒绝（错误码 60020）。` +
        `需将服务商服务器 IP ${addZh} 加入 应用管理 › ${appZh} › 企业可信IP（第三方应用或代开发应用则由服务商加入其 服务商 IP白名单），` +
        `或让服务商通过 wegate 的中转调用企业微信，使请求从学校固定的出口发出。`,
    };
  }
  const seen = e.fromIp !== undefined ? { en: ` from ${e.fromIp}`, zh: `（来源 IP ${e.fromIp}）` } : { en: '', zh: '' };
  return {
    en:
      `Vendor API forbidden: WeCom refused an API call the vendor behind route "${route}" made${seen.en} (errcode 48002, api forbidden): ` +
      `the app has no permission for that API, or the vendor used the wrong kind of token. Check the app's permissions in 应用管理 › ${appEn}; ` +
      `for a third-party or 代开发 app the vendor (服务商) has to obtain the permission.`,
    zh:
      `服务商接口无权限：路由 "${route}" 后的服务商调用企业微信接口被拒绝${seen.zh}（错误码 48002，api forbidden）：` +
      `该应用没有调用此接口的权限，或服务商使用了错误类型的凭证。请在 应用管理 › ${appZh} 中检查应用权限；第三方应用或代开发应用需由服务商申请该权限。`,
  };
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Upstream response headers an explanation page keeps (besides the request id it always carries). */
const KEPT_HEADERS = new Set(['x-request-id', 'set-cookie']);

/** The bilingual page shown to a browser instead of WeCom's raw JSON; carries no secret, only what the admin needs. */
export function explanationPage(e: VendorError, text: ExplainText, route: string, requestId: string): string {
  const h = escapeHtml;
  const what =
    e.errcode === 60020
      ? { zh: '企业微信拒绝了来自该服务服务器 IP 的请求', en: "WeCom refused the service's server IP" }
      : { zh: '企业微信拒绝了该服务调用的接口', en: 'WeCom refused an API the service called' };
  const details = [
    `errcode ${e.errcode}`,
    `route ${route}`,
    ...(e.fromIp !== undefined ? [`from ip ${e.fromIp}`] : []),
    ...(e.hint !== undefined ? [`hint ${e.hint}`] : []),
    `request id ${requestId}`,
  ];
  return (
    '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">' +
    '<meta name="viewport" content="width=device-width, initial-scale=1">' +
    '<title>服务暂时无法使用 · Service unavailable</title>' +
    '<style>body{font-family:system-ui,sans-serif;max-width:42em;margin:2em auto;padding:0 1em;line-height:1.6;color:#222}' +
    'h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}small{color:#666;word-break:break-all}</style></head><body>' +
    `<h1>服务暂时无法使用</h1><p>${h(what.zh)}（错误码 ${e.errcode}）。这不是您的操作问题，请将本页截图发给学校的网络管理员。</p>` +
    `<h1 lang="en">This service cannot be used right now</h1><p lang="en">${h(what.en)} (errcode ${e.errcode}). ` +
    "Nothing you did caused it: please send a screenshot of this page to the school's network admin.</p>" +
    `<h2>管理员处理方法 · For the admin</h2><p>${h(text.zh)}</p><p lang="en">${h(text.en)}</p>` +
    `<p><small>wegate · ${h(details.join(' · '))}</small></p></body></html>\n`
  );
}

/** The scan of one route: what the route's responses are recorded against. */
class RouteScan implements ResponseObserver {
  readonly route: string;
  /** The route's path prefix: the incident's "api" (one incident per cause, whatever the page). */
  readonly prefix: string;
  readonly app: string | undefined;
  readonly explain: boolean;
  readonly incidents: Incidents;
  readonly metrics: ScanMetrics;

  constructor(route: string, config: RouteConfig, deps: WecomErrorScanDeps) {
    this.route = route;
    this.prefix = config.path ?? '/';
    this.app = config.wecom_errors?.app;
    this.explain = config.wecom_errors?.explain === true;
    this.incidents = deps.incidents;
    this.metrics = deps.metrics;
  }

  open(req: IncomingMessage, ctx: RequestContext, status: number, headers: IncomingHttpHeaders): BodySink | undefined {
    if (status < 200 || status === 204 || status === 304 || req.method === 'HEAD') return undefined;
    const type = headers['content-type'];
    if (typeof type !== 'string' || !SCANNED_TYPE.test(type)) return undefined;
    const encoding = headers['content-encoding'];
    if (encoding !== undefined && (typeof encoding !== 'string' || encoding.trim().toLowerCase() !== 'identity')) return undefined;
    const length = headers['content-length'];
    if (length !== undefined) {
      const n = Number(length);
      if (!(n > 0 && n <= SCAN_MAX_BYTES)) return undefined;
    }
    // A redirect keeps its body and Location: a browser never shows that body anyway.
    const hold = this.explain && (status < 300 || status >= 400) && isNavigation(req);
    return new VendorSink(this, ctx, hold);
  }

  /** A page or text showing the errcode: counted, nothing recorded. */
  mention(e: VendorError): void {
    this.metrics.wecomVendorErrorMentions.inc({ route: this.route, errcode: String(e.errcode) });
  }

  /** Record WeCom's error (raw or in an envelope); the explanation text. */
  record(e: VendorError, path: string): ExplainText {
    const text = vendorAction(e, this.route, this.app);
    this.incidents.record({
      app: this.route,
      api: this.prefix,
      cause: VENDOR_CAUSES[e.errcode],
      errcode: e.errcode,
      ...(e.fromIp !== undefined ? { fromIp: e.fromIp } : {}),
      ...(e.hint !== undefined ? { hint: e.hint } : {}),
      source: 'vendor',
      path,
      en: text.en,
      zh: text.zh,
    });
    return text;
  }
}

/** One response's body, kept (by reference) up to SCAN_MAX_BYTES and looked at once it ends. */
class VendorSink implements BodySink {
  readonly hold: boolean;
  readonly #scan: RouteScan;
  readonly #ctx: RequestContext;
  #first: Buffer | null = null;
  #more: Buffer[] | null = null;
  #size = 0;

  constructor(scan: RouteScan, ctx: RequestContext, hold: boolean) {
    this.#scan = scan;
    this.#ctx = ctx;
    this.hold = hold;
  }

  data(chunk: Buffer): boolean {
    this.#size += chunk.length;
    if (this.#size > SCAN_MAX_BYTES) {
      this.#first = this.#more = null;
      return false;
    }
    if (this.#first === null) this.#first = chunk;
    else (this.#more ??= []).push(chunk);
    return true;
  }

  end(head: string[] | null): Replacement | undefined {
    const first = this.#first;
    if (first === null) return undefined;
    const more = this.#more;
    this.#first = this.#more = null;
    const body = more === null ? first : Buffer.concat([first, ...more], this.#size);
    let e: VendorError | undefined;
    let text: ExplainText;
    const scan = this.#scan;
    try {
      e = findVendorError(body);
      if (e === undefined) return undefined;
      if (e.form === 'text') {
        scan.mention(e);
        return undefined;
      }
      text = scan.record(e, this.#ctx.path);
    } catch {
      // Never into the proxy's response path: the response then leaves as it came.
      return undefined;
    }
    if (head === null || !e.raw) return undefined;
    const page = explanationPage(e, text, scan.route, this.#ctx.id);
    const out: string[] = [];
    for (let i = 0; i + 1 < head.length; i += 2) {
      const k = head[i] as string;
      if (KEPT_HEADERS.has(k)) out.push(k, head[i + 1] as string);
    }
    out.push(
      'content-type',
      'text/html; charset=utf-8',
      'content-length',
      String(Buffer.byteLength(page)),
      'cache-control',
      'no-store',
      'x-content-type-options',
      'nosniff',
      'content-security-policy',
      "default-src 'none'; style-src 'unsafe-inline'",
    );
    return { head: out, body: page };
  }
}

type ScanMetrics = Pick<Metrics, 'wecomVendorErrorMentions'>;

export interface WecomErrorScanDeps {
  /** Where the vendors' incidents go (the same list /diagnostics shows). */
  readonly incidents: Incidents;
  /** Where pages that only show the errcode are counted. */
  readonly metrics: ScanMetrics;
}

/**
 * The scan as the proxy's observer factory: a route gets an observer unless its
 * `wecom_errors.scan` is false. No timers, sockets or files: nothing to close.
 */
export function createWecomErrorScan(
  deps: WecomErrorScanDeps,
): (route: { readonly name: string; readonly config: RouteConfig }) => ResponseObserver | undefined {
  return (route) => (route.config.wecom_errors?.scan === false ? undefined : new RouteScan(route.name, route.config, deps));
}
