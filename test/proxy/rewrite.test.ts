import t from 'tap';
import type { RequestContext } from '../../src/core/http.ts';
import { rewriteRefresh, rewriteSetCookie, rewriteUrl } from '../../src/proxy/rewrite.ts';
import { buildRouteTable, type CompiledRoute } from '../../src/proxy/routes.ts';
import { ADMIN, LOOPBACK, makeConfig, send, startGateway, startUpstream as startGatewayUpstream } from '../helpers/gateway.ts';
import { CA_FILE, request, route, startFront, startTlsUpstream, startUpstream } from './helpers.ts';

const table = buildRouteTable([
  route({ name: 'api1', host: 'api1.school.test', upstream: 'https://hub.upstream.test:8080' }),
  route({ name: 'api2', host: 'api2.school.test', upstream: 'https://open.upstream.test' }),
  route({ name: 'mount', host: 'school.test', path: '/api1/', strip_prefix: true, upstream: 'https://hub.upstream.test:8080' }),
  route({ name: 'wild', host: '*.dept.test', upstream: 'http://wild.internal:8081' }),
  route({ name: 'based', host: 'based.test', upstream: 'http://base.internal/app' }),
  route({ name: 'based-strip', host: 'bs.test', path: '/m', strip_prefix: true, upstream: 'http://bs.internal/app/' }),
  route({ name: 'mount2', host: 'school.test', path: '/api2/', strip_prefix: true, upstream: 'https://open.upstream.test' }),
  route({ name: 'ip', host: 'ip.test', upstream: 'http://127.0.0.1:9000' }),
  route({ name: 'ip6', host: 'ip6.test', upstream: 'http://[::1]:9001' }),
  route({ name: 'dot', host: 'dot.test', upstream: 'http://hub.example.:8080' }),
  route({ name: 'dot-mount', host: 'dot.test', path: '/d/', strip_prefix: true, upstream: 'http://hub.example.:8080' }),
  route({ name: 'mapped', host: 'mapped.test', upstream: 'http://[::ffff:7f00:1]:9002' }),
]);
const byName = (n: string) => table.routes.find((r) => r.name === n) as CompiledRoute;

function ctxFor(authority: string, secure = true): RequestContext {
  return {
    id: 'r',
    startedAt: 0n,
    clientIp: '127.0.0.1',
    secure,
    host: authority.split(':')[0] as string,
    authority,
    rawPath: '/',
    path: '/',
    query: '',
  };
}

t.test('rewriteUrl: maps upstream URLs to the public origin when they point at any upstream in the table', async (t) => {
  const cases: [name: string, routeName: string, authority: string, value: string, expected: string | undefined, secure?: boolean][] = [
    [
      'own upstream, :8080 dropped',
      'api1',
      'api1.school.test',
      'https://hub.upstream.test:8080/x?y=1#z',
      'https://api1.school.test/x?y=1#z',
    ],
    ['host compared case-insensitively', 'api1', 'api1.school.test', 'https://HUB.Upstream.test:8080/x', 'https://api1.school.test/x'],
    ['empty path becomes /', 'api1', 'api1.school.test', 'https://hub.upstream.test:8080', 'https://api1.school.test/'],
    ['query without path', 'api1', 'api1.school.test', 'https://hub.upstream.test:8080?a=1', 'https://api1.school.test/?a=1'],
    ['protocol-relative', 'api1', 'api1.school.test', '//hub.upstream.test:8080/p', 'https://api1.school.test/p'],
    ['userinfo dropped', 'api1', 'api1.school.test', 'https://u:p@hub.upstream.test:8080/p', 'https://api1.school.test/p'],
    ['request port kept', 'api1', 'api1.school.test:8443', 'https://hub.upstream.test:8080/p', 'https://api1.school.test:8443/p'],
    ['default port written out', 'api2', 'api2.school.test', 'https://open.upstream.test:443/login', 'https://api2.school.test/login'],
    ['default port omitted', 'api2', 'api2.school.test', 'https://open.upstream.test/login', 'https://api2.school.test/login'],
    ['other route with exact host', 'api1', 'api1.school.test', 'https://open.upstream.test/login', 'https://api2.school.test/login'],
    [
      'other route keeps the request port',
      'api2',
      'api2.school.test:8443',
      'https://hub.upstream.test:8080/x',
      'https://api1.school.test:8443/x',
    ],
    [
      'current route preferred among routes to one upstream',
      'mount',
      'school.test',
      'https://hub.upstream.test:8080/x',
      'https://school.test/api1/x',
    ],
    ['strip_prefix mapped back at the root', 'mount', 'school.test', 'https://hub.upstream.test:8080/', 'https://school.test/api1/'],
    [
      'wildcard route answers on the request origin',
      'api1',
      'api1.school.test',
      'http://wild.internal:8081/w',
      'https://api1.school.test/w',
    ],
    ['base path mapped back', 'based', 'based.test', 'http://base.internal/app/p?q', 'https://based.test/p?q'],
    ['base path root', 'based', 'based.test', 'http://base.internal/app', 'https://based.test/'],
    ['base path and strip_prefix mapped back', 'based-strip', 'bs.test', 'http://bs.internal/app/x', 'https://bs.test/m/x'],
    ['outside the base path: origin hidden, path kept', 'based', 'based.test', 'http://base.internal/other', 'https://based.test/other'],
    ['plain HTTP request', 'api1', 'api1.school.test', 'https://hub.upstream.test:8080/x', 'http://api1.school.test/x', false],
    ['other scheme on the same host and port: not an upstream', 'api1', 'api1.school.test', 'http://hub.upstream.test:8080/x', undefined],
    ['other port: not an upstream', 'api1', 'api1.school.test', 'https://hub.upstream.test/x', undefined],
    ['relative', 'api1', 'api1.school.test', '/relative', undefined],
    ['foreign site', 'api1', 'api1.school.test', 'https://open.weixin.qq.com/connect', undefined],
    ['not http', 'api1', 'api1.school.test', 'ftp://hub.upstream.test:8080/x', undefined],
  ];
  for (const [name, routeName, authority, value, expected, secure] of cases) {
    t.equal(rewriteUrl(value, byName(routeName), table, ctxFor(authority, secure !== false)), expected, name);
  }
});

