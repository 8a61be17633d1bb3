/**
 * The path corpus of issue 10 ("all the forms above, their mixed-case and double-encoded variants")
 * and what the tests check it against: the route prefixes of the corpus configs, a longest-prefix
 * route chooser written independently of src/proxy/routes.ts, and a reference of how a servlet
 * container reads a request path (Tomcat's order: drop ";parameters" per segment, decode once,
 * merge "//", resolve dot-segments), which the Tomcat test checks against the real Tomcat.
 */

/** A corpus route: public prefix, and how it forwards (strip_prefix, upstream base path). */
export interface CorpusRoute {
  readonly name: string;
  readonly prefix: string;
  readonly strip: boolean;
  readonly base: string;
}

/**
 * The routes both corpus tests configure (on one host): `/admin` goes to a different upstream than
 * the others, `/api/import` has a small body limit and no WebSocket, `/lib/` strips its prefix onto
 * a base path.
 */
export const CORPUS_ROUTES: readonly CorpusRoute[] = [
  { name: 'public', prefix: '/public', strip: false, base: '' },
  { name: 'admin', prefix: '/admin', strip: false, base: '' },
  { name: 'api', prefix: '/api', strip: false, base: '' },
  { name: 'import', prefix: '/api/import', strip: false, base: '' },
  { name: 'lib', prefix: '/lib/', strip: true, base: '/libbase' },
];

/** The route-config fields of a corpus route, for makeConfig. */
export function corpusRouteConfig(r: CorpusRoute, host: string, origin: string): Record<string, unknown> {
  return {
    name: r.name,
    host,
    path: r.prefix,
    upstream: origin + r.base,
    ...(r.strip ? { strip_prefix: true } : {}),
    ...(r.name === 'import' ? { max_body_bytes: 16, websocket: false } : {}),
  };
}

const BASE_FORMS = [
  '/public/x',
  '/public/x/',
  '/public/../admin/x',
  '/public/%2e%2e/admin/x',
  '/public/..;/admin/x',
  '/public/.;x/admin',
  '/public/%2e%2e;jsessionid=1/admin/x',
  '/public/..;a=b/admin/x',
  '/public/;x/../admin',
  '/;x/../admin',
  '/public/a/..;/../admin',
  '/public/..%3bx/admin',
  '/public/.%3b/admin',
  '/public/%252e%252e;x/admin',
  '/public/%252e%252e/admin',
  '/public//admin',
  '/public/./admin',
  '/public/%2e/admin',
  '/publicx/../admin',
  '/public;x/../admin/x',
  '/public/x#frag',
  '/public/x?q=1#frag',
  '/public/%2fadmin',
  '/public/..%2fadmin',
  '/public/%5c..%5cadmin',
  '/public/x%00',
  '/public/%c0%ae%c0%ae/admin',
  '/public/%25',
  '/public/%zz',
  '/public/%E4%B8%AD',
  '/public/a%20b',
  '/../admin',
  '/%2e%2e/admin',
  '/admin;x/y',
  '/;x/admin/y',
  '/%61dmin/x',
  '/adm%69n',
  '/api/%69mport',
  '/api/im%70ort/',
  '/api;x=1/import',
  '/api%3bx=1/import',
  '/lib;v=1/../admin',
  '/;x/api/import',
  '/api/import;jsessionid=A1',
  '/api/%252e%252e/import',
  '/api/import/%2e%2e/x',
  '/api/import/..;/x',
  '/api/importer',
  '/lib/x',
  '/lib;v=1/x',
  '/lib/../admin',
  '/lib/..;/admin',
  '/lib/%2e%2e;/admin',
  '/lib/x/../../admin',
  '/lib',
];

/** Upper-case every escape's hex digits. */
const upperHex = (s: string) => s.replace(/%[0-9a-f]{2}/gi, (m) => m.toUpperCase());
/** Alternate the case of escape hex digits and of `%2e`-style dots ("%2E%2e"). */
const mixedHex = (s: string) => {
  let i = 0;
  return s.replace(/%[0-9a-f]{2}/gi, (m) => (i++ % 2 === 0 ? m.toUpperCase() : m.toLowerCase()));
};
/** Encode every "%" once more ("%2e" → "%252e"). */
const doubleEncoded = (s: string) => s.replace(/%/g, '%25');
/** Every "." as "%2E" / "%2e" (the encoded forms of the dot-segments above). */
const dotsEncoded = (s: string) => {
  let i = 0;
  return s.replace(/\./g, () => (i++ % 2 === 0 ? '%2E' : '%2e'));
};

