/**
 * The one parser each for upstream URLs, listen addresses and host names, used by config loading
 * (src/config/load.ts), the route table (src/proxy/routes.ts) and the listeners
 * (src/server/listeners.ts), so what `wegate check` accepts is exactly what the gateway runs.
 *
 * An upstream URL is refused when the WHATWG URL parser would silently change it into something
 * else than the admin wrote (`http:///h` → host "h", `http://127.1` → 127.0.0.1, `\` → `/`, `..`
 * resolved, spaces dropped): the gateway must connect to what the file says. Runs at load time only.
 */
import { isIP, isIPv6 } from 'node:net';

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly reason: string };

const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

/** Host names compare case-insensitively and without the root dot: "API1.School.edu.cn." → "api1.school.edu.cn". */
export function normaliseHost(host: string): string {
  const h = host.toLowerCase();
  return h.charCodeAt(h.length - 1) === 0x2e ? h.slice(0, -1) : h;
}

// WHATWG "ends in a number": the last label is decimal digits or 0x-hex, so the whole host is parsed as IPv4.
const NUMERIC_LABEL = /^(?:[0-9]+|0[xX][0-9A-Fa-f]*)$/;
const DOTTED_QUAD_PART = /^(?:0|[1-9][0-9]{0,2})$/;

/**
 * Why `host` (a reg-name or IPv4 address, no brackets, no port) is not usable as written, or undefined.
 * IPv4 must be four plain decimal numbers: the URL parser and getaddrinfo read `127.1`, `0x7f.1`,
 * `2130706433` and `010.0.0.1` as other addresses than they seem to name.
 */
export function hostProblem(host: string): string | undefined {
  if (host === '') return 'must name a host';
  const bad = /[^A-Za-z0-9._-]/.exec(host);
  if (bad) return `must name a host of letters, digits, "-", "_" and "." (${JSON.stringify(bad[0])} is not one)`;
  if (host.length > 253) return 'must name a host of at most 253 characters';
  const labels = (host.endsWith('.') ? host.slice(0, -1) : host).split('.');
  if (labels.some((l) => l === '')) return 'must not have an empty label ("..") in its host';
  if (labels.some((l) => l.length > 63)) return 'must not have a host label longer than 63 characters';
  if (NUMERIC_LABEL.test(labels[labels.length - 1] as string)) {
    const quad = labels.length === 4 && labels.every((l) => DOTTED_QUAD_PART.test(l) && Number(l) <= 255);
    if (!quad || host.endsWith('.')) {
      let read: string | undefined;
      try {
        read = new URL(`http://${host}/`).hostname;
      } catch {
        // not an address at all (a part above 255, …)
      }
      return read === undefined
        ? 'must write an IPv4 address as four decimal numbers from 0 to 255 (a.b.c.d)'
        : `must write an IPv4 address as four decimal numbers (a.b.c.d): the URL parser reads ${JSON.stringify(host)} as ${read}`;
    }
  }
  return undefined;
}

/** The upstream of a route, parsed once. */
export interface Upstream {
  /** "https://hub.example:8080" (default port omitted): the undici pool origin, also logged as ctx.upstream. */
  readonly origin: string;
  readonly secure: boolean;
  /** Host name or IP without brackets, lower-case. */
  readonly hostname: string;
  readonly port: number;
  /** Host header sent upstream: host[:port unless default]. */
  readonly hostHeader: string;
  /** Base path without trailing slash ("" when none). */
  readonly basePath: string;
  /** "scheme://host:port" with the port always explicit, lower-case: the key origins are compared by. */
  readonly key: string;
}

