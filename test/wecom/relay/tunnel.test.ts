/**
 * The CONNECT tunnel end to end: a vendor SDK's proxy setting (undici's ProxyAgent) → the gateway's
 * relay.connect_listen → the real fake WeCom over TLS, with the test CA verified end to end, leaving
 * from the pinned 127.0.0.2. Refusals are checked on raw sockets.
 */
import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import t, { type Test } from 'tap';
import { Agent, ProxyAgent, request } from 'undici';
import { parseExposition, valueOf } from '../../helpers/prom-text.ts';
import { CA, captureLogger, raw, rawStatus, waitFor } from '../../helpers/gateway.ts';
import { createMetrics } from '../../../src/metrics/metrics.ts';
import { createRelayClients, createRelayLimiter, createRelayTunnel } from '../../../src/wecom/relay/index.ts';
import { Registry } from 'prom-client';
import type { AddressInfo } from 'node:net';
import { basic, CORP, PASSWORD, relaySetup, SECRET, sha256, TOKEN, VENDOR } from './helpers.ts';

const TUNNEL_CLIENT = { ...VENDOR, connect_password_sha256: sha256(PASSWORD) };

async function tunnelSetup(t: Test, client: Record<string, unknown> = TUNNEL_CLIENT) {
  const s = await relaySetup(t, { clients: [client], relay: { connect_listen: '127.0.0.1:0' } });
  const port = s.gw.addrs.relayConnect?.port;
  if (!port) throw new Error('no tunnel listener');
  return { ...s, port };
}

t.test(
  'relay tunnel: a vendor SDK reaches WeCom end to end over TLS from the pinned address when it uses the tunnel as its proxy',
  async (t) => {
    const { fake, gw, port } = await tunnelSetup(t);
    const agent = new ProxyAgent({ uri: `http://127.0.0.1:${port}`, token: basic('vendor', PASSWORD), requestTls: { ca: CA } });
    t.teardown(() => agent.close());
    // The vendor holds its own secret: the tunnel only pins the egress IP.
    const tok = await request(`${fake.url}/cgi-bin/gettoken?corpid=${CORP}&corpsecret=${SECRET}`, { dispatcher: agent });
    const { access_token } = (await tok.body.json()) as { access_token: string };
    t.ok(access_token);
    const r = await request(`${fake.url}/cgi-bin/user/get?userid=zhangsan&access_token=${access_token}`, { dispatcher: agent });
    t.match(await r.body.json(), { errcode: 0, userid: 'zhangsan' }, 'the whitelisted source passed the 企业可信IP check');
    t.same(
      fake.requests.map((q) => [q.path, q.from]),
      [
        ['/cgi-bin/gettoken', '127.0.0.2'],
        ['/cgi-bin/user/get', '127.0.0.2'],
      ],
      'WeCom saw the pinned address',
    );
    const m = parseExposition(await gw.registry.metrics());
    const opened = valueOf(m, 'wegate_relay_tunnels_total', { client: 'vendor', result: 'opened' }) ?? 0;
    t.ok(opened >= 1 && opened <= 2, `counted per client (${opened} tunnels for 2 calls)`);
  },
);

t.test('relay tunnel: the TLS session is end to end when the client handshakes through the tunnel', async (t) => {
  const { fake, port } = await tunnelSetup(t);
  const sock = netConnect(port, '127.0.0.1');
  t.teardown(() => sock.destroy());
  await once(sock, 'connect');
  sock.write(`CONNECT 127.0.0.1:${fake.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('vendor', PASSWORD)}\r\n\r\n`);
  const [reply] = (await once(sock, 'data')) as [Buffer];
  t.equal(reply.toString('latin1'), 'HTTP/1.1 200 Connection Established\r\n\r\n');
  const tls = tlsConnect({ socket: sock, ca: CA, servername: 'localhost' });
  t.teardown(() => tls.destroy());
  await new Promise<void>((resolve, reject) => {
    tls.once('secureConnect', () => resolve());
    tls.once('error', reject);
  });
  t.equal(tls.authorized, true, 'the certificate verified against the test CA: no interception');
  t.match(tls.getPeerCertificate().subjectaltname, /IP Address:127\.0\.0\.1/);
});

t.test('relay tunnel: 403 when CONNECT names any other host or port', async (t) => {
  const { fake, port, gw } = await tunnelSetup(t);
  const auth = `Proxy-Authorization: ${basic('vendor', PASSWORD)}\r\n`;
  for (const target of [
    `127.0.0.1:${fake.port + 1}`,
    `localhost:${fake.port}`,
    `127.0.0.2:${fake.port}`,
    `127.0.0.1:${gw.httpPort}`,
    'qyapi.weixin.qq.com:443',
    `127.0.0.1:${fake.port}/x`,
  ]) {
    const text = await raw(port, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`);
    t.equal(rawStatus(text), 403, target);
    t.match(text, /WG_TUNNEL_FORBIDDEN_TARGET/);
  }
  t.equal(fake.requests.length, 0);
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_tunnels_total', { client: 'vendor', result: 'forbidden_target' }), 6);
});

t.test('relay tunnel: 407 when Proxy-Authorization is missing or wrong', async (t) => {
  const { fake, port } = await tunnelSetup(t);
  const target = `127.0.0.1:${fake.port}`;
  for (const header of [
    '',
    `Proxy-Authorization: ${basic('vendor', `${PASSWORD}x`)}\r\n`,
    `Proxy-Authorization: ${basic('other', PASSWORD)}\r\n`,
    `Proxy-Authorization: Bearer ${TOKEN}\r\n`,
    'Proxy-Authorization: Basic !!!\r\n',
  ]) {
    const text = await raw(port, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${header}\r\n`);
    t.equal(rawStatus(text), 407, header || 'no header');
    t.match(text, /Proxy-Authenticate: Basic realm="wegate"/);
  }
  t.equal(fake.requests.length, 0);
});

