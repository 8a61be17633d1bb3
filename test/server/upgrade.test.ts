/**
 * Upgrade requests on the public listeners (issue 10 item 7): only WebSocket handshakes are
 * upgraded; `Upgrade: h2c` (curl --http2, Java's HttpClient) and other protocols are ordinary
 * requests, forwarded with the upgrade headers removed. Real gateway, real loopback upstreams.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import t, { type Test } from 'tap';
import { WebSocket } from 'ws';
import { ADMIN, CA, LOOPBACK, makeConfig, startGateway, startUpstream, TLS_DIR, type Upstream } from '../helpers/gateway.ts';

const H2C_SETTINGS = 'AAMAAABkAARAAAAAAAIAAAAA';
const UPGRADE_HEADERS = ['upgrade', 'http2-settings'];

async function site(t: Test, https = false) {
  const up = await startUpstream(t, 'app');
  const config = makeConfig({
    listen: https ? { ...LOOPBACK, https: '127.0.0.1:0' } : LOOPBACK,
    admin: ADMIN,
    ...(https ? { tls: { certs: [{ cert: join(TLS_DIR, 'api1.pem'), key: join(TLS_DIR, 'api1.key') }], watch: false } } : {}),
    routes: [{ name: 'app', host: 'app.school.test', upstream: up.url }],
  });
  return { ...(await startGateway(t, config)), up };
}

/** What the upstream must never see of a declined upgrade. */
function assertNoUpgradeHeaders(t: Test, up: Upstream, what: string) {
  const seen = up.seen.at(-1);
  t.ok(seen, `${what}: reached the upstream`);
  for (const h of UPGRADE_HEADERS) t.equal(seen?.headers[h], undefined, `${what}: no ${h} upstream`);
  t.notMatch(String(seen?.headers.connection ?? ''), /upgrade|http2-settings/i, `${what}: no Connection: upgrade upstream`);
}

const h2c = (method: string, path: string, extra = '', body = '') =>
  `${method} ${path} HTTP/1.1\r\nHost: app.school.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: ${H2C_SETTINGS}\r\n${extra}${body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ''}\r\n${body}`;

/** Send `requests` one after another on one connection, each after the previous answer's body arrived. */
function sequential(port: number, requests: string[], bodies: RegExp[], tls = false): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = tls ? tlsConnect({ host: '127.0.0.1', port, ca: CA, servername: 'api1.school.test' }) : netConnect(port, '127.0.0.1');
    const answers: string[] = [];
    let got = '';
    socket.setEncoding('latin1');
    socket.on('error', reject);
    socket.on('close', () => resolve(answers.concat(got ? [got] : [])));
    socket.on('data', (d: string) => {
      got += d;
      if (bodies[answers.length]?.test(got)) {
        answers.push(got);
        got = '';
        if (answers.length === requests.length) socket.destroy();
        else socket.write(requests[answers.length] as string);
      }
    });
    socket.once(tls ? 'secureConnect' : 'connect', () => socket.write(requests[0] as string));
  });
}

/** One request on a new connection; the answer once `until` matches it (or what came before the close). */
const exchange = async (port: number, text: string, until: RegExp) => (await sequential(port, [text], [until])).join('');

t.test('upgrade: answers an h2c Upgrade GET as an ordinary request when the client offers HTTP/2 (not 404)', async (t) => {
  const s = await site(t);
  const answer = await exchange(s.httpPort, h2c('GET', '/p', 'Accept: */*\r\n'), /app GET \/p$/);
  t.match(answer, /^HTTP\/1\.1 200 /, 'the upstream answer, not a 404 or a 101');
  t.match(answer, /\r\n\r\napp GET \/p$/);
  t.notMatch(answer, /^HTTP\/1\.1 101/m, 'never switched to h2c');
  t.match(answer, /\r\nx-request-id: /i);
  assertNoUpgradeHeaders(t, s.up, 'GET');
});

t.test('upgrade: forwards the body of an h2c Upgrade POST when the client offers HTTP/2 with a body', async (t) => {
  const s = await site(t);
  const answer = await exchange(s.httpPort, h2c('POST', '/form', '', 'a=1&b=2'), /body=a=1&b=2$/);
  t.match(answer, /^HTTP\/1\.1 200 /);
  t.match(answer, /\r\n\r\napp POST \/form body=a=1&b=2$/);
  t.equal(s.up.seen.at(-1)?.method, 'POST');
  assertNoUpgradeHeaders(t, s.up, 'POST');
});

t.test('upgrade: removes HTTP2-Settings when the client does not name it in Connection', async (t) => {
  const s = await site(t);
  const text = `GET /n HTTP/1.1\r\nHost: app.school.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nHTTP2-Settings: ${H2C_SETTINGS}\r\n\r\n`;
  t.match(await exchange(s.httpPort, text, /app GET \/n$/), /^HTTP\/1\.1 200 [\s\S]*app GET \/n$/);
  assertNoUpgradeHeaders(t, s.up, 'not nominated');
});

