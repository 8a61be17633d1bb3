/**
 * Slow and malformed clients on the public listener: header and body timeouts answer 408 and close
 * (promptly, thanks to a short connectionsCheckingInterval), oversize headers get 431, garbage 400,
 * and none of it disturbs the next client.
 */
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { checkingInterval } from '../../src/server/listeners.ts';
import { ADMIN, makeConfig, raw, rawStatus, send, startGateway, startUpstream, waitFor } from '../helpers/gateway.ts';

async function slowSite(t: Test) {
  const up = await startUpstream(t, 'app');
  const s = await startGateway(
    t,
    makeConfig({
      listen: { http: '127.0.0.1:0', header_timeout_ms: 300, request_timeout_ms: 600 },
      admin: ADMIN,
      routes: [{ name: 'app', host: 'app.school.test', upstream: up.url }],
    }),
  );
  return { ...s, up };
}

t.test('listeners: checking interval follows the shortest timeout when timeouts differ, capped at 1 s', async (t) => {
  t.equal(checkingInterval({ headerTimeoutMs: 10_000, requestTimeoutMs: 300_000, keepAliveTimeoutMs: 5000 }), 1000);
  t.equal(checkingInterval({ headerTimeoutMs: 300, requestTimeoutMs: 600, keepAliveTimeoutMs: 5000 }), 150);
  t.equal(checkingInterval({ headerTimeoutMs: 1, requestTimeoutMs: 1, keepAliveTimeoutMs: 1 }), 25);
});

t.test('timeouts: answers 408 and closes the connection when a client sends its headers too slowly', async (t) => {
  const s = await slowSite(t);
  // Headers never finished; raw() waits up to 5 s for the server to close.
  const out = await raw(s.httpPort, 'GET / HTTP/1.1\r\nHost: app.school.test\r\nX-Slow: ', 5000);
  t.equal(rawStatus(out), 408);
  t.match(out, /WG_REQUEST_TIMEOUT/);
  t.match(out, /X-Request-Id: \S+/);
  t.equal(s.up.seen.length, 0, 'nothing forwarded');
  const m = await waitFor(async () =>
    /WG_REQUEST_TIMEOUT"\} 1/.test(await s.registry.getSingleMetricAsString('wegate_rejected_requests_total')),
  );
  t.ok(m, 'counted');
});

t.test('timeouts: closes the connection when a client connects and sends nothing', async (t) => {
  const s = await slowSite(t);
  const out = await raw(s.httpPort, '', 5000);
  t.ok(out === '' || rawStatus(out) === 408, 'closed (with or without a 408)');
});

t.test('timeouts: answers 408 and closes the connection when a client sends its body too slowly', async (t) => {
  const s = await slowSite(t);
  const closed = await new Promise<{ text: string; byServer: boolean }>((resolve) => {
    const socket = connect(s.httpPort, '127.0.0.1');
    let text = '';
    const giveUp = setTimeout(() => socket.destroy(), 5000);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (text += d));
    socket.on('error', () => undefined);
    socket.on('end', () => undefined);
    socket.on('close', () => {
      clearTimeout(giveUp);
      resolve({ text, byServer: text !== '' || !socket.destroyed });
    });
    socket.write('POST /upload HTTP/1.1\r\nHost: app.school.test\r\nContent-Length: 100\r\n\r\nonly-a-little');
  });
  t.equal(rawStatus(closed.text), 408, 'answered 408');
  const line = await waitFor(() => s.logs.lines.find((l) => l.log === 'access' && l.status === 408));
  t.match(line, { route: 'app', error_code: 'WG_REQUEST_TIMEOUT' }, 'access log shows the timeout');
});

t.test('timeouts: answers 431 or 400 and keeps serving when headers are oversize or garbage', async (t) => {
  const s = await slowSite(t);
  const big = await raw(s.httpPort, `GET / HTTP/1.1\r\nHost: app.school.test\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  t.equal(rawStatus(big), 431);
  t.match(big, /WG_HEADERS_TOO_LARGE/);
  for (const junk of [
    '\u0000\u0001\u0002\r\n\r\n',
    'GET / HTTP/9.9\r\n\r\n',
    'GET / HTTP/1.1\r\nHost app\r\n\r\n',
    'G\rET / HTTP/1.1\r\n\r\n',
  ]) {
    const out = await raw(s.httpPort, junk);
    t.equal(rawStatus(out), 400, JSON.stringify(junk));
  }
  const smuggle = await raw(
    s.httpPort,
    'POST / HTTP/1.1\r\nHost: app.school.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n',
  );
  t.equal(rawStatus(smuggle), 400, 'CL + TE refused');
  const ok = await send(s.httpPort, 'app.school.test', { path: '/after' });
  t.equal(ok.body, 'app GET /after');
});
