/**
 * Load the wegate configuration: YAML → schema (src/config/validate.ts) → the checks a schema cannot
 * express (listener combinations, upstream URLs, unique routes, certificate/key pairs) → a deep-frozen
 * Config with every default filled, every route named and every path absolute.
 */
import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { hostProblem, type ListenAddress, normaliseHost, parseListenAddress, parseUpstream, type UrlRules } from '../core/addresses.ts';
import { isIP } from 'node:net';
import { parseTarget } from '../core/http.ts';
import { type Config, ConfigSchema } from './schema.ts';
import { checkRelay } from './relay-check.ts';
import { checkWecomCallbacks } from './wecom-callback-check.ts';
import { checkWecom, checkWecomErrors } from './wecom-check.ts';
import {
  type CheckContext,
  type ConfigProblem,
  formatKeyPath,
  formatProblemList,
  type KeyPath,
  lineInText,
  type Segment,
  suggest,
  validateConfigText,
} from './validate.ts';

export type { ConfigProblem } from './validate.ts';

export type LoadResult = { ok: true; config: Config; file: string } | { ok: false; file: string; problems: ConfigProblem[] };

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** A problem only this host can reveal (a local address that is not on it), found after loading. */
export interface HostProblem {
  readonly at: KeyPath;
  readonly message: string;
}

export interface LoadOptions {
  /** Checks of a valid config against this host (src/egress: local addresses); their problems get YAML lines too. */
  readonly hostCheck?: (config: Config) => Promise<readonly HostProblem[]>;
}

/** Read, parse and validate a YAML config file. Never throws for bad input. Relative file paths in the config are resolved against the config file's directory. */
export async function loadConfigFile(file: string, options: LoadOptions = {}): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'file not found'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (code ?? 'cannot be read');
    return { ok: false, file, problems: [{ path: '(file)', message: `cannot read the configuration file: ${reason}` }] };
  }
  const r = loadConfigText(text, file);
  if (!r.ok || options.hostCheck === undefined) return r;
  const found = await options.hostCheck(r.config);
  if (found.length === 0) return r;
  const problems = found.map((p): ConfigProblem => {
    const line = lineInText(text, p.at);
    const path = formatKeyPath(p.at);
    return line === undefined ? { path, message: p.message } : { path, line, message: p.message };
  });
  return { ok: false, file, problems };
}

/** Same from text (file name for messages and relative paths). */
export function loadConfigText(text: string, file: string): LoadResult {
  const r = validateConfigText(text, file, ConfigSchema, checkConfig);
  if (!r.ok) return { ok: false, file, problems: r.problems };
  const config = r.value as Config;
  fillRouteNames(config);
  return { ok: true, config: deepFreeze(config), file };
}

/** "wegate.yaml is invalid (2 problems):\n  routes[2].upstream (line 31): must be an absolute http(s) URL, got \"localhost:8080\"\n  …" */
export function formatProblems(file: string, problems: readonly ConfigProblem[]): string {
  return formatProblemList(file, problems);
}

/** The JSON Schema (draft-07/2020 as Ajv uses) for editors: defaulted keys not in `required`. */
export function editorJsonSchema(): object {
  // JSON round trip: a deep copy without TypeBox's symbol keys.
  const schema = JSON.parse(JSON.stringify(ConfigSchema)) as Obj;
  const strip = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const n of node) strip(n);
      return;
    }
    if (!isObj(node)) return;
    // Internal annotation (paths to resolve/check); editors have no use for it.
    delete node['x-path'];
    const props = node['properties'];
    if (isObj(props) && Array.isArray(node['required'])) {
      // A key with a default may be left out of the file: editors must not ask for it.
      const required = (node['required'] as string[]).filter((k) => !(isObj(props[k]) && 'default' in props[k]));
      if (required.length > 0) node['required'] = required;
      else delete node['required'];
    }
    for (const v of Object.values(node)) strip(v);
  };
  strip(schema);
  return { $schema: 'http://json-schema.org/draft-07/schema#', ...schema };
}

// --- semantic checks ---------------------------------------------------------------------------

interface Listen extends ListenAddress {
  readonly at: KeyPath;
  readonly text: string;
}

/** Two listeners clash when they share a port and an address (or one listens on every address). */
function clash(a: Listen, b: Listen): boolean {
  if (a.port === 0 || b.port === 0 || a.port !== b.port) return false;
  return a.host === b.host || a.wildcard || b.wildcard;
}

