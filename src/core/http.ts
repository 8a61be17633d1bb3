/**
 * Small HTTP helpers shared by every stage: the per-request context, request-target parsing and
 * path normalisation (done once, in the server, so routing and forwarding see the same path), and
 * the one function that turns an error code into a client response.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ERRORS, type ErrorCode } from './errors.ts';

/**
 * Reserved prefix for identity headers the gateway itself sets for upstreams (WeCom OAuth issue).
 * Any client-supplied header with this prefix is removed before forwarding (any case, `_` variants too).
 */
export const IDENTITY_HEADER_PREFIX = 'x-wegate-';

/** Cookie names the gateway owns (session, OAuth state). Upstream Set-Cookie with this prefix is dropped. */
export const GATEWAY_COOKIE_PREFIX = 'wegate_';

/** What the server pipeline knows about a request before any stage handles it. */
export interface RequestContext {
  /** Request id, echoed as X-Request-Id and in error pages and logs. */
  readonly id: string;
  /** process.hrtime.bigint() when the request arrived. */
  readonly startedAt: bigint;
  readonly clientIp: string;
  /** True when the request arrived on the HTTPS listener. */
  readonly secure: boolean;
  /** Validated Host without port, lower-case. */
  readonly host: string;
  /** Validated Host header as received (may carry a port), lower-case. */
  readonly authority: string;
  /** Path exactly as received (no query). Verification files match on this. */
  readonly rawPath: string;
  /**
   * Normalised path (dot-segments resolved, slashes merged, unreserved escapes decoded, other escapes
   * upper-case, `;parameters` kept): what is forwarded. Routes match `routingPath(path)`.
   */
  readonly path: string;
  /** "" or "?…" exactly as received. */
  readonly query: string;
  /**
   * Filled by the stage that handled the request, for the access log and metrics. (Creators set them
   * to undefined up front: a property added later costs the hot path a property-store allocation.)
   */
  route?: string | undefined;
  upstream?: string | undefined;
  /** Error code when the response was an error page. */
  errorCode?: ErrorCode | undefined;
  /**
   * True when whoever created this context calls `onClose.responseClosed()` from its own 'close'
   * listener on the response (the pipeline does): a stage that must hear of the close then sets
   * `onClose` instead of adding a listener of its own (one listener per response, not one per stage).
   */
  readonly notifiesClose?: boolean;
  onClose?: ResponseCloseHook | undefined;
}

/** A stage that must hear when the response closes (the proxy aborts its upstream exchange). */
export interface ResponseCloseHook {
  responseClosed(): void;
}

export type ParsedTarget = { ok: true; rawPath: string; path: string; query: string } | { ok: false; code: ErrorCode; reason: string };

/** Value of a hex digit (0-15), or -1. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x66 ? l - 0x57 : -1;
}

/** RFC 3986 unreserved characters (A-Z a-z 0-9 - . _ ~): an escape of one of these is the character itself. */
function isUnreserved(b: number): boolean {
  const l = b | 0x20;
  return (l >= 0x61 && l <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e;
}

const HEX_DIGITS = '0123456789ABCDEF';

/**
 * Parse an origin-form request target and normalise its path.
 * Rejected (400): absolute-form and asterisk-form targets, a fragment ("#"), control characters,
 * backslashes (raw or encoded), encoded "/" and NUL, malformed percent-encoding or invalid UTF-8
 * (overlong forms), dot-segments that climb above the root, and dot-segments with path parameters
 * ("..;", ".;x", "%2e%2e;jsessionid=1", also before an encoded ";"): servlet containers drop the
 * parameters and then resolve the dots, so "/public/..;/admin" is "/admin" to Tomcat.
 * Normalised (RFC 3986 §6.2.2): escapes of unreserved characters are decoded ("%69" → "i"), other
 * escapes get upper-case hex digits, dot-segments ("." "..", also as %2e) are resolved and repeated
 * slashes merged, so "/public/../admin" is routed *and* forwarded as "/admin". Decoding happens once:
 * "%252e" stays "%252e" (the upstream decodes it to a literal "%2e"). Path parameters (";x=1") are
 * kept here; routing ignores them (see routingPath).
 */
export function parseTarget(url: string | undefined): ParsedTarget {
  if (!url || url[0] !== '/') return { ok: false, code: 'WG_BAD_REQUEST', reason: 'request target must be origin-form' };
  const q = url.indexOf('?');
  const rawPath = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q);
  // Fast path: nothing to decode or resolve (no "%", no segment starting with "."; the class has no "#").
  if (/^(?:\/[A-Za-z0-9_~!$&'()*+,;=:@-][A-Za-z0-9._~!$&'()*+,;=:@-]*)*\/?$/.test(rawPath) && !rawPath.includes('/.')) {
    if (q !== -1 && url.indexOf('#', q) !== -1) return { ok: false, code: 'WG_BAD_REQUEST', reason: 'fragment in request target' };
    return { ok: true, rawPath, path: rawPath, query };
  }
  for (let i = 0; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c < 0x21 || c === 0x7f) return { ok: false, code: 'WG_BAD_PATH', reason: 'control character in target' };
    if (c === 0x23) return { ok: false, code: 'WG_BAD_REQUEST', reason: 'fragment in request target' };
  }
  if (rawPath.includes('\\')) return { ok: false, code: 'WG_BAD_PATH', reason: 'backslash in path' };
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawPath);
  } catch {
    return { ok: false, code: 'WG_BAD_PATH', reason: 'malformed percent-encoding' };
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return { ok: false, code: 'WG_BAD_PATH', reason: 'NUL or backslash in path' };
  const out: string[] = [];
  const segments = rawPath.split('/');
  const last = segments.length - 1;
  for (let i = 1; i < segments.length; i++) {
    let seg = segments[i] as string;
    if (seg.includes('%')) {
      // Rebuild the segment: unreserved escapes decoded, the others with upper-case hex.
      let norm = '';
      let from = 0;
      for (let j = seg.indexOf('%'); j !== -1; j = seg.indexOf('%', j + 1)) {
        const hi = hexValue(seg.charCodeAt(j + 1));
        const lo = hexValue(seg.charCodeAt(j + 2));
        if (hi === -1 || lo === -1) return { ok: false, code: 'WG_BAD_PATH', reason: 'malformed percent-encoding' };
        const b = hi * 16 + lo;
        if (b === 0x2f || b === 0x5c || b === 0) return { ok: false, code: 'WG_BAD_PATH', reason: 'encoded slash, backslash or NUL' };
        norm += seg.slice(from, j);
        norm += isUnreserved(b) ? String.fromCharCode(b) : `%${HEX_DIGITS[hi] as string}${HEX_DIGITS[lo] as string}`;
        from = j + 3;
      }
      seg = norm + seg.slice(from);
    }
    if (seg === '' && i !== last) continue; // merge "//"
    if (seg.charCodeAt(0) === 0x2e) {
      // The name is what a servlet container resolves: the part before the first ";" (raw or encoded).
      let end = seg.indexOf(';');
      const enc = seg.indexOf('%3B');
      if (enc !== -1 && (end === -1 || enc < end)) end = enc;
      const name = end === -1 ? seg : seg.slice(0, end);
      if (name === '.' || name === '..') {
        if (end !== -1) return { ok: false, code: 'WG_BAD_PATH', reason: 'dot-segment with path parameters' };
        if (name === '..') {
          // Segments named "" (";x" alone) are empty to a servlet container, like a merged "//":
          // ".." removes them together with the named segment before them ("/a/;x/.." is "/").
          let popped: string | undefined;
          do {
            popped = out.pop();
            if (popped === undefined) return { ok: false, code: 'WG_BAD_PATH', reason: 'dot-segment above the root' };
          } while (popped.charCodeAt(0) === 0x3b);
        }
        if (i === last) out.push('');
        continue;
      }
    }
    out.push(seg);
  }
  return { ok: true, rawPath, path: `/${out.join('/')}`, query };
}

