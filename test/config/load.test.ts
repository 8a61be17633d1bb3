import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Type } from '@sinclair/typebox';
import t, { type Test } from 'tap';
import { type ConfigProblem, formatProblems, type LoadResult, loadConfigFile, loadConfigText } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { validateConfigText } from '../../src/config/validate.ts';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXAMPLE = join(ROOT, 'config', 'wegate.example.yaml');
const TLS = join(ROOT, 'test', 'fixtures', 'tls');

const MINIMAL = 'listen:\n  http: ":8080"\nroutes:\n  - upstream: "https://hub.17wanxiao.com:8080"\n';

function ok(t: Test, r: LoadResult): Config {
  if (!r.ok) {
    t.fail(`expected a valid config, got:\n${formatProblems(r.file, r.problems)}`);
    throw new Error('invalid config');
  }
  return r.config;
}

function problems(t: Test, r: LoadResult): ConfigProblem[] {
  if (r.ok) {
    t.fail('expected problems, the config was accepted');
    return [];
  }
  return r.problems;
}

/** A directory with a config file (and its relative companions) for checks that touch files. */
function dirWith(t: Test, files: Record<string, string> = {}): string {
  const dir = t.testdir({});
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), content);
  }
  return dir;
}

const tlsBlock = (cert: string, key: string) => `tls:\n  certs:\n    - cert: ${JSON.stringify(cert)}\n      key: ${JSON.stringify(key)}\n`;
const httpsConfig = (cert: string, key: string) =>
  `listen:\n  https: "127.0.0.1:0"\n${tlsBlock(cert, key)}routes:\n  - upstream: "https://open.17wanxiao.com"\n`;

t.test('loadConfigFile: accepts the example config and resolves its verify dir when loaded from the repo', async (t) => {
  const config = ok(t, await loadConfigFile(EXAMPLE));
  t.equal(config.listen.http, ':8080');
  t.equal(config.listen.https, undefined, 'https is commented out so `npm start` needs no certificate');
  t.equal(config.tls, undefined);
  t.equal(config.verify_files?.dir, join(ROOT, 'config', 'verify'));
  t.same(
    config.routes.map((r) => [r.name, r.host, r.path, r.strip_prefix, r.upstream]),
    [
      ['api1', 'api1.school.edu.cn', '/', false, 'https://hub.17wanxiao.com:8080'],
      ['api2', 'api2.school.edu.cn', '/', false, 'https://open.17wanxiao.com'],
      ['school-api1', 'school.edu.cn', '/api1/', true, 'https://hub.17wanxiao.com:8080'],
      ['school-api2', 'school.edu.cn', '/api2/', true, 'https://open.17wanxiao.com'],
    ],
  );
});

