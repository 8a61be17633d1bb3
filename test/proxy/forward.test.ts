import { once } from 'node:events';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import { Registry } from 'prom-client';
import t from 'tap';
import { createLogger } from '../../src/core/logger.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { createProxy } from '../../src/proxy/index.ts';
import { CA_FILE, type Front, request, route, startFront, startTlsUpstream, startUpstream } from './helpers.ts';

async function upstreamErrors(front: Front): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await front.metrics.upstreamErrors.get()).values) out[`${v.labels.route}/${v.labels.kind}`] = v.value;
  return out;
}

/** A port nothing listens on (bound, then closed). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** A TCP upstream that answers each connection with `reply` (raw bytes). */
async function rawUpstream(t: { teardown(fn: () => unknown): void }, onConn: (s: net.Socket) => void): Promise<number> {
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
  return (srv.address() as net.AddressInfo).port;
}

type ErrorBody = { error: string; status: number; request_id: string };

t.test(
  "proxy: the Pool loaded on its own (src/proxy/index.ts) is undici's public Pool, so an undici upgrade that moves it fails here",
  async (t) => {
    const own: unknown = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js');
    t.equal(own, (await import('undici')).Pool);
  },
);

t.test('proxy: forwards base path + stripped path + query when the route strips its prefix', async (t) => {
  const up = await startUpstream(t);
  const front = await startFront(t, [
    route({ name: 'api1', host: 'school.test', path: '/api1/', strip_prefix: true, upstream: `${up.origin}/base` }),
    route({ name: 'admin', host: 'school.test', path: '/admin/', upstream: up.origin }),
  ]);
  const r = await request(front.origin, '/api1/x/y?q=1&r=%2f', { headers: { host: 'school.test' } });
  t.equal(r.status, 200);
  t.equal(up.seen[0]?.url, '/base/x/y?q=1&r=%2f');
  t.equal(up.seen[0]?.headers.host, `127.0.0.1:${up.port}`, 'Host is the upstream authority');
  await request(front.origin, '/api1/', { headers: { host: 'school.test' } });
  t.equal(up.seen[1]?.url, '/base/', 'prefix root');
  // Routed and forwarded on the same normalised path: the dot-segment cannot reach /api1 through /admin.
  await request(front.origin, '/admin/../api1/z', { headers: { host: 'school.test' } });
  t.equal(up.seen[2]?.url, '/base/z', 'dot-segments resolved before routing and forwarding');
  await request(front.origin, '/admin/%2e%2e/admin/./k', { headers: { host: 'school.test' } });
  t.equal(up.seen[3]?.url, '/admin/k', 'encoded dot-segments');
});

/**
 * GET through node:http: the body as bytes, when each chunk arrived, and whether the response was
 * complete. `pauseMs`: read nothing for that long first (a slow client, so the proxy must apply
 * backpressure).
 */