/**
 * The path routes are matched on: `path` (normalised) with every segment's ";parameters" removed
 * and the segments left empty by that merged, as Tomcat, Jetty and Spring read it before mapping
 * ("/api;x=1/import" and "/;x/api/import" are "/api/import"). The same string when there is no ";".
 */
export function routingPath(path: string): string {
  if (path.indexOf(';') === -1) return path;
  const segments = path.split('/');
  const last = segments.length - 1;
  let out = '';
  for (let i = 1; i < segments.length; i++) {
    let seg = segments[i] as string;
    const semi = seg.indexOf(';');
    if (semi !== -1) seg = seg.slice(0, semi);
    if (seg === '' && i !== last) continue;
    out += `/${seg}`;
  }
  return out;
}

/** Does `path` fall under `prefix` on a segment boundary ("/api" matches "/api" and "/api/x", not "/apix")? */
export function pathHasPrefix(path: string, prefix: string): boolean {
  if (prefix === '/' || path === prefix) return true;
  if (!path.startsWith(prefix)) return false;
  return prefix.endsWith('/') || path.charCodeAt(prefix.length) === 0x2f;
}

/** True when the request announced a body that has not been read to the end yet. */
export function hasUnreadBody(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const cl = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (cl !== undefined && cl !== '0');
}

function wantsHtml(req: IncomingMessage): boolean {
  const accept = req.headers.accept;
  return typeof accept === 'string' && accept.includes('text/html');
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * Answer with the error page for `code`: short bilingual text and the request id; HTML for browsers,
 * JSON otherwise; never a cause or stack. Safe to call when headers were already sent (then the
 * connection is destroyed so the client sees a failure, not a clean end).
 */
export function sendError(
  req: IncomingMessage,
  res: ServerResponse,
  ctx: Pick<RequestContext, 'id'> & { errorCode?: ErrorCode | undefined },
  code: ErrorCode,
  extraHeaders?: Record<string, string>,
): void {
  ctx.errorCode = code;
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const spec = ERRORS[code];
  let body: string;
  let type: string;
  if (wantsHtml(req)) {
    type = 'text/html; charset=utf-8';
    body = `<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>${spec.status} ${escapeHtml(spec.en)}</title></head><body><h1>${spec.status} ${escapeHtml(spec.zh)}</h1><p>${escapeHtml(spec.en)}</p><p><small>wegate · ${escapeHtml(code)} · request id ${escapeHtml(ctx.id)}</small></p></body></html>\n`;
  } else {
    type = 'application/json; charset=utf-8';
    body = `${JSON.stringify({ error: code, status: spec.status, message: spec.en, message_zh: spec.zh, request_id: ctx.id })}\n`;
  }
  const headers: Record<string, string | number> = {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-request-id': ctx.id,
    ...extraHeaders,
  };
  // A request body we refused to read would desync a keep-alive connection: close it instead.
  if (hasUnreadBody(req)) headers.connection = 'close';
  res.writeHead(spec.status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}
