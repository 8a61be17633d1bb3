/**
 * The route table: compiled once per proxy (a reload builds a new one), looked up on every request.
 * Matching is by host specificity first (exact > one-level wildcard > any host), then by the longest
 * path prefix on a segment boundary. Everything a request needs about its route (upstream origin,
 * Host header, base path, timeouts) is precomputed here so the hot path only concatenates strings.
 */
import { readFileSync } from 'node:fs';
import type { RouteConfig } from '../config/schema.ts';
import { isIpLiteral, normaliseHost, parseUpstream, type Upstream } from '../core/addresses.ts';
import { pathHasPrefix, routingPath } from '../core/http.ts';
import type { ResponseObserver } from './observer.ts';

/** How a route names its host; lower is more specific. */
export const HOST_EXACT = 0;
export const HOST_WILDCARD = 1;
export const HOST_ANY = 2;

export type { Upstream } from '../core/addresses.ts';

/** A route ready for the hot path. This object is the MatchedRoute handed to web()/upgrade(). */
export interface CompiledRoute {
  readonly name: string;
  readonly config: RouteConfig;
  /** Position in the config (ties keep config order). */
  readonly index: number;
  readonly hostKind: typeof HOST_EXACT | typeof HOST_WILDCARD | typeof HOST_ANY;
  /** Exact host, or for wildcards the suffix after "*." ; undefined for any-host routes. Lower-case, no trailing dot. */
  readonly host: string | undefined;
  /** Path prefix as configured. */
  readonly prefix: string;
  /** Prefix without its trailing slash ("" for "/"): what strip_prefix removes and maps back. */
  readonly mount: string;
  readonly strip: boolean;
  readonly upstream: Upstream;
  /** PEM of tls.ca_file, read at creation. */
  readonly ca: string | undefined;
  /** SNI and certificate name for https upstreams (null for an IP upstream without tls.server_name). */
  readonly servername: string | null;
  /** Does forwarding change the path (strip_prefix or a base path)? Then cookie paths are mapped back. */
  readonly remapsPath: boolean;
  // Settings resolved once (schema defaults applied again in case a caller built the config by hand).
  readonly preserveHost: boolean;
  readonly websocket: boolean;
  readonly maxBodyBytes: number;
  readonly connectMs: number;
  readonly responseMs: number;
  readonly idleMs: number;
  /** The client must read some of a held-back response within this time (timeouts.send_ms, else listen.send_timeout_ms). */
  readonly sendMs: number;
  readonly insecureSkipVerify: boolean;
  readonly rewriteLocation: boolean;
  readonly rewriteCookies: boolean;
  /** Looks at this route's responses (ProxyDeps.observer, attached by createProxy); null: none. */
  observer: ResponseObserver | null;
}

/** Listener-level settings a route falls back on. */
export interface RouteDefaults {
  /** listen.send_timeout_ms. */
  readonly sendMs: number;
}

/** nginx's send_timeout default, also the schema default of listen.send_timeout_ms. */
export const DEFAULT_SEND_MS = 60_000;

/** Route name used in logs and metric labels when the config has none. */
export function defaultRouteName(config: Pick<RouteConfig, 'host' | 'path'>): string {
  const raw = `${config.host ?? '*'}${config.path}`;
  return raw.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64) || 'route';
}