function getBytes(
  origin: string,
  path: string,
  pauseMs = 0,
): Promise<{ status: number; body: Buffer; arrivals: number[]; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${origin}${path}`, { agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const arrivals: number[] = [];
      const done = () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), arrivals, complete: res.complete });
      if (pauseMs > 0) {
        res.pause();
        setTimeout(() => res.resume(), pauseMs);
      }
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        arrivals.push(performance.now());
      });
      res.on('end', done);
      res.on('aborted', done);
      res.on('error', () => {});
    });
    req.on('error', reject);
  });
}

t.test('proxy: relays every byte value unchanged, small or large, with or without Content-Length', async (t) => {
  const bytes = Buffer.alloc(256 * 3, 0);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) % 256;
  const large = Buffer.concat(Array.from({ length: 400 }, () => bytes));
  const up = await startUpstream(t, (req, res) => {
    const body = req.url === '/large' ? large : bytes;
    if (req.url === '/chunked') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(body);
    } else {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) });
      res.end(body);
    }
  });
  const front = await startFront(t, [route({ upstream: up.origin })]);
  for (const [path, want] of [
    ['/small', bytes],
    ['/chunked', bytes],
    ['/large', large],
  ] as const) {
    const r = await getBytes(front.origin, path);
    t.equal(r.status, 200, path);
    t.ok(r.body.equals(want), `${path}: ${want.length} bytes identical`);
  }
});

t.test('proxy: a streamed response gets its first chunk before the upstream sends the next', async (t) => {
  let sentSecond = 0;
  const up = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first;');
    setTimeout(() => {
      sentSecond = performance.now();
      res.end('second;');
    }, 300);
  });
  const front = await startFront(t, [route({ upstream: up.origin })]);
  const r = await getBytes(front.origin, '/stream');
  t.equal(r.body.toString(), 'first;second;');
  t.ok(r.arrivals.length >= 2 && (r.arrivals[0] as number) < sentSecond, 'the first chunk arrived before the second was sent');
});

t.test('proxy: sends the client Host when preserve_host is set', async (t) => {
  const up = await startUpstream(t);
  const front = await startFront(t, [route({ upstream: up.origin, preserve_host: true })]);
  await request(front.origin, '/', { headers: { host: 'API1.School.test:8443' } });
  t.equal(up.seen[0]?.headers.host, 'api1.school.test:8443');
});

t.test('proxy: sends SNI and Host of an HTTPS upstream when it is verified with the route CA file', async (t) => {
  const up = await startTlsUpstream(t);
  const tls = { ca_file: CA_FILE, insecure_skip_verify: false };
  const front = await startFront(t, [
    route({ host: 'by-name.test', upstream: `https://localhost:${up.port}/v1`, tls }),
    route({ host: 'by-ip.test', upstream: `https://127.0.0.1:${up.port}`, tls: { ...tls, server_name: 'hub.upstream.test' } }),
    route({
      host: 'by-ip-preserve.test',
      upstream: `https://127.0.0.1:${up.port}`,
      preserve_host: true,
      tls: { ...tls, server_name: 'open.upstream.test' },
    }),
  ]);
  const a = await request(front.origin, '/x', { headers: { host: 'by-name.test' } });
  t.equal(a.status, 200, a.body);
  t.same([up.seen[0]?.servername, up.seen[0]?.headers.host, up.seen[0]?.url], ['localhost', `localhost:${up.port}`, '/v1/x']);
  const b = await request(front.origin, '/y', { headers: { host: 'by-ip.test' } });
  t.equal(b.status, 200, b.body);
  t.same([up.seen[1]?.servername, up.seen[1]?.headers.host], ['hub.upstream.test', `127.0.0.1:${up.port}`], 'tls.server_name sets SNI');
  const c = await request(front.origin, '/z', { headers: { host: 'by-ip-preserve.test' } });
  t.equal(c.status, 200, c.body);
  t.same(
    [up.seen[2]?.servername, up.seen[2]?.headers.host],
    ['open.upstream.test', 'by-ip-preserve.test'],
    'preserved Host does not change SNI',
  );
});

t.test('proxy: answers 502 WG_UPSTREAM_TLS when the upstream certificate is not trusted', async (t) => {
  const selfSigned = await startTlsUpstream(t, undefined, 'selfsigned');
  const privateCa = await startTlsUpstream(t);
  const front = await startFront(t, [
    route({ name: 'self', host: 'self.test', upstream: `https://localhost:${selfSigned.port}` }),
    route({ name: 'self-ok', host: 'self-ok.test', upstream: `https://localhost:${selfSigned.port}`, tls: { insecure_skip_verify: true } }),
    route({ name: 'no-ca', host: 'no-ca.test', upstream: `https://localhost:${privateCa.port}` }),
    route({
      name: 'wrong-name',
      host: 'wrong-name.test',
      upstream: `https://127.0.0.1:${privateCa.port}`,
      tls: { ca_file: CA_FILE, server_name: 'api9.other.test', insecure_skip_verify: false },
    }),
  ]);
  for (const host of ['self.test', 'no-ca.test', 'wrong-name.test']) {
    const r = await request(front.origin, '/', { headers: { host } });
    t.equal(r.status, 502, `${host} refused`);
    t.equal((JSON.parse(r.body) as ErrorBody).error, 'WG_UPSTREAM_TLS', host);
  }
  const ok = await request(front.origin, '/', { headers: { host: 'self-ok.test' } });
  t.equal(ok.status, 200, 'accepted with insecure_skip_verify');
  t.equal(selfSigned.seen.length, 1, 'only the insecure route reached the self-signed upstream');
  t.same(await upstreamErrors(front), { 'self/tls': 1, 'no-ca/tls': 1, 'wrong-name/tls': 1 });
});

