/**
 * The composition root: listen, atomic reload (under load, failing, changing listen addresses,
 * changing certificates), and graceful close (in-flight requests finish, WebSockets are closed at
 * the deadline, silent sockets never keep the process alive).
 */
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { Registry } from 'prom-client';
import t from 'tap';
import { WebSocket } from 'ws';
import { createGateway } from '../src/app.ts';
import type { Config } from '../src/config/schema.ts';
import {
  ADMIN,
  CA,
  captureLogger,
  LOOPBACK,
  makeConfig,
  peerCertificate,
  raw,
  send,
  startGateway,
  startUpstream,
  TLS_DIR,
  waitFor,
} from './helpers/gateway.ts';

const routeTo = (url: string, name = 'app') =>
  makeConfig({ listen: LOOPBACK, admin: ADMIN, routes: [{ name, host: 'app.school.test', upstream: url }] });

t.test('gateway: fails no request when it reloads under load', async (t) => {
  const a = await startUpstream(t, 'A');
  const b = await startUpstream(t, 'B');
  const configs = [routeTo(a.url, 'to-a'), routeTo(b.url, 'to-b')];
  const s = await startGateway(t, configs[0] as Config);
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  t.teardown(() => agent.destroy());

  const TOTAL = 400;
  let sent = 0;
  const failures: string[] = [];
  const bodies = new Set<string>();
  const worker = async () => {
    while (sent < TOTAL) {
      sent++;
      try {
        const r = await send(s.httpPort, 'app.school.test', { path: '/p', agent });
        if (r.status !== 200) failures.push(`${r.status} ${r.body}`);
        else bodies.add(r.body);
      } catch (e) {
        failures.push(String(e));
      }
    }
  };
  const reloads = (async () => {
    for (let i = 1; i <= 6; i++) {
      await new Promise((r) => setTimeout(r, 15));
      await s.gw.reload(configs[i % 2] as Config);
    }
  })();
  await Promise.all([...Array.from({ length: 8 }, worker), reloads]);
  t.same(failures, [], 'no failed request');
  t.same([...bodies].sort(), ['A GET /p', 'B GET /p'], 'both generations served');
  const m = await s.registry.getSingleMetricAsString('wegate_config_reloads_total');
  t.match(m, /result="success"\} 6/);
});

t.test('gateway: a request keeps the generation it started with when a reload happens meanwhile', async (t) => {
  const a = await startUpstream(t, 'A');
  const b = await startUpstream(t, 'B');
  const s = await startGateway(t, routeTo(a.url));
  const held = send(s.httpPort, 'app.school.test', { path: '/hold/x' });
  t.ok(await waitFor(() => a.held.size === 1));
  await s.gw.reload(routeTo(b.url));
  t.equal((await send(s.httpPort, 'app.school.test', { path: '/new' })).body, 'B GET /new', 'new requests use the new config');
  for (const r of a.held) r();
  const old = await held;
  t.equal(old.status, 200);
  t.equal(old.body, 'A held /hold/x', 'in-flight request finished on the old config');
});

t.test('gateway: keeps the running config and counts the failure when a reload fails', async (t) => {
  const a = await startUpstream(t, 'A');
  const s = await startGateway(t, routeTo(a.url));
  const bad = structuredClone(routeTo(a.url));
  (bad.routes[0] as { upstream: string }).upstream = 'http://[not a host';
  await t.rejects(s.gw.reload(bad));
  const missingCert = structuredClone(routeTo(a.url));
  missingCert.tls = { certs: [{ cert: join(TLS_DIR, 'missing.pem'), key: join(TLS_DIR, 'api1.key') }], watch: false };
  await t.rejects(s.gw.reload(missingCert), { code: 'ENOENT' });
  s.gw.recordReloadFailure('invalid');
  t.equal((await send(s.httpPort, 'app.school.test', { path: '/still' })).body, 'A GET /still');
  const m = await s.registry.getSingleMetricAsString('wegate_config_reloads_total');
  t.match(m, /result="error"\} 2/);
  t.match(m, /result="invalid"\} 1/);
});

