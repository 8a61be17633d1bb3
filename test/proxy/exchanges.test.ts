/**
 * Exchanges that used to break through the real listener (issue 10, items 4–6): clients that stop
 * reading (send timeout), upstreams that answer an upload before reading it, and 1xx responses.
 */
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import t, { type Test } from 'tap';
import { WebSocketServer } from 'ws';
import { ADMIN, LOOPBACK, makeConfig, type Running, startGateway, startUpstream, waitFor } from '../helpers/gateway.ts';
import { RawConn } from '../helpers/raw-conn.ts';

const HOST = 'a.test';

/** A TCP upstream that hands each connection to `onConn` (raw HTTP written by the test). */
async function rawUpstream(t: Test, onConn: (s: net.Socket) => void): Promise<string> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onConn(s);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => srv.close(resolve));
  });
  return `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
}

async function gateway(t: Test, upstream: string, listen: Record<string, unknown> = {}, route: Record<string, unknown> = {}) {
  return startGateway(t, makeConfig({ listen: { ...LOOPBACK, ...listen }, admin: ADMIN, routes: [{ name: 'app', upstream, ...route }] }));
}

async function metricValue(s: Running, name: string): Promise<string> {
  return s.registry.getSingleMetricAsString(name);
}

// ---- item 6: 1xx from the upstream ----

/** GET through node:http, collecting the 1xx responses it saw ('information') and the final one. */
function getWithInfo(
  port: number,
  path = '/',
): Promise<{
  info: { status: number; headers: http.IncomingHttpHeaders }[];
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}> {
  return new Promise((resolve, reject) => {
    const info: { status: number; headers: http.IncomingHttpHeaders }[] = [];
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, headers: { host: HOST } });
    req.on('information', (i) => info.push({ status: i.statusCode, headers: i.headers }));
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ info, status: res.statusCode ?? 0, headers: res.headers, body }));
    });
  });
}

const FINAL = 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-final: yes\r\ncontent-length: 11\r\n\r\nhello world';

t.test('proxy: relays 103 Early Hints with its Link headers and then the final response intact when the upstream sends 103', async (t) => {
  const up = await rawUpstream(t, (s) =>
    s.once('data', () =>
      s.write(
        'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload; as=style\r\nLink: </app.js>; rel=preload; as=script\r\nx-secret-hint: no\r\n\r\n' +
          FINAL,
      ),
    ),
  );
  const s = await gateway(t, up);
  const r = await getWithInfo(s.httpPort);
  t.same(
    r.info.map((i) => i.status),
    [103],
    'one 103 reached the client',
  );
  t.equal(r.info[0]?.headers.link, '</style.css>; rel=preload; as=style, </app.js>; rel=preload; as=script', 'both Link values');
  t.notOk(r.info[0]?.headers['x-secret-hint'], 'only Link is relayed in the hint');
  t.same([r.status, r.body, r.headers['x-final']], [200, 'hello world', 'yes'], 'final response intact');
  t.ok(r.headers['x-request-id'], 'the final response carries the request id');
});

t.test('proxy: drops 102 Processing and a 103 without Link and relays the final response when the upstream sends them first', async (t) => {
  const up = await rawUpstream(t, (s) =>
    s.once('data', () =>
      s.write(`HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\nx-other: 1\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n${FINAL}`),
    ),
  );
  const s = await gateway(t, up);
  const r = await getWithInfo(s.httpPort);
  t.same(r.info, [], 'no 1xx reached the client');
  t.same([r.status, r.body, r.headers['x-final']], [200, 'hello world', 'yes']);
});

t.test('proxy: sends no 1xx to an HTTP/1.0 client when the upstream sends 103 Early Hints', async (t) => {
  const up = await rawUpstream(t, (s) =>
    s.once('data', () => s.write(`HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n${FINAL}`)),
  );
  const s = await gateway(t, up);
  const c = new RawConn(s.httpPort);
  t.teardown(() => c.close());
  await c.write(`GET / HTTP/1.0\r\nHost: ${HOST}\r\n\r\n`);
  const r = await c.response();
  t.equal(r?.status, 200, 'the first thing on the wire is the final response');
  t.equal(r?.body, 'hello world');
});

t.test('proxy: keeps the connection usable after relaying 103 Early Hints when the client sends a second request', async (t) => {
  const up = await rawUpstream(t, (s) =>
    s.on('data', () => s.write(`HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n${FINAL}`)),
  );
  const s = await gateway(t, up);
  const c = new RawConn(s.httpPort);
  t.teardown(() => c.close());
  for (let i = 0; i < 2; i++) {
    await c.write(`GET /${i} HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    const hint = await c.response();
    t.equal(hint?.status, 103, `request ${i}: 103 first`);
    t.match(hint?.head, /\r\nLink: <\/a\.css>; rel=preload/i);
    const r = await c.response();
    t.same([r?.status, r?.body], [200, 'hello world'], `request ${i}: final response`);
  }
});

