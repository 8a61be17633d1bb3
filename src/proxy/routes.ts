/**
 * The route table: compiled once per proxy (a reload builds a new one), looked up on every request.
 * Matching is by host specificity first (exact > one-level wildcard > any host), then by the longest
 * path prefix on a segment boundary. Everything a request needs about its route (upstream origin,
 * Host header, base path, timeouts) is precomputed here so the hot path only concatenates strings.
 */
import { readFileSync } from 'node:fs';
import type { RouteConfig } from '../config/schema.ts';
import { pathHasPrefix } from '../core/http.ts';

/** How a route names its host; lower is more specific. */
export const HOST_EXACT = 0;
export const HOST_WILDCARD = 1;
export const HOST_ANY = 2;

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

function parseUpstream(value: string, where: string): Upstream {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`${where}: upstream ${JSON.stringify(value)} is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`${where}: upstream must be http:// or https://`);
  if (url.username || url.password) throw new Error(`${where}: upstream must not contain credentials`);
  if (url.search || url.hash) throw new Error(`${where}: upstream must not contain a query or fragment`);
  const secure = url.protocol === 'https:';
  const port = url.port ? Number(url.port) : secure ? 443 : 80;
  const hostname = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  let basePath = url.pathname;
  while (basePath.endsWith('/')) basePath = basePath.slice(0, -1);
  return {
    origin: url.origin,
    secure,
    hostname,
    port,
    hostHeader: url.host,
    basePath,
    key: `${url.protocol}//${url.hostname}:${port}`,
  };
}

function isIp(host: string): boolean {
  return /^[0-9.]+$/.test(host) || host.includes(':');
}

/** Compile one route; throws an Error naming the route when it cannot be used (bad upstream, unreadable CA file). */
export function compileRoute(config: RouteConfig, index: number, name: string, defaults?: RouteDefaults): CompiledRoute {
  const where = `route ${JSON.stringify(name)}`;
  const upstream = parseUpstream(config.upstream, where);
  let host: string | undefined;
  let hostKind: CompiledRoute['hostKind'] = HOST_ANY;
  if (config.host !== undefined) {
    let h = config.host.toLowerCase();
    if (h.endsWith('.')) h = h.slice(0, -1);
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
    servername: serverName ?? (isIp(upstream.hostname) ? null : upstream.hostname),
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
  };
}

/** Path sent upstream for a normalised request path (no query): base + (path, minus the prefix when stripping). */
export function forwardPath(route: CompiledRoute, path: string): string {
  let rest = path;
  if (route.strip) {
    rest = path.slice(route.mount.length);
    if (rest === '') rest = '/';
    else if (rest.charCodeAt(0) !== 0x2f) rest = `/${rest}`;
  }
  return route.upstream.basePath === '' ? rest : route.upstream.basePath + rest;
}

/**
 * The public path for an upstream path of this route (the inverse of forwardPath), or undefined
 * when the upstream path lies outside the route's base path.
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
  /** Upstream origin key → routes forwarding there (exact hosts first, longer base paths first). */
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
      const up = this.byUpstream.get(r.upstream.key);
      if (up) up.push(r);
      else this.byUpstream.set(r.upstream.key, [r]);
    }
    for (const list of this.#exact.values()) list.sort(byPrefixLength);
    for (const list of this.#wildcard.values()) list.sort(byPrefixLength);
    this.#any.sort(byPrefixLength);
    for (const list of this.byUpstream.values()) {
      list.sort((a, b) => a.hostKind - b.hostKind || b.upstream.basePath.length - a.upstream.basePath.length || a.index - b.index);
    }
  }

  /**
   * Most specific route for a host (no port, lower-case) and a normalised path. A host whose own
   * routes do not cover the path falls through to wildcard and then any-host routes.
   */
  match(host: string, path: string): CompiledRoute | undefined {
    if (host.charCodeAt(host.length - 1) === 0x2e) host = host.slice(0, -1);
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