t.test('gateway: swaps the verification files when the new config names another directory', async (t) => {
  const a = await startUpstream(t, 'A');
  const dirs = await Promise.all([1, 2].map(() => mkdtemp(join(tmpdir(), 'wegate-vf-'))));
  t.teardown(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));
  await writeFile(join(dirs[0] as string, 'WW_verify_one.txt'), 'one');
  await writeFile(join(dirs[1] as string, 'WW_verify_two.txt'), 'two');
  const withDir = (dir: string) =>
    makeConfig({ listen: LOOPBACK, admin: ADMIN, verify_files: { dir, watch: false }, routes: [{ upstream: a.url }] });
  const s = await startGateway(t, withDir(dirs[0] as string));
  t.equal((await send(s.httpPort, 'x.test', { path: '/WW_verify_one.txt' })).body, 'one');
  await s.gw.reload(withDir(dirs[1] as string));
  t.equal((await send(s.httpPort, 'x.test', { path: '/WW_verify_two.txt' })).body, 'two', 'new file served');
  const gone = await send(s.httpPort, 'x.test', { path: '/WW_verify_one.txt' });
  t.equal(gone.body, 'A GET /WW_verify_one.txt', 'old file no longer served (falls through to routing)');
});

t.test('gateway: warns and keeps the old listener when a reload changes the listen address', async (t) => {
  const a = await startUpstream(t, 'A');
  const s = await startGateway(t, routeTo(a.url));
  const moved = makeConfig({
    listen: { http: '127.0.0.1:1' },
    admin: { listen: '127.0.0.1:2' },
    routes: [{ host: 'app.school.test', upstream: a.url }],
  });
  await s.gw.reload(moved);
  const warnings = s.logs.lines.filter((l) => l.msg === 'listen address changed: restart wegate to apply it');
  t.same(warnings.map((w) => w.listener).sort(), ['admin', 'http']);
  t.equal((await send(s.httpPort, 'app.school.test', { path: '/x' })).body, 'A GET /x', 'old listener still serves');
});

t.test('gateway: swaps certificates when a reload names different certificate files', async (t) => {
  const a = await startUpstream(t, 'A');
  const withCert = (name: string) =>
    makeConfig({
      listen: { ...LOOPBACK, https: '127.0.0.1:0' },
      admin: ADMIN,
      tls: { certs: [{ cert: join(TLS_DIR, `${name}.pem`), key: join(TLS_DIR, `${name}.key`) }], watch: false },
      routes: [{ upstream: a.url }],
    });
  const s = await startGateway(t, withCert('api1'));
  t.equal((await peerCertificate(s.httpsPort, 'x.test')).subject.CN, 'api1.school.test');
  await s.gw.reload(withCert('api2'));
  t.equal((await peerCertificate(s.httpsPort, 'x.test')).subject.CN, 'api2.school.test', 'new default certificate');
  t.equal((await peerCertificate(s.httpsPort, undefined)).subject.CN, 'api2.school.test', 'also without SNI');
});

t.test('gateway: drains an in-flight request and refuses new connections when closing gracefully', async (t) => {
  const a = await startUpstream(t, 'A');
  const s = await startGateway(t, routeTo(a.url));
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const inFlight = send(s.httpPort, 'app.school.test', { path: '/hold/slow', agent });
  t.ok(await waitFor(() => a.held.size === 1));
  let closed = false;
  const closing = s.gw.close({ drainTimeoutMs: 10_000 }).then(() => (closed = true));
  await t.rejects(send(s.httpPort, 'app.school.test', { path: '/new' }), { code: 'ECONNREFUSED' }, 'no new connections');
  t.notOk(closed, 'close waits for the in-flight request');
  for (const r of a.held) r();
  const r = await inFlight;
  t.equal(r.status, 200);
  t.equal(r.body, 'A held /hold/slow', 'the slow request completed');
  t.equal(r.headers.connection, 'close', 'and told the client to close');
  await closing;
});