t.test('proxy: answers 502 when the upstream sends an unsolicited 100 Continue (undici refuses it)', async (t) => {
  // The gateway never sends Expect upstream; undici 8 (client-h1.js onHeadersComplete) fails a 100
  // as a bad response. Documented in the README; this test notices when undici changes.
  const up = await rawUpstream(t, (s) => s.once('data', () => s.write(`HTTP/1.1 100 Continue\r\n\r\n${FINAL}`)));
  const s = await gateway(t, up);
  const r = await getWithInfo(s.httpPort);
  t.same(r.info, [], 'no 1xx reached the client');
  t.equal(r.status, 502);
  t.match(r.body, /WG_UPSTREAM_BAD_RESPONSE/);
});

// ---- item 5: the upstream answers an upload before reading it ----

/** An upstream that answers POST /upload with 401 at once (body unread) and anything else normally. */
async function earlyAnswerUpstream(t: Test) {
  return startUpstream(t, 'up', (req, res) => {
    if (req.url === '/upload') {
      res.writeHead(401, { 'content-type': 'text/plain', 'content-length': '11', 'www-authenticate': 'Basic realm="x"' });
      res.end('login first');
      return;
    }
    req.resume();
    req.on('end', () => res.end(`second ${req.url}`));
  });
}

t.test(
  'proxy: keeps the keep-alive connection usable when the upstream answers 401 before a slowly sent Content-Length body is read',
  async (t) => {
    const up = await earlyAnswerUpstream(t);
    const s = await gateway(t, up.url);
    const c = new RawConn(s.httpPort);
    t.teardown(() => c.close());
    const piece = 'x'.repeat(20_000);
    await c.write(
      `POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nContent-Type: text/plain\r\nContent-Length: ${piece.length * 10}\r\n\r\n${piece}`,
    );
    const first = await c.response();
    t.equal(first?.status, 401, 'the early answer is relayed');
    t.equal(first?.body, 'login first');
    // The rest of the body, slowly, after the answer.
    for (let i = 1; i < 10; i++) {
      await c.write(piece);
      await new Promise((r) => setTimeout(r, 10));
    }
    await c.write(`GET /next HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    const second = await c.response();
    t.same([second?.status, second?.body], [200, 'second /next'], 'the second request on the same connection is answered');
  },
);

t.test('proxy: keeps the keep-alive connection usable when the upstream answers 401 before a chunked body is read', async (t) => {
  const up = await earlyAnswerUpstream(t);
  const s = await gateway(t, up.url);
  const c = new RawConn(s.httpPort);
  t.teardown(() => c.close());
  const chunk = (d: string) => `${d.length.toString(16)}\r\n${d}\r\n`;
  await c.write(`POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk('a'.repeat(20_000))}`);
  const first = await c.response();
  t.equal(first?.status, 401);
  for (let i = 0; i < 9; i++) {
    await c.write(chunk('b'.repeat(20_000)));
    await new Promise((r) => setTimeout(r, 10));
  }
  await c.write(`0\r\n\r\nGET /after-chunked HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  const second = await c.response();
  t.same([second?.status, second?.body], [200, 'second /after-chunked']);
});

