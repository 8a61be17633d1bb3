/**
 * Egress configuration checks: what the file itself shows (an address that is no IP, a malformed
 * proxy URL, a route naming no profile, a credentials file that is not "user:password") with the
 * YAML line, and what only this host shows: a local address that is not on it (bound for real:
 * 192.0.2.55 is TEST-NET-1, never assigned here; 127.0.0.2 is a loopback alias that
 * os.networkInterfaces() does not list yet is local). `wegate check`, `wegate serve` and
 * createGateway all refuse such a config.
 */
import { writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import t, { type Test } from 'tap';
import { createGateway } from '../../src/app.ts';
import { type ConfigProblem, formatProblems, type LoadResult, loadConfigFile, loadConfigText } from '../../src/config/load.ts';
import { createLogger } from '../../src/core/logger.ts';
import { checkEgressHost, EgressError, probeLocalAddress } from '../../src/egress/index.ts';
import { runCli } from '../helpers/cli.ts';
import { makeConfig } from '../helpers/gateway.ts';

const HOST_CHECK = { hostCheck: checkEgressHost };

function problems(t: Test, r: LoadResult): ConfigProblem[] {
  if (r.ok) {
    t.fail('expected problems, the config was accepted');
    return [];
  }
  return r.problems;
}

let written = 0;
const dirs = new WeakMap<Test, string>();

/** A config file (a new name each time) in the test's directory (t.testdir empties it: made once); extra files beside it. */
function write(t: Test, yaml: string, files: Record<string, string> = {}): string {
  let dir = dirs.get(t);
  if (dir === undefined) {
    dir = t.testdir({});
    dirs.set(t, dir);
  }
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const file = join(dir, `wegate-${++written}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

const yaml = (egress: string, route = '') => `listen:
  http: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
egress:
${egress}
routes:
  - upstream: "http://127.0.0.1:9"
${route}`;

t.test('probeLocalAddress: binds loopback aliases when they are not listed by os.networkInterfaces()', async (t) => {
  const listed = Object.values(networkInterfaces()).flatMap((l) => (l ?? []).map((a) => a.address));
  t.notOk(listed.includes('127.0.0.2'), 'the alias is not an interface address');
  t.equal(await probeLocalAddress('127.0.0.2'), undefined);
  t.equal(await probeLocalAddress('127.0.0.3'), undefined);
  t.equal(await probeLocalAddress('::1'), undefined);
  t.equal(await probeLocalAddress('192.0.2.55'), 'EADDRNOTAVAIL');
});

t.test('loadConfigFile: names the address and its line when local_address is not on this host', async (t) => {
  const file = write(t, yaml('  wecom:\n    local_address: 192.0.2.55\n  alias:\n    local_address: 127.0.0.2'));
  const [p, ...rest] = problems(t, await loadConfigFile(file, HOST_CHECK));
  t.same(rest, [], 'the alias is fine');
  t.equal(p?.path, 'egress.wecom.local_address');
  t.equal(p?.line, 7);
  t.match(
    p?.message,
    /must be an address of this host \(本机地址\), got "192\.0\.2\.55": binding a socket to it failed with EADDRNOTAVAIL/,
  );
  t.match(p?.message, /该地址不在本机任何网卡上/);
  t.ok((await loadConfigFile(file)).ok, 'without the host check the file itself is valid');
});

t.test('wegate check and serve: exit 78 naming the address when local_address is not on this host', async (t) => {
  const bad = write(t, yaml('  wecom:\n    local_address: 192.0.2.55\n    expected_ip: 47.111.68.103'));
  const good = write(t, yaml('  wecom:\n    local_address: 127.0.0.2'));
  // Three CLI processes at once: each spends most of its time starting Node.
  const [check, serve, ok] = await Promise.all([
    runCli(['check', '--config', bad]),
    runCli(['serve', '--config', bad]),
    runCli(['check', '--config', good]),
  ]);
  t.equal(check.code, 78);
  t.match(check.stderr, /is invalid \(1 problem\):\n {2}egress\.wecom\.local_address \(line 7\): must be an address of this host/);
  t.equal(serve.code, 78, 'serve refuses to start');
  t.match(serve.stderr, /egress\.wecom\.local_address \(line 7\): must be an address of this host/);
  t.equal(ok.code, 0, ok.stderr);
});

t.test('createGateway: rejects with an EgressError naming the address when local_address is not on this host', async (t) => {
  const config = makeConfig({
    listen: { http: '127.0.0.1:0' },
    admin: { listen: '127.0.0.1:0' },
    egress: { wecom: { local_address: '192.0.2.55' } },
    routes: [{ upstream: 'http://127.0.0.1:9', egress: 'wecom' }],
  });
  const logger = createLogger({ level: 'silent', destination: { write: () => undefined } });
  const err = await createGateway(config, { logger, registry: new Registry(), processMetrics: false }).then(
    (gw) => gw.close(),
    (e: unknown) => e,
  );
  t.ok(err instanceof EgressError, 'an EgressError');
  t.match((err as Error).message, /出口配置在本机不可用[^]*egress\.wecom\.local_address: must be an address of this host[^]*192\.0\.2\.55/);
});

t.test('loadConfigText: reports each malformed proxy URL with its line when the proxy is not http://host:port', async (t) => {
  const cases: [string, RegExp][] = [
    ['10.0.0.9:3128', /must be an absolute http:\/\/ URL such as "http:\/\/10\.0\.0\.9:3128"/],
    ['https://10.0.0.9:3128', /over plain HTTP/],
    ['socks5://10.0.0.9:1080', /over plain HTTP/],
    ['http://10.0.0.9', /must name its port/],
    ['http://10.0.0.9:3128/proxy', /must be an origin only \(scheme:\/\/host:port\), without a path/],
    ['http://10.0.0.9:3128?x=1', /must be an origin only \(scheme:\/\/host:port\), without a query/],
    ['http://10.0.0.9:99999', /must use a port from 1 to 65535/],
    [
      'http://proxyuser:s3cret-pw@10.0.0.9:3128',
      /must not contain credentials \(user:password@\) \(put them in proxy\.credentials_file\), got "http:\/\/\[REDACTED\]@10\.0\.0\.9:3128"/,
    ],
  ];
  for (const [url, want] of cases) {
    const [p, ...rest] = problems(t, loadConfigText(yaml(`  p:\n    proxy:\n      url: "${url}"`), 'wegate.yaml'));
    t.same(rest, [], url);
    t.equal(p?.path, 'egress.p.proxy.url', url);
    t.equal(p?.line, 8, url);
    t.match(p?.message, want, url);
    t.notMatch(p?.message, /s3cret-pw/, 'an inline password is never shown');
  }
  for (const url of ['http://10.0.0.9:3128', 'http://10.0.0.9:3128/', 'http://[::1]:3128', 'http://proxy.school.lan:8080']) {
    t.ok(loadConfigText(yaml(`  p:\n    proxy:\n      url: "${url}"`), 'wegate.yaml').ok, `${url} is accepted`);
  }
});

t.test('loadConfigText: lists every egress problem at once when several values are wrong', async (t) => {
  const text = yaml(
    [
      '  "bad name":',
      '    local_address: 10.0.0.5',
      '  wecom:',
      '    local_address: eth0',
      '    expected_ip: my-ip',
      '    ip_echo:',
      '      url: "ifconfig.me"',
      '      interval_ms: 10',
      '  any:',
      '    local_address: 0.0.0.0',
    ].join('\n'),
    '    egress: wecon',
  );
  const found = problems(t, loadConfigText(text, 'wegate.yaml'));
  const got = found.map((p) => `${p.path} (${p.line}): ${p.message}`);
  t.match(got, [
    /^egress\["bad name"\] \(6\): must be named with 1 to 64 letters/,
    /^egress\.wecom\.local_address \(9\): must be an IPv4 or IPv6 address of this host such as "10\.0\.0\.5", got "eth0"/,
    /^egress\.wecom\.expected_ip \(10\): must be an IPv4 or IPv6 address such as "47\.111\.68\.103", got "my-ip"/,
    /^egress\.wecom\.ip_echo\.url \(12\): must be an absolute http\(s\) URL/,
    /^egress\.wecom\.ip_echo\.interval_ms \(13\): must be at least 1000, got 10/,
    /^egress\.any\.local_address \(15\): must be one address of this host, not the wildcard/,
    /^routes\[0\]\.egress \(18\): must name a profile of the `egress` section \(bad name, wecom, any\), got "wecon" \(did you mean "wecom"\?\)/,
  ]);
  t.equal(found.length, 7, formatProblems('wegate.yaml', found));
});

t.test('loadConfigText: reports a route egress when the file defines no profile', async (t) => {
  const text = 'listen:\n  http: ":8080"\nroutes:\n  - upstream: "http://127.0.0.1:9"\n    egress: wecom\n';
  const [p] = problems(t, loadConfigText(text, 'wegate.yaml'));
  t.equal(p?.path, 'routes[0].egress');
  t.match(p?.message, /the file defines no egress profile/);
});

t.test('loadConfigFile: reports the credentials file without its content when it is missing or not user:password', async (t) => {
  const missing = write(t, yaml('  p:\n    proxy:\n      url: "http://127.0.0.1:3128"\n      credentials_file: ./proxy-secret'));
  const [p1] = problems(t, await loadConfigFile(missing, HOST_CHECK));
  t.equal(p1?.path, 'egress.p.proxy.credentials_file');
  t.equal(p1?.line, 9);
  t.match(p1?.message, /must be a readable file, got "\.\/proxy-secret" \(.*proxy-secret\): not found/);

  const bad = write(t, yaml('  p:\n    proxy:\n      url: "http://127.0.0.1:3128"\n      credentials_file: ./proxy-secret'), {
    'proxy-secret': 'only-a-password-8812\n',
  });
  const [p2] = problems(t, await loadConfigFile(bad, HOST_CHECK));
  t.equal(p2?.path, 'egress.p.proxy.credentials_file');
  t.match(p2?.message, /must hold one line "user:password".*\(content hidden\)/);
  t.notMatch(p2?.message, /only-a-password-8812/);

  const good = write(t, yaml('  p:\n    proxy:\n      url: "http://127.0.0.1:3128"\n      credentials_file: ./proxy-secret'), {
    'proxy-secret': 'wegate:pass:with:colons\n',
  });
  const r = await loadConfigFile(good, HOST_CHECK);
  t.ok(r.ok, r.ok ? '' : formatProblems(good, r.problems));
  if (r.ok) t.equal(r.config.egress?.['p']?.proxy?.credentials_file, join(good, '..', 'proxy-secret'), 'resolved against the config file');
});
