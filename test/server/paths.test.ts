/**
 * Issue 10 items 1, 2, 3, 10, 11 and the slash redirect of item 12, through the real listener against
 * real loopback upstreams: dot-segments with path parameters, routing on the path the upstream will
 * decode, fragments, 413 before 100 Continue, Transfer-Encoding framing, "/api1" → "/api1/".
 */
import t, { type Test } from 'tap';
import { ADMIN, LOOPBACK, makeConfig, raw, rawStatus, send, startGateway, startUpstream, waitFor } from '../helpers/gateway.ts';

const HOST = 'app.school.test';

async function site(t: Test) {
  const pub = await startUpstream(t, 'public');
  const adm = await startUpstream(t, 'admin');
  const api = await startUpstream(t, 'api');
  const imp = await startUpstream(t, 'import');
  const lib = await startUpstream(t, 'lib');
  const api1 = await startUpstream(t, 'api1');
  const root = await startUpstream(t, 'root');
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [
      { name: 'public', host: HOST, path: '/public', upstream: pub.url },
      { name: 'admin', host: HOST, path: '/admin', upstream: adm.url },
      { name: 'api', host: HOST, path: '/api', upstream: api.url },
      { name: 'import', host: HOST, path: '/api/import', upstream: imp.url, max_body_bytes: 16, websocket: false },
      { name: 'lib', host: HOST, path: '/lib/', strip_prefix: true, upstream: `${lib.url}/libbase` },
      { name: 'api1', host: HOST, path: '/api1/', upstream: api1.url },
      { name: 'other-api1', host: 'other.school.test', path: '/api1/', upstream: api1.url },
      { name: 'other-root', host: 'other.school.test', upstream: root.url },
    ],
  });
  const gw = await startGateway(t, config);
  const all = { pub, adm, api, imp, lib, api1, root };
  const forwarded = () => Object.values(all).reduce((n, u) => n + u.seen.length, 0);
  return { ...gw, ...all, forwarded };
}

const get = (target: string, host = HOST, extra = '') => `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`;

t.test('pipeline: answers 400 when a dot-segment carries path parameters (issue 10 item 1)', async (t) => {
  const s = await site(t);
  const targets = [
    '/public/..;/admin/x',
    '/public/.;x/admin',
    '/public/%2e%2e;jsessionid=1/admin/x',
    '/public/%2E%2e;a=b/admin/x',
    '/public/..;a=b/admin/x',
    '/lib/..;/admin',
    '/lib/..;/../admin',
    '/public/..%3b/admin',
    '/public/..;',
  ];
  for (const target of targets) {
    const out = await raw(s.httpPort, get(target));
    t.equal(rawStatus(out), 400, target);
    t.match(out, /"error":"WG_BAD_PATH"/, `${target}: WG_BAD_PATH`);
  }
  t.equal(s.forwarded(), 0, 'nothing reached an upstream');
});