t.test('proxy: closes the connection when the rest of an early-answered chunked body passes max_body_bytes', async (t) => {
  const up = await earlyAnswerUpstream(t);
  const s = await gateway(t, up.url, {}, { max_body_bytes: 50_000 });
  const c = new RawConn(s.httpPort);
  t.teardown(() => c.close());
  const chunk = (d: string) => `${d.length.toString(16)}\r\n${d}\r\n`;
  await c.write(`POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nTransfer-Encoding: chunked\r\n\r\n${chunk('a'.repeat(5000))}`);
  t.equal((await c.response())?.status, 401);
  // 20 × 5000 more: past the limit. Writes fail once the gateway has closed; that is the point.
  for (let i = 0; i < 20 && !c.closed; i++) await Promise.race([c.write(chunk('b'.repeat(5000))), once(c.socket, 'close')]);
  t.ok(await waitFor(() => c.closed), 'the gateway closed the connection');
  const again = new RawConn(s.httpPort);
  t.teardown(() => again.close());
  await again.write(`GET /fresh HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
  t.same([(await again.response())?.status], [200], 'a new connection works');
});

t.test('proxy: closes the connection when the rest of an early-answered body does not arrive within request_timeout_ms', async (t) => {
  const up = await earlyAnswerUpstream(t);
  const s = await gateway(t, up.url, { header_timeout_ms: 300, request_timeout_ms: 600 });
  const c = new RawConn(s.httpPort);
  t.teardown(() => c.close());
  await c.write(`POST /upload HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: 100000\r\n\r\n${'x'.repeat(1000)}`);
  t.equal((await c.response())?.status, 401, 'the early answer is relayed');
  // The client stalls: Node's request timeout (the whole request within request_timeout_ms) ends it.
  t.ok(await waitFor(() => c.closed, 5000), 'the gateway closed the connection');
  t.equal((await c.response())?.status, 408, 'saying the request was not received in time');
});

// ---- item 4: clients that stop reading ----

/** An upstream that streams `pieces` × 64 KiB with backpressure, and records its connections. */
async function bigUpstream(t: Test, pieces: number) {
  const piece = Buffer.alloc(64 * 1024, 'z');
  const open = new Set<net.Socket>();
  let accepted = 0;
  const up = await startUpstream(t, 'big', (req, res) => {
    if (req.url !== '/big') return void res.end('small');
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(pieces * piece.length) });
    let left = pieces;
    const more = () => {
      while (left > 0) {
        left--;
        if (!res.write(piece)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  up.server.on('connection', (s: net.Socket) => {
    accepted++;
    open.add(s);
    s.on('close', () => open.delete(s));
  });
  return { up, open, accepted: () => accepted, size: pieces * piece.length };
}

/** `n` raw clients that request /big and never read a byte. */
async function stalledClients(t: Test, port: number, n: number): Promise<net.Socket[]> {
  const clients = await Promise.all(
    Array.from({ length: n }, async () => {
      const c = net.connect(port, '127.0.0.1');
      c.on('error', () => {});
      await once(c, 'connect');
      c.pause();
      c.write(`GET /big HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
      return c;
    }),
  );
  t.teardown(() => {
    for (const c of clients) c.destroy();
  });
  return clients;
}

/** Resume a client and count what it receives until the connection ends. */
async function drainClient(c: net.Socket): Promise<number> {
  let n = 0;
  c.on('data', (d: Buffer) => (n += d.length));
  const closed = once(c, 'close');
  c.resume();
  await closed;
  return n;
}

