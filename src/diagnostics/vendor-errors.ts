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
 *   them is decoded and parsed, and then decided on the errcode, never on the errmsg (WeCom: errmsg
 *   may change, doc 90455); `from ip` and `hint` come from diagnose.ts's parseErrmsg.
 * The measured cost with the scan on is `scan_cpu_overhead_pct` in `npm run bench`.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { RouteConfig } from '../config/schema.ts';
import type { RequestContext } from '../core/http.ts';
import type { BodySink, Replacement, ResponseObserver } from '../proxy/observer.ts';
import { parseErrmsg } from '../wecom/api/diagnose.ts';
import { parseJsonObject } from '../wecom/api/http.ts';
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

export interface VendorError {
  readonly errcode: VendorErrcode;
  /** The address WeCom saw the vendor's call come from. */
  readonly fromIp?: string;
  readonly hint?: string;
  /** The body is WeCom's JSON itself (an object with that errcode at the top): a "raw JSON page". */
  readonly raw: boolean;
}

const NEEDLE_60020 = Buffer.from('60020');
const NEEDLE_48002 = Buffer.from('48002');

/** `errcode` shown inside a page or a string: quoted, HTML-escaped or JSON-escaped, `:` or `=`. */
const EMBEDDED_RE = /errcode(?:\\?"|&quot;|&#34;|&#x22;|')?\s{0,8}[:=]\s{0,8}(?:\\?"|&quot;|&#34;|&#x22;|')?(60020|48002)(?![0-9])/i;

const errcodeOf = (v: unknown): VendorErrcode | undefined =>
  v === 60020 || v === '60020' ? 60020 : v === 48002 || v === '48002' ? 48002 : undefined;

/** A WeCom error object nested in the vendor's own JSON (`{"code":500,"data":{"errcode":60020,…}}`), bounded. */
function nested(v: unknown, depth: number, budget: { n: number }): Record<string, unknown> | undefined {
  if (typeof v !== 'object' || v === null || depth > 4) return undefined;
  const values = Array.isArray(v) ? (v as unknown[]) : Object.values(v);
  for (const x of values) {
    if (--budget.n < 0) return undefined;
    if (typeof x !== 'object' || x === null) continue;
    if (!Array.isArray(x) && errcodeOf((x as Record<string, unknown>)['errcode']) !== undefined) return x as Record<string, unknown>;
    const deeper = nested(x, depth + 1, budget);
    if (deeper !== undefined) return deeper;
  }
  return undefined;
}

const found = (errcode: VendorErrcode, errmsg: unknown, raw: boolean): VendorError => {
  const { hint, fromIp } = parseErrmsg(errmsg);
  return { errcode, raw, ...(fromIp !== undefined ? { fromIp } : {}), ...(hint !== undefined ? { hint } : {}) };
};

/** The WeCom 60020 / 48002 error a response body carries, if any. Never throws. */
export function findVendorError(body: Buffer): VendorError | undefined {
  // The hot path: almost every body holds neither number.
  if (body.indexOf(NEEDLE_60020) === -1 && body.indexOf(NEEDLE_48002) === -1) return undefined;
  const text = body.toString('utf8');
  let json: Record<string, unknown> | undefined;
  try {
    json = parseJsonObject(text);
  } catch {
    json = undefined;
  }
  if (json !== undefined) {
    const top = errcodeOf(json['errcode']);
    if (top !== undefined) return found(top, json['errmsg'], true);
    const inner = nested(json, 0, { n: 256 });
    const code = errcodeOf(inner?.['errcode']);
    if (inner !== undefined && code !== undefined) return found(code, inner['errmsg'], false);
  }
  // A page or text showing WeCom's JSON (HTML-escaped, or as a string inside the vendor's JSON).
  const m = EMBEDDED_RE.exec(text);
  const code = errcodeOf(m?.[1]);
  return code === undefined ? undefined : found(code, text, false);
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

  constructor(route: string, config: RouteConfig, incidents: Incidents) {
    this.route = route;
    this.prefix = config.path ?? '/';
    this.app = config.wecom_errors?.app;
    this.explain = config.wecom_errors?.explain === true;
    this.incidents = incidents;
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

  /** Record what was found; the explanation text. */
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

export interface WecomErrorScanDeps {
  /** Where the vendors' incidents go (the same list /diagnostics shows). */
  readonly incidents: Incidents;
}

/**
 * The scan as the proxy's observer factory: a route gets an observer unless its
 * `wecom_errors.scan` is false. No timers, sockets or files: nothing to close.
 */
export function createWecomErrorScan({
  incidents,
}: WecomErrorScanDeps): (route: { readonly name: string; readonly config: RouteConfig }) => ResponseObserver | undefined {
  return (route) => (route.config.wecom_errors?.scan === false ? undefined : new RouteScan(route.name, route.config, incidents));
}