t.test(
  'pipeline: routes on the path the upstream will decode when it encodes unreserved characters or carries parameters (issue 10 item 2)',
  async (t) => {
    const s = await site(t);
    const cases: [target: string, route: 'imp' | 'api' | 'pub' | 'lib', upstreamUrl: string][] = [
      ['/api/%69mport', 'imp', '/api/import'],
      ['/api/%69%6D%70%6f%72%74/x?q=%69', 'imp', '/api/import/x?q=%69'],
      ['/%61pi/import', 'imp', '/api/import'],
      ['/api;x=1/import', 'imp', '/api;x=1/import'],
      ['/api/import;jsessionid=A1', 'imp', '/api/import;jsessionid=A1'],
      ['/;x/api/import', 'imp', '/;x/api/import'],
      ['/api/%252e%252e/import', 'api', '/api/%252e%252e/import'],
      ['/api/importer', 'api', '/api/importer'],
      ['/public/%e4%b8%ad', 'pub', '/public/%E4%B8%AD'],
      ['/lib;v=2/x;y', 'lib', '/libbase/x;y'],
    ];
    for (const [target, name, upstreamUrl] of cases) {
      const before = s.forwarded();
      const r = await send(s.httpPort, HOST, { path: target });
      t.equal(r.status, 200, `${target}: proxied`);
      t.equal(s[name].seen.at(-1)?.url, upstreamUrl, `${target}: ${name} upstream saw ${upstreamUrl}`);
      t.equal(s.forwarded(), before + 1, `${target}: one upstream request`);
    }
    // The import route's policy applies to its encoded and parameter forms too.
    for (const target of ['/api/import', '/api/%69mport', '/api;x=1/import', '/;x/api/import']) {
      const big = await send(s.httpPort, HOST, { method: 'POST', path: target, body: 'x'.repeat(32) });
      t.equal(big.status, 413, `${target}: max_body_bytes of the import route`);
      const ws = await raw(
        s.httpPort,
        `GET ${target} HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
        1000,
      );
      t.equal(rawStatus(ws), 404, `${target}: websocket false of the import route`);
    }
    t.equal(s.imp.seen.filter((r) => r.method === 'POST').length, 0, 'no oversized body reached the import upstream');
    const upgraded = await raw(
      s.httpPort,
      `GET /api/x HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
      1000,
    );
    t.equal(rawStatus(upgraded), 101, 'the /api route itself still upgrades (the refusal above is the import route)');
  },
);

t.test('pipeline: answers 400 when the request target has a fragment (issue 10 item 3)', async (t) => {
  const s = await site(t);
  for (const target of ['/public/x#top', '/public/x?a=1#top', '/public/%41#top', '/public/#']) {
    const out = await raw(s.httpPort, get(target));
    t.equal(rawStatus(out), 400, target);
    t.match(out, /"error":"WG_BAD_REQUEST"/, `${target}: WG_BAD_REQUEST`);
  }
  t.equal(s.forwarded(), 0, 'nothing reached an upstream');
});

t.test('pipeline: answers 413 without 100 Continue when Content-Length is over the route limit (issue 10 item 10)', async (t) => {
  const s = await site(t);
  const expect = (target: string, length: number, body = '') =>
    `POST ${target} HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n${body}`;
  for (const target of ['/api/import', '/api/%69mport', '/api;x=1/import']) {
    // The client waits for 100 Continue before sending its body: it never sends it here.
    const out = await raw(s.httpPort, expect(target, 1000));
    t.equal(rawStatus(out), 413, `${target}: 413`);
    t.notMatch(out, /100 Continue/, `${target}: no 100 Continue`);
    t.match(out, /\r\nconnection: close\r\n/i, `${target}: the connection closes (the body was never read)`);
  }
  const small = await raw(s.httpPort, expect('/api/import', 5, 'hello'));
  t.match(small, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, 'a body within the limit gets 100 Continue');
  t.match(small, /import POST \/api\/import body=hello$/);
  const other = await raw(s.httpPort, expect('/api/x', 1000, 'y'.repeat(1000)));
  t.match(other, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /, 'the same length is fine on a route with the default limit');
  t.equal(s.imp.seen.length, 1, 'only the small body reached the import upstream');
  const line = await waitFor(() => s.logs.lines.find((l) => l.log === 'access' && l.status === 413));
  t.match(line, { route: 'import', error_code: 'WG_BODY_TOO_LARGE' }, 'logged under the route');
});

t.test('pipeline: answers 501 when Transfer-Encoding is anything but a lone chunked (issue 10 item 11)', async (t) => {
  const s = await site(t);
  const post = (te: string) => `POST /api/x HTTP/1.1\r\nHost: ${HOST}\r\n${te}Connection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`;
  const cases: [name: string, headers: string, status: number][] = [
    ['lone chunked', 'Transfer-Encoding: chunked\r\n', 200],
    ['lone chunked, other case', 'Transfer-Encoding: Chunked\r\n', 200],
    ['gzip before chunked', 'Transfer-Encoding: gzip, chunked\r\n', 501],
    ['identity before chunked', 'Transfer-Encoding: identity, chunked\r\n', 501],
    ['unknown coding before chunked', 'Transfer-Encoding: x-custom, chunked\r\n', 501],
    ['two header lines, gzip then chunked', 'Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n', 501],
    // llhttp flags these only once the headers are complete: the pipeline has answered 501 by then.
    ['gzip alone', 'Transfer-Encoding: gzip\r\n', 501],
    ['chunked with a parameter', 'Transfer-Encoding: chunked;x=1\r\n', 501],
    // Refused by llhttp itself (400) while it reads the headers: the pipeline never sees them.
    ['chunked twice (llhttp)', 'Transfer-Encoding: chunked, chunked\r\n', 400],
    ['chunked on two lines (llhttp)', 'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n', 400],
    ['with Content-Length (llhttp)', 'Transfer-Encoding: chunked\r\nContent-Length: 5\r\n', 400],
  ];
  for (const [name, headers, status] of cases) {
    const before = s.api.seen.length;
    const out = await raw(s.httpPort, post(headers));
    t.equal(rawStatus(out), status, name);
    if (status === 200) {
      t.match(out, /api POST \/api\/x body=hello$/, `${name}: body forwarded`);
      t.equal(s.api.seen.length, before + 1, `${name}: forwarded once`);
    } else {
      t.equal(s.api.seen.length, before, `${name}: not forwarded`);
    }
    if (status === 501) {
      t.match(out, /"error":"WG_UNSUPPORTED_TRANSFER_ENCODING"/, `${name}: error code`);
      t.match(out, /\r\nconnection: close\r\n/i, `${name}: connection closed`);
    }
  }
  const metrics = await s.registry.getSingleMetricAsString('wegate_rejected_requests_total');
  t.match(metrics, /code="WG_UNSUPPORTED_TRANSFER_ENCODING"\} 6/, 'the six refusals counted');
});