t.test('proxy: reuses upstream connections when requests follow each other', async (t) => {
  const up = await startUpstream(t);
  const tup = await startTlsUpstream(t);
  const front = await startFront(t, [
    route({ host: 'h.test', upstream: up.origin }),
    route({ host: 's.test', upstream: `https://localhost:${tup.port}`, tls: { ca_file: CA_FILE, insecure_skip_verify: false } }),
  ]);
  for (let i = 0; i < 6; i++) {
    t.equal((await request(front.origin, `/${i}`, { headers: { host: 'h.test' } })).status, 200);
    t.equal((await request(front.origin, `/${i}`, { headers: { host: 's.test' } })).status, 200);
  }
  t.equal(up.connections, 1, 'one HTTP upstream connection for 6 requests');
  t.equal(tup.connections, 1, 'one HTTPS upstream connection for 6 requests');
  t.equal(new Set(up.seen.map((s) => s.remotePort)).size, 1);
});

t.test('proxy: answers 413 before contacting the upstream when Content-Length exceeds max_body_bytes', async (t) => {
  const up = await startUpstream(t);
  const front = await startFront(t, [route({ upstream: up.origin, max_body_bytes: 10 })]);
  const r = await request(front.origin, '/upload', {
    method: 'POST',
    headers: { host: 'a.test', 'content-length': '11' },
    body: 'x'.repeat(11),
  });
  t.equal(r.status, 413);
  t.equal((JSON.parse(r.body) as ErrorBody).error, 'WG_BODY_TOO_LARGE');
  t.equal(up.connections, 0, 'upstream never contacted');
  const ok = await request(front.origin, '/upload', {
    method: 'POST',
    headers: { host: 'a.test', 'content-length': '10' },
    body: '0123456789',
  });
  t.equal(ok.status, 200);
  t.equal(up.seen[0]?.body, '0123456789', 'body at the limit forwarded intact');
  t.equal(up.seen[0]?.headers['content-length'], '10');
});

t.test('proxy: answers 413 when a chunked body grows past max_body_bytes', async (t) => {
  const up = await startUpstream(t);
  const front = await startFront(t, [route({ upstream: up.origin, max_body_bytes: 1000 })]);
  const sendChunked = (chunks: string[]) => postChunked(`${front.origin}/up`, chunks, 0);
  const big = await sendChunked(Array.from({ length: 20 }, () => 'y'.repeat(100)));
  t.equal(big.status, 413);
  t.equal((JSON.parse(big.body) as ErrorBody).error, 'WG_BODY_TOO_LARGE');
  t.notOk(
    up.seen.some((s) => s.body.length > 1000),
    'upstream never got the oversize body',
  );
  const small = await sendChunked(['a'.repeat(400), 'b'.repeat(400)]);
  t.equal(small.status, 200);
  const last = up.seen.at(-1);
  t.equal(last?.body, 'a'.repeat(400) + 'b'.repeat(400), 'chunked body within the limit forwarded intact');
});

t.test('proxy: answers 502 WG_UPSTREAM_UNREACHABLE with a request id and no cause when the upstream refuses', async (t) => {
  const port = await deadPort();
  const front = await startFront(t, [route({ name: 'dead', upstream: `http://127.0.0.1:${port}` })]);
  const r = await request(front.origin, '/x?access_token=SECRET1', { headers: { host: 'a.test', accept: 'application/json' } });
  t.equal(r.status, 502);
  const body = JSON.parse(r.body) as ErrorBody;
  t.equal(body.error, 'WG_UPSTREAM_UNREACHABLE');
  t.notMatch(r.body, /ECONNREFUSED|127\.0\.0\.1|stack/, 'no cause in the response');
  t.same(await upstreamErrors(front), { 'dead/refused': 1 });
  const log = front.logs.lines().find((l) => l.msg === 'upstream request failed');
  t.equal(log?.req_id, body.request_id, 'cause logged with the request id');
  t.equal(log?.kind, 'refused');
  t.match(JSON.stringify(log?.err), /"error_code":"ECONNREFUSED"/, 'the system error code is in the log');
  t.notMatch(JSON.stringify(log?.err), /"stack"/, 'an operational failure is logged without a stack trace');
});