function checkConfig(data: unknown, ctx: CheckContext): void {
  if (!isObj(data)) return;
  checkListeners(data, ctx);
  checkCerts(data, ctx);
  checkRoutes(data, ctx);
  checkEgress(data, ctx);
  normaliseHosts(data, ctx);
  checkWecom(data, ctx);
  checkWecomErrors(data, ctx);
  checkRelay(data, ctx);
  checkWecomCallbacks(data, ctx);
}

function checkListeners(data: Obj, ctx: CheckContext): void {
  const listen = data['listen'];
  if (!isObj(listen)) return;
  const has = (k: string) => listen[k] !== undefined && listen[k] !== null;
  if (!has('http') && !has('https')) {
    ctx.report(['listen'], 'must set at least one of `http` or `https`, got neither');
  }
  if (has('https') && (data['tls'] === undefined || data['tls'] === null)) {
    ctx.report(['listen', 'https'], 'requires a `tls` section with the certificate and key (add tls.certs, or remove listen.https)');
  }
  if (listen['redirect_http'] === true && (!has('http') || !has('https'))) {
    ctx.report(['listen', 'redirect_http'], 'must be false unless both listen.http and listen.https are set, got true');
  }
  const valid = (at: KeyPath, v: unknown) => (ctx.failed(at) ? undefined : str(v));
  const http = valid(['listen', 'http'], listen['http']);
  const https = valid(['listen', 'https'], listen['https']);
  const listeners: Listen[] = [];
  const add = (text: string | undefined, at: KeyPath) => {
    if (text === undefined) return;
    const l = parseListenAddress(text);
    if (!l.ok) ctx.report(at, `${l.reason}, got ${ctx.show(at, text)}`);
    else listeners.push({ ...l.value, at, text });
  };
  add(http, ['listen', 'http']);
  add(https, ['listen', 'https']);
  const admin = data['admin'];
  if (isObj(admin)) add(valid(['admin', 'listen'], admin['listen']), ['admin', 'listen']);
  for (let j = 1; j < listeners.length; j++) {
    const b = listeners[j] as Listen;
    for (let i = 0; i < j; i++) {
      const a = listeners[i] as Listen;
      if (clash(a, b)) {
        // The admin listener serves /metrics: sharing a socket with the public one would expose it.
        ctx.report(
          b.at,
          `must not use the same address and port as ${formatKeyPath(a.at)} (${JSON.stringify(a.text)}), got ${JSON.stringify(b.text)}`,
        );
      }
    }
  }
}

/** Read a file already checked to exist; undefined if it vanished meanwhile (reported). */
function readChecked(path: string, at: KeyPath, ctx: CheckContext): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch {
    ctx.report(at, `must be a readable file, got ${ctx.show(at, path, Number.POSITIVE_INFINITY)}: cannot be read`);
    return undefined;
  }
}

const PEM_CERT_BLOCK = /-----BEGIN CERTIFICATE-----[^-]*-----END CERTIFICATE-----/g;

function parsesAsCertificate(block: string): boolean {
  try {
    return new X509Certificate(block) instanceof X509Certificate;
  } catch {
    return false;
  }
}