t.test('rewriteUrl: maps relative redirects back through the mount when the route strips a prefix or has a base path', async (t) => {
  const cases: [name: string, routeName: string, authority: string, value: string, expected: string | undefined, secure?: boolean][] = [
    ['strip_prefix: /login → /api1/login', 'mount', 'school.test', '/login', '/api1/login'],
    ['strip_prefix: query and fragment kept', 'mount', 'school.test', '/login?next=%2Fx#top', '/api1/login?next=%2Fx#top'],
    ['strip_prefix: root', 'mount', 'school.test', '/', '/api1/'],
    ['base path removed', 'based', 'based.test', '/app/p?q', '/p?q'],
    ['base path root', 'based', 'based.test', '/app', '/'],
    ['base path and strip_prefix', 'based-strip', 'bs.test', '/app/x', '/m/x'],
    ['outside the base path: left alone', 'based', 'based.test', '/other', undefined],
    ['dot-segments resolved as the browser does before mapping', 'based', 'based.test', '/app/x/../y', '/y'],
    ['backslash read as a slash', 'mount', 'school.test', '\\login', '/api1/login'],
    ['same-scheme "http:/x" is relative on a plain HTTP page', 'mount', 'school.test', 'http:/login', '/api1/login', false],
    ['route forwarding paths unchanged: left alone', 'api1', 'api1.school.test', '/login', undefined],
    ['relative path without a leading slash: left alone', 'mount', 'school.test', 'next.html', undefined],
    ['query only: left alone', 'mount', 'school.test', '?page=2', undefined],
    ['fragment only: left alone', 'mount', 'school.test', '#top', undefined],
  ];
  for (const [name, routeName, authority, value, expected, secure] of cases) {
    t.equal(rewriteUrl(value, byName(routeName), table, ctxFor(authority, secure !== false)), expected, name);
  }
});

t.test('rewriteUrl: prefers a route on the request host when a redirect goes to another mapped upstream', async (t) => {
  const cases: [name: string, routeName: string, authority: string, value: string, expected: string | undefined][] = [
    ['own host has a mount for it', 'mount', 'school.test', 'https://open.upstream.test/login', 'https://school.test/api2/login'],
    ['own host keeps its port', 'mount', 'school.test:8443', 'https://open.upstream.test/a?b#c', 'https://school.test:8443/api2/a?b#c'],
    [
      'own host has no route to it: the route host',
      'api1',
      'api1.school.test',
      'https://open.upstream.test/login',
      'https://api2.school.test/login',
    ],
  ];
  for (const [name, routeName, authority, value, expected] of cases) {
    t.equal(rewriteUrl(value, byName(routeName), table, ctxFor(authority)), expected, name);
  }
});

