/**
 * Header policy, applied while building the outgoing header list from the client's raw headers
 * (never through a proxy library's hooks, which some paths skip, e.g. `Expect: 100-continue`).
 * The gateway alone sets X-Forwarded-*, X-Real-IP and X-Request-Id; clients cannot forge them, nor
 * the identity headers a later login stage adds.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { IDENTITY_HEADER_PREFIX, type RequestContext } from '../core/http.ts';

/** Hop-by-hop headers (RFC 9110 §7.6.1 plus the common non-standard ones): never forwarded either way. */
export const HOP_BY_HOP_HEADERS: readonly string[] = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
  // h2c upgrade parameters (RFC 7540 §3.2.1): only for the hop that declined the upgrade.
  'http2-settings',
];
const HOP_BY_HOP = new Set(HOP_BY_HOP_HEADERS);

/**
 * Client headers dropped besides hop-by-hop ones: the gateway sets these itself (Host, forwarding,
 * request id), `Expect` was already answered by Node (undici refuses to send it), and `__proto__`
 * has crashed header handling before.
 */
const CLIENT_DROPPED = new Set(['host', 'forwarded', 'x-real-ip', 'x-request-id', 'expect', '__proto__']);

/** What the header scan learned about the request body. */
export interface BodyInfo {
  /** Content-Length, or -1 when absent. */
  contentLength: number;
  /** Transfer-Encoding was present (a streamed body of unknown length). */
  chunked: boolean;
}

function isClientDropped(lname: string): boolean {
  if (HOP_BY_HOP.has(lname) || CLIENT_DROPPED.has(lname)) return true;
  // Underscores: nginx's underscores_in_headers off; also stops `X_Wegate_User` reaching CGI-style upstreams as X-Wegate-User.
  if (lname.includes('_')) return true;
  return lname.startsWith('x-forwarded-') || lname.startsWith(IDENTITY_HEADER_PREFIX);
}

function addNominated(value: string, into: Set<string> | undefined): Set<string> | undefined {
  // Fast path for the values every browser sends.
  if (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Upgrade' || value === 'upgrade') return into;
  for (const token of value.split(',')) {
    const t = token.trim().toLowerCase();
    if (t === '' || HOP_BY_HOP.has(t)) continue;
    into ??= new Set();
    into.add(t);
  }
  return into;
}

/**
 * Outgoing request headers as a flat [name, value, …] list (names lower-case), from the client's raw
 * headers: hop-by-hop and Connection-nominated headers, forwarding headers, identity-prefixed and
 * underscore names removed; the gateway's own Host, X-Forwarded-For/-Proto/-Host, X-Real-IP and
 * X-Request-Id added. For a WebSocket upgrade `Upgrade` is kept and `Connection: upgrade` set.
 */
export function buildRequestHeaders(
  raw: readonly string[],
  ctx: RequestContext,
  hostHeader: string,
  upgrade: boolean,
  body: BodyInfo,
): string[] {
  const out: string[] = [];
  let nominated: Set<string> | undefined;
  let upgradeValue: string | undefined;
  body.contentLength = -1;
  body.chunked = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lname = name.toLowerCase();
    if (isClientDropped(lname)) {
      if (lname === 'connection') nominated = addNominated(value, nominated);
      else if (lname === 'transfer-encoding') body.chunked = true;
      else if (lname === 'upgrade') upgradeValue = value;
      continue;
    }
    if (lname === 'content-length') body.contentLength = Number(value);
    out.push(lname, value);
  }
  if (nominated !== undefined) {
    let w = 0;
    for (let r = 0; r < out.length; r += 2) {
      if (nominated.has(out[r] as string)) continue;
      out[w++] = out[r] as string;
      out[w++] = out[r + 1] as string;
    }
    out.length = w;
  }
  if (upgrade && upgradeValue !== undefined) out.push('connection', 'upgrade', 'upgrade', upgradeValue);
  out.push(
    'host',
    hostHeader,
    'x-forwarded-for',
    ctx.clientIp,
    'x-forwarded-proto',
    ctx.secure ? 'https' : 'http',
    'x-forwarded-host',
    ctx.authority,
    'x-real-ip',
    ctx.clientIp,
    'x-request-id',
    ctx.id,
  );
  return out;
}

/** A flat header list as an object (duplicates as arrays), for APIs that take objects (node:http). */
export function headerListToObject(list: readonly string[]): Record<string, string | string[]> {
  const obj: Record<string, string | string[]> = Object.create(null);
  for (let i = 0; i < list.length; i += 2) {
    const k = list[i] as string;
    const v = list[i + 1] as string;
    const prev = obj[k];
    if (prev === undefined) obj[k] = v;
    else if (Array.isArray(prev)) prev.push(v);
    else obj[k] = [prev, v];
  }
  return obj;
}

/** Names nominated by a response's Connection header (besides the hop-by-hop ones), or undefined. */
export function responseNominated(headers: IncomingHttpHeaders): Set<string> | undefined {
  const c = headers.connection;
  if (c === undefined) return undefined;
  let set: Set<string> | undefined;
  for (const v of Array.isArray(c) ? c : [c]) set = addNominated(v, set);
  return set;
}

/** Is this response header hop-by-hop (never relayed to the client)? */
export function isHopByHop(lname: string): boolean {
  return HOP_BY_HOP.has(lname);
}
