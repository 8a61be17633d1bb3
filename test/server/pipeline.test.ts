/**
 * The public request pipeline end to end (real gateway, real loopback upstreams): Host and target
 * validation, path confusion against route prefixes, 404 for unknown hosts, error pages, request
 * ids, the access log and its redaction, HTTP→HTTPS redirect next to verification files.
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  ADMIN,
  LOOPBACK,
  makeConfig,
  raw,
  rawStatus,
  send,
  startGateway,
  startUpstream,
  TLS_DIR,
  type Upstream,
  waitFor,
} from '../helpers/gateway.ts';

async function site(t: Test, extra: Record<string, unknown> = {}) {
  const pub = await startUpstream(t, 'public');
  const adm = await startUpstream(t, 'admin');
  const other = await startUpstream(t, 'other');
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [
      { name: 'public', host: 'app.school.test', path: '/public', upstream: pub.url },
      { name: 'admin', host: 'app.school.test', path: '/admin', upstream: adm.url },
      { name: 'other', host: 'other.school.test', upstream: `${other.url}/secret-base` },
    ],
    ...extra,
  });
  const gw = await startGateway(t, config);
  return { ...gw, pub, adm, other };
}

const req = (host: string | null, target = '/public/x', version = '1.1') =>
  `GET ${target} HTTP/${version}\r\n${host === null ? '' : `Host: ${host}\r\n`}Connection: close\r\n\r\n`;

t.test('pipeline: answers 400 when the Host header is missing, duplicate or malformed', async (t) => {
  const s = await site(t);
  const cases: { name: string; text: string; status: number }[] = [
    { name: 'valid host is proxied', text: req('app.school.test'), status: 200 },
    { name: 'valid host with port is proxied', text: req('app.school.test:8443'), status: 200 },
    { name: 'upper-case host is proxied', text: req('APP.School.Test'), status: 200 },
    { name: 'trailing-dot host is proxied', text: req('app.school.test.'), status: 200 },
    { name: 'missing Host on HTTP/1.1', text: req(null), status: 400 },
    { name: 'missing Host on HTTP/1.0', text: req(null, '/public/x', '1.0'), status: 400 },
    { name: 'empty Host', text: req(''), status: 400 },
    {
      name: 'duplicate Host (first valid)',
      text: 'GET /public/x HTTP/1.1\r\nHost: app.school.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n',
      status: 400,
    },
    {
      name: 'duplicate Host with different case',
      text: 'GET /public/x HTTP/1.1\r\nhost: app.school.test\r\nHOST: app.school.test\r\nConnection: close\r\n\r\n',
      status: 400,
    },
    { name: 'path inside Host', text: req('a.com/\\:552'), status: 400 },
    { name: 'userinfo in Host', text: req('evil@app.school.test'), status: 400 },
    { name: 'two ports', text: req('a:9000:80'), status: 400 },
    { name: 'non-numeric port', text: req('app.school.test:http'), status: 400 },
    { name: 'port out of range', text: req('app.school.test:65536'), status: 400 },
    { name: 'port zero', text: req('app.school.test:0'), status: 400 },
    { name: 'empty port', text: req('app.school.test:'), status: 400 },
    { name: 'bad IPv6 literal', text: req('[zz::1]'), status: 400 },
    { name: 'space inside Host', text: req('app school.test'), status: 400 },
    { name: 'absolute-form target', text: req('app.school.test', 'http://other.school.test/public/x'), status: 400 },
    { name: 'asterisk-form target', text: 'OPTIONS * HTTP/1.1\r\nHost: app.school.test\r\nConnection: close\r\n\r\n', status: 400 },
    { name: 'unknown host', text: req('unknown.school.test'), status: 404 },
    { name: 'IPv6 literal host (no route)', text: req('[::1]:80'), status: 404 },
  ];
  for (const c of cases) {
    const out = await raw(s.httpPort, c.text);
    t.equal(rawStatus(out), c.status, c.name);
    if (c.status === 400) t.match(out, /x-request-id: \S+/i, `${c.name}: request id header`);
  }
  // Nothing invalid reached an upstream; only the proxied cases did.
  t.equal(s.pub.seen.length, 4, 'only the four valid requests were forwarded');
  t.equal(s.other.seen.length, 0);
  const metrics = await s.registry.getSingleMetricAsString('wegate_rejected_requests_total');
  t.match(metrics, /code="WG_BAD_HOST"\} 14/, 'bad hosts counted');
  t.match(metrics, /code="WG_BAD_REQUEST"\} 2/, 'absolute-form and asterisk targets counted');
});

t.test('pipeline: routes on the normalised path, or answers 400, when a path tries to escape its route prefix', async (t) => {
  const s = await site(t);
  const cases: { name: string; target: string; status: number; route?: 'public' | 'admin'; upstreamPath?: string }[] = [
    {
      name: 'dot-dot climbs from /public into /admin',
      target: '/public/../admin/x',
      status: 200,
      route: 'admin',
      upstreamPath: '/admin/x',
    },
    { name: 'encoded dot-dot', target: '/public/%2e%2e/admin/x', status: 200, route: 'admin', upstreamPath: '/admin/x' },
    { name: 'mixed-case encoded dot-dot', target: '/public/%2E%2e/admin/x', status: 200, route: 'admin', upstreamPath: '/admin/x' },
    { name: 'single dot segments', target: '/public/./x', status: 200, route: 'public', upstreamPath: '/public/x' },
    { name: 'double slash', target: '//public//x', status: 200, route: 'public', upstreamPath: '/public/x' },
    { name: 'prefix is segment-bounded', target: '/publicity', status: 404 },
    { name: 'encoded slash', target: '/public%2f..%2fadmin/x', status: 400 },
    { name: 'encoded slash lower-case', target: '/public/..%2fadmin', status: 400 },
    { name: 'encoded backslash', target: '/public/..%5cadmin', status: 400 },
    { name: 'raw backslash', target: '/public/..\\admin', status: 400 },
    { name: 'encoded NUL', target: '/public/x%00.txt', status: 400 },
    { name: 'dot-dot above the root', target: '/../admin', status: 400 },
    { name: 'encoded dot-dot above the root', target: '/%2e%2e/public/x', status: 400 },
    { name: 'bad percent-encoding', target: '/public/%zz', status: 400 },
    { name: 'overlong UTF-8', target: '/public/%c0%ae%c0%ae/admin', status: 400 },
  ];
  for (const c of cases) {
    const before = { pub: s.pub.seen.length, adm: s.adm.seen.length };
    const out = await raw(s.httpPort, req('app.school.test', c.target));
    t.equal(rawStatus(out), c.status, c.name);
    if (c.route) {
      const up: Upstream = c.route === 'public' ? s.pub : s.adm;
      const other: Upstream = c.route === 'public' ? s.adm : s.pub;
      const last = up.seen.at(-1);
      t.equal(last?.url, c.upstreamPath, `${c.name}: upstream path`);
      t.equal(other.seen.length, c.route === 'public' ? before.adm : before.pub, `${c.name}: other route untouched`);
    } else {
      t.equal(s.pub.seen.length + s.adm.seen.length, before.pub + before.adm, `${c.name}: nothing forwarded`);
    }
  }
});

t.test('pipeline: answers 404 without naming any upstream when the host is unknown', async (t) => {
  const s = await site(t);
  for (const accept of ['application/json', 'text/html']) {
    const r = await send(s.httpPort, 'nobody.school.test', { path: '/secret-base/x', headers: { accept } });
    t.equal(r.status, 404);
    t.notMatch(r.body, /127\.0\.0\.1|secret-base|public|admin|other/i, `${accept}: no upstream or route named`);
    t.match(r.body, r.headers['x-request-id'] as string, `${accept}: request id in the page`);
  }
  const m = await s.registry.getSingleMetricAsString('wegate_http_requests_total');
  t.match(m, /route="-",status_class="4xx"\} 2/, 'counted under route "-"');
});

t.test('pipeline: routes /metrics like any path when it arrives on the public listener', async (t) => {
  const s = await site(t);
  const noRoute = await send(s.httpPort, 'app.school.test', { path: '/metrics' });
  t.equal(noRoute.status, 404);
  t.notMatch(noRoute.body, /wegate_/);
  for (const p of ['/metrics', '/healthz', '/readyz']) {
    const r = await send(s.httpPort, 'other.school.test', { path: p });
    t.equal(r.status, 200, `${p} proxied to the route's upstream`);
    t.equal(r.body, `other GET /secret-base${p}`);
  }
});

t.test('pipeline: error pages are HTML when a browser asks, JSON otherwise, with a request id and no stack', async (t) => {
  const s = await site(t);
  const html = await send(s.httpPort, 'app.school.test', { path: '/public/%zz', headers: { accept: 'text/html,application/xhtml+xml' } });
  t.equal(html.status, 400);
  t.match(html.headers['content-type'], /^text\/html/);
  t.match(html.body, /请求路径不合法/);
  t.match(html.body, html.headers['x-request-id'] as string);
  t.notMatch(html.body, /at .*\.ts:\d+|Error:/);
  const json = await send(s.httpPort, 'app.school.test', { path: '/public/%zz' });
  t.match(json.headers['content-type'], /^application\/json/);
  const body = JSON.parse(json.body) as Record<string, unknown>;
  t.match(body, { error: 'WG_BAD_PATH', status: 400, request_id: json.headers['x-request-id'] });
  t.notMatch(json.body, /stack|\.ts:/);
  t.not(html.headers['x-request-id'], json.headers['x-request-id'], 'request ids are unique');
});

t.test('pipeline: every response carries a unique X-Request-Id when twenty requests arrive in a row', async (t) => {
  const s = await site(t);
  const ids = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const r = await send(s.httpPort, i % 2 ? 'app.school.test' : 'nobody.test', { path: '/public/x' });
    const id = r.headers['x-request-id'];
    t.type(id, 'string');
    ids.add(id as string);
  }
  t.equal(ids.size, 20);
});

t.test('pipeline: access log line has route, status and request id and no secrets when the URL carries them', async (t) => {
  const s = await site(t);
  const r = await send(s.httpPort, 'app.school.test', {
    path: '/public/cb?access_token=AT-SECRET-1&code=CODE-SECRET-2&page=3',
    headers: { cookie: 'sid=COOKIE-SECRET-3', authorization: 'Bearer AUTH-SECRET-4' },
  });
  t.equal(r.status, 200);
  const id = r.headers['x-request-id'];
  const line = await waitFor(() => s.logs.lines.find((l) => l.log === 'access' && l.req_id === id));
  t.ok(line, 'one access line for the request');
  t.match(line, {
    method: 'GET',
    host: 'app.school.test',
    route: 'public',
    upstream: s.pub.url,
    status: 200,
    client_ip: '127.0.0.1',
  });
  t.type(line?.ms, 'number');
  t.ok((line?.bytes as number) > 0, 'bytes sent counted');
  t.match(line?.url, /page=3/);
  const text = s.logs.text();
  for (const secret of ['AT-SECRET-1', 'CODE-SECRET-2', 'COOKIE-SECRET-3', 'AUTH-SECRET-4'])
    t.notMatch(text, secret, `${secret} not logged`);
  t.equal(s.logs.lines.filter((l) => l.log === 'access' && l.req_id === id).length, 1, 'exactly one line');
});

t.test('pipeline: aborts the upstream exchange and logs the request as incomplete when the client leaves mid-response', async (t) => {
  let upstreamClosed: Promise<unknown> | undefined;
  const up = await startUpstream(t, 'stream', (_req, res) => {
    upstreamClosed = once(res, 'close');
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first part;');
  });
  const gw = await startGateway(
    t,
    makeConfig({ listen: LOOPBACK, admin: ADMIN, routes: [{ name: 'stream', host: 'app.school.test', upstream: up.url }] }),
  );
  const id = await new Promise<string>((resolve, reject) => {
    const req = request({ port: gw.httpPort, host: '127.0.0.1', path: '/live', headers: { host: 'app.school.test' }, agent: false });
    req.on('error', () => {});
    req.on('response', (res) => {
      res.once('data', () => {
        req.destroy();
        resolve(String(res.headers['x-request-id']));
      });
    });
    req.setTimeout(5000, () => reject(new Error('no response')));
    req.end();
  });
  await waitFor(() => upstreamClosed);
  let timer: NodeJS.Timeout | undefined;
  const closed = await Promise.race([
    upstreamClosed?.then(() => true),
    new Promise<boolean>((resolve) => (timer = setTimeout(resolve, 5000, false))),
  ]);
  clearTimeout(timer);
  t.equal(closed, true, 'the upstream response was closed after the client left');
  const line = await waitFor(() => gw.logs.lines.find((l) => l.log === 'access' && l.req_id === id));
  t.match(line, { route: 'stream', status: 200, completed: false });
  const metrics = await (await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`)).text();
  t.notMatch(metrics, /wegate_upstream_errors_total\{[^}]*route="stream"/, 'a client leaving is not an upstream error');
});

t.test('pipeline: logs and counts a request under route "-" when it is rejected', async (t) => {
  const s = await site(t);
  const out = await raw(s.httpPort, req('evil@app.school.test', '/x?access_token=LEAK'));
  t.equal(rawStatus(out), 400);
  const line = await waitFor(() => s.logs.lines.find((l) => l.log === 'access' && l.error_code === 'WG_BAD_HOST'));
  t.match(line, { status: 400, route: '-' });
  t.notMatch(s.logs.text(), 'LEAK');
});

t.test('pipeline: answers 400 and closes the socket when the method is CONNECT', async (t) => {
  const s = await site(t);
  const out = await raw(s.httpPort, 'CONNECT other.school.test:443 HTTP/1.1\r\nHost: other.school.test:443\r\n\r\n');
  t.equal(rawStatus(out), 400);
  t.equal(s.other.seen.length, 0);
});

t.test('pipeline: validates the request before asking for the body when it has Expect: 100-continue', async (t) => {
  const s = await site(t);
  const bad = await raw(
    s.httpPort,
    'POST /public/x HTTP/1.1\r\nHost: nobody.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n',
  );
  t.equal(rawStatus(bad), 404, 'refused without 100 Continue');
  t.notMatch(bad, /100 Continue/);
  const good = await raw(
    s.httpPort,
    'POST /public/x HTTP/1.1\r\nHost: app.school.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhello',
  );
  t.match(good, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, 'continue sent for a routed request');
  t.match(good, /public POST \/public\/x body=hello$/);
  t.notOk(s.pub.seen.at(-1)?.headers.expect, 'the upstream is not asked to continue again');
});

t.test(
  'pipeline: strips spoofed identity and forwarding headers in case and underscore variants when the request is plain, Expect: 100-continue or a WebSocket upgrade',
  async (t) => {
    const s = await site(t);
    const upgrades: Record<string, string | string[] | undefined>[] = [];
    s.pub.server.prependListener('upgrade', (req: { headers: Record<string, string | string[] | undefined> }) =>
      upgrades.push(req.headers),
    );
    const spoofed = [
      'X-Wegate-User: admin',
      'x-WEGATE-corp: ww1',
      'X_Wegate_User: admin',
      'X-WeGate_User: admin',
      'X_WEGATE_AGENTID: 1',
      'X-Forwarded-For: 1.2.3.4',
      'X_Forwarded_For: 1.2.3.4',
      'x-forwarded_proto: https',
      'X-Forwarded-Host: evil.test',
      'X-Real-IP: 1.2.3.4',
      'X-Real_IP: 1.2.3.4',
      'Forwarded: for=1.2.3.4',
      'X_Custom: 1',
    ].join('\r\n');
    const plain = `GET /public/plain HTTP/1.1\r\nHost: app.school.test\r\n${spoofed}\r\nConnection: close\r\n\r\n`;
    const expect = `POST /public/expect HTTP/1.1\r\nHost: app.school.test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n${spoofed}\r\nConnection: close\r\n\r\nhello`;
    const upgrade = `GET /public/ws HTTP/1.1\r\nHost: app.school.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${spoofed}\r\n\r\n`;
    t.equal(rawStatus(await raw(s.httpPort, plain)), 200, 'plain request proxied');
    t.match(await raw(s.httpPort, expect), /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, 'expect request proxied');
    t.equal(rawStatus(await raw(s.httpPort, upgrade, 1000)), 101, 'upgrade proxied');
    const seen = [...s.pub.seen.map((r) => r.headers), ...upgrades];
    t.equal(seen.length, 3, 'the upstream saw all three requests');
    for (const [i, h] of seen.entries()) {
      const kind = ['plain', 'expect', 'upgrade'][i];
      const names = Object.keys(h);
      t.same(
        names.filter((n) => n.includes('_') || n.startsWith('x-wegate-') || n === 'forwarded'),
        [],
        `${kind}: no identity, underscore or Forwarded header`,
      );
      t.equal(h['x-forwarded-for'], '127.0.0.1', `${kind}: X-Forwarded-For is the peer`);
      t.equal(h['x-real-ip'], '127.0.0.1', `${kind}: X-Real-IP is the peer`);
      t.equal(h['x-forwarded-host'], 'app.school.test', `${kind}: X-Forwarded-Host is the public host`);
      t.equal(h['x-forwarded-proto'], 'http', `${kind}: X-Forwarded-Proto is the listener's`);
    }
  },
);

t.test('pipeline: keeps verification files on plain HTTP when HTTP→HTTPS redirect is on', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'wegate-vf-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'WW_verify_abc123.txt'), 'abc123-content');
  const up = await startUpstream(t, 'app');
  const config = makeConfig({
    listen: { ...LOOPBACK, https: '127.0.0.1:0', redirect_http: true },
    admin: ADMIN,
    tls: { certs: [{ cert: join(TLS_DIR, 'api1.pem'), key: join(TLS_DIR, 'api1.key') }], watch: false },
    verify_files: { dir, watch: false },
    routes: [{ name: 'app', host: 'api1.school.test', upstream: up.url }],
  });
  const s = await startGateway(t, config);

  const get = await send(s.httpPort, 'api1.school.test', { path: '/a/b?x=1' });
  t.equal(get.status, 301, 'GET redirected with 301');
  t.equal(get.headers.location, `https://api1.school.test:${s.httpsPort}/a/b?x=1`);
  const post = await send(s.httpPort, 'api1.school.test', { method: 'POST', path: '/form', body: 'a=1' });
  t.equal(post.status, 308, 'POST redirected with 308');

  const file = await send(s.httpPort, 'api1.school.test', { path: '/WW_verify_abc123.txt' });
  t.equal(file.status, 200, 'verification file served on plain HTTP');
  t.equal(file.body, 'abc123-content');
  t.equal(file.headers['content-type'], 'text/plain');
  const head = await send(s.httpPort, 'any.host.test', { method: 'HEAD', path: '/WW_verify_abc123.txt' });
  t.equal(head.status, 200, 'HEAD supported, on any host');
  t.equal(head.headers['content-length'], String('abc123-content'.length));
  t.equal(head.body, '');
  const viaTls = await send(s.httpsPort, 'api1.school.test', { path: '/WW_verify_abc123.txt', tls: {} });
  t.equal(viaTls.body, 'abc123-content', 'and on HTTPS');
  const proxied = await send(s.httpsPort, 'api1.school.test', { path: '/a', tls: {} });
  t.equal(proxied.body, 'app GET /a', 'HTTPS is proxied');
  t.equal(up.seen.filter((r) => r.url.includes('verify')).length, 0, 'verification files never proxied');

  const m = await s.registry.getSingleMetricAsString('wegate_http_requests_total');
  t.match(m, /route="redirect",status_class="3xx"\} 2/);
  t.match(m, /route="verify_file",status_class="2xx"\} 3/);
});

t.test('pipeline: redirect uses public_https_port when set and omits 443', async (t) => {
  const up = await startUpstream(t);
  for (const [port, expected] of [
    [443, 'https://app.school.test/p'],
    [8443, 'https://app.school.test:8443/p'],
  ] as const) {
    const s = await startGateway(
      t,
      makeConfig({
        listen: { ...LOOPBACK, https: '127.0.0.1:0', redirect_http: true, public_https_port: port },
        admin: ADMIN,
        tls: { certs: [{ cert: join(TLS_DIR, 'api1.pem'), key: join(TLS_DIR, 'api1.key') }], watch: false },
        routes: [{ upstream: up.url }],
      }),
    );
    const r = await send(s.httpPort, 'app.school.test:8080', { path: '/p' });
    t.equal(r.headers.location, expected);
  }
});

t.test('pipeline: applies the same validation when the request is a WebSocket upgrade', async (t) => {
  const s = await site(t);
  const upgrades: string[] = [];
  for (const up of [s.pub, s.adm, s.other]) up.server.prependListener('upgrade', (req: { url?: string }) => upgrades.push(req.url ?? ''));
  const upgrade = (host: string | string[], target = '/public/ws') =>
    `GET ${target} HTTP/1.1\r\n${(Array.isArray(host) ? host : [host]).map((h) => `Host: ${h}\r\n`).join('')}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;
  const cases: { name: string; text: string; status: number }[] = [
    { name: 'duplicate Host', text: upgrade(['app.school.test', 'evil.test']), status: 400 },
    { name: 'malformed Host', text: upgrade('evil@app.school.test'), status: 400 },
    { name: 'encoded slash in path', text: upgrade('app.school.test', '/public%2f..%2fadmin'), status: 400 },
    { name: 'absolute-form target', text: upgrade('app.school.test', 'http://app.school.test/public/ws'), status: 400 },
    { name: 'unknown host', text: upgrade('nobody.test'), status: 404 },
    { name: 'valid upgrade', text: upgrade('app.school.test'), status: 101 },
  ];
  for (const c of cases) {
    const out = await raw(s.httpPort, c.text, 1000);
    t.equal(rawStatus(out), c.status, c.name);
    if (c.status !== 101) {
      t.match(out, /x-request-id: \S+/i, `${c.name}: request id`);
      t.match(out, /"request_id":/, `${c.name}: JSON error body`);
    }
  }
  t.same(upgrades, ['/public/ws'], 'only the valid upgrade reached an upstream');
});