function checkCerts(data: Obj, ctx: CheckContext): void {
  const tls = data['tls'];
  if (!isObj(tls) || !Array.isArray(tls['certs'])) return;
  tls['certs'].forEach((entry: unknown, i: number) => {
    if (!isObj(entry)) return;
    const certAt: Segment[] = ['tls', 'certs', i, 'cert'];
    const keyAt: Segment[] = ['tls', 'certs', i, 'key'];
    let cert: X509Certificate | undefined;
    let key: KeyObject | undefined;
    let certPem: Buffer | undefined;
    let keyPem: Buffer | undefined;
    const certPath = str(entry['cert']);
    if (certPath !== undefined && !ctx.failed(certAt)) {
      const pem = readChecked(certPath, certAt, ctx);
      if (pem) {
        certPem = pem;
        try {
          cert = new X509Certificate(pem);
        } catch {
          ctx.report(
            certAt,
            `must be a PEM certificate file (-----BEGIN CERTIFICATE-----), got ${ctx.show(certAt, certPath, Number.POSITIVE_INFINITY)} which holds none`,
          );
        }
        // TLS reads every block (the chain), X509Certificate only the first: a corrupt intermediate passed
        // `check` and then stopped `serve` ("asn1 wrong tag").
        const blocks = pem.toString('latin1').match(PEM_CERT_BLOCK) ?? [];
        const bad = cert === undefined ? -1 : blocks.findIndex((b) => !parsesAsCertificate(b));
        if (bad > 0) {
          cert = undefined;
          ctx.report(
            certAt,
            `must hold only valid PEM certificates, got ${ctx.show(certAt, certPath, Number.POSITIVE_INFINITY)} whose certificate block ${bad + 1} of ${blocks.length} is corrupt (re-copy the chain, e.g. fullchain.pem)`,
          );
        }
      }
    }
    const keyPath = str(entry['key']);
    if (keyPath !== undefined && !ctx.failed(keyAt)) {
      const pem = readChecked(keyPath, keyAt, ctx);
      if (pem) {
        keyPem = pem;
        try {
          key = createPrivateKey(pem);
        } catch {
          // Never include OpenSSL's text or the file content: the message could carry key material.
          const encrypted = pem.includes('ENCRYPTED');
          ctx.report(
            keyAt,
            encrypted
              ? `must be an unencrypted PEM private key, got ${ctx.show(keyAt, keyPath, Number.POSITIVE_INFINITY)} which is passphrase-protected`
              : `must be a PEM private key file (-----BEGIN PRIVATE KEY-----), got ${ctx.show(keyAt, keyPath, Number.POSITIVE_INFINITY)} which holds none`,
          );
        }
      }
    }
    if (cert && key && !cert.checkPrivateKey(key)) {
      ctx.report(keyAt, `must be the private key of the certificate in ${formatKeyPath(certAt)}, got a key that does not match it`);
    } else if (cert && key && certPem && keyPem) {
      // The TLS code's own reading of both files (src/server/tls.ts): what check accepts is what serve runs.
      try {
        createSecureContext({ cert: certPem, key: keyPem });
      } catch {
        // Never OpenSSL's text: it could quote key material.
        ctx.report(
          certAt,
          `must be a certificate chain and key TLS can load, got ${ctx.show(certAt, str(entry['cert']) ?? '', Number.POSITIVE_INFINITY)} and ${ctx.show(keyAt, str(entry['key']) ?? '', Number.POSITIVE_INFINITY)} which OpenSSL refuses`,
        );
      }
    }
  });
}

const NON_ASCII = /[^\u0000-\u007f]/;
const NON_ASCII_RUN = /[^\u0000-\u007f]+/g;

function checkRoutes(data: Obj, ctx: CheckContext): void {
  const routes = data['routes'];
  if (!Array.isArray(routes)) return;
  const names = new Map<string, number>();
  const pairs = new Map<string, number>();
  routes.forEach((route: unknown, i: number) => {
    if (!isObj(route)) return;
    const at = (k: string): Segment[] => ['routes', i, k];

    const upstream = str(route['upstream']);
    if (upstream !== undefined && !ctx.failed(at('upstream'))) {
      const u = parseUpstream(upstream);
      // Shown whole (secret query parameters and userinfo redacted): the reason may point at its end.
      if (!u.ok) ctx.report(at('upstream'), `${u.reason}, got ${ctx.show(at('upstream'), upstream, Number.POSITIVE_INFINITY)}`);
    }

    let path = str(route['path']);
    if (path !== undefined && !ctx.failed(at('path')) && NON_ASCII.test(path)) {
      // Browsers send "/张三/" as "/%E5%BC%A0%E4%B8%89/" (UTF-8, upper-case hex: what parseTarget produces),
      // so the prefix is stored in that form; written raw it could never match a request.
      try {
        path = path.replace(NON_ASCII_RUN, (m) => encodeURIComponent(m));
        route['path'] = path;
      } catch {
        ctx.report(at('path'), `must be valid Unicode text (it holds a lone surrogate), got ${ctx.show(at('path'), path)}`);
        path = undefined;
      }
    }
    if (path !== undefined && !ctx.failed(at('path'))) {
      // Requests are routed on their normalised path, so a prefix that is not normalised never matches.
      const t = parseTarget(path);
      if (!t.ok || t.path !== path || t.query !== '') {
        ctx.report(
          at('path'),
          `must be a normalised path prefix (no "//", "." or ".." segments, no encoded "/", "\\" or NUL, unreserved characters not %-encoded, upper-case hex in escapes), got ${ctx.show(at('path'), path)}`,
        );
      } else if (path.includes(';')) {
        // Routes match the path without its ";parameters" (as Tomcat maps it): such a prefix never matches.
        ctx.report(at('path'), `must not contain ";" (path parameters are ignored when choosing a route), got ${ctx.show(at('path'), path)}`);
      }
    }

    const name = str(route['name']);
    if (name !== undefined && !ctx.failed(at('name'))) {
      const first = names.get(name);
      if (first !== undefined) {
        ctx.report(at('name'), `must be unique, got ${JSON.stringify(name)} which ${where(ctx, ['routes', first, 'name'])} also uses`);
      } else {
        names.set(name, i);
      }
    }

    const host = route['host'];
    if (typeof host === 'string' && !ctx.failed(at('host'))) {
      // The rules upstream hosts follow (an IPv4 address as a.b.c.d: a client never sends "127.1").
      const problem = hostProblem(host.startsWith('*.') ? host.slice(2) : host);
      if (problem) ctx.report(at('host'), `${problem}, got ${ctx.show(at('host'), host)}`);
    }
    if ((host === undefined || typeof host === 'string') && path !== undefined && !ctx.failed(at('host')) && !ctx.failed(at('path'))) {
      const key = `${host === undefined ? '' : normaliseHost(host)} ${path}`;
      const first = pairs.get(key);
      if (first !== undefined) {
        const what = `${host === undefined ? 'any host' : `host ${JSON.stringify(host)}`} and path ${JSON.stringify(path)}`;
        ctx.report(['routes', i], `must not repeat the ${what} of ${where(ctx, ['routes', first])}: only one of them could ever match`);
      } else {
        pairs.set(key, i);
      }
    }
  });
}

