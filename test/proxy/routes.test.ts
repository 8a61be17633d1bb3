import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildRouteTable, defaultRouteName, forwardPath, publicPath } from '../../src/proxy/routes.ts';
import { CA_FILE, route } from './helpers.ts';

const table = buildRouteTable([
  route({ name: 'any-root', upstream: 'http://any.internal' }),
  route({ name: 'any-static', path: '/static/', upstream: 'http://static.internal' }),
  route({ name: 'wild-root', host: '*.school.edu.cn', upstream: 'http://wild.internal' }),
  route({ name: 'wild-api', host: '*.school.edu.cn', path: '/api', upstream: 'http://wild-api.internal' }),
  route({ name: 'api1-root', host: 'api1.school.edu.cn', upstream: 'https://hub.17wanxiao.com:8080' }),
  route({ name: 'api1-admin', host: 'api1.school.edu.cn', path: '/admin/', upstream: 'http://admin.internal' }),
  route({ name: 'api1-admin-users', host: 'API1.school.edu.cn', path: '/admin/users', upstream: 'http://users.internal' }),
  route({ name: 'school-api1', host: 'school.edu.cn', path: '/api1/', strip_prefix: true, upstream: 'https://hub.17wanxiao.com:8080' }),
  route({ name: 'dup-first', host: 'dup.test', path: '/x', upstream: 'http://first.internal' }),
  route({ name: 'dup-second', host: 'dup.test', path: '/x', upstream: 'http://second.internal' }),
]);

t.test('route table: picks the most specific route when several match', async (t) => {
  const cases: [name: string, host: string, path: string, expected: string | undefined][] = [
    ['exact host beats wildcard and any-host', 'api1.school.edu.cn', '/x', 'api1-root'],
    ['longest prefix within the exact host', 'api1.school.edu.cn', '/admin/x', 'api1-admin'],
    ['longer prefix wins again', 'api1.school.edu.cn', '/admin/users/7', 'api1-admin-users'],
    ['config host is case-insensitive', 'api1.school.edu.cn', '/admin/users', 'api1-admin-users'],
    ['prefix only on a segment boundary', 'api1.school.edu.cn', '/admin/usersx', 'api1-admin'],
    ['prefix with trailing slash does not match the bare name', 'api1.school.edu.cn', '/admin', 'api1-root'],
    ['trailing dot on the host is ignored', 'api1.school.edu.cn.', '/x', 'api1-root'],
    ['wildcard matches one label', 'api2.school.edu.cn', '/x', 'wild-root'],
    ['wildcard route with a longer prefix', 'api2.school.edu.cn', '/api/v1', 'wild-api'],
    ['wildcard prefix needs a segment boundary', 'api2.school.edu.cn', '/apix', 'wild-root'],
    ['wildcard does not match two labels', 'a.b.school.edu.cn', '/x', 'any-root'],
    ['wildcard does not match the bare domain', 'school.edu.cn', '/x', 'any-root'],
    ['exact host route for its own prefix', 'school.edu.cn', '/api1/x', 'school-api1'],
    ['unknown host falls to any-host routes', 'other.test', '/x', 'any-root'],
    ['any-host longest prefix', 'other.test', '/static/app.js', 'any-static'],
    ['exact host without a covering prefix falls through to any-host', 'dup.test', '/y', 'any-root'],
    ['first of two identical routes wins', 'dup.test', '/x/1', 'dup-first'],
  ];
  for (const [name, host, path, expected] of cases) t.equal(table.match(host, path)?.name, expected, name);
});

t.test('route table: no route when neither host nor any-host route covers the path', async (t) => {
  const only = buildRouteTable([route({ host: 'a.test', path: '/app/', upstream: 'http://x.internal' })]);
  t.equal(only.match('a.test', '/other'), undefined, 'path outside the prefix');
  t.equal(only.match('b.test', '/app/x'), undefined, 'other host');
  t.equal(only.match('a.test', '/app/x')?.name, 'a.test_app_', 'default name from host and path');
});

t.test('route names: default to the sanitised host and path when the config has none', async (t) => {
  t.equal(defaultRouteName({ host: '*.school.edu.cn', path: '/api1/' }), '_.school.edu.cn_api1_');
  t.equal(defaultRouteName({ path: '/' }), '__');
  const tbl = buildRouteTable([route({ path: '/a', upstream: 'http://x' }), route({ path: '/a', upstream: 'http://y' })]);
  t.not(tbl.routes[0]?.name, tbl.routes[1]?.name, 'duplicates made unique');
});

