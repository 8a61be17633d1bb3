/**
 * /metrics on the admin listener, read the way Prometheus reads it: the whole body goes through a
 * strict text-format parser (test/helpers/prom-text.ts), then every family the issue lists is
 * checked by type and value, and label values are shown to stay bounded when clients send random
 * hosts and paths.
 */
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { WebSocket } from 'ws';
import { ERRORS } from '../../src/core/errors.ts';
import { ADMIN, LOOPBACK, makeConfig, send, startGateway, startUpstream, TLS_DIR, waitFor } from '../helpers/gateway.ts';
import { ExpositionError, type Family, parseExposition, samplesOf, valueOf } from '../helpers/prom-text.ts';

async function closedPort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as import('node:net').AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

t.test('prom-text parser: rejects malformed expositions when Prometheus would', async (t) => {
  const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n';
  t.ok(parseExposition(ok).get('a_total'), 'a well-formed exposition parses');
  const bad: [name: string, text: string][] = [
    ['missing trailing newline', ok.trimEnd()],
    ['bad metric name', '1a 2\n'],
    ['unquoted label value', 'a{x=1} 2\n'],
    ['bad escape', 'a{x="\\t"} 2\n'],
    ['duplicate label', 'a{x="1",x="2"} 2\n'],
    ['duplicate series', 'a{x="1"} 2\na{x="1"} 3\n'],
    ['bad value', 'a 1,5\n'],
    ['TYPE after samples', 'a 1\n# TYPE a gauge\n'],
    ['interleaved families', 'a 1\nb 1\na{x="2"} 1\n'],
    ['negative counter', '# TYPE c counter\nc -1\n'],
    ['histogram without +Inf', '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n'],
    ['histogram not cumulative', '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n'],
    ['histogram count mismatch', '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n'],
    ['le on a gauge', '# TYPE g gauge\ng{le="1"} 1\n'],
  ];
  for (const [name, text] of bad) t.throws(() => parseExposition(text), name);
  t.throws(() => parseExposition('a{x=1} 2\n'), ExpositionError, 'syntax errors are ExpositionError');
  // Values as Go's strconv.ParseFloat reads them: special values in any case, NaN unsigned.
  const g = (v: string) => parseExposition(`# TYPE g gauge\ng ${v}\n`).get('g')?.samples[0]?.value;
  t.ok(Number.isNaN(g('Nan')), 'Nan (as prom-client writes it) is NaN');
  t.equal(g('+inf'), Number.POSITIVE_INFINITY);
  t.equal(g('-Infinity'), Number.NEGATIVE_INFINITY);
  for (const v of ['-NaN', 'nann', 'Infx']) t.throws(() => g(v), ExpositionError, `${v} is not a value`);
});