t.test('relay tunnel: 407 when the client has a bearer token but no tunnel password', async (t) => {
  const { fake, port } = await tunnelSetup(t, VENDOR);
  const text = await raw(
    port,
    `CONNECT 127.0.0.1:${fake.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('vendor', TOKEN)}\r\n\r\n`,
  );
  t.equal(rawStatus(text), 407);
});

t.test("relay tunnel: 403 when the source address is outside the client's CIDRs", async (t) => {
  const { fake, port } = await tunnelSetup(t, { ...TUNNEL_CLIENT, source_cidrs: ['192.0.2.0/24'] });
  const text = await raw(
    port,
    `CONNECT 127.0.0.1:${fake.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('vendor', PASSWORD)}\r\n\r\n`,
  );
  t.equal(rawStatus(text), 403);
  t.match(text, /WG_RELAY_FORBIDDEN_SOURCE/);
});

t.test('relay tunnel: 405 when the method is not CONNECT', async (t) => {
  const { fake, port } = await tunnelSetup(t);
  for (const line of [
    `GET http://127.0.0.1:${fake.port}/cgi-bin/gettoken HTTP/1.1`,
    'GET / HTTP/1.1',
    `POST https://127.0.0.1:${fake.port}/ HTTP/1.1`,
  ]) {
    const text = await raw(port, `${line}\r\nHost: x\r\nProxy-Authorization: ${basic('vendor', PASSWORD)}\r\nConnection: close\r\n\r\n`);
    t.equal(rawStatus(text), 405, line);
    t.match(text, /[Aa]llow: CONNECT/);
  }
  t.equal(fake.requests.length, 0);
});

t.test('relay tunnel: passwords appear in no log line or metric when CONNECTs are refused and opened', async (t) => {
  const { fake, gw, port } = await tunnelSetup(t);
  await raw(
    port,
    `CONNECT 127.0.0.1:${fake.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('vendor', `${PASSWORD}-wrong`)}\r\n\r\n`,
  );
  await raw(port, `CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('vendor', PASSWORD)}\r\n\r\n`);
  await raw(port, `CONNECT 127.0.0.1:${fake.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('vendor', PASSWORD)}\r\n\r\n`, 200);
  const text = gw.logs.text() + (await gw.registry.metrics());
  for (const secret of [PASSWORD, Buffer.from(`vendor:${PASSWORD}`).toString('base64')]) t.notOk(text.includes(secret));
  t.ok(text.includes('wegate_relay_tunnels_total'));
});

t.test('relay tunnel: refused CONNECTs leave no socket behind when they are answered (fixed: they stayed tracked)', async (t) => {
  const { fake } = await relaySetup(t);
  const metrics = createMetrics({ registry: new Registry(), processMetrics: false });
  const clients = createRelayClients(
    [{ ...TUNNEL_CLIENT, apis: [], source_cidrs: [], rate: { per_second: 1, burst: 1 } }],
    createRelayLimiter(),
    metrics.relayRequests,
  );
  const tunnel = createRelayTunnel({
    clients: () => clients,
    apiBase: fake.url,
    egress: { name: 'pinned', dispatcher: new Agent(), localAddress: '127.0.0.2', viaProxy: false },
    connectTimeoutMs: 2000,
    idleMs: 5000,
    headerTimeoutMs: 2000,
    logger: captureLogger().logger,
    metrics,
  });
  t.teardown(() => tunnel.close());
  await new Promise<void>((resolve) => tunnel.server.listen(0, '127.0.0.1', resolve));
  const port = (tunnel.server.address() as AddressInfo).port;
  for (let i = 0; i < 20; i++) {
    const text = await raw(
      port,
      `CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('vendor', i % 2 ? PASSWORD : 'wrong')}\r\n\r\n`,
    );
    t.equal(rawStatus(text), i % 2 ? 403 : 407);
  }
  t.equal(await waitFor(() => tunnel.connections() === 0), true, 'every refused socket left the set');
  const open = netConnect(port, '127.0.0.1');
  t.teardown(() => open.destroy());
  await once(open, 'connect');
  open.write(`CONNECT 127.0.0.1:${fake.port} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: ${basic('vendor', PASSWORD)}\r\n\r\n`);
  await once(open, 'data');
  t.equal(tunnel.connections(), 2, 'an open tunnel holds its two ends');
  open.destroy();
  t.equal(await waitFor(() => tunnel.connections() === 0), true, 'and lets go of both when the client leaves');
});
