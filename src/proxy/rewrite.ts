/**
 * Response rewriting: Location / Content-Location / Refresh URLs that point at any upstream origin
 * of the route table are turned into public URLs (port normalised: an upstream's :8080 never leaks),
 * Set-Cookie Domain/Path are fitted to the public site, and cookies named like the gateway's own
 * are dropped.
 */
import { GATEWAY_COOKIE_PREFIX, type RequestContext } from '../core/http.ts';
import { type CompiledRoute, HOST_EXACT, publicPath, type RouteTable } from './routes.ts';

const ABSOLUTE_URL = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s;

/** "scheme://host:port" (explicit port, lower-case) for an authority seen under a scheme; undefined when odd. */
function originKey(scheme: string, authority: string): string | undefined {
  // Userinfo does not change the origin (and is dropped from the rewritten URL).
  const a = authority.slice(authority.lastIndexOf('@') + 1).toLowerCase();
  if (a === '') return undefined;
  let host = a;
  let port = '';
  if (a.startsWith('[')) {
    const end = a.indexOf(']');
    if (end === -1) return undefined;
    host = a.slice(0, end + 1);
    if (a.length > end + 1) {
      if (a.charCodeAt(end + 1) !== 0x3a) return undefined;
      port = a.slice(end + 2);
    }
  } else {
    const colon = a.indexOf(':');
    if (colon !== -1) {
      host = a.slice(0, colon);
      port = a.slice(colon + 1);
    }
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (port === '') port = scheme === 'https' ? '443' : '80';
  else if (!/^[0-9]{1,5}$/.test(port)) return undefined;
  else port = String(Number(port));
  return `${scheme}://${host}:${port}`;
}

/** ":port" of the request's Host header, or "". */
function authorityPort(authority: string): string {
  const colon = authority.lastIndexOf(':');
  return colon > authority.lastIndexOf(']') ? authority.slice(colon) : '';
}

/**
 * The public form of a URL the upstream sent, or undefined to leave it as is (relative URLs, other
 * sites). A URL on this route's upstream maps to the request's own origin; on another route's
 * upstream to that route's host when it has an exact one (same scheme and port as this request),
 * else to the request's origin. The upstream base path / strip_prefix are mapped back.
 */
export function rewriteUrl(value: string, route: CompiledRoute, table: RouteTable, ctx: RequestContext): string | undefined {
  let scheme: string;
  let authority: string;
  let rest: string;
  if (value.startsWith('//')) {
    // Protocol-relative: resolved against the URL the upstream was asked for.
    scheme = route.upstream.secure ? 'https' : 'http';
    const end = value.slice(2).search(/[/?#]/);
    authority = end === -1 ? value.slice(2) : value.slice(2, end + 2);
    rest = end === -1 ? '' : value.slice(end + 2);
  } else {
    const m = ABSOLUTE_URL.exec(value);
    if (m === null) return undefined;
    scheme = (m[1] as string).toLowerCase();
    if (scheme !== 'http' && scheme !== 'https') return undefined;
    authority = m[2] as string;
    rest = m[3] as string;
  }
  const key = originKey(scheme, authority);
  if (key === undefined) return undefined;
  const candidates = table.byUpstream.get(key);
  if (candidates === undefined) return undefined;

  const cut = rest.search(/[?#]/);
  const path = cut === -1 ? rest : rest.slice(0, cut);
  const tail = cut === -1 ? '' : rest.slice(cut);
  const upPath = path === '' ? '/' : path;
  const reqScheme = ctx.secure ? 'https' : 'http';
  const ownOrigin = `${reqScheme}://${ctx.authority}`;

  let target: CompiledRoute | undefined;
  let mapped: string | undefined;
  if (candidates.includes(route)) {
    mapped = publicPath(route, upPath);
    if (mapped !== undefined) target = route;
  }
  if (target === undefined) {
    for (const c of candidates) {
      mapped = publicPath(c, upPath);
      if (mapped !== undefined) {
        target = c;
        break;
      }
    }
  }
  // Never leak the upstream origin: keep the path as is when no route maps it back.
  if (target === undefined || mapped === undefined) return `${ownOrigin}${path}${tail}`;
  const origin =
    target !== route && target.hostKind === HOST_EXACT ? `${reqScheme}://${target.host}${authorityPort(ctx.authority)}` : ownOrigin;
  return `${origin}${mapped}${tail}`;
}

const REFRESH = /^(\s*[0-9.]+\s*[;,]\s*(?:url\s*=\s*)?)(['"]?)(.*?)\2(\s*)$/is;

/** Refresh: "<seconds>; url=<URL>" with the URL rewritten like Location. */
export function rewriteRefresh(value: string, route: CompiledRoute, table: RouteTable, ctx: RequestContext): string | undefined {
  const m = REFRESH.exec(value);
  if (m === null) return undefined;
  const url = rewriteUrl(m[3] as string, route, table, ctx);
  return url === undefined ? undefined : `${m[1]}${m[2]}${url}${m[2]}${m[4]}`;
}

/** Is this cookie name one the gateway owns (also with the __Host- / __Secure- prefixes)? */
export function isGatewayCookie(name: string): boolean {
  let n = name.trim().toLowerCase();
  if (n.startsWith('__host-')) n = n.slice(7);
  else if (n.startsWith('__secure-')) n = n.slice(9);
  return n.startsWith(GATEWAY_COOKIE_PREFIX);
}

/**
 * One Set-Cookie value as relayed to the client, or undefined to drop it. Cookies named like the
 * gateway's own are always dropped. With rewriting on, a Domain equal to (or a parent of) the
 * upstream host is removed, so the cookie becomes host-only for the public host: that is the
 * narrowest scope, whereas Domain=<public host> would also send it to every subdomain of it. A Path
 * is mapped back through strip_prefix / the upstream base path.
 */
export function rewriteSetCookie(value: string, route: CompiledRoute, rewrite: boolean): string | undefined {
  const semi = value.indexOf(';');
  const pair = semi === -1 ? value : value.slice(0, semi);
  const eq = pair.indexOf('=');
  if (isGatewayCookie(eq === -1 ? pair : pair.slice(0, eq))) return undefined;
  if (!rewrite || semi === -1) return value;
  const parts = value.split(';');
  let changed = false;
  const upHost = route.upstream.hostname;
  for (let i = 1; i < parts.length; i++) {
    const attr = (parts[i] as string).trim();
    const lower = attr.toLowerCase();
    if (lower.startsWith('domain=')) {
      let d = lower.slice(7).trim();
      if (d.startsWith('.')) d = d.slice(1);
      if (d.endsWith('.')) d = d.slice(0, -1);
      if (d === upHost || upHost.endsWith(`.${d}`)) {
        parts[i] = '';
        changed = true;
      }
    } else if (lower.startsWith('path=') && route.remapsPath) {
      const p = attr.slice(5).trim();
      if (p.startsWith('/')) {
        // A path outside the base path covered the whole upstream site: the route's mount is the public equivalent.
        const mapped = publicPath(route, p) ?? (route.strip ? `${route.mount}/` : '/');
        parts[i] = ` Path=${mapped}`;
        changed = true;
      }
    }
  }
  if (!changed) return value;
  return parts.filter((p, i) => i === 0 || p !== '').join(';');
}
