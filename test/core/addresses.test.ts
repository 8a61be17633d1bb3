import t from 'tap';
import { canonicalIp, hostProblem, normaliseHost, parseListenAddress, parseUpstream, sameIp } from '../../src/core/addresses.ts';

t.test('parseUpstream: returns origin, Host header, key and base path when the URL is usable as written', async (t) => {
  const cases: [name: string, url: string, expected: Record<string, unknown>][] = [
    [
      'https with a port',
      'https://hub.17wanxiao.com:8080',
      {
        origin: 'https://hub.17wanxiao.com:8080',
        hostHeader: 'hub.17wanxiao.com:8080',
        port: 8080,
        key: 'https://hub.17wanxiao.com:8080',
        basePath: '',
      },
    ],
    [
      'default port left out',
      'https://open.17wanxiao.com:443/',
      { origin: 'https://open.17wanxiao.com', hostHeader: 'open.17wanxiao.com', port: 443, key: 'https://open.17wanxiao.com:443' },
    ],
    ['http default', 'http://u', { origin: 'http://u', port: 80, secure: false, key: 'http://u:80' }],
    ['case of scheme and host', 'HTTPS://Hub.Example', { origin: 'https://hub.example', hostname: 'hub.example', secure: true }],
    ['base path, trailing slashes dropped', 'http://u/base//', { basePath: '/base' }],
    ['encoded base path kept', 'http://u/%E4%B8%AD/a%20b', { basePath: '/%E4%B8%AD/a%20b' }],
    ['path parameters kept', 'http://u/app;v=1', { basePath: '/app;v=1' }],
    ['IPv4', 'http://127.0.0.1:8080', { hostname: '127.0.0.1', hostHeader: '127.0.0.1:8080' }],
    ['IPv6', 'https://[::1]:9443', { hostname: '::1', hostHeader: '[::1]:9443', origin: 'https://[::1]:9443', key: 'https://[::1]:9443' }],
    ['underscore in a name', 'http://my_host.internal', { hostname: 'my_host.internal' }],
    ['dots inside a segment are data', 'http://u/a..b/.well-known', { basePath: '/a..b/.well-known' }],
  ];
  for (const [name, url, expected] of cases) {
    const r = parseUpstream(url);
    t.ok(r.ok, `${name}: accepted (${r.ok ? '' : r.reason})`);
    if (r.ok) t.match(r.value, expected, name);
  }
});