t.test('rewriteUrl: treats browser-equivalent forms as the absolute URL a browser resolves them to', async (t) => {
  const cases: [name: string, routeName: string, authority: string, value: string, expected: string | undefined, secure?: boolean][] = [
    ['backslashes after the scheme', 'api1', 'api1.school.test', 'https:\\\\hub.upstream.test:8080\\x', 'https://api1.school.test/x'],
    ['mixed slashes after the scheme', 'api1', 'api1.school.test', 'https:/\\hub.upstream.test:8080/x', 'https://api1.school.test/x'],
    ['three slashes after the scheme', 'api1', 'api1.school.test', 'https:///hub.upstream.test:8080/x', 'https://api1.school.test/x'],
    ['slash-backslash is scheme-relative', 'api1', 'api1.school.test', '/\\hub.upstream.test:8080/x', 'https://api1.school.test/x'],
    ['backslash-slash is scheme-relative', 'api1', 'api1.school.test', '\\/hub.upstream.test:8080/x', 'https://api1.school.test/x'],
    ['two backslashes are scheme-relative', 'mount', 'school.test', '\\\\hub.upstream.test:8080/x', 'https://school.test/api1/x'],
    ['tab between the slashes', 'api1', 'api1.school.test', '/\t/hub.upstream.test:8080/x', 'https://api1.school.test/x'],
    ['newline inside the scheme', 'api1', 'api1.school.test', 'ht\ntps://hub.upstream.test:8080/x', 'https://api1.school.test/x'],
    ['tab inside the host', 'api1', 'api1.school.test', 'https://hub.up\tstream.test:8080/x', 'https://api1.school.test/x'],
    ['leading control characters', 'api1', 'api1.school.test', '\x01 https://hub.upstream.test:8080/x', 'https://api1.school.test/x'],
    ['upper-case scheme', 'api1', 'api1.school.test', 'HTTPS://hub.upstream.test:8080/x', 'https://api1.school.test/x'],
    ['percent-encoded host', 'api1', 'api1.school.test', 'https://hub%2Eupstream.test:8080/x', 'https://api1.school.test/x'],
    [
      'ideographic full stop in the host',
      'api1',
      'api1.school.test',
      'https://hub\u3002upstream.test:8080/x',
      'https://api1.school.test/x',
    ],
    ['trailing dot on the host', 'api1', 'api1.school.test', 'https://hub.upstream.test.:8080/x', 'https://api1.school.test/x'],
    ['IPv4 shorthand', 'ip', 'ip.test', 'http://127.1:9000/x', 'https://ip.test/x'],
    ['IPv4 in hex', 'ip', 'ip.test', 'http://0x7f.0.0.1:9000/x', 'https://ip.test/x'],
    ['IPv4 as one number', 'ip', 'ip.test', 'http://2130706433:9000/x', 'https://ip.test/x'],
    ['IPv6 not in canonical form', 'ip6', 'ip6.test', 'http://[0:0::1]:9001/x', 'https://ip6.test/x'],
    [
      'scheme without slashes on a page of another scheme',
      'api1',
      'api1.school.test',
      'https:hub.upstream.test:8080/x',
      'http://api1.school.test/x',
      false,
    ],
    [
      'scheme without slashes on a page of the same scheme: relative',
      'api1',
      'api1.school.test',
      'https:hub.upstream.test:8080/x',
      undefined,
    ],
    [
      'scheme-relative under the upstream scheme when the page scheme differs',
      'api1',
      'api1.school.test',
      '//hub.upstream.test:8080/p',
      'http://api1.school.test/p',
      false,
    ],
    ['foreign host behind slash-backslash: left alone', 'mount', 'school.test', '/\\evil.test/x', undefined],
    ['foreign host behind backslashes: left alone', 'mount', 'school.test', 'http:\\\\evil.test\\x', undefined],
    ['foreign host behind a tab: left alone', 'mount', 'school.test', '/\t/evil.test/x', undefined],
    ['port out of range: left alone', 'api1', 'api1.school.test', 'https://hub.upstream.test:99999/x', undefined],
    ['javascript: left alone', 'mount', 'school.test', 'javascript:alert(1)', undefined],
  ];
  for (const [name, routeName, authority, value, expected, secure] of cases) {
    t.equal(rewriteUrl(value, byName(routeName), table, ctxFor(authority, secure !== false)), expected, name);
  }
});

