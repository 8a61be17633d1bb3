import t, { type Test } from 'tap';
import type { RequestContext } from '../../src/core/http.ts';
import { type BodyInfo, buildRequestHeaders, HOP_BY_HOP_HEADERS } from '../../src/proxy/headers.ts';
import { headerNames, rawExchange, route, startFront, startUpstream } from './helpers.ts';

const ctx: RequestContext = {
  id: 'req-1',
  startedAt: 0n,
  clientIp: '203.0.113.7',
  secure: true,
  host: 'api1.school.test',
  authority: 'api1.school.test',
  rawPath: '/',
  path: '/',
  query: '',
};

/** Spoofing attempts: none of these names may reach an upstream. */
const SPOOFED: [string, string][] = [
  ['X-Forwarded-For', '1.2.3.4'],
  ['x-forwarded-for', '5.6.7.8'],
  ['X-Forwarded-Proto', 'https'],
  ['X-Forwarded-Host', 'evil.test'],
  ['X-Forwarded-Port', '1'],
  ['X-Forwarded-Prefix', '/admin'],
  ['Forwarded', 'for=1.2.3.4;proto=https'],
  ['X-Real-IP', '1.2.3.4'],
  ['X-Wegate-User', 'admin'],
  ['x-WEGATE-corp', 'ww1'],
  ['X_Wegate_User', 'admin'],
  ['X-WeGate_User', 'admin'],
  ['X_WEGATE_CORP', 'ww1'],
  ['x_forwarded_for', '1.2.3.4'],
  ['X_Forwarded_For', '1.2.3.4'],
  ['X-Forwarded_Host', 'evil.test'],
  ['X-Real_IP', '1.2.3.4'],
  ['X_Custom_Header', 'x'],
  ['Proxy-Authorization', 'Basic Zm9vOmJhcg=='],
  ['Proxy-Connection', 'keep-alive'],
  ['TE', 'trailers'],
  ['Trailer', 'x-t'],
  ['Keep-Alive', 'timeout=100'],
  ['Connection', 'keep-alive, X-Nominated, x-other-nominated'],
  ['X-Nominated', 'hidden'],
  ['X-Other-Nominated', 'hidden'],
  ['X-Request-Id', 'forged-id'],
];
const FORBIDDEN = new Set([
  'x-forwarded-port',
  'x-forwarded-prefix',
  'forwarded',
  'x-wegate-user',
  'x-wegate-corp',
  'x_wegate_user',
  'x-wegate_user',
  'x_wegate_corp',
  'x_forwarded_for',
  'x-forwarded_host',
  'x-real_ip',
  'x_custom_header',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'keep-alive',
  'x-nominated',
  'x-other-nominated',
  'expect',
]);

function flat(pairs: [string, string][]): string[] {
  return pairs.flat();
}

/** The gateway's own forwarding headers, exactly once each. */
function assertGatewayHeaders(t: Test, raw: readonly string[], clientIp: string, proto: string, authority: string, id?: string) {
  const names = headerNames(raw);
  for (const h of ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-real-ip', 'x-request-id', 'host']) {
    t.equal(names.filter((n) => n === h).length, 1, `${h} exactly once`);
  }
  const get = (h: string) => raw[names.indexOf(h) * 2 + 1];
  t.equal(get('x-forwarded-for'), clientIp);
  t.equal(get('x-real-ip'), clientIp);
  t.equal(get('x-forwarded-proto'), proto);
  t.equal(get('x-forwarded-host'), authority);
  if (id !== undefined) t.equal(get('x-request-id'), id);
  for (const n of names) {
    t.notOk(FORBIDDEN.has(n), `${n} must not be forwarded`);
    t.notOk(n.includes('_'), `${n}: no header name with "_" is forwarded`);
  }
}

t.test('buildRequestHeaders: replaces forwarding and identity headers when a client spoofs them', async (t) => {
  const body: BodyInfo = { contentLength: -1, chunked: false };
  const out = buildRequestHeaders(
    flat([['Host', 'api1.school.test'], ['Accept', 'text/html'], ...SPOOFED, ['Cookie', 'a=1'], ['Cookie', 'b=2']]),
    ctx,
    'hub.upstream.test:8080',
    false,
    body,
  );
  assertGatewayHeaders(t, out, '203.0.113.7', 'https', 'api1.school.test', 'req-1');
  const names = headerNames(out);
  t.equal(out[names.indexOf('host') * 2 + 1], 'hub.upstream.test:8080', 'upstream Host');
  t.same(out.filter((_, i) => i % 2 === 0 && out[i] === 'cookie').length, 2, 'duplicate end-to-end headers kept');
  t.ok(names.includes('accept'));
  t.notOk(names.includes('connection'), 'connection removed');
  t.notOk(names.includes('upgrade'));
});