t.test('forwardPath: maps the public path onto the upstream when strip_prefix and base paths combine', async (t) => {
  const cases: [name: string, cfg: Parameters<typeof route>[0], path: string, forwarded: string][] = [
    ['plain', { upstream: 'http://u' }, '/a/b', '/a/b'],
    ['base path', { upstream: 'http://u/base' }, '/a', '/base/a'],
    ['base path with trailing slash', { upstream: 'http://u/base/' }, '/a', '/base/a'],
    ['base path and root', { upstream: 'http://u/base' }, '/', '/base/'],
    ['prefix kept without strip', { path: '/api1/', upstream: 'http://u' }, '/api1/x', '/api1/x'],
    ['strip with trailing-slash prefix', { path: '/api1/', strip_prefix: true, upstream: 'http://u' }, '/api1/x', '/x'],
    ['strip to root', { path: '/api1/', strip_prefix: true, upstream: 'http://u' }, '/api1/', '/'],
    ['strip bare prefix', { path: '/api1', strip_prefix: true, upstream: 'http://u' }, '/api1', '/'],
    ['strip keeps the rest', { path: '/api1', strip_prefix: true, upstream: 'http://u' }, '/api1/a/b/', '/a/b/'],
    ['strip and base', { path: '/api1/', strip_prefix: true, upstream: 'https://u:8080/base' }, '/api1/x', '/base/x'],
    ['strip of "/" is a no-op', { path: '/', strip_prefix: true, upstream: 'http://u' }, '/x', '/x'],
    ['encoding kept', { path: '/p', strip_prefix: true, upstream: 'http://u' }, '/p/%E4%B8%AD%20x', '/%E4%B8%AD%20x'],
  ];
  for (const [name, cfg, path, forwarded] of cases) {
    const r = buildRouteTable([route(cfg)]).routes[0]!;
    t.equal(forwardPath(r, path), forwarded, name);
    t.equal(publicPath(r, forwarded), path === '/api1' ? '/api1/' : path, `${name} (mapped back)`);
  }
  const based = buildRouteTable([route({ upstream: 'http://u/base' })]).routes[0]!;
  t.equal(publicPath(based, '/elsewhere'), undefined, 'upstream path outside the base path has no public form');
  t.equal(publicPath(based, '/basement'), undefined, 'base path only on a segment boundary');
});

t.test('route table: refuses an unusable route with an error naming it when the config is wrong', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wegate-routes-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const notPem = join(dir, 'ca.txt');
  writeFileSync(notPem, 'hello');
  const cases: [name: string, cfg: Parameters<typeof route>[0], message: RegExp][] = [
    [
      'missing CA file',
      { name: 'r1', upstream: 'https://u', tls: { ca_file: join(dir, 'nope.pem'), insecure_skip_verify: false } },
      /route "r1".*ca_file/,
    ],
    [
      'CA file without a certificate',
      { name: 'r2', upstream: 'https://u', tls: { ca_file: notPem, insecure_skip_verify: false } },
      /route "r2".*no PEM/,
    ],
    ['credentials in upstream', { name: 'r3', upstream: 'https://user:pw@u' }, /route "r3".*credentials/],
    ['query in upstream', { name: 'r4', upstream: 'https://u/?a=1' }, /route "r4".*query/],
  ];
  for (const [name, cfg, message] of cases) t.throws(() => buildRouteTable([route(cfg)]), message, name);
  t.doesNotThrow(
    () => buildRouteTable([route({ upstream: 'https://u', tls: { ca_file: CA_FILE, insecure_skip_verify: false } })]),
    'valid CA',
  );
});

t.test('route table: precomputes upstream Host header, SNI and origin key when routes are built', async (t) => {
  const [a, b, c, d] = buildRouteTable([
    route({ upstream: 'https://Hub.17wanxiao.com:8080/base' }),
    route({ upstream: 'https://open.17wanxiao.com:443' }),
    route({ upstream: 'http://127.0.0.1:8080', tls: { server_name: 'ignored.test', insecure_skip_verify: false } }),
    route({ upstream: 'https://[::1]:9443' }),
  ]).routes;
  t.same(
    [a?.upstream.hostHeader, a?.servername, a?.upstream.key, a?.upstream.basePath],
    ['hub.17wanxiao.com:8080', 'hub.17wanxiao.com', 'https://hub.17wanxiao.com:8080', '/base'],
  );
  t.same(
    [b?.upstream.hostHeader, b?.upstream.origin, b?.upstream.key],
    ['open.17wanxiao.com', 'https://open.17wanxiao.com', 'https://open.17wanxiao.com:443'],
  );
  t.same([c?.upstream.hostHeader, c?.servername], ['127.0.0.1:8080', 'ignored.test']);
  t.same([d?.upstream.hostHeader, d?.upstream.hostname, d?.servername], ['[::1]:9443', '::1', null]);
});

t.test('route table: ignores path parameters when choosing a route (issue 10 item 2)', async (t) => {
  const cases: [name: string, host: string, path: string, expected: string | undefined][] = [
    ['parameters on the prefix segment', 'api1.school.edu.cn', '/admin;x=1/users/7', 'api1-admin-users'],
    ['parameters on the last prefix segment', 'api1.school.edu.cn', '/admin/users;jsessionid=A1', 'api1-admin-users'],
    ['an empty segment with parameters before the prefix', 'api1.school.edu.cn', '/;x/admin/users', 'api1-admin-users'],
    ['parameters do not make a name longer', 'school.edu.cn', '/api1;v=2/login', 'school-api1'],
  ];
  for (const [name, host, path, expected] of cases) t.equal(table.match(host, path)?.name, expected, name);
});

t.test('forwardPath: strips the mount segment with its parameters when a stripped route matched through them', async (t) => {
  const strip = buildRouteTable([route({ path: '/api1/', strip_prefix: true, upstream: 'http://h/base' })]).routes[0];
  if (strip === undefined) throw new Error('no route');
  const cases: [path: string, expected: string][] = [
    ['/api1/login', '/base/login'],
    ['/api1/', '/base/'],
    ['/api1;v=2/login', '/base/login'],
    ['/;x/api1/login;jsessionid=A1', '/base/login;jsessionid=A1'],
    ['/;x/api1;v=2/', '/base/'],
  ];
  for (const [path, expected] of cases) t.equal(forwardPath(strip, path), expected, path);
});