t.test(
  'rewriteUrl: writes an absolute URL on the request origin when the mapped path begins with "//" (review F1 open redirect)',
  async (t) => {
    const cases: [name: string, routeName: string, authority: string, value: string, expected: string | undefined, secure?: boolean][] = [
      ['dot-segment before //', 'api1', 'api1.school.test', '/.//evil.test/x', 'https://api1.school.test//evil.test/x'],
      ['%2e before //', 'api1', 'api1.school.test', '/%2e//evil.test/x', 'https://api1.school.test//evil.test/x'],
      ['.. before //', 'api1', 'api1.school.test', '/a/..//evil.test/x', 'https://api1.school.test//evil.test/x'],
      ['dot-segment before a backslash', 'api1', 'api1.school.test', '/./\\evil.test/x', 'https://api1.school.test//evil.test/x'],
      ['.. before a backslash', 'api1', 'api1.school.test', '/x/../\\evil.test', 'https://api1.school.test//evil.test'],
      ['base path removed before //', 'based', 'based.test', '/app//evil.test/x?q=1#f', 'https://based.test//evil.test/x?q=1#f'],
      ['base path and a dot-segment', 'based', 'based.test', '/app/.//evil.test', 'https://based.test//evil.test'],
      ['the request port kept', 'based', 'based.test:8443', '/app//evil.test/x', 'https://based.test:8443//evil.test/x'],
      ['plain HTTP page', 'based', 'based.test', '/app//evil.test/x', 'http://based.test//evil.test/x', false],
      ['same-scheme "http:/" form', 'based', 'based.test', 'http:/app//evil.test/x', 'http://based.test//evil.test/x', false],
      [
        'own upstream absolute: absolute as before',
        'based',
        'based.test',
        'http://base.internal/app//evil.test',
        'https://based.test//evil.test',
      ],
      ['under a strip_prefix mount: stays relative', 'mount', 'school.test', '/.//evil.test/x', '/api1//evil.test/x'],
      ['base path and strip_prefix: stays relative', 'based-strip', 'bs.test', '/app//evil.test', '/m//evil.test'],
      ['"//" later in the path: stays relative', 'based', 'based.test', '/app/x//evil.test', '/x//evil.test'],
      ['scheme-relative to a foreign host: not ours, left alone', 'based', 'based.test', '//evil.test/x', undefined],
    ];
    for (const [name, routeName, authority, value, expected, secure] of cases) {
      t.equal(rewriteUrl(value, byName(routeName), table, ctxFor(authority, secure !== false)), expected, name);
    }
    t.equal(
      rewriteRefresh('0; url=/.//evil.test/x', byName('api1'), table, ctxFor('api1.school.test')),
      '0; url=https://api1.school.test//evil.test/x',
      'Refresh',
    );
  },
);

t.test('rewriteUrl: never sends a browser to another site when the upstream value stays on the upstream (review F1)', async (t) => {
  const heads = ['', '/app', '/app/', '/m', '/a/b'];
  const middles = ['/.', '/%2e', '/%2E', '/a/..', '/a/%2e%2e', '/.;x', '', '/./.'];
  const tails = ['//evil.test/x', '/\\evil.test/x', '\\\\evil.test/x', '/\t/evil.test/x', '/\\/evil.test', '//evil.test:80@x/'];
  const publicHosts = new Set(table.routes.map((r) => r.host).filter((h) => h !== undefined));
  publicHosts.add('a.dept.test');
  const failures: string[] = [];
  let checked = 0;
  for (const r of table.routes) {
    const authority = r.hostKind === 0 ? (r.host as string) : `a.${r.host as string}`;
    const upstreamPage = new URL(`${r.upstream.origin}${r.upstream.basePath}/page`);
    for (const secure of [true, false]) {
      for (const h of heads)
        for (const m of middles)
          for (const tail of tails) {
            const value = `${h}${m}${tail}`;
            let before: URL;
            try {
              before = new URL(value, upstreamPage);
            } catch {
              continue;
            }
            // Only values a browser keeps on the upstream's own site: the public answer must stay on ours.
            if (before.host !== upstreamPage.host) continue;
            checked++;
            const out = rewriteUrl(value, r, table, ctxFor(authority, secure)) ?? value;
            const after = new URL(out, `${secure ? 'https' : 'http'}://${authority}/page`);
            if (!publicHosts.has(after.hostname))
              failures.push(`${r.name} ${JSON.stringify(value)} -> ${JSON.stringify(out)} (${after.host})`);
          }
    }
  }
  t.ok(checked > 1000, `${checked} values checked`);
  t.same(failures, [], 'every answer resolves to a public host of the route table');
});