t.test('proxy: answers 502 WG_UPSTREAM_UNREACHABLE and counts kind dns when the upstream host name does not resolve', async (t) => {
  // ".invalid" never resolves (RFC 6761); a long connect_ms keeps a slow resolver from turning it into a timeout.
  const front = await startFront(t, [
    route({
      name: 'nxdomain',
      upstream: 'http://wegate-test-upstream.invalid:8080',
      timeouts: { connect_ms: 15_000, response_ms: 15_000, idle_ms: 15_000 },
    }),
  ]);
  const r = await request(front.origin, '/x', { headers: { host: 'a.test', accept: 'application/json' } });
  t.equal(r.status, 502);
  const body = JSON.parse(r.body) as ErrorBody;
  t.equal(body.error, 'WG_UPSTREAM_UNREACHABLE');
  t.notMatch(r.body, /ENOTFOUND|EAI_AGAIN|wegate-test-upstream|stack/, 'no cause or upstream name in the response');
  t.same(await upstreamErrors(front), { 'nxdomain/dns': 1 });
});

t.test('proxy: answers 504 WG_UPSTREAM_TIMEOUT when the upstream sends no headers within response_ms', async (t) => {
  const up = await startUpstream(t, () => {
    /* never answers */
  });
  const front = await startFront(t, [
    route({ name: 'slow', upstream: up.origin, timeouts: { connect_ms: 1000, response_ms: 300, idle_ms: 1000 } }),
  ]);
  const r = await request(front.origin, '/', { headers: { host: 'a.test' } });
  t.equal(r.status, 504);
  t.equal((JSON.parse(r.body) as ErrorBody).error, 'WG_UPSTREAM_TIMEOUT');
  t.same(await upstreamErrors(front), { 'slow/timeout': 1 });
  const log = front.logs.lines().find((l) => l.msg === 'upstream request failed');
  t.match(JSON.stringify(log?.err), /"error_code":"UND_ERR_HEADERS_TIMEOUT"/, 'the timeout is logged with its code');
  t.notMatch(JSON.stringify(log?.err), /"stack"/, 'and without a stack trace');
});

t.test('proxy: answers 504 WG_UPSTREAM_TIMEOUT when the upstream reads the whole request body and then never answers', async (t) => {
  let received = 0;
  // The helper calls the handler once the whole body has arrived; this one then never answers.
  const up = await startUpstream(t, (_req, _res, body) => {
    received = body.length;
  });
  const front = await startFront(t, [
    route({ name: 'mute', upstream: up.origin, timeouts: { connect_ms: 1000, response_ms: 300, idle_ms: 1000 } }),
  ]);
  const r = await request(front.origin, '/upload', { method: 'POST', headers: { host: 'a.test' }, body: 'x'.repeat(5000) });
  t.equal(r.status, 504);
  t.equal((JSON.parse(r.body) as ErrorBody).error, 'WG_UPSTREAM_TIMEOUT');
  t.equal(received, 5000, 'the body reached the upstream first');
  t.same(await upstreamErrors(front), { 'mute/timeout': 1 });
});

t.test('proxy: starts response_ms only once the request body is sent when a client uploads slowly', async (t) => {
  // Called once the whole body has arrived.
  const up = await startUpstream(t, (_req, res, body) => res.end(`got ${body.length}`));
  const front = await startFront(t, [
    route({ name: 'upload', upstream: up.origin, timeouts: { connect_ms: 1000, response_ms: 300, idle_ms: 1000 } }),
  ]);
  const started = Date.now();
  // Six chunks 150 ms apart: the upload takes three times response_ms.
  const r = await postChunked(
    `${front.origin}/upload`,
    Array.from({ length: 6 }, () => 'y'.repeat(100)),
    150,
  );
  t.ok(Date.now() - started >= 750, 'the upload took longer than response_ms');
  t.equal(r.status, 200, r.body);
  t.equal(r.body, 'got 600');
  t.same(await upstreamErrors(front), {});
});

