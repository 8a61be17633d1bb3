/**
 * The admin listener: /metrics (Prometheus text), /healthz, /readyz on its own port; readiness goes
 * 503 as soon as shutdown begins.
 */
import t from 'tap';
import { ADMIN, LOOPBACK, makeConfig, send, startGateway, startUpstream, waitFor } from '../helpers/gateway.ts';

t.test('admin: serves metrics and probes when asked on the admin listener', async (t) => {
  const up = await startUpstream(t, 'app');
  const s = await startGateway(t, makeConfig({ listen: LOOPBACK, admin: ADMIN, routes: [{ name: 'app', upstream: up.url }] }));
  t.not(s.adminPort, s.httpPort);
  await send(s.httpPort, 'a.test', { path: '/x' });
  await waitFor(async () => (await s.registry.getSingleMetricAsString('wegate_http_requests_total')).includes('route="app"'));
  const metrics = await send(s.adminPort, '127.0.0.1', { path: '/metrics' });
  t.equal(metrics.status, 200);
  t.match(metrics.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  t.match(metrics.body, /wegate_http_requests_total\{route="app",status_class="2xx"\} 1/);
  t.match(metrics.body, /# TYPE wegate_http_request_duration_seconds histogram/);
  t.equal((await send(s.adminPort, '127.0.0.1', { path: '/healthz' })).status, 200);
  t.equal((await send(s.adminPort, '127.0.0.1', { path: '/readyz' })).status, 200);
  t.equal((await send(s.adminPort, '127.0.0.1', { path: '/readyz?verbose=1' })).status, 200, 'query ignored');
  t.equal((await send(s.adminPort, '127.0.0.1', { path: '/other' })).status, 404);
  t.equal((await send(s.adminPort, '127.0.0.1', { method: 'POST', path: '/metrics' })).status, 405);
});

t.test('admin: readyz answers 503 when close() began and requests still drain', async (t) => {
  const up = await startUpstream(t, 'app');
  const s = await startGateway(t, makeConfig({ listen: LOOPBACK, admin: ADMIN, routes: [{ name: 'app', upstream: up.url }] }));
  const inFlight = send(s.httpPort, 'a.test', { path: '/hold/1' });
  t.ok(await waitFor(() => up.held.size === 1), 'request reached the upstream');
  const closed = s.gw.close({ drainTimeoutMs: 10_000 });
  const ready = await send(s.adminPort, '127.0.0.1', { path: '/readyz' });
  t.equal(ready.status, 503, 'not ready while draining');
  t.equal((await send(s.adminPort, '127.0.0.1', { path: '/healthz' })).status, 200, 'still alive');
  for (const release of up.held) release();
  const r = await inFlight;
  t.equal(r.status, 200, 'in-flight request completed');
  await closed;
});