t.test(
  'rewriteUrl: treats a trailing-dot upstream and the IPv4-mapped form of an upstream address as that upstream (review F8)',
  async (t) => {
    const cases: [name: string, routeName: string, authority: string, value: string, expected: string | undefined][] = [
      ['trailing-dot upstream, URL without the dot', 'dot', 'dot.test', 'http://hub.example:8080/x', 'https://dot.test/x'],
      ['trailing-dot upstream, URL with the dot', 'dot', 'dot.test', 'http://hub.example.:8080/x', 'https://dot.test/x'],
      ['trailing-dot upstream, upper case', 'dot', 'dot.test', 'HTTP://HUB.example.:8080/x', 'https://dot.test/x'],
      ['trailing-dot upstream, scheme-relative', 'dot', 'dot.test', '//hub.example:8080/x', 'https://dot.test/x'],
      ['trailing-dot upstream behind strip_prefix', 'dot-mount', 'dot.test', 'http://hub.example:8080/x', 'https://dot.test/d/x'],
      ['trailing-dot upstream behind strip_prefix, relative', 'dot-mount', 'dot.test', '/login', '/d/login'],
      ['from another route to the trailing-dot upstream', 'api1', 'api1.school.test', 'http://hub.example:8080/x', 'https://dot.test/x'],
      ['IPv4-mapped form of the upstream address', 'ip', 'ip.test', 'http://[::ffff:127.0.0.1]:9000/x', 'https://ip.test/x'],
      ['IPv4-mapped form in hex', 'ip', 'ip.test', 'http://[::FFFF:7f00:1]:9000/x', 'https://ip.test/x'],
      ['IPv4-mapped form, long notation', 'ip', 'ip.test', 'http://[0:0:0:0:0:ffff:127.0.0.1]:9000/x', 'https://ip.test/x'],
      ['IPv4-mapped form of another address: left alone', 'ip', 'ip.test', 'http://[::ffff:127.0.0.2]:9000/x', undefined],
      ['IPv4-compatible (not mapped) form: left alone', 'ip', 'ip.test', 'http://[::127.0.0.1]:9000/x', undefined],
      ['upstream written IPv4-mapped, URL in IPv4', 'mapped', 'mapped.test', 'http://127.0.0.1:9002/x', 'https://mapped.test/x'],
      ['upstream written IPv4-mapped, URL as written', 'mapped', 'mapped.test', 'http://[::ffff:7f00:1]:9002/x', 'https://mapped.test/x'],
    ];
    for (const [name, routeName, authority, value, expected] of cases) {
      t.equal(rewriteUrl(value, byName(routeName), table, ctxFor(authority)), expected, name);
    }
  },
);

t.test('rewriteRefresh: rewrites the URL part when the header redirects to an upstream', async (t) => {
  const r = byName('api1');
  const ctx = ctxFor('api1.school.test');
  t.equal(rewriteRefresh('0; url=https://hub.upstream.test:8080/x', r, table, ctx), '0; url=https://api1.school.test/x');
  t.equal(rewriteRefresh("5;URL='https://open.upstream.test/a'", r, table, ctx), "5;URL='https://api2.school.test/a'");
  t.equal(rewriteRefresh('3, https://hub.upstream.test:8080/', r, table, ctx), '3, https://api1.school.test/');
  t.equal(rewriteRefresh('3', r, table, ctx), undefined, 'no URL');
  t.equal(rewriteRefresh('0; url=/local', r, table, ctx), undefined, 'relative URL on a route forwarding paths unchanged');
  const cases: [name: string, value: string, expected: string | undefined][] = [
    ['relative URL through the mount', '0; url=/login', '0; url=/api1/login'],
    ['opening quote without its closing one', "0; url='https://hub.upstream.test:8080/x", "0; url='https://school.test/api1/x"],
    ['text after the closing quote kept', '0; url="/a" x', '0; url="/api1/a" x'],
    ['whitespace as the separator', '0 https://hub.upstream.test:8080/x', '0 https://school.test/api1/x'],
    ['time starting with a dot', '.5;URL = /a', '.5;URL = /api1/a'],
    ['tab in the URL making it scheme-relative', '0;url=/\t/hub.upstream.test:8080/x', '0;url=https://school.test/api1/x'],
    ['no time: not a refresh', 'url=/a', undefined],
    ['"url" without "=" is part of a relative URL', '0; url /a', undefined],
  ];
  const mount = byName('mount');
  const schoolCtx = ctxFor('school.test');
  for (const [name, value, expected] of cases) t.equal(rewriteRefresh(value, mount, table, schoolCtx), expected, name);
});