t.test('proxy: answers 504 WG_UPSTREAM_TIMEOUT when the TLS handshake does not finish within connect_ms', async (t) => {
  // Accepts TCP, never answers the ClientHello.
  const port = await rawUpstream(t, () => {});
  const front = await startFront(t, [
    route({ name: 'mute', upstream: `https://127.0.0.1:${port}`, timeouts: { connect_ms: 300, response_ms: 10_000, idle_ms: 10_000 } }),
  ]);
  const r = await request(front.origin, '/', { headers: { host: 'a.test' } });
  t.equal(r.status, 504);
  t.equal((JSON.parse(r.body) as ErrorBody).error, 'WG_UPSTREAM_TIMEOUT');
  t.same(await upstreamErrors(front), { 'mute/timeout': 1 });
});

/** POST `chunks` as a chunked body (Host a.test), each written `gapMs` after the previous one was flushed. */
function postChunked(url: string, chunks: string[], gapMs: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false, headers: { host: 'a.test' } });
    req.on('error', reject);
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    let i = 0;
    const next = () => {
      if (i === chunks.length) return void req.end();
      req.write(chunks[i++], () => (gapMs > 0 ? setTimeout(next, gapMs) : setImmediate(next)));
    };
    next();
  });
}

/** GET through the front; resolves with how the response ended: 'end' (clean) or 'error'. */
function responseOutcome(origin: string, host: string): Promise<{ status: number; outcome: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`${origin}/`, { agent: false, headers: { host } });
    req.on('error', (e) => resolve({ status: 0, outcome: `request error ${e.message}`, body: '' }));
    req.setTimeout(10_000, () => reject(new Error('client left hanging')));
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, outcome: res.complete ? 'end' : 'error', body }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, outcome: 'error', body }));
      res.on('aborted', () => resolve({ status: res.statusCode ?? 0, outcome: 'error', body }));
    });
  });
}