t.test('gateway: lets WebSockets run until the deadline, then closes them, when closing gracefully', async (t) => {
  const a = await startUpstream(t, 'A');
  const s = await startGateway(t, routeTo(a.url));
  const ws = new WebSocket(`ws://127.0.0.1:${s.httpPort}/ws`, { headers: { host: 'app.school.test' } });
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  const echo = async (m: string) => {
    const reply = once(ws, 'message');
    ws.send(m);
    return String((await reply)[0]);
  };
  t.equal(await echo('one'), 'echo:one');
  const wsClosed = once(ws, 'close');
  const closing = s.gw.close({ drainTimeoutMs: 1500 });
  t.equal(await echo('two'), 'echo:two', 'still open while draining');
  await closing;
  await wsClosed;
  t.equal(ws.readyState, WebSocket.CLOSED, 'closed by the deadline');
});

t.test('gateway: close finishes when silent and idle sockets are open', async (t) => {
  const a = await startUpstream(t, 'A');
  const s = await startGateway(t, routeTo(a.url));
  const silent = raw(s.httpPort, '', 10_000);
  const agent = new Agent({ keepAlive: true });
  t.teardown(() => agent.destroy());
  await send(s.httpPort, 'app.school.test', { agent });
  await s.gw.close({ drainTimeoutMs: 200 });
  await silent;
  t.pass('close resolved and the silent socket was closed');
});

t.test('gateway: close finishes when a silent TLS connection and a TLS WebSocket are open', async (t) => {
  const a = await startUpstream(t, 'A');
  const s = await startGateway(
    t,
    makeConfig({
      listen: { ...LOOPBACK, https: '127.0.0.1:0' },
      admin: ADMIN,
      tls: { certs: [{ cert: join(TLS_DIR, 'api1.pem'), key: join(TLS_DIR, 'api1.key') }], watch: false },
      routes: [{ upstream: a.url }],
    }),
  );
  const silent = tlsConnect({ host: '127.0.0.1', port: s.httpsPort, ca: CA, servername: 'api1.school.test' });
  silent.on('error', () => undefined);
  await once(silent, 'secureConnect');
  const ws = new WebSocket(`wss://127.0.0.1:${s.httpsPort}/ws`, {
    ca: CA,
    headers: { host: 'api1.school.test' },
  });
  t.teardown(() => ws.terminate());
  await once(ws, 'open');
  const silentClosed = once(silent, 'close');
  const wsClosed = once(ws, 'close');
  await s.gw.close({ drainTimeoutMs: 200 });
  await Promise.all([silentClosed, wsClosed]);
  t.pass('both closed and close() resolved');
});

t.test('gateway: listen fails cleanly when a port is taken', async (t) => {
  const blocker = createServer();
  blocker.listen(0, '127.0.0.1');
  await once(blocker, 'listening');
  t.teardown(() => blocker.close());
  const port = (blocker.address() as { port: number }).port;
  const a = await startUpstream(t, 'A');
  const { logger } = captureLogger();
  const config = makeConfig({ listen: { http: '127.0.0.1:0' }, admin: { listen: `127.0.0.1:${port}` }, routes: [{ upstream: a.url }] });
  const gw = await createGateway(config, { logger, registry: new Registry(), processMetrics: false });
  t.teardown(() => gw.close({ drainTimeoutMs: 0 }));
  await t.rejects(gw.listen(), /cannot listen on 127\.0\.0\.1:\d+ for the admin listener: EADDRINUSE/);
});

t.test('gateway: process metrics are on the injected registry only when asked', async (t) => {
  const a = await startUpstream(t, 'A');
  const { logger } = captureLogger();
  const registry = new Registry();
  const gw = await createGateway(routeTo(a.url), { logger, registry });
  t.teardown(() => gw.close({ drainTimeoutMs: 0 }));
  t.match(await registry.metrics(), /wegate_process_cpu_user_seconds_total/);
  t.equal(gw.metrics.registry, registry);
});