const EXAMPLE = 'such as "https://hub.17wanxiao.com:8080"';
// RFC 3986 pchar plus "/" and "%": anything else is percent-encoded (or dropped) by the URL parser.
const PATH_CHARS = /[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]/;
// The query adds "?" (the URL parser also encodes "'" there: the href comparison below says so).
const QUERY_CHARS = /[^A-Za-z0-9\-._~!$&'()*+,;=:@/%?]/;
// What parseTarget refuses in a client path (an encoded "/", "\" or NUL): a base path must not smuggle it in.
const ENCODED_SEPARATOR = /%(?:2[Ff]|5[Cc]|00)/;

/** A path segment that is "." or ".." once %2e is decoded, also before ";params" (Tomcat reads `..;x` as ".."). */
function isDotSegment(segment: string): boolean {
  const semi = segment.indexOf(';');
  const name = (semi === -1 ? segment : segment.slice(0, semi)).replace(/%2e/gi, '.');
  return name === '.' || name === '..';
}

/**
 * What else than a route's upstream a URL key is (the same parser, so every URL key follows one
 * rule): the defaults are a route upstream's.
 */
export interface UrlRules {
  /** The example named in refusals; default an upstream's, `such as "https://hub.17wanxiao.com:8080"`. */
  readonly example?: string;
  /** Only http:// (a forward proxy); `httpOnlyReason` says why. Default http and https. */
  readonly httpOnly?: boolean;
  readonly httpOnlyReason?: string;
  /**
   * "base" (default): a base path the client's path is appended to, no query (the client's is
   * forwarded); "fetch": a path and query requested as written (ip_echo.url); "none": the origin
   * only, a single "/" at most (a proxy, wecom.api_base).
   */
  readonly path?: 'base' | 'fetch' | 'none';
  /** The port must be written (a forward proxy has no default port). */
  readonly requirePort?: boolean;
  /** Refuse "h.example." (TLS names and proxy ACLs are written without the root dot). Default allowed. */
  readonly noRootDot?: boolean;
  /** Appended to the refusal of user:password@ ("put them in proxy.credentials_file"). */
  readonly credentialsHint?: string;
}

/**
 * Parse an upstream origin with an optional base path ("https://hub.example:8080/base"), or another
 * URL key under `rules`. The reason of a refusal is a sentence fragment for config messages: "must
 * not use port 0".
 */
export function parseUpstream(value: string, rules: UrlRules = {}): Parsed<Upstream> {
  const example = rules.example ?? EXAMPLE;
  const pathRule = rules.path ?? 'base';
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(value);
  const absolute = `must be an absolute ${rules.httpOnly === true ? 'http://' : 'http(s)'} URL ${example}`;
  if (!m) return fail(absolute);
  const scheme = (m[1] as string).toLowerCase();
  if (rules.httpOnly === true && scheme !== 'http') {
    return fail(`must be an http:// URL ${example}${rules.httpOnlyReason === undefined ? '' : ` (${rules.httpOnlyReason})`}`);
  }
  if (scheme !== 'http' && scheme !== 'https') return fail(`must be an http:// or https:// URL ${example}`);
  // The URL parser strips leading/trailing spaces and drops tabs and newlines anywhere.
  if (/[\u0000-\u0020\u007f]/.test(value)) return fail('must not contain spaces or control characters');
  if (/[^\u0021-\u007e]/.test(value)) {
    return fail('must be plain ASCII: write a non-ASCII host name in its xn-- form and percent-encode the path');
  }
  if (value.includes('\\')) return fail('must not contain a backslash ("\\"): the URL parser reads it as "/"');
  const afterScheme = value.slice(m[0].length);
  if (!afterScheme.startsWith('//')) return fail(`must be written as ${scheme}://host, with two slashes after "${scheme}:"`);
  const rest = afterScheme.slice(2);
  const end = rest.search(/[/?#]/);
  const authority = end === -1 ? rest : rest.slice(0, end);
  if (authority.includes('@')) {
    return fail(`must not contain credentials (user:password@)${rules.credentialsHint === undefined ? '' : ` ${rules.credentialsHint}`}`);
  }
  if (value.includes('#')) return fail('must not contain a fragment ("#…")');
  const q = value.indexOf('?');
  if (q !== -1 && pathRule === 'base') return fail('must not contain a query ("?…"); the client\'s query is forwarded');
  if (q !== -1 && pathRule === 'none') return fail(`must be an origin only (scheme://host:port), without a query ("?…") ${example}`);
  if (authority === '')
    return fail(`must name a host right after "${scheme}://" (the URL parser would take the next path segment as the host)`);

  let host: string;
  let portText: string | undefined;
  let v6 = false;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close === -1) return fail('must close an IPv6 address with "]"');
    host = authority.slice(1, close).toLowerCase();
    if (!isIPv6(host)) return fail('must hold an IPv6 address inside "[…]"');
    v6 = true;
    const after = authority.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) return fail('must have only ":port" after an IPv6 address');
      portText = after.slice(1);
    }
  } else {
    const colon = authority.lastIndexOf(':');
    host = (colon === -1 ? authority : authority.slice(0, colon)).toLowerCase();
    if (colon !== -1) portText = authority.slice(colon + 1);
    if (host.includes(':')) return fail('must write an IPv6 address in brackets ("http://[::1]:8080")');
    const problem = hostProblem(host);
    if (problem) return fail(problem);
    if (rules.noRootDot === true && host.endsWith('.')) {
      return fail(`must not end its host with "." (write ${JSON.stringify(host.slice(0, -1))})`);
    }
  }

  const secure = scheme === 'https';
  const defaultPort = secure ? 443 : 80;
  let port = defaultPort;
  if (portText === undefined && rules.requirePort === true) return fail(`must name its port (":3128") ${example}`);
  if (portText !== undefined) {
    if (!/^[0-9]{1,5}$/.test(portText)) return fail('must have a port number from 1 to 65535 after ":"');
    port = Number(portText);
    if (port === 0) return fail('must not use port 0 (no server can be reached on it)');
    if (port > 65535) return fail('must use a port from 1 to 65535');
    if (portText.startsWith('0')) return fail(`must write its port without leading zeros (${port}, not ${portText})`);
  }

  const pathAndQuery = end === -1 ? '' : rest.slice(end);
  const path = q === -1 ? pathAndQuery : pathAndQuery.slice(0, pathAndQuery.indexOf('?'));
  const query = q === -1 ? '' : pathAndQuery.slice(path.length);
  if (pathRule === 'none' && path !== '' && path !== '/') {
    return fail(`must be an origin only (scheme://host:port), without a path ${example}`);
  }
  const badChar = PATH_CHARS.exec(path);
  if (badChar) return fail(`must not contain ${JSON.stringify(badChar[0])} in its path (percent-encode it)`);
  if (/%(?![0-9A-Fa-f]{2})/.test(path)) return fail('must write "%" in its path only as a %XX escape');
  const encoded = ENCODED_SEPARATOR.exec(path);
  if (encoded) {
    return fail(
      `must not contain ${JSON.stringify(encoded[0])} (an encoded "/", "\\" or NUL) in its path: client paths with it are refused too`,
    );
  }
  const dots = path.split('/').find(isDotSegment);
  if (dots !== undefined) {
    return fail(`must not have "." or ".." segments in its base path (also as %2e or with ";params"): the segment ${JSON.stringify(dots)}`);
  }
  const badQuery = QUERY_CHARS.exec(query.slice(1));
  if (badQuery) return fail(`must not contain ${JSON.stringify(badQuery[0])} in its query (percent-encode it)`);
  if (/%(?![0-9A-Fa-f]{2})/.test(query)) return fail('must write "%" in its query only as a %XX escape');

  const shownHost = v6 ? `[${host}]` : host;
  const hostHeader = port === defaultPort ? shownHost : `${shownHost}:${port}`;
  const origin = `${scheme}://${hostHeader}`;
  // Belt and braces: whatever the checks above missed, the URL the gateway uses must be the one written.
  let href: string;
  try {
    href = new URL(value).href;
  } catch {
    return fail(absolute);
  }
  const expected = `${origin}${path === '' ? '/' : path}${query}`;
  if (href !== expected) return fail(`must be written the way the URL parser reads it, ${JSON.stringify(href)}`);

  let basePath = path;
  while (basePath.endsWith('/')) basePath = basePath.slice(0, -1);
  return {
    ok: true,
    value: { origin, secure, hostname: host, port, hostHeader, basePath, key: `${scheme}://${shownHost}:${port}` },
  };
}