t.test('proxy: destroys the client connection when the upstream resets after sending headers', async (t) => {
  for (const framing of ['content-length', 'chunked']) {
    const port = await rawUpstream(t, (s) => {
      s.once('data', () => {
        const head = framing === 'chunked' ? 'transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n' : 'content-length: 100\r\n\r\nhello';
        s.write(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n${head}`, () => setTimeout(() => s.resetAndDestroy(), 20));
      });
    });
    const front = await startFront(t, [route({ name: 'reset', upstream: `http://127.0.0.1:${port}` })]);
    const r = await responseOutcome(front.origin, 'a.test');
    t.equal(r.status, 200, `${framing}: headers were relayed`);
    t.equal(r.outcome, 'error', `${framing}: the client sees an error, not a clean end`);
    t.same(await upstreamErrors(front), { 'reset/reset': 1 }, `${framing}: counted`);
  }
});

t.test('proxy: destroys the client connection when the upstream body stalls past idle_ms', async (t) => {
  const up = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first chunk');
  });
  const front = await startFront(t, [
    route({ name: 'stall', upstream: up.origin, timeouts: { connect_ms: 1000, response_ms: 1000, idle_ms: 300 } }),
  ]);
  const r = await responseOutcome(front.origin, 'a.test');
  t.equal(r.status, 200);
  t.equal(r.body, 'first chunk');
  t.equal(r.outcome, 'error');
  t.same(await upstreamErrors(front), { 'stall/timeout': 1 });
});

t.test('proxy: answers 502 WG_UPSTREAM_BAD_RESPONSE when the upstream does not speak HTTP', async (t) => {
  const port = await rawUpstream(t, (s) => s.once('data', () => s.end('SSH-2.0-OpenSSH_9.6\r\n\r\n')));
  const front = await startFront(t, [route({ name: 'junk', upstream: `http://127.0.0.1:${port}` })]);
  const r = await request(front.origin, '/', { headers: { host: 'a.test' } });
  t.equal(r.status, 502);
  t.equal((JSON.parse(r.body) as ErrorBody).error, 'WG_UPSTREAM_BAD_RESPONSE');
  t.same(await upstreamErrors(front), { 'junk/bad_response': 1 });
});

t.test('proxy: answers 502 when the upstream response cannot be relayed', async (t) => {
  const port = await rawUpstream(t, (s) =>
    s.once('data', () => s.end('HTTP/1.1 200 OK\r\nx-bad: a\u0001b\r\ncontent-length: 2\r\n\r\nok')),
  );
  const front = await startFront(t, [route({ name: 'ctl', upstream: `http://127.0.0.1:${port}` })]);
  const r = await request(front.origin, '/', { headers: { host: 'a.test' } });
  t.equal(r.status, 502);
  t.equal((JSON.parse(r.body) as ErrorBody).error, 'WG_UPSTREAM_BAD_RESPONSE');
});

t.test('proxy: answers 502 or cuts the connection when the upstream response is malformed', async (t) => {
  const cases: [name: string, reply: string, expected: number | 'error'][] = [
    ['garbage status line', 'HTTP/1.1 abc\r\n\r\n', 502],
    ['no status line', '\r\n\r\n', 502],
    ['header without colon', 'HTTP/1.1 200 OK\r\nbroken header\r\ncontent-length: 0\r\n\r\n', 502],
    ['duplicate content-length', 'HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab', 502],
    ['content-length and chunked', 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', 502],
    ['NUL in a header value', 'HTTP/1.1 200 OK\r\nx-a: a\u0000b\r\ncontent-length: 0\r\n\r\n', 502],
    ['header block too large', `HTTP/1.1 200 OK\r\nx-big: ${'a'.repeat(70_000)}\r\ncontent-length: 0\r\n\r\n`, 502],
    ['closed before any byte', '', 502],
    ['bad chunk size after headers', 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n', 'error'],
    ['body shorter than content-length', 'HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc', 'error'],
  ];
  for (const [name, reply, expected] of cases) {
    const port = await rawUpstream(t, (s) => s.once('data', () => s.end(reply)));
    const front = await startFront(t, [route({ name: 'bad', upstream: `http://127.0.0.1:${port}` })]);
    const r = await responseOutcome(front.origin, 'a.test');
    if (expected === 'error') t.not(r.outcome, 'end', `${name}: client sees an error`);
    else t.equal(r.status, expected, `${name}: ${r.body}`);
    const kinds = await upstreamErrors(front);
    t.equal(
      Object.values(kinds).reduce((a, b) => a + b, 0),
      1,
      `${name}: counted once (${JSON.stringify(kinds)})`,
    );
  }
});

t.test('proxy: keeps serving when many clients abort mid-response at once', async (t) => {
  const up = await startUpstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('part 1;');
    if (req.url === '/complete') res.end('part 2');
  });
  const front = await startFront(t, [route({ upstream: up.origin })]);
  const aborted = Array.from(
    { length: 40 },
    () =>
      new Promise<void>((resolve) => {
        const req = http.get(`${front.origin}/stream`, { agent: false, headers: { host: 'a.test' } });
        req.on('error', () => resolve());
        const leave = () => {
          req.destroy();
          resolve();
        };
        req.on('response', (res) => res.once('data', leave));
        req.setTimeout(10_000, leave);
      }),
  );
  await Promise.all(aborted);
  const ok = await request(front.origin, '/complete', { headers: { host: 'a.test' } });
  t.equal(ok.status, 200);
  t.equal(ok.body, 'part 1;part 2');
  t.same(await upstreamErrors(front), {}, 'client aborts are not upstream errors');
});

t.test('proxy: aborts the upstream request when the client goes away', async (t) => {
  let upstreamClosed: Promise<unknown> = Promise.resolve();
  const up = await startUpstream(t, (req, res) => {
    upstreamClosed = once(res, 'close');
    res.writeHead(200);
    res.write('streaming…');
    void req;
  });
  const front = await startFront(t, [route({ upstream: up.origin })]);
  await new Promise<void>((resolve, reject) => {
    const req = http.get(`${front.origin}/`, { agent: false, headers: { host: 'a.test' } });
    req.on('error', () => {});
    req.on('response', (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.setTimeout(5000, () => reject(new Error('no response')));
  });
  await upstreamClosed;
  t.pass('upstream response closed after the client left');
  t.same(await upstreamErrors(front), {}, 'a client abort is not an upstream error');
});

t.test('proxy: strips hop-by-hop and Connection-nominated headers when relaying an upstream response', async (t) => {
  const port = await rawUpstream(t, (s) =>
    s.once('data', () =>
      s.write(
        'HTTP/1.1 200 OK\r\nx-request-id: upstream-id\r\nconnection: keep-alive, x-internal\r\nx-internal: secret\r\nkeep-alive: timeout=5\r\nproxy-authenticate: Basic\r\nupgrade: h2c\r\ncontent-length: 2\r\nx-kept: yes\r\n\r\nok',
      ),
    ),
  );
  const front = await startFront(t, [route({ upstream: `http://127.0.0.1:${port}` })]);
  const r = await request(front.origin, '/', { headers: { host: 'a.test' } });
  t.equal(r.status, 200);
  t.equal(r.body, 'ok');
  t.equal(r.headers['x-kept'], 'yes');
  for (const h of ['x-internal', 'proxy-authenticate', 'upgrade']) t.notOk(r.headers[h], `${h} removed`);
  t.not(r.headers['keep-alive'], 'timeout=5', "upstream's keep-alive not relayed");
  t.match(r.headers['x-request-id'], /^front-[0-9a-f-]{36}$/, "the gateway's request id replaces the upstream's");
});

t.test('proxy: relays large responses intact when the client reads slowly', async (t) => {
  const payload = Buffer.alloc(4 * 1024 * 1024, 'z');
  const up = await startUpstream(t, (_req, res) => res.end(payload));
  const front = await startFront(t, [route({ upstream: up.origin })]);
  const r = await getBytes(front.origin, '/big', 200);
  t.ok(r.complete && r.body.equals(payload), `${payload.length} bytes intact`);
});

t.test('proxy: keeps relaying a paused response when the client reads slower than idle_ms', async (t) => {
  // 24 MiB: more than the loopback socket buffers on both sides can hold, so the proxy has to pause
  // the upstream body while the client does not read.
  const piece = Buffer.alloc(64 * 1024, 'q');
  const total = 384 * piece.length;
  const up = await startUpstream(t, (_req, res) => {
    let left = 384;
    const more = () => {
      while (left > 0) {
        left--;
        if (!res.write(piece)) return void res.once('drain', more);
      }
      res.end();
    };
    more();
  });
  const front = await startFront(t, [
    route({ name: 'slowreader', upstream: up.origin, timeouts: { connect_ms: 1000, response_ms: 1000, idle_ms: 300 } }),
  ]);
  // Three times idle_ms without reading: the upstream side waits for us, it does not stall.
  const r = await getBytes(front.origin, '/big', 900);
  t.same({ n: r.body.length, complete: r.complete }, { n: total, complete: true });
  t.same(await upstreamErrors(front), {}, 'no timeout counted');
});

t.test('createProxy: throws an error naming the route when its CA file cannot be read', async (t) => {
  const deps = { logger: createLogger({ level: 'silent' }), metrics: createMetrics({ registry: new Registry(), processMetrics: false }) };
  t.throws(
    () =>
      createProxy({
        ...deps,
        routes: [route({ name: 'vendor', upstream: 'https://u', tls: { ca_file: '/nonexistent/ca.pem', insecure_skip_verify: false } })],
      }),
    /route "vendor": cannot read tls.ca_file/,
  );
});

t.test(
  'proxy: one TLS context serves every connection of a pool when the route has tls.ca_file and requests run in parallel',
  async (t) => {
    // The upstream holds every answer until all requests are in, so each one has a connection of its own.
    const n = 6;
    const held: http.ServerResponse[] = [];
    const up = await startTlsUpstream(t, (_req, res) => {
      held.push(res);
      if (held.length === n) for (const r of held) r.end('ok');
    });
    const front = await startFront(t, [
      route({ host: 's.test', upstream: `https://localhost:${up.port}`, tls: { ca_file: CA_FILE, insecure_skip_verify: false } }),
    ]);
    // node:tls builds a context per connection when a connect has `ca` and no `secureContext`.
    const tlsModule = createRequire(import.meta.url)('node:tls') as typeof import('node:tls');
    const original = tlsModule.createSecureContext;
    let contexts = 0;
    tlsModule.createSecureContext = (options) => {
      contexts++;
      return original(options);
    };
    t.teardown(() => {
      tlsModule.createSecureContext = original;
    });
    const answers = await Promise.all(
      Array.from({ length: n }, (_, i) => request(front.origin, `/p${i}`, { headers: { host: 's.test' } })),
    );
    t.same(
      answers.map((a) => a.status),
      Array(n).fill(200),
    );
    t.equal(up.connections, n, 'one connection per parallel request');
    t.equal(contexts, 0, 'no TLS context made per connection');
  },
);