/** Compile one route; throws an Error naming the route when it cannot be used (bad upstream, unreadable CA file). */
export function compileRoute(config: RouteConfig, index: number, name: string, defaults?: RouteDefaults): CompiledRoute {
  const where = `route ${JSON.stringify(name)}`;
  const parsed = parseUpstream(config.upstream);
  // The reason only, not the URL: it can carry a secret the config check would have redacted.
  if (!parsed.ok) throw new Error(`${where}: upstream ${parsed.reason}`);
  const upstream = parsed.value;
  let host: string | undefined;
  let hostKind: CompiledRoute['hostKind'] = HOST_ANY;
  if (config.host !== undefined) {
    const h = normaliseHost(config.host);
    if (h.startsWith('*.')) {
      hostKind = HOST_WILDCARD;
      host = h.slice(2);
    } else {
      hostKind = HOST_EXACT;
      host = h;
    }
  }
  let ca: string | undefined;
  const caFile = config.tls?.ca_file;
  if (caFile !== undefined) {
    try {
      ca = readFileSync(caFile, 'utf8');
    } catch (e) {
      throw new Error(`${where}: cannot read tls.ca_file ${JSON.stringify(caFile)}: ${(e as Error).message}`, { cause: e });
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----'))
      throw new Error(`${where}: tls.ca_file ${JSON.stringify(caFile)} holds no PEM certificate`);
  }
  const serverName = config.tls?.server_name;
  const prefix = config.path ?? '/';
  const mount = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const strip = config.strip_prefix === true && mount !== '';
  return {
    name,
    config,
    index,
    hostKind,
    host,
    prefix,
    mount,
    strip,
    upstream,
    ca,
    servername: serverName ?? (isIpLiteral(upstream.hostname) ? null : upstream.hostname),
    remapsPath: strip || upstream.basePath !== '',
    preserveHost: config.preserve_host === true,
    websocket: config.websocket !== false,
    maxBodyBytes: config.max_body_bytes ?? 10 * 1024 * 1024,
    connectMs: config.timeouts?.connect_ms ?? 5_000,
    responseMs: config.timeouts?.response_ms ?? 60_000,
    idleMs: config.timeouts?.idle_ms ?? 60_000,
    sendMs: config.timeouts?.send_ms ?? defaults?.sendMs ?? DEFAULT_SEND_MS,
    insecureSkipVerify: config.tls?.insecure_skip_verify === true,
    rewriteLocation: config.rewrite?.location !== false,
    rewriteCookies: config.rewrite?.cookies !== false,
    observer: null,
  };
}

/** Path sent upstream for a normalised request path (no query): base + (path, minus the prefix when stripping). */
export function forwardPath(route: CompiledRoute, path: string): string {
  let rest = path;
  if (route.strip) {
    rest = path.slice(route.mount.length);
    // The path matched through its routing form (";parameters" in or before the mount): cut by segments.
    if (!path.startsWith(route.mount) || (rest !== '' && rest.charCodeAt(0) !== 0x2f)) rest = afterMount(path, route.mount);
    if (rest === '') rest = '/';
  }
  return route.upstream.basePath === '' ? rest : route.upstream.basePath + rest;
}

/**
 * `path` without the segments that make up `mount` in its routing form: each named segment counts
 * with its ";parameters" (they belong to the mount), segments that are empty once their parameters
 * are removed are dropped ("/;x/api1;v=2/login" under "/api1" → "/login").
 */
function afterMount(path: string, mount: string): string {
  let need = 0;
  for (let i = 0; i < mount.length; i++) if (mount.charCodeAt(i) === 0x2f) need++;
  let at = 0;
  while (need > 0 && at < path.length) {
    const next = path.indexOf('/', at + 1);
    const end = next === -1 ? path.length : next;
    // A segment whose name (before ";") is empty does not count.
    if (end > at + 1 && path.charCodeAt(at + 1) !== 0x3b) need--;
    at = end;
  }
  return path.slice(at);
}

/**
 * The public path for an upstream path of this route (the inverse of forwardPath), or undefined
 * when the upstream path lies outside the route's base path. A path, not a URL: it can begin with
 * "//" (`/app//evil.com/x` under the base path /app), so whoever sends it as a relative URL must
 * not send it bare (rewrite.ts makes it absolute on the request's origin).
 */
export function publicPath(route: CompiledRoute, upstreamPath: string): string | undefined {
  let rest = upstreamPath;
  const base = route.upstream.basePath;
  if (base !== '') {
    if (!pathHasPrefix(upstreamPath, base)) return undefined;
    rest = upstreamPath.slice(base.length);
    if (rest === '') rest = '/';
  }
  return route.strip ? route.mount + rest : rest;
}

/** An IPv4-mapped IPv6 address (`::ffff:7f00:1`, also bracketed), in the compressed form the URL parser writes. */
const V4_MAPPED = /^\[?::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})\]?$/;

/**
 * "scheme://host:port" for comparing origins: the host lower-case and without the root dot
 * (normaliseHost), an IPv6 address in brackets, and an IPv4-mapped IPv6 address as its IPv4 address
 * (`[::ffff:7f00:1]` reaches 127.0.0.1 on a dual-stack host, so a URL naming it names that upstream).
 * `host` is a URL's hostname or an Upstream's. The route table's upstream keys and parsed URLs both go
 * through it, so `http://hub.example.:8080` and `http://hub.example:8080/x` meet.
 */
