/**
 * listen.max_connections / listen.max_connections_per_ip through the real listeners: a connection
 * over a cap gets one complete 503 WG_TOO_MANY_CONNECTIONS with Connection: close (over TLS too),
 * the connections within the cap keep working, and a closed connection frees its place.
 */
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { loadConfigText } from '../../src/config/load.ts';
import { ADMIN, LOOPBACK, makeConfig, type Running, startGateway, startUpstream, TLS_DIR, waitFor } from '../helpers/gateway.ts';
import { RawConn } from '../helpers/raw-conn.ts';

const HOST = 'app.school.test';

async function limited(t: Test, listen: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<Running> {
  const up = await startUpstream(t, 'app');
  return startGateway(
    t,
    makeConfig({ listen: { ...LOOPBACK, ...listen }, admin: ADMIN, routes: [{ name: 'app', upstream: up.url }], ...extra }),
  );
}

/** A raw keep-alive connection closed in teardown; `get` sends Host app.school.test. */
function open(t: Test, port: number, opts: { localAddress?: string; tls?: boolean } = {}) {
  const c = new RawConn(port, {
    ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}),
    ...(opts.tls === true ? { tlsServername: 'api1.school.test' } : {}),
  });
  t.teardown(() => c.close());
  return {
    conn: c,
    get: (path: string) => c.get(path, HOST),
    close: () => c.close(),
    get closed() {
      return c.closed;
    },
  };
}

t.test(
  'connection limit: the 4th connection from one IP gets 503 and the first three keep working when max_connections_per_ip is 3',
  async (t) => {
    const s = await limited(t, { max_connections_per_ip: 3 });
    const first = [open(t, s.httpPort), open(t, s.httpPort), open(t, s.httpPort)];
    for (const [i, c] of first.entries()) t.equal((await c.get(`/a${i}`))?.status, 200, `connection ${i + 1} served`);
    const fourth = open(t, s.httpPort);
    const refused = await fourth.get('/d');
    t.equal(refused?.status, 503, '4th connection refused');
    t.match(refused?.body, /"error":"WG_TOO_MANY_CONNECTIONS"/);
    t.match(Buffer.from(refused?.body ?? '', 'latin1').toString('utf8'), /连接数过多/, 'bilingual');
    t.match(refused?.head, /\r\nConnection: close/i);
    t.match(refused?.head, /\r\nX-Request-Id: \S+/i);
    t.ok(await waitFor(() => fourth.closed), 'and closed');
    for (const [i, c] of first.entries()) t.equal((await c.get(`/b${i}`))?.status, 200, `connection ${i + 1} still served`);
    // From another address: its own count.
    t.equal((await open(t, s.httpPort, { localAddress: '127.0.0.2' }).get('/other-ip'))?.status, 200, 'another IP is not limited');
    first[0]?.close();
    const again = await waitFor(async () => (await open(t, s.httpPort).get('/again'))?.status === 200);
    t.ok(again, 'a closed connection frees its place');
    t.match(
      await s.registry.getSingleMetricAsString('wegate_rejected_requests_total'),
      /code="WG_TOO_MANY_CONNECTIONS"\} [1-9]/,
      'counted',
    );
    t.ok(
      s.logs.lines.some((l) => l.error_code === 'WG_TOO_MANY_CONNECTIONS' && l.status === 503),
      'access-logged with its code',
    );
  },
);

t.test('connection limit: a connection over max_connections gets 503 whatever its IP when the total cap is reached', async (t) => {
  const s = await limited(t, { max_connections: 2 });
  const a = open(t, s.httpPort, { localAddress: '127.0.0.2' });
  const b = open(t, s.httpPort, { localAddress: '127.0.0.3' });
  t.equal((await a.get('/a'))?.status, 200);
  t.equal((await b.get('/b'))?.status, 200);
  t.equal((await open(t, s.httpPort).get('/c'))?.status, 503, 'third connection refused');
  t.equal((await a.get('/a2'))?.status, 200, 'the first two keep working');
  t.equal((await b.get('/b2'))?.status, 200);
});

t.test('connection limit: a TLS connection over max_connections_per_ip gets a readable 503 after its handshake', async (t) => {
  const s = await limited(
    t,
    { https: '127.0.0.1:0', max_connections_per_ip: 1 },
    { tls: { certs: [{ cert: join(TLS_DIR, 'api1.pem'), key: join(TLS_DIR, 'api1.key') }], watch: false } },
  );
  const first = open(t, s.httpsPort, { tls: true });
  t.equal((await first.get('/1'))?.status, 200);
  const second = await open(t, s.httpsPort, { tls: true }).get('/2');
  t.equal(second?.status, 503);
  t.match(second?.body, /WG_TOO_MANY_CONNECTIONS/);
  t.equal((await first.get('/1b'))?.status, 200, 'the first connection keeps working');
});

t.test('connection limit: answers a WebSocket upgrade on a connection over the cap with 503', async (t) => {
  const s = await limited(t, { max_connections_per_ip: 1 });
  const first = open(t, s.httpPort);
  t.equal((await first.get('/1'))?.status, 200);
  const c = open(t, s.httpPort);
  await c.conn.ready;
  let got = '';
  c.conn.socket.on('data', (d: string) => (got += d));
  c.conn.socket.write(
    `GET /ws HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
  );
  t.ok(await waitFor(() => c.closed), 'closed after the answer');
  t.match(got, /^HTTP\/1\.1 503 /);
  t.match(got, /WG_TOO_MANY_CONNECTIONS/);
});

t.test('connection limit: no cap applies when both limits are 0 (the default)', async (t) => {
  const s = await limited(t, {});
  const conns = Array.from({ length: 12 }, () => open(t, s.httpPort));
  const statuses = await Promise.all(conns.map((c, i) => c.get(`/${i}`).then((r) => r?.status)));
  t.same(statuses, Array(12).fill(200));
});

t.test('config: reports bad connection caps and send timeouts with their path and line when they are out of range', async (t) => {
  const text = [
    'listen:', //                           1
    '  http: ":8080"', //                   2
    '  max_connections: -1', //             3
    '  max_connections_per_ip: 1.5', //     4
    '  send_timeout_ms: 0', //              5
    'routes:', //                           6
    '  - upstream: "https://a.test"', //    7
    '    timeouts: { send_ms: "fast" }', // 8
    '',
  ].join('\n');
  const r = loadConfigText(text, 'wegate.yaml');
  t.notOk(r.ok);
  const got = r.ok ? [] : r.problems.map((p) => [p.path, p.line]);
  t.same(got, [
    ['listen.max_connections', 3],
    ['listen.max_connections_per_ip', 4],
    ['listen.send_timeout_ms', 5],
    ['routes[0].timeouts.send_ms', 8],
  ]);
});

t.test('connection limit: a reload applies new caps and counts the connections already open', async (t) => {
  const up = await startUpstream(t, 'app');
  const config = (listen: Record<string, unknown>) =>
    makeConfig({ listen: { ...LOOPBACK, ...listen }, admin: ADMIN, routes: [{ name: 'app', upstream: up.url }] });
  const s = await startGateway(t, config({}));
  const before = open(t, s.httpPort);
  t.equal((await before.get('/1'))?.status, 200);
  await s.gw.reload(config({ http: `127.0.0.1:${s.httpPort}`, max_connections_per_ip: 1 }));
  t.equal((await open(t, s.httpPort).get('/2'))?.status, 503, 'the connection opened before the reload counts');
  t.equal((await before.get('/3'))?.status, 200, 'and keeps working');
});
