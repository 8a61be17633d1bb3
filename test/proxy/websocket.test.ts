import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import t, { type Test } from 'tap';
import { WebSocket, WebSocketServer } from 'ws';
import { ADMIN, type LogCapture, LOOPBACK, makeConfig, startGateway, waitFor } from '../helpers/gateway.ts';
import { CA_FILE, type Front, headerNames, rawExchange, route, startFront, tlsFile } from './helpers.ts';

interface WsUpstream {
  readonly port: number;
  /** Raw headers and URL of every handshake the upstream accepted. */
  readonly seen: { url: string; rawHeaders: string[]; servername?: string | false | null | undefined }[];
}

/** An echo WebSocket upstream (plain or TLS with upstream.pem from the test CA). */
async function startWsUpstream(t: { teardown(fn: () => unknown): void }, secure = false): Promise<WsUpstream> {
  const server = secure ? https.createServer({ cert: tlsFile('upstream.pem'), key: tlsFile('upstream.key') }) : http.createServer();
  const wss = new WebSocketServer({ server });
  const seen: WsUpstream['seen'] = [];
  wss.on('connection', (ws, req) => {
    seen.push({ url: req.url ?? '', rawHeaders: req.rawHeaders, servername: (req.socket as import('node:tls').TLSSocket).servername });
    ws.on('message', (data, isBinary) => {
      if (data.toString() === 'bye') ws.close(4001, 'done');
      else ws.send(data, { binary: isBinary });
    });
    ws.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { port: (server.address() as AddressInfo).port, seen };
}

function connect(front: Front, path: string, headers: Record<string, string>): WebSocket {
  const ws = new WebSocket(`ws://127.0.0.1:${front.port}${path}`, { headers });
  ws.on('error', () => {});
  return ws;
}

async function echo(ws: WebSocket, text: string): Promise<string> {
  const reply = once(ws, 'message');
  ws.send(text);
  const [data] = (await reply) as [Buffer];
  return data.toString();
}

async function openGauge(front: Front): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await front.metrics.websocketsOpen.get()).values) out[String(v.labels.route)] = v.value;
  return out;
}

/** Status line the client got when the upgrade was refused. */
function refusal(ws: WebSocket): Promise<number> {
  return new Promise((resolve, reject) => {
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
    });
    ws.on('open', () => reject(new Error('upgrade unexpectedly accepted')));
    ws.on('close', () => resolve(-1));
  });
}