t.test('admin /metrics: parses strictly and has every required family with bounded labels when the gateway served traffic', async (t) => {
  const app = await startUpstream(t, 'app');
  const dead = await closedPort();
  const config = makeConfig({
    listen: { ...LOOPBACK, https: '127.0.0.1:0' },
    admin: ADMIN,
    tls: { certs: [{ cert: join(TLS_DIR, 'api1.pem'), key: join(TLS_DIR, 'api1.key') }], watch: false },
    routes: [
      { name: 'app', host: 'app.school.test', upstream: app.url },
      { name: 'dead', host: 'dead.school.test', upstream: `http://127.0.0.1:${dead}` },
    ],
  });
  const s = await startGateway(t, config, { processMetrics: true });
  const scrape = async () => {
    const r = await send(s.adminPort, '127.0.0.1', { path: '/metrics' });
    t.equal(r.status, 200);
    t.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    return { text: r.body, families: parseExposition(r.body) };
  };

  // Traffic of every kind: 2xx, 4xx (unknown host, bad path), 5xx (dead upstream), a WebSocket.
  t.equal((await send(s.httpPort, 'app.school.test', { path: '/ok' })).status, 200);
  t.equal((await send(s.httpPort, 'nobody.test', { path: '/x' })).status, 404);
  t.equal((await send(s.httpPort, 'app.school.test', { path: '/a/%2e%2e/%2e%2e/etc' })).status, 400);
  t.equal((await send(s.httpPort, 'dead.school.test', { path: '/down' })).status, 502);
  const ws = new WebSocket(`ws://127.0.0.1:${s.httpPort}/live`, { headers: { host: 'app.school.test' } });
  ws.on('error', () => {});
  await once(ws, 'open');
  t.teardown(() => ws.terminate());
  await s.gw.reload(config);
  s.gw.recordReloadFailure('invalid');
  t.ok(
    await waitFor(async () => (await s.registry.getSingleMetricAsString('wegate_http_requests_total')).includes('route="dead"')),
    'requests counted',
  );

  const { families } = await scrape();
  const typeOf = (name: string) => families.get(name)?.type;
  t.equal(typeOf('wegate_http_requests_total'), 'counter');
  t.equal(typeOf('wegate_http_request_duration_seconds'), 'histogram');
  t.equal(typeOf('wegate_upstream_errors_total'), 'counter');
  t.equal(typeOf('wegate_websockets_open'), 'gauge');
  t.equal(typeOf('wegate_config_reloads_total'), 'counter');
  t.equal(typeOf('wegate_tls_cert_expiry_seconds'), 'gauge');
  for (const f of families.values()) t.ok(f.help !== undefined && f.help.length > 0, `${f.name} has HELP`);

  t.equal(valueOf(families, 'wegate_http_requests_total', { route: 'app', status_class: '2xx' }), 1);
  t.equal(valueOf(families, 'wegate_http_requests_total', { route: 'dead', status_class: '5xx' }), 1);
  t.equal(valueOf(families, 'wegate_http_requests_total', { route: '-', status_class: '4xx' }), 2);
  t.equal(
    valueOf(
      families,
      'wegate_http_request_duration_seconds',
      { route: 'app', status_class: '2xx' },
      'wegate_http_request_duration_seconds_count',
    ),
    1,
  );
  t.equal(valueOf(families, 'wegate_upstream_errors_total', { route: 'dead', kind: 'refused' }), 1);
  t.equal(valueOf(families, 'wegate_websockets_open', { route: 'app' }), 1);
  t.equal(valueOf(families, 'wegate_config_reloads_total', { result: 'success' }), 1);
  t.equal(valueOf(families, 'wegate_config_reloads_total', { result: 'invalid' }), 1);
  const expiry = valueOf(families, 'wegate_tls_cert_expiry_seconds', { cert: 'api1.school.test' }) ?? 0;
  t.ok(expiry > 50 * 365 * 86400, 'seconds until the certificate expires');
  // prom-client's default process metrics, on the injected registry with the wegate_ prefix.
  t.equal(typeOf('wegate_process_cpu_user_seconds_total'), 'counter');
  t.equal(typeOf('wegate_process_resident_memory_bytes'), 'gauge');
  t.equal(typeOf('wegate_nodejs_eventloop_lag_seconds'), 'gauge');
  t.ok((valueOf(families, 'wegate_process_resident_memory_bytes', {}) ?? 0) > 0, 'resident memory reported');

  // Bounded labels: hostile hosts, paths and queries never become label values or new series.
  const wegateSeries = (fs: Map<string, Family>) =>
    [...fs.values()]
      .filter((f) => f.name.startsWith('wegate_') && !f.name.startsWith('wegate_process_') && !f.name.startsWith('wegate_nodejs_'))
      .flatMap((f) => f.samples);
  const before = wegateSeries(families).length;
  const tokens: string[] = [];
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 15; i++) {
      const tok = `zz${round}x${i}${Math.random().toString(36).slice(2, 8)}`;
      tokens.push(tok);
      await send(s.httpPort, `${tok}.example.test`, { path: `/${tok}?q=${tok}` });
      await send(s.httpPort, 'app.school.test', { path: `/${tok}/${tok}?${tok}=1` });
      await send(s.httpPort, 'dead.school.test', { path: `/${tok}` });
    }
  }
  t.ok(await waitFor(async () => (await s.registry.getSingleMetricAsString('wegate_upstream_errors_total')).includes('} 31')));
  const after = await scrape();
  for (const tok of tokens) t.notOk(after.text.includes(tok), `${tok} appears nowhere in /metrics`);
  t.equal(wegateSeries(after.families).length, before, 'no new series from client-chosen hosts or paths');
  const allowed: Record<string, (v: string) => boolean> = {
    route: (v) => ['app', 'dead', '-', 'verify_file', 'redirect'].includes(v),
    status_class: (v) => /^[1-5]xx$/.test(v),
    kind: (v) => ['refused', 'dns', 'timeout', 'reset', 'tls', 'bad_response', 'other'].includes(v),
    result: (v) => ['success', 'invalid', 'error'].includes(v),
    cert: (v) => v === 'api1.school.test',
    code: (v) => Object.hasOwn(ERRORS, v),
    le: (v) => v === '+Inf' || Number.isFinite(Number(v)),
  };
  for (const sample of wegateSeries(after.families)) {
    for (const [k, v] of Object.entries(sample.labels)) {
      const check = allowed[k];
      t.ok(check?.(v), `${sample.name}: label ${k}="${v}" is from a bounded set`);
    }
  }
  t.equal(samplesOf(after.families, 'wegate_upstream_errors_total').length, 1, 'one upstream-error series');
  t.equal(valueOf(after.families, 'wegate_upstream_errors_total', { route: 'dead', kind: 'refused' }), 31);
});