t.test(
  'proxy: destroys responses and releases their upstream connections when 20 clients stop reading past listen.send_timeout_ms',
  async (t) => {
    const N = 20;
    const big = await bigUpstream(t, 1024); // 64 MiB each: far more than the socket buffers hold.
    const s = await gateway(t, big.up.url, { send_timeout_ms: 300 });
    const clients = await stalledClients(t, s.httpPort, N);
    t.ok(await waitFor(() => big.accepted() >= N, 5000), `the upstream got ${N} connections`);
    // Without the send timeout these stay open for as long as the clients do.
    t.ok(await waitFor(() => big.open.size === 0, 8000), `the upstream saw its connections closed (open: ${big.open.size})`);
    t.match(await metricValue(s, 'wegate_send_timeouts_total'), new RegExp(`route="app"\\} ${N}\\b`), 'each one counted');
    const got = await Promise.all(clients.map(drainClient));
    t.ok(
      got.every((n) => n < big.size),
      'every stalled client got a cut-off response',
    );
    const ok = new RawConn(s.httpPort);
    t.teardown(() => ok.close());
    await ok.write(`GET /small HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`);
    t.same([(await ok.response())?.body], ['small'], 'the gateway still serves');
    t.ok(
      s.logs.lines.some((l) => l.msg === 'client did not read the response within send_ms: connection closed' && l.route === 'app'),
      'logged',
    );
  },
);

t.test('proxy: routes[].timeouts.send_ms overrides listen.send_timeout_ms when a client stops reading', async (t) => {
  const big = await bigUpstream(t, 1024);
  const s = await gateway(t, big.up.url, { send_timeout_ms: 3_600_000 }, { timeouts: { send_ms: 300 } });
  await stalledClients(t, s.httpPort, 1);
  t.ok(await waitFor(() => big.accepted() === 1, 5000));
  t.ok(await waitFor(() => big.open.size === 0, 8000), 'the upstream connection was closed after the route send_ms');
});

t.test('proxy: relays the whole response when a client pauses for less than send_ms and then reads', async (t) => {
  const big = await bigUpstream(t, 256); // 16 MiB
  const s = await gateway(t, big.up.url, {}, { timeouts: { send_ms: 5000 } });
  const [c] = await stalledClients(t, s.httpPort, 1);
  // Long enough for the buffers to fill and the gateway to pause the upstream, well under send_ms.
  await new Promise((r) => setTimeout(r, 500));
  let got = 0;
  let head = -1;
  (c as net.Socket).on('data', (d: Buffer) => {
    if (head === -1) {
      const i = d.indexOf('\r\n\r\n');
      head = i;
      got += d.length - i - 4;
    } else {
      got += d.length;
    }
    if (got >= big.size) (c as net.Socket).destroy();
  });
  (c as net.Socket).resume();
  await once(c as net.Socket, 'close');
  t.equal(got, big.size, 'every byte arrived');
  t.match(await metricValue(s, 'wegate_send_timeouts_total'), /^(?![\s\S]*route="app")/, 'no send timeout counted');
});

t.test('proxy websocket: closes a WebSocket whose client stops reading while the upstream keeps sending, after idle_ms', async (t) => {
  // http-proxy-3 pipes both ways with stream backpressure and has no send timeout: once the client's
  // socket is full the upstream is paused, no byte moves, and the route's idle_ms closes both sides.
  const server = http.createServer();
  const wss = new WebSocketServer({ server });
  let upstreamClosed = false;
  let sent = 0;
  wss.on('connection', (ws) => {
    ws.on('error', () => {});
    ws.on('close', () => (upstreamClosed = true));
    const piece = Buffer.alloc(64 * 1024, 'w');
    // Keep the upstream's own buffer small: send only while it drains.
    const pump = () => {
      if (ws.readyState !== ws.OPEN) return;
      if (ws.bufferedAmount < 1024 * 1024) {
        ws.send(piece);
        sent += piece.length;
      }
      setTimeout(pump, 2);
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const s = await gateway(
    t,
    `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    {},
    { timeouts: { connect_ms: 1000, response_ms: 1000, idle_ms: 400 } },
  );
  const c = new RawConn(s.httpPort);
  t.teardown(() => c.close());
  await c.write(
    `GET /ws HTTP/1.1\r\nHost: ${HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
  );
  t.equal((await c.response())?.status, 101, 'upgraded');
  c.socket.pause();
  t.ok(await waitFor(() => upstreamClosed, 8000), 'the upstream WebSocket was closed by the gateway');
  t.ok(sent > 0, 'the upstream was sending until then');
});