t.test('proxy websocket: echoes through the proxy on the forwarded path when the route allows upgrades', async (t) => {
  const up = await startWsUpstream(t);
  const front = await startFront(t, [
    route({ name: 'chat', host: 'school.test', path: '/ws/', strip_prefix: true, upstream: `http://127.0.0.1:${up.port}/base` }),
  ]);
  const ws = connect(front, '/ws/room/../lobby?u=1', { host: 'school.test' });
  await once(ws, 'open');
  t.equal(await echo(ws, 'hello 你好'), 'hello 你好');
  t.equal(up.seen[0]?.url, '/base/lobby?u=1', 'normalised path, prefix stripped, base path added');
  t.equal(front.proxy.openWebSockets, 1);
  t.same(await openGauge(front), { chat: 1 });
  ws.close();
  await once(ws, 'close');
  // The gateway side closes right after; wait for the gauge without timing assumptions.
  for (let i = 0; i < 100 && front.proxy.openWebSockets !== 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(front.proxy.openWebSockets, 0);
  t.same(await openGauge(front), { chat: 0 });
});

t.test('proxy websocket: connects to a wss upstream with the route CA and SNI when the upstream is HTTPS', async (t) => {
  const up = await startWsUpstream(t, true);
  const front = await startFront(t, [
    route({ name: 'secure', upstream: `https://localhost:${up.port}`, tls: { ca_file: CA_FILE, insecure_skip_verify: false } }),
  ]);
  const ws = connect(front, '/live', { host: 'api1.school.test' });
  await once(ws, 'open');
  t.equal(await echo(ws, 'over tls'), 'over tls');
  t.equal(up.seen[0]?.servername, 'localhost');
  const names = headerNames(up.seen[0]?.rawHeaders ?? []);
  t.equal(up.seen[0]?.rawHeaders[names.indexOf('host') * 2 + 1], `localhost:${up.port}`);
  ws.close();
});

t.test('proxy websocket: refuses with 502 WG_UPSTREAM_TLS when the wss upstream is not trusted', async (t) => {
  const up = await startWsUpstream(t, true);
  const front = await startFront(t, [route({ name: 'untrusted', upstream: `https://localhost:${up.port}` })]);
  t.equal(await refusal(connect(front, '/live', { host: 'a.test' })), 502);
  t.equal(up.seen.length, 0);
  const v = (await front.metrics.upstreamErrors.get()).values.find((x) => x.labels.route === 'untrusted');
  t.equal(v?.labels.kind, 'tls');
});

t.test('proxy websocket: never forwards spoofed forwarding or identity headers when a client upgrades', async (t) => {
  const up = await startWsUpstream(t);
  const front = await startFront(t, [route({ upstream: `http://127.0.0.1:${up.port}` })]);
  // Raw handshake: a WebSocket client library would not let us nominate headers in Connection.
  const handshake = [
    'GET / HTTP/1.1',
    'Host: api1.school.test',
    'Connection: Upgrade, X-Nominated',
    'Upgrade: websocket',
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'X-Nominated: hidden',
    'X-Forwarded-For: 1.2.3.4',
    'X-Forwarded-Host: evil.test',
    'Forwarded: for=1.2.3.4',
    'X-Real-IP: 1.2.3.4',
    'X-Wegate-User: admin',
    'x-WEGATE-corp: ww1',
    'X_Wegate_User: admin',
    'X-WeGate_User: admin',
    'X_Forwarded_For: 1.2.3.4',
    'X-Real_IP: 1.2.3.4',
    'Proxy-Authorization: Basic eA==',
    '',
    '',
  ].join('\r\n');
  const answer = await rawExchange(front.port, handshake, /\r\n\r\n/);
  t.match(answer, /^HTTP\/1\.1 101 /);
  const raw = up.seen[0]?.rawHeaders ?? [];
  const names = headerNames(raw);
  for (const bad of ['x-nominated', 'forwarded', 'x-wegate-user', 'x-wegate-corp', 'x_wegate_user', 'proxy-authorization']) {
    t.notOk(names.includes(bad), `${bad} not forwarded`);
  }
  t.same(
    names.filter((n) => n.includes('_')),
    [],
    'no header name with "_" (X-WeGate_User, X_Forwarded_For, X-Real_IP) reaches the upstream',
  );
  const get = (h: string) => raw[names.indexOf(h) * 2 + 1];
  t.equal(names.filter((n) => n === 'x-forwarded-for').length, 1);
  t.equal(get('x-forwarded-for'), '127.0.0.1');
  t.equal(get('x-real-ip'), '127.0.0.1');
  t.equal(get('x-forwarded-host'), 'api1.school.test');
  t.equal(get('x-forwarded-proto'), 'http');
  t.match(get('connection') ?? '', /upgrade/i);
});

t.test('proxy websocket: refuses with 404 on the socket when the route disables WebSocket', async (t) => {
  const up = await startWsUpstream(t);
  const front = await startFront(t, [route({ upstream: `http://127.0.0.1:${up.port}`, websocket: false })]);
  t.equal(await refusal(connect(front, '/', { host: 'a.test' })), 404);
  t.equal(up.seen.length, 0);
});

t.test('proxy websocket: refuses with 502 on the socket when the upstream is down', async (t) => {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  const front = await startFront(t, [route({ name: 'down', upstream: `http://127.0.0.1:${port}` })]);
  t.equal(await refusal(connect(front, '/', { host: 'a.test' })), 502);
  t.equal(front.proxy.openWebSockets, 0);
});

t.test('proxy websocket: relays a non-upgrade answer without gateway cookies when the upstream refuses the handshake', async (t) => {
  const server = http.createServer((_req, res) => {
    res.writeHead(403, { 'set-cookie': ['wegate_session=forged', 'ok=1'], 'content-length': '2' });
    res.end('no');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  const front = await startFront(t, [route({ upstream: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })]);
  const ws = connect(front, '/', { host: 'a.test' });
  const res = await new Promise<http.IncomingMessage>((resolve) => ws.on('unexpected-response', (_req, r) => resolve(r)));
  res.resume();
  t.equal(res.statusCode, 403);
  t.same(res.headers['set-cookie'], ['ok=1']);
});

t.test('proxy websocket: closes open WebSockets when closeWebSockets() is called', async (t) => {
  const up = await startWsUpstream(t);
  const front = await startFront(t, [route({ name: 'drain', upstream: `http://127.0.0.1:${up.port}` })]);
  const a = connect(front, '/a', { host: 'a.test' });
  const b = connect(front, '/b', { host: 'a.test' });
  await Promise.all([once(a, 'open'), once(b, 'open')]);
  t.equal(front.proxy.openWebSockets, 2);
  const closed = Promise.all([once(a, 'close'), once(b, 'close')]);
  front.proxy.closeWebSockets();
  await closed;
  t.equal(front.proxy.openWebSockets, 0);
  t.same(await openGauge(front), { drain: 0 });
});

t.test('proxy websocket: closes a WebSocket when it stays idle past idle_ms', async (t) => {
  const up = await startWsUpstream(t);
  const front = await startFront(t, [
    route({ name: 'idle', upstream: `http://127.0.0.1:${up.port}`, timeouts: { connect_ms: 1000, response_ms: 1000, idle_ms: 300 } }),
  ]);
  const ws = connect(front, '/', { host: 'a.test' });
  await once(ws, 'open');
  t.equal(await echo(ws, 'ping'), 'ping');
  await once(ws, 'close');
  t.pass('closed by the gateway after inactivity');
  for (let i = 0; i < 100 && front.proxy.openWebSockets !== 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(front.proxy.openWebSockets, 0);
});

t.test('proxy websocket: drops the upstream handshake when the client leaves before the upstream answers', async (t) => {
  const server = http.createServer();
  const upstreamSocket = new Promise<net.Socket>((resolve) =>
    server.on('upgrade', (_req, s: net.Socket) => {
      // An upgraded socket is paused and half-open: read it, and close it when the peer does.
      s.resume();
      s.on('end', () => s.destroy());
      resolve(s);
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  const front = await startFront(t, [route({ name: 'slow-ws', upstream: `http://127.0.0.1:${(server.address() as AddressInfo).port}` })]);
  const client = net.connect(front.port, '127.0.0.1');
  client.on('error', () => {});
  client.write(
    'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
  );
  const s = await upstreamSocket;
  const closed = once(s, 'close');
  client.destroy();
  await closed;
  t.pass('upstream handshake connection closed');
  t.equal(front.proxy.openWebSockets, 0);
  t.same(await front.metrics.upstreamErrors.get().then((m) => m.values), [], 'not counted as an upstream error');
});

t.test('proxy websocket: delivers the upstream close frame when the upstream closes first', async (t) => {
  const up = await startWsUpstream(t);
  const front = await startFront(t, [route({ name: 'bye', upstream: `http://127.0.0.1:${up.port}` })]);
  const ws = connect(front, '/', { host: 'a.test' });
  await once(ws, 'open');
  const closed = once(ws, 'close');
  ws.send('bye');
  const [code, reason] = (await closed) as [number, Buffer];
  t.equal(code, 4001);
  t.equal(reason.toString(), 'done');
  for (let i = 0; i < 100 && front.proxy.openWebSockets !== 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(front.proxy.openWebSockets, 0);
});

// Issue 10 item 9: handshake refusals get the HTTP response policy, through the real listener.

interface RealSite {
  readonly port: number;
  readonly upstreamPort: number;
  readonly logs: LogCapture;
}

/** A real gateway: school.test/chat/ (strip_prefix) → `handler`'s upstream, also api1.school.test → it. */
async function realSite(t: Test, handler: http.RequestListener, onUpgrade?: (wss: WebSocketServer) => void): Promise<RealSite> {
  const server = http.createServer(handler);
  if (onUpgrade) onUpgrade(new WebSocketServer({ server }));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(resolve));
  });
  const upstreamPort = (server.address() as AddressInfo).port;
  const upstream = `http://127.0.0.1:${upstreamPort}`;
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [
      { name: 'chat', host: 'school.test', path: '/chat/', strip_prefix: true, upstream },
      { name: 'api1', host: 'api1.school.test', upstream },
    ],
  });
  const s = await startGateway(t, config);
  return { port: s.httpPort, upstreamPort, logs: s.logs };
}

const handshake = (path: string, host = 'school.test', version = '1.1') =>
  `GET ${path} HTTP/${version}\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`;

/** Status, lower-case headers (repeats as arrays) and body of a raw HTTP answer. */
function parseAnswer(text: string): { status: number; headers: Record<string, string | string[]>; body: string } {
  const end = text.indexOf('\r\n\r\n');
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string | string[]> = {};
  for (const l of lines) {
    const k = l.slice(0, l.indexOf(':')).toLowerCase();
    const v = l.slice(l.indexOf(':') + 1).trim();
    const prev = headers[k];
    headers[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return { status: Number(statusLine?.split(' ')[1]), headers, body: text.slice(end + 4) };
}

t.test(
  'proxy websocket: rewrites Location and Set-Cookie and closes without Connection: upgrade when the upstream answers the handshake with a redirect',
  async (t) => {
    const s = await realSite(t, (req, res) => {
      const own = `http://127.0.0.1:${s.upstreamPort}`;
      res.writeHead(302, {
        location: req.url === '/abs' ? `${own}/login?next=ws` : '/login',
        'content-location': `${own}/doc`,
        refresh: '0; url=/r',
        'set-cookie': ['sid=1; Domain=127.0.0.1; Path=/; HttpOnly', 'wegate_session=forged; Path=/', '__Host-h=1; Path=/; Secure'],
        'keep-alive': 'timeout=5',
        connection: 'keep-alive, x-nominated',
        'x-nominated': 'hidden',
        'x-request-id': 'upstream-id',
        'content-length': '0',
      });
      res.end();
    });
    // The connection is closed after the refusal: read to the end.
    const relative = parseAnswer(await rawExchange(s.port, handshake('/chat/rel')));
    t.equal(relative.status, 302);
    t.equal(relative.headers.location, '/chat/login', 'relative Location mapped through strip_prefix');
    t.equal(relative.headers['content-location'], 'http://school.test/chat/doc', 'the upstream origin never leaks');
    t.equal(relative.headers.refresh, '0; url=/chat/r');
    t.same(relative.headers['set-cookie'], ['sid=1; Path=/chat/; HttpOnly', '__Host-h=1; Path=/; Secure'], 'cookies as for HTTP');
    t.equal(relative.headers.connection, 'close', 'Connection: close, not upgrade or keep-alive');
    for (const h of ['upgrade', 'keep-alive', 'x-nominated']) t.notOk(h in relative.headers, `no ${h}`);
    t.match(relative.headers['x-request-id'], /^[0-9a-f]{10}-/, "the gateway's request id");

    const abs = parseAnswer(await rawExchange(s.port, handshake('/abs', 'api1.school.test')));
    t.equal(abs.headers.location, 'http://api1.school.test/login?next=ws', 'absolute Location to the public origin');
    t.notMatch(JSON.stringify(abs.headers), new RegExp(`127\\.0\\.0\\.1|:${s.upstreamPort}|upstream-id`));

    const line = await waitFor(() => s.logs.lines.find((l) => l.log === 'access' && l.req_id === relative.headers['x-request-id']));
    t.equal(line?.status, 302, 'logged with the status the client got, not 101');
  },
);

t.test(
  'proxy websocket: relays a 401 body with Connection: close and the request id when the upstream refuses the handshake',
  async (t) => {
    const s = await realSite(t, (_req, res) => {
      // No Content-Length: http-proxy-3 re-frames the body as chunked for HTTP/1.1.
      res.writeHead(401, { 'www-authenticate': 'Basic realm="x"', 'content-type': 'text/plain', 'x-request-id': 'upstream-id' });
      res.end('login first');
    });
    const text = await rawExchange(s.port, handshake('/chat/ws'));
    const a = parseAnswer(text);
    t.equal(a.status, 401);
    t.equal(a.headers['www-authenticate'], 'Basic realm="x"');
    t.equal(a.headers.connection, 'close');
    t.match(a.headers['x-request-id'], /^[0-9a-f]{10}-/);
    t.match(a.body, /login first/);
    t.notOk('upgrade' in a.headers);

    const old = parseAnswer(await rawExchange(s.port, handshake('/chat/ws', 'school.test', '1.0')));
    t.equal(old.status, 401, 'an HTTP/1.0 handshake too');
    t.equal(old.headers.connection, 'close', 'HTTP/1.0: Connection: close, not upgrade');
  },
);

t.test(
  'proxy websocket: sets the gateway request id and rewrites Set-Cookie on the 101 when the upstream accepts the handshake',
  async (t) => {
    const s = await realSite(
      t,
      (_req, res) => res.end(),
      (wss) => {
        wss.on('headers', (headers) => headers.push('X-Request-Id: upstream-id', 'Set-Cookie: ws=1; Domain=127.0.0.1; Path=/'));
        wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${String(m)}`)));
      },
    );
    const ws = new WebSocket(`ws://127.0.0.1:${s.port}/chat/live`, { headers: { host: 'school.test' } });
    ws.on('error', () => {});
    // 'open' follows 'upgrade' in the same turn: wait for both together.
    const [[res]] = (await Promise.all([once(ws, 'upgrade'), once(ws, 'open')])) as [[http.IncomingMessage], unknown];
    t.match(res.headers['x-request-id'], /^[0-9a-f]{10}-/, "the gateway's request id on the 101");
    t.same(res.headers['set-cookie'], ['ws=1; Path=/chat/']);
    t.equal(await echo(ws, 'hi'), 'echo:hi');
    ws.close();
    await once(ws, 'close');
  },
);

t.test('proxy websocket: closes the client connection when the upstream resets in the middle of a refusal body', async (t) => {
  const s = await realSite(t, (req, res) => {
    res.writeHead(403, { 'content-length': '100' });
    res.write('partial');
    setTimeout(() => req.socket.destroy(), 20);
  });
  const text = await rawExchange(s.port, handshake('/chat/ws'));
  t.match(text, /^HTTP\/1\.1 403 [\s\S]*\r\n\r\npartial$/, 'the part that came, then the close (no hang, no second answer)');
});

t.test('proxy websocket: puts the request id on the answer when the gateway itself refuses the handshake', async (t) => {
  const down = net.createServer();
  await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
  const downPort = (down.address() as AddressInfo).port;
  await new Promise((resolve) => down.close(resolve));
  const up = http.createServer((_req, res) => res.end());
  await new Promise<void>((resolve) => up.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => up.close(resolve)));
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [
      { name: 'no-ws', host: 'nows.test', websocket: false, upstream: `http://127.0.0.1:${(up.address() as AddressInfo).port}` },
      { name: 'down', host: 'down.test', upstream: `http://127.0.0.1:${downPort}` },
    ],
  });
  const s = await startGateway(t, config);
  const cases: [host: string, status: number][] = [
    ['nows.test', 404],
    ['down.test', 502],
    ['nobody.test', 404],
  ];
  for (const [host, status] of cases) {
    const a = parseAnswer(await rawExchange(s.httpPort, handshake('/ws', host)));
    t.equal(a.status, status, host);
    t.match(a.headers['x-request-id'], /^[0-9a-f]{10}-/, `${host}: request id`);
    t.equal(a.headers.connection, 'close', `${host}: Connection: close`);
  }
});

// Review finding F7: an upstream 101 that switches to another protocol than WebSocket.

/** A raw upstream answering every handshake with `answer`, then writing `after` on the switched connection. */
async function raw101Upstream(t: Test, answer: string, after: string): Promise<{ port: number; closed: () => number }> {
  let closed = 0;
  const server = net.createServer((c) => {
    c.on('error', () => {});
    c.on('close', () => closed++);
    c.once('data', () => c.write(`${answer}${after}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  return { port: (server.address() as AddressInfo).port, closed: () => closed };
}

t.test('proxy websocket: answers 502 and closes both sides when the upstream answers 101 with another Upgrade or none', async (t) => {
  const cases: [name: string, answer: string][] = [
    ['Upgrade: h2c', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n'],
    ['no Upgrade header', 'HTTP/1.1 101 Switching Protocols\r\n\r\n'],
    ['no Upgrade header, with Transfer-Encoding', 'HTTP/1.1 101 Switching Protocols\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['two Upgrade tokens', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket, h2c\r\nConnection: Upgrade\r\n\r\n'],
  ];
  for (const [name, answer] of cases) {
    // Bytes of the other protocol right after the 101 (an h2c server starts with its SETTINGS frame).
    const up = await raw101Upstream(t, answer, 'UPSTREAM-OTHER-PROTOCOL');
    const s = await startGateway(
      t,
      makeConfig({
        listen: LOOPBACK,
        admin: ADMIN,
        routes: [{ name: 'ws', host: 'school.test', upstream: `http://127.0.0.1:${up.port}` }],
      }),
    );
    for (const version of ['1.1', '1.0']) {
      // rawExchange reads until the gateway closes the connection.
      const text = await rawExchange(s.httpPort, handshake('/ws', 'school.test', version));
      const a = parseAnswer(text);
      t.equal(a.status, 502, `${name}, HTTP/${version}: 502`);
      t.match(a.body, /WG_UPSTREAM_BAD_RESPONSE/, `${name}, HTTP/${version}: the error code`);
      t.equal(a.headers.connection, 'close', `${name}, HTTP/${version}: Connection: close`);
      t.notMatch(text, /101|UPSTREAM-OTHER-PROTOCOL|h2c/i, `${name}, HTTP/${version}: nothing of the 101 or after it reaches the client`);
      const line = await waitFor(() => s.logs.lines.find((l) => l.log === 'access' && l.req_id === a.headers['x-request-id']));
      t.equal(line?.status, 502, `${name}, HTTP/${version}: logged as 502`);
    }
    await waitFor(() => (up.closed() === 2 ? true : undefined));
    t.equal(up.closed(), 2, `${name}: both upstream connections closed`);
    const warn = s.logs.lines.filter((l) => l.msg === 'websocket upstream answered 101 without switching to WebSocket');
    t.equal(warn.length, 2, `${name}: one warning per handshake`);
  }
});

t.test('proxy websocket: tunnels when the upstream 101 names websocket in another letter case', async (t) => {
  const up = await raw101Upstream(
    t,
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n',
    'FRAME-BYTES',
  );
  const s = await startGateway(
    t,
    makeConfig({ listen: LOOPBACK, admin: ADMIN, routes: [{ name: 'ws', host: 'school.test', upstream: `http://127.0.0.1:${up.port}` }] }),
  );
  const text = await rawExchange(s.httpPort, handshake('/ws'), /FRAME-BYTES/);
  t.match(text, /^HTTP\/1\.1 101 Switching Protocols\r\n/);
  t.match(text, /\r\nupgrade: WebSocket\r\n/i);
  t.match(text, /\r\n\r\nFRAME-BYTES$/, 'the upstream bytes after the 101 are tunnelled');
});