t.test('pipeline: redirects /api1 to /api1/ when only a /api1/ route would cover it (issue 10 item 12)', async (t) => {
  const s = await site(t);
  const r = await send(s.httpPort, HOST, { path: '/api1?a=1&b=%20' });
  t.equal(r.status, 301, 'GET redirected');
  t.equal(r.headers.location, '/api1/?a=1&b=%20', 'to the route path, query kept');
  t.equal(r.body, '');
  t.type(r.headers['x-request-id'], 'string');
  const p = await send(s.httpPort, HOST, { method: 'POST', path: '/api1', body: 'x' });
  t.equal(p.status, 308, 'POST redirected keeping its method');
  t.equal(p.headers.location, '/api1/');
  const encoded = await send(s.httpPort, HOST, { path: '/%61pi1' });
  t.equal(encoded.headers.location, '/api1/', 'the normalised path is redirected');
  t.equal((await send(s.httpPort, HOST, { path: '/api1/' })).body, 'api1 GET /api1/', '/api1/ itself is proxied');
  t.equal((await send(s.httpPort, HOST, { path: '/api1x' })).status, 404, 'another name is not redirected');
  t.equal((await send(s.httpPort, HOST, { path: '/api1;x' })).status, 404, 'a name with parameters is not redirected');
  const covered = await send(s.httpPort, 'other.school.test', { path: '/api1' });
  t.equal(covered.status, 200, 'a host whose root route covers /api1 proxies it');
  t.equal(covered.body, 'root GET /api1');
  t.equal(s.api1.seen.length, 1, 'only /api1/ reached the api1 upstream');
});

t.test('pipeline: applies the /张三/ route and its body limit when the browser sends the path percent-encoded (F2)', async (t) => {
  const root = await startUpstream(t, 'root');
  const zs = await startUpstream(t, 'zhangsan');
  const s = await startGateway(
    t,
    makeConfig({
      listen: LOOPBACK,
      admin: ADMIN,
      routes: [
        { name: 'root', host: HOST, path: '/', upstream: root.url },
        { name: 'zhangsan', host: HOST, path: '/张三/', upstream: zs.url, max_body_bytes: 4 },
      ],
    }),
  );
  // What a browser sends for /张三/upload (upper-case hex), and the lower-case form other clients send.
  for (const path of ['/%E5%BC%A0%E4%B8%89/upload', '/%e5%bc%a0%e4%b8%89/upload']) {
    const small = await send(s.httpPort, HOST, { method: 'POST', path, body: 'ok' });
    t.equal(small.status, 200, `${path}: answered`);
    t.equal(small.body, 'zhangsan POST /%E5%BC%A0%E4%B8%89/upload body=ok', `${path}: by the /张三/ route's upstream`);
    const big = await send(s.httpPort, HOST, { method: 'POST', path, body: '0123456789' });
    t.equal(big.status, 413, `${path}: max_body_bytes of the /张三/ route`);
  }
  t.equal(root.seen.length, 0, 'nothing fell through to the "/" route');
});