/** Every corpus target: the base forms and their upper-case, mixed-case, double-encoded and dot-encoded variants. */
export const CORPUS: readonly string[] = [
  ...new Set(BASE_FORMS.flatMap((b) => [b, upperHex(b), mixedHex(b), doubleEncoded(b), dotsEncoded(b), mixedHex(dotsEncoded(b))])),
];

/** Does `path` fall under `prefix` on a segment boundary? (Written again here, not imported.) */
export function covers(path: string, prefix: string): boolean {
  if (prefix === '/' || path === prefix) return true;
  if (prefix.endsWith('/')) return path.startsWith(prefix);
  return path.startsWith(`${prefix}/`);
}

/** The corpus route with the longest prefix covering a (decoded, normalised) path. */
export function bestRoute(path: string): CorpusRoute | undefined {
  let best: CorpusRoute | undefined;
  for (const r of CORPUS_ROUTES) if (covers(path, r.prefix) && (best === undefined || r.prefix.length > best.prefix.length)) best = r;
  return best;
}

/**
 * How a servlet container reads a request path (no query): undefined when it refuses it (fragment,
 * encoded "/", "\" or NUL, bad escapes or UTF-8, climbing above the root), else the decoded path
 * the application acts on.
 */
export function servletPath(rawPath: string): string | undefined {
  if (rawPath.includes('#') || rawPath.includes('\\')) return undefined;
  const noParams = rawPath
    .split('/')
    .map((seg) => seg.split(';')[0] as string)
    .join('/');
  let decoded: string;
  try {
    decoded = decodeURIComponent(noParams);
  } catch {
    return undefined;
  }
  if (decoded.includes('\0') || decoded.includes('\\') || /%2f/i.test(noParams)) return undefined;
  const out: string[] = [];
  const segs = decoded.split('/');
  for (let i = 1; i < segs.length; i++) {
    const seg = segs[i] as string;
    const last = i === segs.length - 1;
    if (seg === '' && !last) continue;
    if (seg === '.' || seg === '..') {
      if (seg === '..') {
        if (out.length === 0) return undefined;
        out.pop();
      }
      if (last) out.push('');
      continue;
    }
    out.push(seg);
  }
  return `/${out.join('/')}`;
}

/**
 * The public path for a path the upstream acted on through route `r` (its base path and
 * strip_prefix undone), or undefined when it lies outside the route's base path (an escape).
 */
export function backToPublic(r: CorpusRoute, acted: string): string | undefined {
  let rest = acted;
  if (r.base !== '') {
    if (acted !== r.base && !acted.startsWith(`${r.base}/`)) return undefined;
    rest = acted.slice(r.base.length) || '/';
  }
  if (!r.strip) return rest;
  const mount = r.prefix.endsWith('/') ? r.prefix.slice(0, -1) : r.prefix;
  return mount + rest;
}

/** The same, forwards: what the upstream should act on for a public (decoded, normalised) path. */
export function forwardOf(r: CorpusRoute, publicPath: string): string {
  let rest = publicPath;
  if (r.strip) {
    const mount = r.prefix.endsWith('/') ? r.prefix.slice(0, -1) : r.prefix;
    rest = publicPath.slice(mount.length) || '/';
  }
  return r.base + rest;
}

/**
 * Must the gateway refuse this target (400)? When a servlet container would refuse it too, when it
 * has a fragment, or when a segment's name (before ";" or "%3B") is a dot-segment — once decoded —
 * and parameters follow (issue 10 item 1). Everything else must be routed, redirected or 404.
 */
export function mustRefuse(target: string): boolean {
  if (target.includes('#')) return true;
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  if (servletPath(rawPath) === undefined) return true;
  return rawPath.split('/').some((seg) => {
    const m = /^(.*?)(;|%3b)/i.exec(seg);
    if (m === null) return false;
    let name: string;
    try {
      name = decodeURIComponent(m[1] as string);
    } catch {
      return false;
    }
    return name === '.' || name === '..';
  });
}

/** The path part of a target (before "?"). */
export const pathOf = (target: string): string => {
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
};