t.test('upgrade: keeps the connection for the next request when an h2c upgrade was declined', async (t) => {
  const s = await site(t);
  const answers = await sequential(
    s.httpPort,
    [h2c('GET', '/first'), h2c('POST', '/second', '', 'x'), 'GET /third HTTP/1.1\r\nHost: app.school.test\r\n\r\n'],
    [/app GET \/first$/, /app POST \/second body=x$/, /app GET \/third$/],
  );
  t.equal(answers.length, 3, 'three answers on one connection');
  for (const a of answers) t.match(a, /^HTTP\/1\.1 200 /);
  t.same(
    s.up.seen.map((r) => r.url),
    ['/first', '/second', '/third'],
  );
});

t.test('upgrade: declines other protocols and non-GET WebSocket upgrades as ordinary requests', async (t) => {
  const s = await site(t);
  const cases: [name: string, text: string, body: RegExp][] = [
    ['TLS/1.0 upgrade', 'GET /tls HTTP/1.1\r\nHost: app.school.test\r\nConnection: Upgrade\r\nUpgrade: TLS/1.0\r\n\r\n', /app GET \/tls$/],
    [
      'two protocols offered',
      'GET /two HTTP/1.1\r\nHost: app.school.test\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\n\r\n',
      /app GET \/two$/,
    ],
    [
      'POST asking for websocket',
      'POST /wspost HTTP/1.1\r\nHost: app.school.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nhi',
      /app POST \/wspost body=hi$/,
    ],
  ];
  for (const [name, text, body] of cases) {
    const answer = await exchange(s.httpPort, text, body);
    t.match(answer, /^HTTP\/1\.1 200 /, name);
    t.match(answer, body, `${name}: the upstream's answer`);
    assertNoUpgradeHeaders(t, s.up, name);
  }
});

t.test('upgrade: still proxies WebSocket upgrades when h2c upgrades are declined', async (t) => {
  const s = await site(t);
  const ws = new WebSocket(`ws://127.0.0.1:${s.httpPort}/live`, { headers: { host: 'app.school.test' } });
  ws.on('error', () => {});
  await once(ws, 'open');
  const reply = once(ws, 'message');
  ws.send('ping');
  t.equal(String(((await reply) as [Buffer])[0]), 'echo:ping');
  ws.close();
  await once(ws, 'close');
  // A case-insensitive "WebSocket" is a WebSocket handshake too.
  const answer = await exchange(
    s.httpPort,
    'GET /live HTTP/1.1\r\nHost: app.school.test\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    /\r\n\r\n/,
  );
  t.match(answer, /^HTTP\/1\.1 101 /);
});

t.test('upgrade: answers an h2c Upgrade as an ordinary request on the HTTPS listener too', async (t) => {
  const s = await site(t, true);
  const answers = await sequential(
    s.httpsPort,
    [h2c('GET', '/tls-h2c'), h2c('GET', '/again')],
    [/app GET \/tls-h2c$/, /app GET \/again$/],
    true,
  );
  t.equal(answers.length, 2);
  for (const a of answers) t.match(a, /^HTTP\/1\.1 200 /);
  assertNoUpgradeHeaders(t, s.up, 'HTTPS');
});

const curl = await new Promise<boolean>((resolve) => execFile('curl', ['--version'], (err) => resolve(err === null)));

t.test('upgrade: serves curl --http2 over plain HTTP (an h2c upgrade) with HTTP/1.1 when curl asks for HTTP/2', async (t) => {
  // A real client's h2c upgrade; .ci/run installs curl. Missing curl is a failure, not a skip.
  if (!curl) return t.fail('curl is not installed: apt-get install curl (or run bash .ci/run)');
  const s = await site(t);
  const url = `http://127.0.0.1:${s.httpPort}/curl`;
  const run = (args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile('curl', ['-sS', '--http2', '-D', '-', '-H', 'Host: app.school.test', ...args], { timeout: 5000 }, (err, out) =>
        err ? reject(err) : resolve(out),
      ),
    );
  const get = await run([url]);
  t.match(get, /^HTTP\/1\.1 200 /, 'HTTP/1.1 answer, not a 101');
  t.match(get, /app GET \/curl$/);
  assertNoUpgradeHeaders(t, s.up, 'curl GET');
  const post = await run(['--data-binary', 'from curl', url]);
  t.match(post, /^HTTP\/1\.1 200 [\s\S]*app POST \/curl body=from curl$/);
  assertNoUpgradeHeaders(t, s.up, 'curl POST');
});