t.test('rewriteSetCookie: fits Domain and Path to the public site and drops gateway cookies when relaying', async (t) => {
  const cases: [name: string, routeName: string, value: string, rewrite: boolean, expected: string | undefined][] = [
    ['domain of the upstream host removed', 'api1', 'sid=1; Domain=hub.upstream.test; Path=/; HttpOnly', true, 'sid=1; Path=/; HttpOnly'],
    ['parent domain of the upstream removed', 'api1', 'sid=1; domain=.Upstream.test; Secure', true, 'sid=1; Secure'],
    ['unrelated domain kept', 'api1', 'sid=1; Domain=school.test', true, 'sid=1; Domain=school.test'],
    ['no attributes', 'api1', 'sid=1', true, 'sid=1'],
    ['path mapped through strip_prefix', 'mount', 'a=1; Path=/x', true, 'a=1; Path=/api1/x'],
    ['root path mapped through strip_prefix', 'mount', 'a=1; Path=/', true, 'a=1; Path=/api1/'],
    ['path mapped through the base path', 'based', 'a=1; Path=/app/p', true, 'a=1; Path=/p'],
    ['base path root', 'based', 'a=1; Path=/app', true, 'a=1; Path=/'],
    ['path outside the base path widened to the mount', 'based', 'a=1; Path=/', true, 'a=1; Path=/'],
    ['path outside base and strip', 'based-strip', 'a=1; Path=/', true, 'a=1; Path=/m/'],
    ['path untouched when the mount is unchanged', 'api1', 'a=1; Path=/deep', true, 'a=1; Path=/deep'],
    [
      'switch off keeps Domain and Path',
      'mount',
      'sid=1; Domain=hub.upstream.test; Path=/x',
      false,
      'sid=1; Domain=hub.upstream.test; Path=/x',
    ],
    ['gateway cookie dropped', 'api1', 'wegate_session=forged; Path=/', true, undefined],
    ['gateway cookie dropped with rewriting off', 'api1', 'wegate_session=forged', false, undefined],
    ['gateway cookie name case-insensitive', 'api1', 'WeGate_State=x', true, undefined],
    ['gateway cookie behind __Host-', 'api1', '__Host-wegate_session=x; Path=/; Secure', true, undefined],
    ['gateway cookie with spaces', 'api1', '  wegate_x =1', true, undefined],
    ['similar but not a gateway cookie', 'api1', 'wegatex=1', true, 'wegatex=1'],
    ['__Host- cookie keeps Path=/ on a strip_prefix route', 'mount', '__Host-sid=1; Path=/; Secure', true, '__Host-sid=1; Path=/; Secure'],
    ['__Host- prefix matched case-insensitively', 'mount', '__host-sid=1; Path=/; Secure', true, '__host-sid=1; Path=/; Secure'],
    ['__Host- cookie keeps Path=/ on a base-path route', 'based', '__Host-sid=1; Secure; Path=/', true, '__Host-sid=1; Secure; Path=/'],
    [
      '__Host- cookie loses the upstream Domain',
      'mount',
      '__Host-s=1; Domain=hub.upstream.test; Path=/; Secure',
      true,
      '__Host-s=1; Path=/; Secure',
    ],
    ['__Secure- cookie path mapped', 'mount', '__Secure-sid=1; Path=/; Secure', true, '__Secure-sid=1; Path=/api1/; Secure'],
    ['gateway cookie behind __Secure-', 'api1', '__Secure-wegate_session=x; Secure', true, undefined],
    ['gateway cookie behind __Host-Http-', 'api1', '__Host-Http-wegate_session=x; Path=/; Secure; HttpOnly', true, undefined],
    ['gateway cookie behind __Http-', 'api1', '__Http-wegate_session=x; HttpOnly', true, undefined],
  ];
  for (const [name, routeName, value, rewrite, expected] of cases)
    t.equal(rewriteSetCookie(value, byName(routeName), rewrite), expected, name);
});

t.test(
  'proxy: rewrites Location, Content-Location, Refresh and Set-Cookie when upstreams on two ports redirect across routes',
  async (t) => {
    let httpsPort = 0;
    let httpPort = 0;
    const hub = await startTlsUpstream(t, (req, res) => {
      const h: Record<string, string | string[]> = {};
      if (req.url === '/self') h.location = `https://localhost:${httpsPort}/next?x=1`;
      if (req.url === '/cross') h.location = `http://127.0.0.1:${httpPort}/login`;
      if (req.url === '/cross-base') h.location = `http://127.0.0.1:${httpPort}/base/deep`;
      if (req.url === '/external') h.location = 'https://open.weixin.qq.com/connect/oauth2/authorize?appid=x';
      if (req.url === '/relative') h.location = '/just/here';
      h['content-location'] = `https://localhost:${httpsPort}/doc`;
      h.refresh = `0; url=https://LOCALHOST:${httpsPort}/r`;
      h['set-cookie'] = ['sid=abc; Domain=localhost; Path=/; HttpOnly', 'wegate_session=forged; Path=/', 'pref=1'];
      res.writeHead(
        req.url === '/self' || req.url?.startsWith('/cross') || req.url === '/external' || req.url === '/relative' ? 302 : 200,
        h,
      );
      res.end();
    });
    const b = await startUpstream(t, (_req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${httpPort}/base/after`, 'set-cookie': 'bs=1; Path=/base/' });
      res.end();
    });
    httpsPort = hub.port;
    httpPort = b.port;
    const front = await startFront(t, [
      route({
        host: 'api1.school.test',
        upstream: `https://localhost:${hub.port}`,
        tls: { ca_file: CA_FILE, insecure_skip_verify: false },
      }),
      route({ host: 'api2.school.test', upstream: `http://127.0.0.1:${b.port}` }),
      route({ host: 'school.test', path: '/b/', strip_prefix: true, upstream: `http://127.0.0.1:${b.port}/base` }),
      route({
        host: 'raw.test',
        upstream: `https://localhost:${hub.port}`,
        tls: { ca_file: CA_FILE, insecure_skip_verify: false },
        rewrite: { location: false, cookies: false },
      }),
    ]);
    const get = (path: string, host: string) => request(front.origin, path, { headers: { host } });

    const self = await get('/self', 'api1.school.test:8443');
    t.equal(self.status, 302);
    t.equal(self.headers.location, 'http://api1.school.test:8443/next?x=1', 'own upstream → own public origin');
    t.equal(self.headers['content-location'], 'http://api1.school.test:8443/doc');
    t.equal(self.headers.refresh, '0; url=http://api1.school.test:8443/r');
    t.same(self.headers['set-cookie'], ['sid=abc; Path=/; HttpOnly', 'pref=1'], 'Domain removed, gateway cookie dropped');
    t.notMatch(JSON.stringify(self.headers), new RegExp(`:${hub.port}|localhost`), 'the upstream origin never leaks');

    t.equal(
      (await get('/cross', 'api1.school.test')).headers.location,
      'http://api2.school.test/login',
      'other upstream → that route host',
    );
    t.equal(
      (await get('/cross-base', 'api1.school.test')).headers.location,
      'http://school.test/b/deep',
      'other route with base path and strip_prefix',
    );
    t.equal(
      (await get('/external', 'api1.school.test')).headers.location,
      'https://open.weixin.qq.com/connect/oauth2/authorize?appid=x',
      'foreign URL untouched',
    );
    t.equal((await get('/relative', 'api1.school.test')).headers.location, '/just/here', 'relative untouched');

    const mounted = await get('/b/x', 'school.test');
    t.equal(mounted.headers.location, 'http://school.test/b/after', 'base path mapped back on the mounted route');
    t.same(mounted.headers['set-cookie'], ['bs=1; Path=/b/'], 'cookie path mapped back');

    const raw = await get('/self', 'raw.test');
    t.equal(raw.headers.location, `https://localhost:${hub.port}/next?x=1`, 'rewrite.location: false leaves Location');
    t.same(
      raw.headers['set-cookie'],
      ['sid=abc; Domain=localhost; Path=/; HttpOnly', 'pref=1'],
      'rewrite.cookies: false still drops gateway cookies',
    );
  },
);