t.test('loadConfigFile: accepts the production values shown in the example when they are uncommented', async (t) => {
  // The commented production lines must be valid too: uncomment them with the test certificate.
  const dir = dirWith(t, { 'verify/WW_verify_abc123.txt': 'abc123', 'secrets/proxy': 'wegate:proxy-password\n' });
  const original = readFileSync(EXAMPLE, 'utf8');
  const text = original
    .replace('  http: ":8080"', '  http: ":80"')
    .replace('  # https: ":443"', '  https: ":443"')
    .replace('  redirect_http: false', '  redirect_http: true')
    .replace('  # public_https_port: 443', '  public_https_port: 443')
    .replace(/^# tls:\n(?:#.*\n)+/m, (block) =>
      block
        .replace(/^# ?/gm, '')
        .replace('/etc/wegate/tls/fullchain.pem', join(TLS, 'api1.pem'))
        .replace('/etc/wegate/tls/privkey.pem', join(TLS, 'api1.key')),
    )
    .replace('  names: []\n  # names:', '  names:')
    .replace('  hosts: []\n  # hosts:', '  hosts:')
    .replace('      # ca_file: /etc/wegate/upstream-ca.pem', `      ca_file: ${JSON.stringify(join(TLS, 'ca.pem'))}`)
    .replace('      # server_name:', '      server_name:')
    .replace(/^# egress:\n(?:#.*\n)+/m, (block) =>
      block.replace(/^# ?/gm, '').replace('/etc/wegate/secrets/proxy', join(dir, 'secrets', 'proxy')),
    )
    .replace('    # egress: wecom', '    egress: wecom');
  // (The commented `wecom:` block, which names an egress profile too, is tested on its own.)
  const beforeWecom = text.split(/^# wecom:/m)[0] as string;
  t.notMatch(beforeWecom, /^#\s*(tls|certs|watch|https|public_https_port|egress|local_address|proxy|ip_echo):(\s|$)/m, 'every production line was uncommented');
  const config = ok(t, loadConfigText(text, join(dir, 'wegate.yaml')));
  t.equal(config.listen.https, ':443');
  t.equal(config.listen.redirect_http, true);
  t.equal(config.tls?.certs[0]?.cert, join(TLS, 'api1.pem'));
  t.equal(config.tls?.watch, true);
  t.equal(config.listen.public_https_port, 443);
  t.equal(config.verify_files?.names.length, 1);
  t.same(config.verify_files?.hosts, ['api1.school.edu.cn', 'api2.school.edu.cn']);
  t.equal(config.routes[0]?.tls.ca_file, join(TLS, 'ca.pem'));
  t.equal(config.routes[0]?.tls.server_name, 'hub.17wanxiao.com');
  t.equal(config.routes[0]?.egress, 'wecom');
  t.same(config.egress?.['wecom'], {
    local_address: '10.0.0.5',
    proxy: { url: 'http://10.0.0.9:3128', credentials_file: join(dir, 'secrets', 'proxy') },
    expected_ip: '47.111.68.103',
    ip_echo: { url: 'https://ifconfig.me/ip', interval_ms: 600000, timeout_ms: 10000 },
  });
});

t.test('loadConfigText: fills every default when keys are left out or empty', async (t) => {
  const config = ok(t, loadConfigText(`${MINIMAL}log:\nshutdown:\n  drain_timeout_ms:\n`, 'wegate.yaml'));
  t.same(config.listen, {
    http: ':8080',
    redirect_http: false,
    header_timeout_ms: 10_000,
    request_timeout_ms: 300_000,
    keep_alive_timeout_ms: 5_000,
    send_timeout_ms: 60_000,
    max_connections: 0,
    max_connections_per_ip: 0,
  });
  t.same(config.admin, { listen: '127.0.0.1:9464' });
  t.same(config.log, { level: 'info', access_log: true });
  t.same(config.shutdown, { drain_timeout_ms: 20_000 });
  t.same(config.reload, { watch_config: true });
  t.same(config.routes[0], {
    name: 'any',
    path: '/',
    strip_prefix: false,
    upstream: 'https://hub.17wanxiao.com:8080',
    preserve_host: false,
    websocket: true,
    max_body_bytes: 10 * 1024 * 1024,
    timeouts: { connect_ms: 5_000, response_ms: 60_000, idle_ms: 60_000 },
    tls: { insecure_skip_verify: false },
    rewrite: { location: true, cookies: true },
    wecom_errors: { scan: true, explain: false },
  });
  t.equal(config.tls, undefined);
  t.equal(config.verify_files, undefined);
});

t.test('loadConfigText: returns a deep-frozen config when it is valid', async (t) => {
  const config = ok(t, loadConfigText(MINIMAL, 'wegate.yaml'));
  for (const v of [config, config.listen, config.routes, config.routes[0], config.routes[0]?.timeouts, config.admin]) {
    t.ok(Object.isFrozen(v));
  }
  t.throws(() => {
    (config.routes[0] as { upstream: string }).upstream = 'http://evil';
  }, TypeError);
});

t.test('loadConfigText: names every route, uniquely, when names are missing', async (t) => {
  const text = `listen: { http: ":8080" }
routes:
  - { host: API1.School.edu.cn., upstream: "https://a" }
  - { host: api1.school.edu.cn, path: /x/, upstream: "https://a" }
  - { host: "*.school.edu.cn", upstream: "https://a" }
  - { upstream: "https://a" }
  - { name: any_x, upstream: "https://a", path: /y }
  - { path: /x, upstream: "https://a" }
  - { path: "/x/", upstream: "https://a" }
`;
  const config = ok(t, loadConfigText(text, 'wegate.yaml'));
  t.same(
    config.routes.map((r) => r.name),
    ['api1.school.edu.cn', 'api1.school.edu.cn_x', 'wildcard.school.edu.cn', 'any', 'any_x', 'any_x-2', 'any_x-3'],
  );
  t.equal(config.routes[0]?.host, 'api1.school.edu.cn', 'hosts are stored lower-case without the root dot');
});

t.test('loadConfigText: lists every problem with its key path and line when a config has many errors', async (t) => {
  const text = [
    'listen:', //                                  1
    '  http: 8080', //                             2  not a string
    '  redirect_http: true', //                    3  needs https too
    'admin:', //                                   4
    '  listen: ":9464"', //                        5
    'log:', //                                     6
    '  level: loud', //                            7  enum
    'routes:', //                                  8
    '  - host: api1.school.edu.cn', //             9
    '    upstream: "localhost:8080"', //           10 not a URL
    '    max_body_bytes: 10MB', //                 11 not a number
    '  - host: "bad host"', //                     12 pattern
    '    upsteam: "https://a"', //                 13 typo (and upstream missing: said once)
    '    timeouts: { connect_ms: 0 }', //          14 minimum
    '  - name: same', //                           15
    '    upstream: "https://a/?x=1"', //           16 query
    '  - name: same', //                           17 duplicate name
    '    host: api1.school.edu.cn', //             18 (duplicate host+path of routes[0])
    '    upstream: "https://b"', //                19
    'verify_files:', //                            20
    '  dir: ./no-such-dir', //                     21
    '',
  ].join('\n');
  const got = problems(t, loadConfigText(text, '/nonexistent/wegate.yaml'));
  t.same(
    got.map((p) => [p.path, p.line]),
    [
      ['listen.http', 2],
      ['listen.redirect_http', 3],
      ['log.level', 7],
      ['routes[0].upstream', 10],
      ['routes[0].max_body_bytes', 11],
      ['routes[1].host', 12],
      ['routes[1].upsteam', 13],
      ['routes[1].timeouts.connect_ms', 14],
      ['routes[2].upstream', 16],
      ['routes[3]', 17],
      ['routes[3].name', 17],
      ['verify_files.dir', 21],
    ],
  );
  const byPath = new Map(got.map((p) => [p.path, p.message]));
  t.match(byPath.get('listen.http'), /^must be a listen address such as ":8080".*, got 8080$/);
  t.equal(byPath.get('listen.redirect_http'), 'must be false unless both listen.http and listen.https are set, got true');
  t.equal(byPath.get('log.level'), 'must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got "loud"');
  t.equal(
    byPath.get('routes[0].upstream'),
    'must be an absolute http(s) URL such as "https://hub.17wanxiao.com:8080", got "localhost:8080"',
  );
  t.equal(byPath.get('routes[0].max_body_bytes'), 'must be a whole number, got "10MB"');
  t.match(byPath.get('routes[1].host'), /^must be a host name such as .*, got "bad host"$/);
  t.equal(byPath.get('routes[1].upsteam'), 'unknown key `upsteam`, did you mean `upstream`?');
  t.equal(byPath.get('routes[1].timeouts.connect_ms'), 'must be at least 1, got 0');
  t.match(byPath.get('routes[2].upstream'), /^must not contain a query/);
  t.match(byPath.get('routes[3]'), /^must not repeat the host "api1.school.edu.cn" and path "\/" of routes\[0\] \(line 9\)/);
  t.equal(byPath.get('routes[3].name'), 'must be unique, got "same" which routes[2].name (line 15) also uses');
  t.match(
    byPath.get('verify_files.dir'),
    /^must be a readable directory, got "\.\/no-such-dir" \(\/nonexistent\/no-such-dir\): not found$/,
  );

  const report = formatProblems('wegate.yaml', got);
  t.match(report, /^wegate\.yaml is invalid \(12 problems\):\n {2}listen\.http \(line 2\): must be a listen address/);
  t.match(report, /\n {2}routes\[1\]\.upsteam \(line 13\): unknown key `upsteam`, did you mean `upstream`\?\n/);
});

t.test('formatProblems: prints a header and one indented line per problem when there are several', async (t) => {
  t.equal(
    formatProblems('wegate.yaml', [
      { path: 'routes[2].upstream', line: 31, message: 'must be an absolute http(s) URL, got "localhost:8080"' },
      { path: '(file)', message: 'cannot read the configuration file: file not found' },
    ]),
    'wegate.yaml is invalid (2 problems):\n' +
      '  routes[2].upstream (line 31): must be an absolute http(s) URL, got "localhost:8080"\n' +
      '  (file): cannot read the configuration file: file not found',
  );
  t.match(formatProblems('x.yaml', [{ path: 'a', message: 'b' }]), /^x\.yaml is invalid \(1 problem\):/);
});

t.test('loadConfigText: rejects unknown keys with the near miss when a key is misspelt', async (t) => {
  const cases = [
    {
      name: 'typo in a route',
      yaml: `${MINIMAL}    stripprefix: true\n`,
      path: 'routes[0].stripprefix',
      line: 5,
      msg: 'did you mean `strip_prefix`?',
    },
    {
      name: 'camelCase',
      yaml: `${MINIMAL}    maxBodyBytes: 1\n`,
      path: 'routes[0].maxBodyBytes',
      line: 5,
      msg: 'did you mean `max_body_bytes`?',
    },
    { name: 'swapped letters', yaml: `${MINIMAL}    hsot: a.b\n`, path: 'routes[0].hsot', line: 5, msg: 'did you mean `host`?' },
    { name: 'top level', yaml: `${MINIMAL}verfiy_files: { dir: . }\n`, path: 'verify_files', line: 5, msg: 'did you mean `verify_files`?' },
    {
      name: 'nested',
      yaml: `${MINIMAL}    timeouts: { conect_ms: 1 }\n`,
      path: 'routes[0].timeouts.conect_ms',
      line: 5,
      msg: 'did you mean `connect_ms`?',
    },
    { name: 'no near miss', yaml: `${MINIMAL}    weight: 3\n`, path: 'routes[0].weight', line: 5, msg: '(allowed here: name, host, path,' },
  ];
  for (const c of cases) {
    const got = problems(t, loadConfigText(c.yaml, 'wegate.yaml'));
    t.equal(got.length, 1, c.name);
    const p = got[0];
    t.equal(p?.path, c.path === 'verify_files' ? 'verfiy_files' : c.path, c.name);
    t.equal(p?.line, c.line, c.name);
    t.ok(p?.message.startsWith('unknown key `'), c.name);
    t.ok(p?.message.includes(c.msg), `${c.name}: ${p?.message}`);
  }
  // A typo'd required key is one problem, not also "upstream must be set".
  const typo = problems(t, loadConfigText('listen: { http: ":8080" }\nroutes:\n  - upsteam: "https://a"\n', 'wegate.yaml'));
  t.same(typo, [{ path: 'routes[0].upsteam', line: 3, message: 'unknown key `upsteam`, did you mean `upstream`?' }]);
  // Without a near miss the missing required key is reported on the item's line.
  const missing = problems(t, loadConfigText('listen: { http: ":8080" }\nroutes:\n  - host: a.b\n', 'wegate.yaml'));
  t.same(missing, [{ path: 'routes[0].upstream', line: 3, message: 'must be set (this key is required)' }]);
});

t.test('loadConfigText: rewrites schema errors into plain sentences when values have the wrong shape', async (t) => {
  const cases = [
    {
      name: 'string for number',
      yaml: `${MINIMAL}    max_body_bytes: abc\n`,
      path: 'routes[0].max_body_bytes',
      msg: 'must be a whole number, got "abc"',
    },
    {
      name: 'string for boolean',
      yaml: `${MINIMAL}    websocket: "yes"\n`,
      path: 'routes[0].websocket',
      msg: 'must be true or false, got "yes"',
    },
    { name: 'list for mapping', yaml: `${MINIMAL}shutdown: [1]\n`, path: 'shutdown', msg: 'must be a mapping (key: value), got a list' },
    { name: 'enum near miss', yaml: `${MINIMAL}log: { level: inf }\n`, path: 'log.level', msg: '(did you mean "info"?)' },
    {
      name: 'maximum',
      yaml: `${MINIMAL}listen: { http: ":1", public_https_port: 70000 }\n`,
      path: 'listen.public_https_port',
      msg: 'must be at most 65535, got 70000',
    },
    { name: 'empty list', yaml: 'listen: { http: ":8080" }\nroutes: []\n', path: 'routes', msg: 'must have at least 1 entry, got 0' },
    { name: 'empty string', yaml: `${MINIMAL}    tls: { server_name: "" }\n`, path: 'routes[0].tls.server_name', msg: 'must not be empty' },
    { name: 'route path', yaml: `${MINIMAL}    path: api1/\n`, path: 'routes[0].path', msg: 'must be a path prefix starting with "/"' },
    {
      name: 'verify name',
      yaml: `${MINIMAL}verify_files: { dir: ., names: [../x] }\n`,
      path: 'verify_files.names[0]',
      msg: 'must be a plain file name',
    },
    { name: 'root is a list', yaml: '- a\n', path: '(root)', msg: 'must be a mapping (key: value), got a list' },
    { name: 'empty file', yaml: '', path: '(root)', msg: 'must be a mapping (key: value), got nothing (the value is empty)' },
  ];
  for (const c of cases) {
    const got = problems(t, loadConfigText(c.yaml, join(ROOT, 'config', 'x.yaml'))).filter((p) => p.path === c.path);
    t.equal(got.length, 1, `${c.name}: one problem at ${c.path}`);
    t.ok(got[0]?.message.includes(c.msg), `${c.name}: ${got[0]?.message}`);
  }
});

t.test('loadConfigText: reports each semantic problem when the schema alone cannot see it', async (t) => {
  const route = (extra: string) => `listen: { http: ":8080" }\nroutes:\n  - upstream: "https://a.example"\n${extra}`;
  const cases = [
    {
      name: 'upstream unparsable',
      yaml: route('  - { path: /p, upstream: "https://exa mple.com" }\n'),
      path: 'routes[1].upstream',
      msg: 'must not contain spaces or control characters, got "https://exa mple.com"',
    },
    {
      name: 'upstream fragment',
      yaml: route('  - { path: /f, upstream: "https://a/#top" }\n'),
      path: 'routes[1].upstream',
      msg: 'must not contain a fragment',
    },
    {
      name: 'upstream query',
      yaml: route('  - { path: /q, upstream: "https://a/?a=1" }\n'),
      path: 'routes[1].upstream',
      msg: 'must not contain a query',
    },
    {
      name: 'upstream userinfo',
      yaml: route('  - { path: /u, upstream: "https://u:hunter2@a/" }\n'),
      path: 'routes[1].upstream',
      msg: 'must not contain credentials (user:password@), got "https://[REDACTED]@a/"',
    },
    {
      name: 'duplicate name',
      yaml: route('  - { name: r, path: /q, upstream: "https://a" }\n  - { name: r, path: /r, upstream: "https://a" }\n'),
      path: 'routes[2].name',
      msg: 'must be unique, got "r" which routes[1].name (line 4) also uses',
    },
    {
      name: 'duplicate host+path',
      yaml: route('  - { upstream: "https://b" }\n'),
      path: 'routes[1]',
      msg: 'must not repeat the any host and path "/" of routes[0] (line 3)',
    },
    {
      name: 'duplicate host+path, host case',
      yaml: 'listen: { http: ":1" }\nroutes:\n  - { host: A.b, path: /x, upstream: "https://a" }\n  - { host: a.B., path: /x, upstream: "https://a" }\n',
      path: 'routes[1]',
      msg: 'must not repeat the host "a.B." and path "/x"',
    },
    {
      name: 'path not normalised',
      yaml: route('  - { path: /a/../b, upstream: "https://a" }\n'),
      path: 'routes[1].path',
      msg: 'must be a normalised path prefix',
    },
    {
      name: 'path double slash',
      yaml: route('  - { path: //a, upstream: "https://a" }\n'),
      path: 'routes[1].path',
      msg: 'must be a normalised path prefix',
    },
    {
      name: 'path encoded slash',
      yaml: route('  - { path: /a%2fb, upstream: "https://a" }\n'),
      path: 'routes[1].path',
      msg: 'must be a normalised path prefix',
    },
    {
      name: 'no listener',
      yaml: 'listen: {}\nroutes: [{ upstream: "https://a" }]\n',
      path: 'listen',
      msg: 'must set at least one of `http` or `https`, got neither',
    },
    {
      name: 'https without tls',
      yaml: 'listen: { https: ":8443" }\nroutes: [{ upstream: "https://a" }]\n',
      path: 'listen.https',
      msg: 'requires a `tls` section',
    },
    {
      name: 'redirect without https',
      yaml: 'listen: { http: ":8080", redirect_http: true }\nroutes: [{ upstream: "https://a" }]\n',
      path: 'listen.redirect_http',
      msg: 'must be false unless both',
    },
    {
      name: 'admin on public port',
      yaml: 'listen: { http: ":9464" }\nroutes: [{ upstream: "https://a" }]\n',
      path: 'admin.listen',
      msg: 'must not use the same address and port as listen.http (":9464"), got "127.0.0.1:9464"',
    },
    {
      name: 'admin on public port, same address',
      yaml: 'listen: { http: "10.0.0.1:8080" }\nadmin: { listen: "10.0.0.1:8080" }\nroutes: [{ upstream: "https://a" }]\n',
      path: 'admin.listen',
      msg: 'must not use the same address and port',
    },
    {
      name: 'http and https on one port',
      yaml: `listen: { http: ":8443", https: "0.0.0.0:8443" }\n${tlsBlock(join(TLS, 'api1.pem'), join(TLS, 'api1.key'))}routes: [{ upstream: "https://a" }]\n`,
      path: 'listen.https',
      msg: 'must not use the same address and port as listen.http',
    },
    {
      name: 'port out of range',
      yaml: 'listen: { http: ":70000" }\nroutes: [{ upstream: "https://a" }]\n',
      path: 'listen.http',
      msg: 'must use a port from 0 to 65535, got ":70000"',
    },
    {
      name: 'route host as IPv4 shorthand',
      yaml: route('  - { host: "10.1", upstream: "https://a" }\n'),
      path: 'routes[1].host',
      msg: 'must write an IPv4 address as four decimal numbers (a.b.c.d): the URL parser reads "10.1" as 10.0.0.1, got "10.1"',
    },
    {
      name: 'listen on IPv4 shorthand',
      yaml: 'listen: { http: "127.1:8080" }\nroutes: [{ upstream: "https://a" }]\n',
      path: 'listen.http',
      msg: 'must write an IPv4 address as four decimal numbers (a.b.c.d): the URL parser reads "127.1" as 127.0.0.1, got "127.1:8080"',
    },
    {
      name: 'admin on the wildcard IPv6 port of the public listener',
      yaml: 'listen: { http: "[::]:9000" }\nadmin: { listen: "127.0.0.1:9000" }\nroutes: [{ upstream: "https://a" }]\n',
      path: 'admin.listen',
      msg: 'must not use the same address and port as listen.http ("[::]:9000")',
    },
    {
      name: 'verify dir missing',
      yaml: route('verify_files: { dir: ./missing }\n'),
      path: 'verify_files.dir',
      msg: 'must be a readable directory',
    },
    {
      name: 'verify dir is a file',
      yaml: route(`verify_files: { dir: ${JSON.stringify(join(TLS, 'ca.pem'))} }\n`),
      path: 'verify_files.dir',
      msg: ': not a directory',
    },
    {
      name: 'ca file missing',
      yaml: route('    tls: { ca_file: ./ca.pem }\n'),
      path: 'routes[0].tls.ca_file',
      msg: 'must be a readable file',
    },
    {
      name: 'ca file is a dir',
      yaml: route(`    tls: { ca_file: ${JSON.stringify(TLS)} }\n`),
      path: 'routes[0].tls.ca_file',
      msg: ': not a regular file',
    },
    {
      name: 'cert file missing',
      yaml: httpsConfig('./nope.pem', join(TLS, 'api1.key')),
      path: 'tls.certs[0].cert',
      msg: 'must be a readable file, got "./nope.pem" (',
    },
    {
      name: 'key file missing',
      yaml: httpsConfig(join(TLS, 'api1.pem'), '/nonexistent/k.pem'),
      path: 'tls.certs[0].key',
      msg: 'not found',
    },
  ];
  const dir = dirWith(t);
  for (const c of cases) {
    const got = problems(t, loadConfigText(c.yaml, join(dir, 'wegate.yaml')));
    t.equal(got.length, 1, `${c.name}: exactly one problem, got ${JSON.stringify(got)}`);
    t.equal(got[0]?.path, c.path, c.name);
    t.ok(got[0]?.message.includes(c.msg), `${c.name}: ${got[0]?.message}`);
    t.not(got[0]?.line, undefined, `${c.name}: has a line`);
  }
  // Ephemeral ports never clash (tests bind several listeners on port 0).
  ok(
    t,
    loadConfigText('listen: { http: "127.0.0.1:0" }\nadmin: { listen: "127.0.0.1:0" }\nroutes: [{ upstream: "https://a" }]\n', 'w.yaml'),
  );
});

t.test('loadConfigText: reports a problem when a certificate or key does not parse or they do not belong together', async (t) => {
  const encrypted = generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'correct horse' },
  }).privateKey;
  const dir = dirWith(t, { 'enc.key': encrypted, 'garbage.pem': 'not a pem\n' });
  const cases = [
    { name: 'matching pair', cert: 'api1.pem', key: 'api1.key' },
    { name: 'renewed pair', cert: 'api1-renewed.pem', key: 'api1-renewed.key' },
    {
      name: 'mismatch',
      cert: 'api1.pem',
      key: 'api2.key',
      path: 'tls.certs[0].key',
      msg: 'must be the private key of the certificate in tls.certs[0].cert, got a key that does not match it',
    },
    { name: 'key as cert', cert: 'api1.key', key: 'api1.key', path: 'tls.certs[0].cert', msg: 'must be a PEM certificate file' },
    { name: 'cert as key', cert: 'api1.pem', key: 'api1.pem', path: 'tls.certs[0].key', msg: 'must be a PEM private key file' },
    {
      name: 'garbage key',
      cert: 'api1.pem',
      key: join(dir, 'garbage.pem'),
      path: 'tls.certs[0].key',
      msg: 'must be a PEM private key file',
    },
    { name: 'encrypted key', cert: 'api1.pem', key: join(dir, 'enc.key'), path: 'tls.certs[0].key', msg: 'passphrase-protected' },
  ];
  for (const c of cases) {
    const r = loadConfigText(httpsConfig(join(TLS, c.cert), c.key.startsWith('/') ? c.key : join(TLS, c.key)), join(dir, 'w.yaml'));
    if (c.path === undefined) {
      t.ok(r.ok, c.name);
      continue;
    }
    const got = problems(t, r);
    t.same(
      got.map((p) => p.path),
      [c.path],
      c.name,
    );
    t.ok(got[0]?.message.includes(c.msg), `${c.name}: ${got[0]?.message}`);
    // No key material in any message: no base64 run from the files, no PEM end marker.
    const text = formatProblems('w.yaml', got);
    t.notMatch(text, /-----END|[A-Za-z0-9+/]{40}/, `${c.name}: no key material`);
  }
});

t.test('loadConfigText: never echoes secret values when a secret key is invalid', async (t) => {
  const long = 'S3cr3tValue_abcdefghijklmnopqrstuvwxyz0123456789';
  // 1. Through the real loader: today's schema has no secret key yet (the WeCom issue adds them), so a
  //    `token` / `secret` placed in a route is an unknown key; its value must still not appear.
  const text = `${MINIMAL}    token: "${long}"\n    secret: "${long}"\n    corpsecret: ${long}\n`;
  const got = problems(t, loadConfigText(text, 'wegate.yaml'));
  t.same(
    got.map((p) => p.path),
    ['routes[0].token', 'routes[0].secret', 'routes[0].corpsecret'],
  );
  t.notMatch(formatProblems('wegate.yaml', got), long.slice(0, 12));

  // 2. Through the same validation engine loadConfigText uses, over a test-only schema that has
  //    secret keys with constraints, so the value really reaches a message.
  const schema = Type.Object(
    {
      app: Type.Object(
        {
          token: Type.String({ pattern: '^[A-Za-z0-9]{3,32}$' }),
          encoding_aes_key: Type.String({ minLength: 43, maxLength: 43 }),
          secret: Type.String({ minLength: 1 }),
          password: Type.Union([Type.Literal('a'), Type.Literal('b')]),
          Token: Type.Integer(),
        },
        { additionalProperties: false },
      ),
    },
    { additionalProperties: false },
  );
  const yaml = `app:\n  token: "${long}"\n  encoding_aes_key: "${long}"\n  secret: 12345678\n  password: "${long}"\n  Token: "${long}"\n`;
  const r = validateConfigText(yaml, 'secrets.yaml', schema);
  if (r.ok) {
    t.fail('expected problems');
    return;
  }
  t.same(
    r.problems.map((p) => [p.path, p.line, p.message]),
    [
      ['app.token', 2, `must match the pattern ^[A-Za-z0-9]{3,32}$, got (value hidden, ${long.length} characters)`],
      ['app.encoding_aes_key', 3, `must be at most 43 characters long, got (value hidden, ${long.length} characters)`],
      ['app.secret', 4, 'must be a string, got (value hidden)'],
      ['app.password', 5, `must be one of "a", "b", got (value hidden, ${long.length} characters)`],
      ['app.Token', 6, `must be a whole number, got (value hidden, ${long.length} characters)`],
    ],
  );
  t.notMatch(formatProblems('secrets.yaml', r.problems), /S3cr3t|12345678/);
});

t.test('loadConfigText: reports the line when the YAML has a syntax error or a duplicate key', async (t) => {
  const cases = [
    { name: 'unclosed flow map', yaml: 'listen: { http: ":8080"\nroutes: []\n', path: '(yaml)', line: 2, msg: 'invalid YAML: ' },
    { name: 'tab indent', yaml: 'listen:\n\thttp: ":8080"\n', path: '(yaml)', line: 2, msg: 'invalid YAML: ' },
    { name: 'bad indentation', yaml: `${MINIMAL}   path: /x\n`, path: '(yaml)', line: 5, msg: 'invalid YAML: ' },
    { name: 'unknown alias', yaml: `${MINIMAL}log: *nope\n`, path: '(yaml)', line: 5, msg: 'invalid YAML: Unresolved alias' },
    {
      name: 'two documents',
      yaml: `${MINIMAL}---\n${MINIMAL}`,
      path: '(yaml)',
      line: 5,
      msg: 'invalid YAML: Source contains multiple documents',
    },
    {
      name: 'duplicate key',
      yaml: 'listen:\n  http: ":8080"\n  http: ":8081"\nroutes: [{ upstream: "https://a" }]\n',
      path: 'listen.http',
      line: 3,
      msg: 'must appear only once in its mapping, got it again (first on line 2)',
    },
    {
      name: 'duplicate key in a route',
      yaml: `${MINIMAL}    upstream: "https://b"\n`,
      path: 'routes[0].upstream',
      line: 5,
      msg: 'first on line 4',
    },
  ];
  for (const c of cases) {
    const got = problems(t, loadConfigText(c.yaml, 'wegate.yaml'));
    t.equal(got[0]?.path, c.path, c.name);
    t.equal(got[0]?.line, c.line, c.name);
    t.ok(got[0]?.message.startsWith(c.msg) || got[0]?.message.includes(c.msg), `${c.name}: ${got[0]?.message}`);
  }
  // Duplicate keys do not hide the other problems.
  const both = problems(t, loadConfigText('listen:\n  http: ":8080"\n  http: ":8081"\nroutes: [{ upstream: "ftp://a" }]\n', 'w.yaml'));
  t.same(
    both.map((p) => [p.path, p.line]),
    [
      ['listen.http', 3],
      ['routes[0].upstream', 4],
    ],
  );
});

t.test('loadConfigFile: resolves relative paths against the config file directory when cwd is elsewhere', async (t) => {
  const dir = dirWith(t, { 'etc/verify/WW_verify_abc.txt': 'abc' });
  mkdirSync(join(dir, 'etc', 'tls'));
  copyFileSync(join(TLS, 'api1.pem'), join(dir, 'etc', 'tls', 'fullchain.pem'));
  copyFileSync(join(TLS, 'api1.key'), join(dir, 'etc', 'tls', 'privkey.pem'));
  copyFileSync(join(TLS, 'ca.pem'), join(dir, 'ca.pem'));
  const text = `listen: { https: "127.0.0.1:0" }
tls:
  certs:
    - { cert: tls/fullchain.pem, key: ./tls/privkey.pem }
verify_files: { dir: verify }
routes:
  - upstream: "https://localhost:1"
    tls: { ca_file: ../ca.pem }
`;
  writeFileSync(join(dir, 'etc', 'wegate.yaml'), text);
  t.not(process.cwd(), join(dir, 'etc'));
  const config = ok(t, await loadConfigFile(join(dir, 'etc', 'wegate.yaml')));
  t.same(config.tls?.certs, [{ cert: join(dir, 'etc', 'tls', 'fullchain.pem'), key: join(dir, 'etc', 'tls', 'privkey.pem') }]);
  t.equal(config.verify_files?.dir, join(dir, 'etc', 'verify'));
  t.equal(config.routes[0]?.tls.ca_file, join(dir, 'ca.pem'));

  // The same with a relative config file name: relative to it, not to the process's cwd.
  const rel = relative(process.cwd(), join(dir, 'etc', 'wegate.yaml'));
  const again = ok(t, loadConfigText(text, rel));
  t.equal(again.verify_files?.dir, join(dir, 'etc', 'verify'));

  // Absolute paths stay as written.
  const absText = `${MINIMAL}verify_files: { dir: ${JSON.stringify(join(dir, 'etc', 'verify'))} }\n`;
  const abs = ok(t, loadConfigText(absText, join(dir, 'x', 'y.yaml')));
  t.equal(abs.verify_files?.dir, join(dir, 'etc', 'verify'));
});

t.test('loadConfigFile: reports an unreadable file as a problem when the file is missing or a directory', async (t) => {
  const dir = dirWith(t);
  const missing = await loadConfigFile(join(dir, 'nope.yaml'));
  t.same(missing, {
    ok: false,
    file: join(dir, 'nope.yaml'),
    problems: [{ path: '(file)', message: 'cannot read the configuration file: file not found' }],
  });
  const isDir = problems(t, await loadConfigFile(dir));
  t.equal(isDir[0]?.message, 'cannot read the configuration file: is a directory');
});

t.test('loadConfigText: refuses an upstream with the reason when the URL parser would silently change it', async (t) => {
  const cases: [name: string, upstream: string, reason: string][] = [
    ['port 0', 'http://hub.example:0', 'must not use port 0'],
    ['empty authority (WHATWG takes "h" as the host)', 'http:///h', 'must name a host right after "http://"'],
    ['one slash (the schema pattern says it)', 'http:/hub.example', 'must be an absolute http(s) URL'],
    ['backslash', 'http://hub.example\\\\admin', 'must not contain a backslash'],
    ['dot-dot in the base path', 'http://hub.example/app/../admin', 'must not have "." or ".." segments in its base path'],
    ['dot in the base path', 'http://hub.example/./app', 'must not have "." or ".." segments'],
    ['encoded dot-dot in the base path', 'http://hub.example/app/%2E%2e/admin', 'the segment "%2E%2e"'],
    ['dot-dot with a path parameter', 'http://hub.example/app/..;x/admin', 'the segment "..;x"'],
    ['IPv4 shorthand', 'http://127.1:8080', 'the URL parser reads "127.1" as 127.0.0.1'],
    ['hex IPv4', 'http://0x7f.1', 'reads "0x7f.1" as 127.0.0.1'],
    ['decimal IPv4', 'http://2130706433/', 'reads "2130706433" as 127.0.0.1'],
    ['octal-looking IPv4', 'http://010.0.0.1', 'reads "010.0.0.1" as 8.0.0.1'],
    ['userinfo', 'http://user@hub.example', 'must not contain credentials'],
    ['query', 'http://hub.example/?a=1', 'must not contain a query'],
    ['fragment', 'http://hub.example/#a', 'must not contain a fragment'],
    ['tab', 'http://hub.exa\\tmple', 'must not contain spaces or control characters'],
    ['trailing space', 'http://hub.example ', 'must not contain spaces or control characters'],
    ['percent-encoded host', 'http://hub%2Eexample', '("%" is not one)'],
    ['empty port', 'http://hub.example:/', 'must have a port number from 1 to 65535 after ":"'],
    ['port too large', 'http://hub.example:65536', 'must use a port from 1 to 65535'],
    ['uncompressed IPv6', 'http://[0:0:0:0:0:0:0:1]:8080', 'must be written the way the URL parser reads it, "http://[::1]:8080/"'],
  ];
  for (const [name, upstream, reason] of cases) {
    const yaml = `listen: { http: ":8080" }\nroutes:\n  - upstream: "${upstream}"\n`;
    const got = problems(t, loadConfigText(yaml, 'x.yaml'));
    t.equal(got.length, 1, `${name}: one problem, got ${JSON.stringify(got)}`);
    t.equal(got[0]?.path, 'routes[0].upstream', `${name}: path`);
    t.equal(got[0]?.line, 3, `${name}: line`);
    t.ok(got[0]?.message.includes(reason), `${name}: ${got[0]?.message}`);
  }
  const fine = ['https://hub.17wanxiao.com:8080', 'http://127.0.0.1:8080/base/', 'https://[::1]:9443', 'http://Hub.Example/a;v=1/b%20c'];
  for (const upstream of fine) ok(t, loadConfigText(`listen: { http: ":8080" }\nroutes:\n  - upstream: "${upstream}"\n`, 'x.yaml'));
});

t.test('loadConfigText: redacts secret query parameters and userinfo in every shown value when a value carries them', async (t) => {
  const yaml = [
    'listen: { http: ":8080" }',
    'routes:',
    '  - upstream: "https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=ww1&corpsecret=CORPSECRET1"',
    '  - { path: /b, upstream: "https://admin:PASSWORD2@hub.example/" }',
    '  - { path: /c, upstream: "ftp://h/?access_token=TOKEN3" }',
    '  - { path: /d, upstream: "https://h:0/x?code=CODE4&state=STATE5&key=KEY6" }',
  ].join('\n');
  const got = problems(t, loadConfigText(`${yaml}\n`, 'x.yaml'));
  t.equal(got.length, 4, JSON.stringify(got));
  const text = formatProblems('x.yaml', got);
  for (const secret of ['CORPSECRET1', 'PASSWORD2', 'TOKEN3', 'CODE4', 'STATE5', 'KEY6']) t.notMatch(text, secret, `${secret} not shown`);
  t.match(text, 'corpsecret=[REDACTED]', 'the parameter name is still shown');
  t.match(text, 'https://[REDACTED]@hub.example/');
  t.match(text, 'corpid=ww1', 'other parameters are shown');
  // A value long enough to be shortened is redacted first: no secret prefix left at the cut.
  const long = `https://h/${'a'.repeat(60)}?corpsecret=${'S'.repeat(40)}`;
  const cut = problems(t, loadConfigText(`listen: { http: ":8080" }\nroutes:\n  - upstream: "${long}"\n    max_body_bytes: "${long}"\n`, 'x.yaml'));
  t.equal(cut.length, 2, JSON.stringify(cut));
  for (const p of cut) t.notMatch(p.message, 'SSS', `${p.path}: no part of the secret`);
});

t.test('loadConfigText: refuses proxy.url, wecom.api_base and ip_echo.url by the one upstream-URL rule when the URL parser would read another address (F3)', async (t) => {
  const at = (key: string, url: string): string => {
    if (key === 'wecom.api_base') return `listen: { http: ":8080" }\nwecom: { api_base: "${url}", corp_id: ww1, apps: [] }\nroutes:\n  - upstream: "http://127.0.0.1:9"\n`;
    const profile = key === 'egress.p.proxy.url' ? `proxy: { url: "${url}" }` : `ip_echo: { url: "${url}" }`;
    return `listen: { http: ":8080" }\negress:\n  p: { ${profile} }\nroutes:\n  - upstream: "http://127.0.0.1:9"\n`;
  };
  const cases: [key: string, url: string, reason: string][] = [
    // The gateway sent CONNECT and Proxy-Authorization to 127.0.0.2 for "0x7f.0.0.2".
    ['egress.p.proxy.url', 'http://0x7f.0.0.2:3128', 'the URL parser reads "0x7f.0.0.2" as 127.0.0.2'],
    ['egress.p.proxy.url', 'http://010.0.0.9:3128', 'reads "010.0.0.9" as 8.0.0.9'],
    ['egress.p.proxy.url', 'http://127.1:3128', 'reads "127.1" as 127.0.0.1'],
    ['egress.p.proxy.url', 'http://2130706433:3128', 'reads "2130706433" as 127.0.0.1'],
    ['egress.p.proxy.url', 'http://proxy.example:0', 'must not use port 0'],
    ['egress.p.proxy.url', 'http://proxy.example:03128', 'without leading zeros (3128, not 03128)'],
    ['egress.p.proxy.url', 'http://proxy\\\\x:3128', 'must not contain a backslash'],
    ['egress.p.proxy.url', 'http://proxy.example.:3128', 'must not end its host with "." (write "proxy.example")'],
    ['wecom.api_base', 'https://010.0.0.9', 'reads "010.0.0.9" as 8.0.0.9'],
    ['wecom.api_base', 'https://127.1', 'reads "127.1" as 127.0.0.1'],
    ['wecom.api_base', 'https://qyapi.weixin.qq.com:0', 'must not use port 0'],
    ['wecom.api_base', 'https://qyapi.weixin.qq.com.', 'must not end its host with "."'],
    ['egress.p.ip_echo.url', 'https://127.1/ip', 'reads "127.1" as 127.0.0.1'],
    ['egress.p.ip_echo.url', 'https://ifconfig.me:0/ip', 'must not use port 0'],
    ['egress.p.ip_echo.url', 'https://ifconfig.me/ip#x', 'must not contain a fragment'],
    ['egress.p.ip_echo.url', "https://ifconfig.me/ip?q='", 'must be written the way the URL parser reads it'],
  ];
  for (const [key, url, reason] of cases) {
    const got = problems(t, loadConfigText(at(key, url), 'x.yaml'));
    t.equal(got.length, 1, `${url}: one problem, got ${JSON.stringify(got)}`);
    t.equal(got[0]?.path, key, `${url}: path`);
    t.ok(got[0]?.message.includes(reason), `${url}: ${got[0]?.message}`);
    t.notOk(got[0]?.message.includes("the client's query"), `${url}: no word of a client's query`);
  }
  // ip_echo.url is fetched as written: its own query is fine (a route upstream's is refused).
  const fine: [key: string, url: string][] = [
    ['egress.p.proxy.url', 'http://10.0.0.9:3128'],
    ['egress.p.proxy.url', 'http://[::1]:3128/'],
    ['wecom.api_base', 'https://qyapi.weixin.qq.com'],
    ['wecom.api_base', 'https://127.0.0.1:8443/'],
    ['egress.p.ip_echo.url', 'https://api.ipify.org/?format=json'],
    ['egress.p.ip_echo.url', 'https://ifconfig.me/ip'],
  ];
  for (const [key, url] of fine) ok(t, loadConfigText(at(key, url), 'x.yaml'));
});

t.test('loadConfigText: refuses an upstream base path with %2F, %5C or %00 when client paths with them are refused (upstream-urls)', async (t) => {
  for (const upstream of ['http://hub.example/a%2fb', 'http://hub.example/a%2Fb', 'http://hub.example/a%5cb', 'http://hub.example/a%00b']) {
    const got = problems(t, loadConfigText(`listen: { http: ":8080" }\nroutes:\n  - upstream: "${upstream}"\n`, 'x.yaml'));
    t.equal(got.length, 1, upstream);
    t.equal(got[0]?.path, 'routes[0].upstream', upstream);
    t.match(got[0]?.message, /an encoded "\/", "\\" or NUL\) in its path/, upstream);
  }
  ok(t, loadConfigText('listen: { http: ":8080" }\nroutes:\n  - upstream: "http://hub.example/a%20b%2Bc"\n', 'x.yaml'));
});