t.test('buildRequestHeaders: keeps only the upgrade pair when the request is a WebSocket upgrade', async (t) => {
  const body: BodyInfo = { contentLength: -1, chunked: false };
  const out = buildRequestHeaders(
    flat([
      ['Connection', 'Upgrade, X-Nominated'],
      ['Upgrade', 'websocket'],
      ['Sec-WebSocket-Key', 'k'],
      ['X-Nominated', 'x'],
      ['X-Wegate-User', 'a'],
    ]),
    ctx,
    'u',
    true,
    body,
  );
  const names = headerNames(out);
  t.equal(out[names.indexOf('connection') * 2 + 1], 'upgrade');
  t.equal(out[names.indexOf('upgrade') * 2 + 1], 'websocket');
  t.ok(names.includes('sec-websocket-key'));
  t.notOk(names.includes('x-nominated'));
  t.notOk(names.includes('x-wegate-user'));
});

t.test('buildRequestHeaders: reports the body framing when headers announce a body', async (t) => {
  const cases: [name: string, raw: string[], expected: BodyInfo][] = [
    ['none', ['Host', 'a'], { contentLength: -1, chunked: false }],
    ['content-length', ['Content-Length', '12'], { contentLength: 12, chunked: false }],
    ['chunked', ['Transfer-Encoding', 'chunked'], { contentLength: -1, chunked: true }],
  ];
  for (const [name, raw, expected] of cases) {
    const body: BodyInfo = { contentLength: 99, chunked: true };
    const out = buildRequestHeaders(raw, ctx, 'u', false, body);
    t.same(body, expected, name);
    t.notOk(headerNames(out).includes('transfer-encoding'), `${name}: transfer-encoding never copied`);
  }
  t.ok(HOP_BY_HOP_HEADERS.includes('proxy-authorization'), 'one named hop-by-hop list');
});

t.test('proxy: never forwards spoofed forwarding, identity or nominated headers when a client sends them', async (t) => {
  const up = await startUpstream(t);
  const front = await startFront(t, [route({ upstream: up.origin })]);
  // Raw bytes: node:http refuses to send some of these (Trailer) itself.
  const lines = [['Host', 'API1.school.test'], ...SPOOFED].map(([n, v]) => `${n}: ${v}`);
  const got = await rawExchange(front.port, `GET /p HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`, /\r\n\r\n[\s\S]*\}/);
  t.match(got, /^HTTP\/1\.1 200/);
  assertGatewayHeaders(t, up.seen[0]?.rawHeaders ?? [], '127.0.0.1', 'http', 'api1.school.test');
});

t.test('proxy: never forwards spoofed headers when the client sends Expect: 100-continue', async (t) => {
  const up = await startUpstream(t);
  const front = await startFront(t, [route({ upstream: up.origin })]);
  const head = [
    'POST /upload HTTP/1.1',
    'Host: api1.school.test',
    'Content-Length: 5',
    'Expect: 100-continue',
    ...SPOOFED.filter(([n]) => n.toLowerCase() !== 'connection').map(([n, v]) => `${n}: ${v}`),
    'Connection: close, X-Nominated, X-Other-Nominated',
    '',
    '',
  ].join('\r\n');
  // Send the body only after the interim response, as a real client does.
  const answer = await new Promise<string>((resolve, reject) => {
    import('node:net').then(({ default: net }) => {
      const s = net.connect(front.port, '127.0.0.1');
      let got = '';
      let sent = false;
      s.on('data', (c) => {
        got += c.toString();
        if (!sent && got.includes('100 Continue')) {
          sent = true;
          s.write('hello');
        }
      });
      s.on('error', reject);
      s.on('close', () => resolve(got));
      s.setTimeout(5000, () => s.destroy());
      s.write(head);
    }, reject);
  });
  t.match(answer, /^HTTP\/1\.1 100 Continue/);
  t.match(answer, /HTTP\/1\.1 200 OK/);
  t.equal(up.seen[0]?.body, 'hello');
  assertGatewayHeaders(t, up.seen[0]?.rawHeaders ?? [], '127.0.0.1', 'http', 'api1.school.test');
});

t.test('proxy: sets the forwarding headers from the request context when the listener is HTTPS', async (t) => {
  const up = await startUpstream(t);
  const front = await startFront(t, [route({ upstream: up.origin })], { secure: true });
  const got = await rawExchange(
    front.port,
    'GET / HTTP/1.1\r\nHost: Api1.School.test:8443\r\nConnection: close\r\n\r\n',
    /\r\n\r\n[\s\S]*\}/,
  );
  t.match(got, /^HTTP\/1\.1 200/);
  assertGatewayHeaders(t, up.seen[0]?.rawHeaders ?? [], '127.0.0.1', 'https', 'api1.school.test:8443');
});