export function originKey(scheme: string, host: string, port: number | string): string {
  let h = normaliseHost(host);
  const m = V4_MAPPED.exec(h);
  if (m !== null) {
    const hi = parseInt(m[1] as string, 16);
    const lo = parseInt(m[2] as string, 16);
    h = `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  } else if (h.includes(':') && h.charCodeAt(0) !== 0x5b) h = `[${h}]`;
  return `${scheme}://${h}:${port}`;
}

function byPrefixLength(a: CompiledRoute, b: CompiledRoute): number {
  return b.prefix.length - a.prefix.length || a.index - b.index;
}

function firstMatch(list: readonly CompiledRoute[], path: string): CompiledRoute | undefined {
  for (let i = 0; i < list.length; i++) {
    const r = list[i] as CompiledRoute;
    if (pathHasPrefix(path, r.prefix)) return r;
  }
  return undefined;
}

/** Routes indexed for lookup. */
export class RouteTable {
  readonly routes: readonly CompiledRoute[];
  readonly #exact = new Map<string, CompiledRoute[]>();
  readonly #wildcard = new Map<string, CompiledRoute[]>();
  readonly #any: CompiledRoute[] = [];
  /**
   * Upstream origin (originKey) → routes forwarding there (exact hosts first, longer base paths
   * first); a route's own `upstream.key` finds the same list when it differs (a trailing dot).
   */
  readonly byUpstream = new Map<string, CompiledRoute[]>();

  constructor(routes: readonly CompiledRoute[]) {
    this.routes = routes;
    for (const r of routes) {
      const map = r.hostKind === HOST_EXACT ? this.#exact : r.hostKind === HOST_WILDCARD ? this.#wildcard : undefined;
      if (map) {
        const key = r.host as string;
        const list = map.get(key);
        if (list) list.push(r);
        else map.set(key, [r]);
      } else {
        this.#any.push(r);
      }
      const key = originKey(r.upstream.secure ? 'https' : 'http', r.upstream.hostname, r.upstream.port);
      const up = this.byUpstream.get(key);
      if (up) up.push(r);
      else this.byUpstream.set(key, [r]);
    }
    for (const list of this.#exact.values()) list.sort(byPrefixLength);
    for (const list of this.#wildcard.values()) list.sort(byPrefixLength);
    this.#any.sort(byPrefixLength);
    for (const list of this.byUpstream.values()) {
      list.sort((a, b) => a.hostKind - b.hostKind || b.upstream.basePath.length - a.upstream.basePath.length || a.index - b.index);
    }
    for (const r of routes) {
      const list = this.byUpstream.get(originKey(r.upstream.secure ? 'https' : 'http', r.upstream.hostname, r.upstream.port));
      if (list !== undefined && !this.byUpstream.has(r.upstream.key)) this.byUpstream.set(r.upstream.key, list);
    }
  }

  /**
   * Most specific route for a host (no port, lower-case) and a normalised path, matched on its
   * routing form (routingPath: path parameters removed). A host whose own routes do not cover the
   * path falls through to wildcard and then any-host routes.
   */
  match(host: string, path: string): CompiledRoute | undefined {
    if (host.charCodeAt(host.length - 1) === 0x2e) host = host.slice(0, -1);
    // ";parameters" never make a request match a shorter prefix than the same path without them.
    path = routingPath(path);
    const exact = this.#exact.get(host);
    if (exact !== undefined) {
      const r = firstMatch(exact, path);
      if (r !== undefined) return r;
    }
    if (this.#wildcard.size !== 0) {
      const dot = host.indexOf('.');
      if (dot > 0) {
        const list = this.#wildcard.get(host.slice(dot + 1));
        if (list !== undefined) {
          const r = firstMatch(list, path);
          if (r !== undefined) return r;
        }
      }
    }
    return firstMatch(this.#any, path);
  }
}

/** Compile every route (names defaulted and made unique) into a table; throws on the first unusable route. */
export function buildRouteTable(configs: readonly RouteConfig[], defaults?: RouteDefaults): RouteTable {
  const seen = new Set<string>();
  const compiled = configs.map((config, i) => {
    let name = config.name ?? defaultRouteName(config);
    if (config.name === undefined && seen.has(name)) name = `${name.slice(0, 60)}_${i}`;
    seen.add(name);
    return compileRoute(config, i, name, defaults);
  });
  return new RouteTable(compiled);
}