t.test('loadConfigText: refuses a certificate file whose second PEM block is corrupt when TLS would fail to load it (F5)', async (t) => {
  const leaf = readFileSync(join(TLS, 'api1.pem'), 'utf8');
  const ca = readFileSync(join(TLS, 'ca.pem'), 'utf8');
  const dir = dirWith(t, {
    'broken-2nd.pem': `${leaf}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n${ca}`,
    'chain.pem': `${leaf}${ca}`,
  });
  const got = problems(t, loadConfigText(httpsConfig(join(dir, 'broken-2nd.pem'), join(TLS, 'api1.key')), 'x.yaml'));
  t.equal(got.length, 1, JSON.stringify(got));
  t.equal(got[0]?.path, 'tls.certs[0].cert');
  t.match(got[0]?.message, /must hold only valid PEM certificates, got ".*broken-2nd\.pem" whose certificate block 2 of 3 is corrupt/);
  // The same chain without the corrupt block is what TLS loads: accepted.
  ok(t, loadConfigText(httpsConfig(join(dir, 'chain.pem'), join(TLS, 'api1.key')), 'x.yaml'));
});

t.test('loadConfigText: stores a route path percent-encoded (UTF-8, upper-case hex, as requests arrive) when it is written with non-ASCII characters (F2)', async (t) => {
  const yaml = (path: string) =>
    `listen: { http: ":8080" }\nroutes:\n  - upstream: "https://a.example"\n  - { path: ${JSON.stringify(path)}, upstream: "https://b.example" }\n`;
  const config = ok(t, loadConfigText(yaml('/张三/'), 'x.yaml'));
  t.equal(config.routes[1]?.path, '/%E5%BC%A0%E4%B8%89/', 'the form a browser sends and parseTarget keeps');
  t.equal(ok(t, loadConfigText(yaml('/a/中文'), 'x.yaml')).routes[1]?.path, '/a/%E4%B8%AD%E6%96%87');
  const dup = problems(
    t,
    loadConfigText(`listen: { http: ":8080" }\nroutes:\n  - { path: /张三/, upstream: "https://a.example" }\n  - { path: /%E5%BC%A0%E4%B8%89/, upstream: "https://b.example" }\n`, 'x.yaml'),
  );
  t.match(dup, [{ path: 'routes[1]', message: /must not repeat .* of routes\[0\]/ }], 'the raw and the encoded form are the same route');
  // Refusals of the encoded prefix show the encoded form.
  t.match(problems(t, loadConfigText(yaml('/张三//x'), 'x.yaml')), [{ path: 'routes[1].path', message: /got "\/%E5%BC%A0%E4%B8%89\/\/x"/ }]);
});