t.test(
  'gateway: keeps redirects and cookies on the mount when upstreams behind strip_prefix routes answer with relative, cross-upstream or browser-equivalent URLs',
  async (t) => {
    let aPort = 0;
    let bPort = 0;
    const a = await startGatewayUpstream(t, 'A', (req, res) => {
      const to: Record<string, string> = {
        '/go-login': '/login',
        '/go-b': `http://127.0.0.1:${bPort}/login`,
        '/go-hidden': `/\\127.0.0.1:${bPort}/x`,
        '/go-back': `http:\\\\127.0.0.1:${aPort}\\y`,
        '/go-tab': `/\t/127.0.0.1:${aPort}/t`,
        '/go-evil': '/\\evil.test/x',
      };
      const h: Record<string, string | string[]> = { 'content-length': '0' };
      const location = to[req.url ?? ''];
      if (location !== undefined) h.location = location;
      if (req.url === '/go-login') {
        h['content-location'] = '/doc';
        h.refresh = `0; url='http://127.0.0.1:${aPort}/q`;
        h['set-cookie'] = ['sid=1; Path=/; HttpOnly', '__Host-h=1; Path=/; Secure', '__Secure-s=1; Path=/; Secure'];
      }
      res.writeHead(location === undefined ? 200 : 302, h);
      res.end();
    });
    const b = await startGatewayUpstream(t, 'B', (_req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${aPort}/z`, 'content-length': '0' });
      res.end();
    });
    aPort = a.port;
    bPort = b.port;
    const s = await startGateway(
      t,
      makeConfig({
        listen: LOOPBACK,
        admin: ADMIN,
        routes: [
          { name: 'api2-host', host: 'api2.school.test', upstream: b.url },
          { name: 'api1', host: 'school.test', path: '/api1/', strip_prefix: true, upstream: a.url },
          { name: 'api2', host: 'school.test', path: '/api2/', strip_prefix: true, upstream: b.url },
        ],
      }),
    );
    const get = (path: string, host = 'school.test') => send(s.httpPort, host, { path });

    const login = await get('/api1/go-login');
    t.equal(login.status, 302);
    t.equal(login.headers.location, '/api1/login', 'relative Location mapped back through the mount');
    t.equal(login.headers['content-location'], '/api1/doc');
    t.equal(login.headers.refresh, "0; url='http://school.test/api1/q", 'Refresh with an unclosed quote');
    t.same(
      login.headers['set-cookie'],
      ['sid=1; Path=/api1/; HttpOnly', '__Host-h=1; Path=/; Secure', '__Secure-s=1; Path=/api1/; Secure'],
      'cookie paths mapped, __Host- keeps Path=/',
    );
    const cases: [path: string, host: string, expected: string][] = [
      ['/api1/go-b', 'school.test', 'http://school.test/api2/login'],
      ['/api1/go-hidden', 'school.test', 'http://school.test/api2/x'],
      ['/api1/go-back', 'school.test', 'http://school.test/api1/y'],
      ['/api1/go-tab', 'school.test', 'http://school.test/api1/t'],
      ['/api1/go-evil', 'school.test', '/\\evil.test/x'],
      ['/to-a', 'api2.school.test', 'http://school.test/api1/z'],
    ];
    for (const [path, host, expected] of cases) t.equal((await get(path, host)).headers.location, expected, `${host}${path}`);
  },
);

t.test(
  'gateway: answers Location, Content-Location and Refresh that would read as //other-host with an absolute URL on the request origin (review F1 open redirect)',
  async (t) => {
    const up = await startGatewayUpstream(t, 'U', (req, res) => {
      const q = new URL(req.url ?? '/', 'http://x').searchParams;
      res.writeHead(302, { [q.get('h') ?? 'location']: q.get('v') ?? '/', 'content-length': '0' });
      res.end();
    });
    const s = await startGateway(
      t,
      makeConfig({
        listen: LOOPBACK,
        admin: ADMIN,
        routes: [
          { name: 'plain', host: 'school.test', upstream: up.url },
          { name: 'mount', host: 'school.test', path: '/m/', strip_prefix: true, upstream: up.url },
          { name: 'based', host: 'based.test', upstream: `${up.url}/app` },
        ],
      }),
    );
    const cases: [host: string, path: string, header: string, value: string, expected: string][] = [
      ['school.test', '/p', 'location', '/.//evil.test/x', 'http://school.test//evil.test/x'],
      ['school.test', '/p', 'location', '/%2e//evil.test/x', 'http://school.test//evil.test/x'],
      ['school.test', '/p', 'location', '/a/..//evil.test/x', 'http://school.test//evil.test/x'],
      ['school.test', '/p', 'location', '/./\\evil.test/x', 'http://school.test//evil.test/x'],
      ['school.test', '/p', 'content-location', '/.//evil.test/x', 'http://school.test//evil.test/x'],
      ['school.test', '/p', 'refresh', '0; url=/.//evil.test/x', '0; url=http://school.test//evil.test/x'],
      ['based.test', '/p', 'location', '/app//evil.test/x', 'http://based.test//evil.test/x'],
      ['based.test', '/p', 'refresh', '0;url=/app//evil.test', '0;url=http://based.test//evil.test'],
      ['school.test', '/m/p', 'location', '/.//evil.test/x', '/m//evil.test/x'],
      ['school.test', '/p', 'location', '/login', '/login'],
    ];
    for (const [host, path, header, value, expected] of cases) {
      const r = await send(s.httpPort, host, { path: `${path}?h=${header}&v=${encodeURIComponent(value)}` });
      const out = r.headers[header] as string;
      t.equal(out, expected, `${host}${path} ${header}: ${JSON.stringify(value)}`);
      const url = header === 'refresh' ? out.slice(out.indexOf('=') + 1) : out;
      t.equal(new URL(url, `http://${host}${path}`).host, host, `${host}${path} ${header}: the browser stays on ${host}`);
    }
  },
);

t.test(
  'gateway: rewrites redirects to a trailing-dot upstream and to the IPv4-mapped form of an upstream address (review F8)',
  async (t) => {
    let port = 0;
    const up = await startGatewayUpstream(t, 'B', (req, res) => {
      const to: Record<string, string> = {
        '/to-dot': 'http://hub.example:8080/x',
        '/to-dot-dot': 'http://hub.example.:8080/y',
        '/mapped': `http://[::ffff:127.0.0.1]:${port}/z`,
        '/mapped-hex': `http://[::ffff:7f00:1]:${port}/w`,
      };
      res.writeHead(302, { location: to[req.url ?? ''] ?? '/', 'content-length': '0' });
      res.end();
    });
    port = up.port;
    const s = await startGateway(
      t,
      makeConfig({
        listen: LOOPBACK,
        admin: ADMIN,
        routes: [
          // Never reached (no trailing-dot name resolves here): only redirects to it are rewritten.
          { name: 'dot', host: 'a.school.test', upstream: 'http://hub.example.:8080' },
          { name: 'b', host: 'b.school.test', upstream: up.url },
        ],
      }),
    );
    const cases: [path: string, expected: string][] = [
      ['/to-dot', 'http://a.school.test/x'],
      ['/to-dot-dot', 'http://a.school.test/y'],
      ['/mapped', 'http://b.school.test/z'],
      ['/mapped-hex', 'http://b.school.test/w'],
    ];
    for (const [path, expected] of cases) t.equal((await send(s.httpPort, 'b.school.test', { path })).headers.location, expected, path);
  },
);