t.test('parseUpstream: refuses with the reason when the URL parser would change the URL or it names no usable server', async (t) => {
  const cases: [name: string, url: string, reason: RegExp][] = [
    ['not a URL', 'localhost:8080', /^must be an http:\/\/ or https:\/\/ URL/],
    ['no scheme', '//hub.example', /^must be an absolute http\(s\) URL/],
    ['other scheme', 'ftp://hub.example', /^must be an http:\/\/ or https:\/\//],
    ['port 0', 'http://h:0', /^must not use port 0/],
    ['port 00', 'http://h:00/', /^must not use port 0/],
    ['port too large', 'http://h:70000', /^must use a port from 1 to 65535$/],
    ['port not a number', 'http://h:8o8o', /^must have a port number/],
    ['empty port', 'http://h:', /^must have a port number/],
    ['empty authority', 'http:///h', /^must name a host right after "http:\/\/"/],
    ['empty authority with a port', 'http://:8080', /^must name a host$/],
    ['one slash', 'https:/h', /^must be written as https:\/\/host/],
    ['no slash', 'http:h', /^must be written as http:\/\/host/],
    ['backslash in the authority', 'http://h\\x', /backslash/],
    ['backslash as the first slash', 'http:\\\\h', /backslash/],
    ['dot-dot', 'http://h/a/../b', /the segment "\.\."$/],
    ['dot', 'http://h/a/./b', /the segment "\."$/],
    ['trailing dot-dot', 'http://h/a/..', /the segment "\.\."$/],
    ['encoded dot-dot', 'http://h/a/%2e%2E/b', /the segment "%2e%2E"$/],
    ['half-encoded dot-dot', 'http://h/.%2e', /the segment "\.%2e"$/],
    ['dot-dot with params', 'http://h/..;jsessionid=1/x', /the segment "\.\.;jsessionid=1"$/],
    ['dot with params', 'http://h/.;x', /the segment "\.;x"$/],
    ['IPv4 two parts', 'http://127.1', /reads "127\.1" as 127\.0\.0\.1$/],
    ['IPv4 three parts', 'http://10.1.2:80', /reads "10\.1\.2" as 10\.1\.0\.2$/],
    ['IPv4 hex part', 'http://0x7f.1', /reads "0x7f\.1" as 127\.0\.0\.1$/],
    ['IPv4 hex whole', 'http://0x7f000001', /as 127\.0\.0\.1$/],
    ['IPv4 decimal', 'http://2130706433', /reads "2130706433" as 127\.0\.0\.1$/],
    ['IPv4 leading zero', 'http://127.0.0.01', /as 127\.0\.0\.1$/],
    ['IPv4 trailing dot', 'http://127.0.0.1.', /as 127\.0\.0\.1$/],
    ['IPv4 part above 255', 'http://10.0.0.256', /^must write an IPv4 address as four decimal numbers from 0 to 255/],
    ['name ending in a number', 'http://school.123', /^must write an IPv4 address/],
    ['userinfo', 'https://u:pw@h', /^must not contain credentials/],
    ['user only', 'https://u@h', /^must not contain credentials/],
    ['query', 'https://h/?a=1', /^must not contain a query/],
    ['empty query', 'https://h/?', /^must not contain a query/],
    ['fragment', 'https://h/#x', /^must not contain a fragment/],
    ['space', 'https://exa mple.com', /^must not contain spaces or control characters$/],
    ['leading space', ' https://h', /^must be an absolute/],
    ['tab', 'https://h/a\tb', /^must not contain spaces or control characters$/],
    ['newline', 'https://h\n', /^must not contain spaces or control characters$/],
    ['NUL', 'https://h/\u0000', /^must not contain spaces or control characters$/],
    ['DEL', 'https://h/\u007f', /^must not contain spaces or control characters$/],
    ['non-ASCII host', 'https://学校.example', /^must be plain ASCII/],
    ['non-ASCII path', 'https://h/中', /^must be plain ASCII/],
    ['percent in the host', 'http://h%2ex', /"%" is not one/],
    ['empty label', 'http://a..b', /empty label/],
    ['label too long', `http://${'a'.repeat(64)}.example`, /longer than 63/],
    ['unbracketed IPv6', 'http://::1', /in brackets/],
    ['bad IPv6', 'http://[::g]', /^must hold an IPv6 address/],
    ['unclosed IPv6', 'http://[::1', /^must close an IPv6 address/],
    ['junk after IPv6', 'http://[::1]x', /^must have only ":port"/],
    ['IPv6 the parser rewrites', 'http://[0::1]', /^must be written the way the URL parser reads it, "http:\/\/\[::1\]\/"$/],
    ['quote in the path', 'http://h/a"b', /^must not contain "\\"" in its path/],
    ['brace in the path', 'http://h/{x}', /^must not contain "\{" in its path/],
    ['bare percent', 'http://h/100%', /%XX escape/],
  ];
  for (const [name, url, reason] of cases) {
    const r = parseUpstream(url);
    t.notOk(r.ok, `${name}: refused`);
    if (!r.ok) t.match(r.reason, reason, `${name}: ${r.reason}`);
  }
});

t.test('parseListenAddress: gives host, port and wildcard when the address is valid', async (t) => {
  const cases: [name: string, address: string, host: string | undefined, port: number, wildcard: boolean][] = [
    ['every interface', ':8080', undefined, 8080, true],
    ['ephemeral port', '127.0.0.1:0', '127.0.0.1', 0, false],
    ['IPv4 any', '0.0.0.0:80', '0.0.0.0', 80, true],
    ['IPv6 any', '[::]:443', '::', 443, true],
    ['IPv6 loopback', '[::1]:9464', '::1', 9464, false],
    ['IPv6 upper case', '[FE80::1]:1', 'fe80::1', 1, false],
    ['name', 'LocalHost:9464', 'localhost', 9464, false],
    ['highest port', '10.0.0.1:65535', '10.0.0.1', 65535, false],
  ];
  for (const [name, address, host, port, wildcard] of cases)
    t.same(parseListenAddress(address), { ok: true, value: { host, port, wildcard } }, name);
});

t.test('parseListenAddress: refuses with the reason when the address is malformed', async (t) => {
  const cases: [name: string, address: string, reason: RegExp][] = [
    ['no port', 'localhost', /no port given/],
    ['empty port', '127.0.0.1:', /port from 0 to 65535/],
    ['port too large', ':65536', /port from 0 to 65535/],
    ['port not a number', ':http', /port from 0 to 65535/],
    ['unbracketed IPv6', '::1:80', /in brackets/],
    ['bad IPv6', '[::x]:80', /IPv6 address inside/],
    ['IPv4 shorthand', '127.1:80', /reads "127\.1" as 127\.0\.0\.1/],
    ['decimal IPv4', '2130706433:80', /as 127\.0\.0\.1/],
    ['slash in the host', 'a/b:80', /"\/" is not one/],
  ];
  for (const [name, address, reason] of cases) {
    const r = parseListenAddress(address);
    t.notOk(r.ok, `${name}: refused`);
    if (!r.ok) t.match(r.reason, reason, `${name}: ${r.reason}`);
  }
});

t.test('normaliseHost: lower-cases and drops one root dot when hosts are compared', async (t) => {
  const cases: [input: string, expected: string][] = [
    ['API1.School.edu.cn.', 'api1.school.edu.cn'],
    ['api1.school.edu.cn', 'api1.school.edu.cn'],
    ['*.School.EDU.cn', '*.school.edu.cn'],
    ['', ''],
  ];
  for (const [input, expected] of cases) t.equal(normaliseHost(input), expected, input);
});

t.test('hostProblem: accepts names and dotted quads and refuses what another parser would read differently', async (t) => {
  for (const ok of ['hub.17wanxiao.com', 'localhost', '10.0.0.5', '255.255.255.255', 'xn--fiqs8s.example', 'a-b_c.example.']) {
    t.equal(hostProblem(ok), undefined, ok);
  }
  for (const bad of ['', '1.2.3', '1.2.3.4.5', '0x1.2.3.4', '256.1.1.1', 'a..b', 'a b', 'a@b']) t.type(hostProblem(bad), 'string', bad);
});

t.test('canonicalIp: gives one form per address when IPv6 is written long, upper-case or IPv4-mapped (review F4)', async (t) => {
  const cases: [string, string][] = [
    ['0:0:0:0:0:0:0:1', '::1'],
    ['::1', '::1'],
    ['2001:0DB8:0:0::0001', '2001:db8::1'],
    [' 2408:8000::ABCD ', '2408:8000::abcd'],
    ['::FFFF:127.0.0.2', '127.0.0.2'],
    ['::ffff:7f00:2', '127.0.0.2'],
    ['0:0:0:0:0:ffff:7f00:0002', '127.0.0.2'],
    ['47.111.68.103', '47.111.68.103'],
    ['not-an-ip', 'not-an-ip'],
  ];
  for (const [input, want] of cases) t.equal(canonicalIp(input), want, input);
  t.ok(sameIp('0:0:0:0:0:0:0:1', '::1'));
  t.ok(sameIp('::ffff:127.0.0.2', '127.0.0.2'));
  t.notOk(sameIp('::2', '::1'));
  t.notOk(sameIp('127.0.0.2', '127.0.0.3'));
});