const PROFILE_NAME = /^[A-Za-z0-9_.-]{1,64}$/;
const WILDCARD_IPS = new Set(['0.0.0.0', '::', '0:0:0:0:0:0:0:0']);

/** Egress profiles: addresses are IP literals, the proxy URL is http://host:port, routes name existing profiles. */
function checkEgress(data: Obj, ctx: CheckContext): void {
  const egress = data['egress'];
  const names = isObj(egress) ? Object.keys(egress) : [];
  if (isObj(egress)) {
    for (const name of names) {
      const profile = egress[name];
      const at = (...k: Segment[]): Segment[] => ['egress', name, ...k];
      if (!PROFILE_NAME.test(name)) {
        ctx.report(at(), `must be named with 1 to 64 letters, digits, "_", "." or "-", got ${ctx.show(at(), name)}`);
      }
      if (!isObj(profile)) continue;
      const local = str(profile['local_address']);
      if (local !== undefined && !ctx.failed(at('local_address'))) {
        if (isIP(local) === 0) {
          ctx.report(at('local_address'), `must be an IPv4 or IPv6 address of this host such as "10.0.0.5", got ${ctx.show(at('local_address'), local)}`);
        } else if (WILDCARD_IPS.has(local)) {
          ctx.report(at('local_address'), `must be one address of this host, not the wildcard, got ${ctx.show(at('local_address'), local)}`);
        }
      }
      const family = profile['family'];
      if ((family === 4 || family === 6) && local !== undefined && !ctx.failed(at('local_address')) && isIP(local) !== family) {
        ctx.report(at('family'), `must agree with local_address ${ctx.show(at('local_address'), local)} (IPv${isIP(local)}), got ${family}`);
      }
      const expected = str(profile['expected_ip']);
      if (expected !== undefined && !ctx.failed(at('expected_ip')) && isIP(expected) === 0) {
        ctx.report(at('expected_ip'), `must be an IPv4 or IPv6 address such as "47.111.68.103", got ${ctx.show(at('expected_ip'), expected)}`);
      }
      const proxy = profile['proxy'];
      if (isObj(proxy)) {
        const url = str(proxy['url']);
        if (url !== undefined && !ctx.failed(at('proxy', 'url'))) {
          const problem = proxyUrlProblem(url);
          if (problem) ctx.report(at('proxy', 'url'), `${problem}, got ${ctx.show(at('proxy', 'url'), url, Number.POSITIVE_INFINITY)}`);
        }
        const creds = str(proxy['credentials_file']);
        if (creds !== undefined && !ctx.failed(at('proxy', 'credentials_file'))) {
          const text = readChecked(creds, at('proxy', 'credentials_file'), ctx);
          // Never echo the content: it is a password.
          if (text !== undefined && !/^[^:\r\n]+:[^\r\n]*\r?\n?$/.test(text.toString('utf8'))) {
            ctx.report(
              at('proxy', 'credentials_file'),
              `must hold one line "user:password", got ${ctx.show(at('proxy', 'credentials_file'), creds, Number.POSITIVE_INFINITY)} which does not (content hidden)`,
            );
          }
        }
      }
      const echo = profile['ip_echo'];
      if (isObj(echo)) {
        const url = str(echo['url']);
        if (url !== undefined && !ctx.failed(at('ip_echo', 'url'))) {
          const u = parseUpstream(url, IP_ECHO_URL_RULES);
          if (!u.ok) ctx.report(at('ip_echo', 'url'), `${u.reason}, got ${ctx.show(at('ip_echo', 'url'), url, Number.POSITIVE_INFINITY)}`);
        }
      }
    }
  }
  const routes = data['routes'];
  if (!Array.isArray(routes)) return;
  routes.forEach((route: unknown, i: number) => {
    if (!isObj(route)) return;
    const name = str(route['egress']);
    if (name === undefined || ctx.failed(['routes', i, 'egress']) || names.includes(name)) return;
    const hint = suggest(name, names);
    ctx.report(
      ['routes', i, 'egress'],
      names.length === 0
        ? `must name a profile of the \`egress\` section, got ${JSON.stringify(name)} but the file defines no egress profile`
        : `must name a profile of the \`egress\` section (${names.join(', ')}), got ${JSON.stringify(name)}${hint !== undefined ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}`,
    );
  });
}