/** A listen address, parsed. */
export interface ListenAddress {
  /** Address to bind, lower-case, IPv6 without brackets; undefined for every interface (":8080"). */
  readonly host: string | undefined;
  /** 0 = an ephemeral port (tests). */
  readonly port: number;
  /** Listens on every address of its family or of all ("", "0.0.0.0", "::"): clashes with any other address on the port. */
  readonly wildcard: boolean;
}

/** "host:port", ":port" (every interface) or "[v6]:port". */
export function parseListenAddress(value: string): Parsed<ListenAddress> {
  const colon = value.lastIndexOf(':');
  if (colon === -1) return fail('must be a listen address "host:port", ":port" or "[v6]:port" (no port given)');
  const portText = value.slice(colon + 1);
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) {
    return fail('must use a port from 0 to 65535');
  }
  const port = Number(portText);
  let host = value.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) {
    host = host.slice(1, -1).toLowerCase();
    if (!isIPv6(host)) return fail('must hold an IPv6 address inside "[…]"');
    return { ok: true, value: { host, port, wildcard: host === '::' } };
  }
  if (host === '') return { ok: true, value: { host: undefined, port, wildcard: true } };
  if (host.includes(':')) return fail('must write an IPv6 address in brackets ("[::1]:8080")');
  const problem = hostProblem(host);
  if (problem) return fail(problem);
  host = host.toLowerCase();
  return { ok: true, value: { host, port, wildcard: host === '0.0.0.0' } };
}

/** Is `host` (no brackets) an IP literal rather than a name (no SNI for it)? */
export const isIpLiteral = (host: string): boolean => isIP(host) !== 0;

/**
 * One written form per address, so equal addresses compare equal (WeCom's "from ip", expected_ip,
 * an IP-echo answer): IPv6 in its canonical RFC 5952 form (lower case, zeros compressed), the
 * IPv4-mapped forms (::ffff:1.2.3.4, ::ffff:102:304) as the IPv4 address; surrounding spaces
 * dropped. Anything that is not an address comes back trimmed and otherwise unchanged.
 */
export function canonicalIp(ip: string): string {
  const s = ip.trim();
  const f = isIP(s);
  if (f !== 6) return s;
  let v6: string;
  try {
    v6 = new URL(`http://[${s}]/`).hostname.slice(1, -1);
  } catch {
    return s.toLowerCase(); // a zone id (fe80::1%eth0) is not a URL host
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(v6);
  if (!mapped) return v6;
  const hi = parseInt(mapped[1] as string, 16);
  const lo = parseInt(mapped[2] as string, 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

/** Whether two address texts name the same address (canonicalIp of each). */
export const sameIp = (a: string, b: string): boolean => canonicalIp(a) === canonicalIp(b);
