/**
 * Routes with `egress:` through the whole gateway: the upstream sees the profile's source address
 * (127.0.0.2) for HTTP and for a WebSocket upgrade, or the forward proxy's outgoing address
 * (tinyproxy bound to 127.0.0.3) for a proxy profile; a route without `egress` still leaves from
 * 127.0.0.1.
 */
import { Registry } from 'prom-client';
import t from 'tap';
import { WebSocket } from 'ws';
import { ADMIN, LOOPBACK, makeConfig, send, startGateway } from '../helpers/gateway.ts';
import { startForwardProxy } from '../helpers/forward-proxy.ts';
import { createLogger } from '../../src/core/logger.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { createProxy } from '../../src/proxy/index.ts';
import { startWhoAmI } from './helpers.ts';

/** The first message of a WebSocket opened through the gateway with this Host. */
function wsFirstMessage(port: number, host: string, secure = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${secure ? 'wss' : 'ws'}://127.0.0.1:${port}/socket`, { headers: { host } });
    ws.once('message', (m) => {
      resolve(String(m));
      ws.close();
    });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

t.test('egress routes: the upstream sees the pinned address for HTTP and WebSocket when a route has egress', async (t) => {
  const plain = await startWhoAmI(t);
  const tls = await startWhoAmI(t, { tls: true });
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    egress: { two: { local_address: '127.0.0.2' } },
    routes: [
      { name: 'pinned', host: 'pinned.test', upstream: plain.url, egress: 'two' },
      { name: 'pinned-tls', host: 'pinned-tls.test', upstream: tls.url, egress: 'two', tls: { ca_file: 'ca.pem' } },
      { name: 'direct', host: 'direct.test', upstream: plain.url },
    ],
  });
  const gw = await startGateway(t, config);
  for (const [host, want] of [
    ['pinned.test', '127.0.0.2'],
    ['pinned-tls.test', '127.0.0.2'],
    ['direct.test', '127.0.0.1'],
  ] as const) {
    const r = await send(gw.httpPort, host);
    t.equal(r.status, 200, `${host}: HTTP status`);
    t.equal(r.body, want, `${host}: HTTP source address`);
    t.equal(await wsFirstMessage(gw.httpPort, host), want, `${host}: WebSocket source address`);
  }
  t.same(plain.seen, ['127.0.0.2', '127.0.0.2', '127.0.0.1', '127.0.0.1']);
  t.same(tls.seen, ['127.0.0.2', '127.0.0.2']);
});

t.test('egress routes: the upstream is reached through tinyproxy for HTTP and WebSocket when the route uses a proxy profile', async (t) => {
  const plain = await startWhoAmI(t);
  const tls = await startWhoAmI(t, { tls: true });
  const proxy = await startForwardProxy(t, { connectPorts: [plain.port, tls.port] });
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    egress: { fwd: { proxy: { url: proxy.url } } },
    routes: [
      { name: 'fwd', host: 'fwd.test', upstream: plain.url, egress: 'fwd' },
      { name: 'fwd-tls', host: 'fwd-tls.test', upstream: tls.url, egress: 'fwd', tls: { ca_file: 'ca.pem' } },
    ],
  });
  const gw = await startGateway(t, config);
  for (const host of ['fwd.test', 'fwd-tls.test']) {
    const first = await send(gw.httpPort, host);
    t.equal(first.body, '127.0.0.3', `${host}: HTTP through the proxy`);
    t.equal((await send(gw.httpPort, host)).body, '127.0.0.3', `${host}: HTTP again`);
    t.equal(await wsFirstMessage(gw.httpPort, host), '127.0.0.3', `${host}: WebSocket through the proxy`);
  }
  t.same(plain.seen, ['127.0.0.3', '127.0.0.3', '127.0.0.3']);
  t.same(tls.seen, ['127.0.0.3', '127.0.0.3', '127.0.0.3']);
  t.equal(plain.connections(), 2, 'one kept-alive tunnel for both HTTP requests, one for the WebSocket');
  t.equal(tls.connections(), 2, 'the same over TLS');
});

t.test('egress routes: the client gets 502 and the log names the proxy refusal when the proxy password is wrong', async (t) => {
  const plain = await startWhoAmI(t);
  const proxy = await startForwardProxy(t, { connectPorts: [plain.port], auth: { user: 'wegate', password: 'right-pass-5521' } });
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    egress: { fwd: { proxy: { url: proxy.url } } },
    routes: [{ name: 'fwd', host: 'fwd.test', upstream: plain.url, egress: 'fwd' }],
  });
  const gw = await startGateway(t, config);
  const r = await send(gw.httpPort, 'fwd.test');
  t.equal(r.status, 502);
  await t.rejects(wsFirstMessage(gw.httpPort, 'fwd.test'), /HTTP 502/);
  t.match(gw.logs.text(), /refused the tunnel to 127\.0\.0\.1:\d+ with HTTP 40[17]: proxy authentication failed/);
  t.same(plain.seen, [], 'nothing reached the upstream');
});

t.test('egress routes: a reload that changes a profile applies it, and one whose address is not on this host keeps the old', async (t) => {
  const plain = await startWhoAmI(t);
  const config = (address: string) =>
    makeConfig({
      listen: LOOPBACK,
      admin: ADMIN,
      egress: { out: { local_address: address } },
      routes: [{ name: 'r', host: 'r.test', upstream: plain.url, egress: 'out' }],
    });
  const gw = await startGateway(t, config('127.0.0.2'));
  t.equal((await send(gw.httpPort, 'r.test')).body, '127.0.0.2');
  const before = gw.gw.egress;
  await gw.gw.reload(config('127.0.0.3'));
  t.not(gw.gw.egress, before, 'the profiles were replaced');
  t.equal(gw.gw.egress.profile('out')?.localAddress, '127.0.0.3');
  t.equal((await send(gw.httpPort, 'r.test')).body, '127.0.0.3', 'new requests leave from the new address');
  const current = gw.gw.egress;
  await t.rejects(gw.gw.reload(config('192.0.2.55')), /egress\.out\.local_address: must be an address of this host[^]*192\.0\.2\.55/);
  t.equal(gw.gw.egress, current, 'the running profiles stay');
  t.equal((await send(gw.httpPort, 'r.test')).body, '127.0.0.3');
  // Same egress section: the profiles (and their timers) are kept.
  await gw.gw.reload(config('127.0.0.3'));
  t.equal(gw.gw.egress, current);
});

t.test('createProxy: throws naming the route when its egress profile does not exist', async (t) => {
  const metrics = createMetrics({ registry: new Registry(), processMetrics: false });
  const logger = createLogger({ level: 'silent', destination: { write: () => undefined } });
  const routes = makeConfig({
    listen: LOOPBACK,
    egress: { out: {} },
    routes: [{ name: 'r', upstream: 'http://127.0.0.1:9', egress: 'out' }],
  }).routes;
  t.throws(() => createProxy({ routes, logger, metrics }), /route "r": egress profile "out" is not defined/);
  t.throws(() => createProxy({ routes, logger, metrics, egress: () => undefined }), /route "r": egress profile "out" is not defined/);
});