/** A forward proxy is reached over plain HTTP at an explicit host:port: the one URL rule (core/addresses) with that shape. */
const PROXY_URL_RULES: UrlRules = {
  example: 'such as "http://10.0.0.9:3128"',
  httpOnly: true,
  httpOnlyReason: 'the proxy is reached over plain HTTP; CONNECT keeps TLS end to end',
  path: 'none',
  requirePort: true,
  noRootDot: true,
  credentialsHint: '(put them in proxy.credentials_file)',
};
/** The IP echo is fetched as written (a query such as "?format=json" is its own, not a client's). */
const IP_ECHO_URL_RULES: UrlRules = { example: 'such as "https://ifconfig.me/ip"', path: 'fetch', noRootDot: true };

/** Why `value` is not "http://host:port" of a forward proxy, or undefined when it is. */
function proxyUrlProblem(value: string): string | undefined {
  const u = parseUpstream(value, PROXY_URL_RULES);
  return u.ok ? undefined : u.reason;
}

/** "routes[0] (line 12)" for pointing at another key in a message. */
function where(ctx: CheckContext, at: KeyPath): string {
  const line = ctx.lineOf(at);
  return line === undefined ? formatKeyPath(at) : `${formatKeyPath(at)} (line ${line})`;
}

/** Hosts compare case-insensitively and without the root dot: store them that way once. */
function normaliseHosts(data: Obj, ctx: CheckContext): void {
  const routes = data['routes'];
  if (Array.isArray(routes)) {
    routes.forEach((r: unknown, i: number) => {
      if (isObj(r) && typeof r['host'] === 'string' && !ctx.failed(['routes', i, 'host'])) r['host'] = normaliseHost(r['host']);
    });
  }
  const vf = data['verify_files'];
  if (isObj(vf) && Array.isArray(vf['hosts']) && !ctx.failed(['verify_files', 'hosts'])) {
    vf['hosts'] = vf['hosts'].map((h: unknown) => (typeof h === 'string' ? normaliseHost(h) : h));
  }
}

/** Routes without a name get a sanitised `${host ?? 'any'}${path}`, made unique against every other name. */
function fillRouteNames(config: Config): void {
  const taken = new Set(config.routes.flatMap((r) => (r.name === undefined ? [] : [r.name])));
  for (const route of config.routes) {
    if (route.name !== undefined) continue;
    const base =
      `${route.host ?? 'any'}${route.path}`
        .replace(/^\*/, 'wildcard')
        .replace(/[^A-Za-z0-9_.-]+/g, '_')
        .replace(/^_+|_+$/g, '')
        .slice(0, 64) || 'route';
    let name = base;
    for (let n = 2; taken.has(name); n++) name = `${base.slice(0, 64 - String(n).length - 1)}-${n}`;
    taken.add(name);
    route.name = name;
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
