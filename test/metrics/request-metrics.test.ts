import { Registry } from 'prom-client';
import t from 'tap';
import { statusClass } from '../../src/metrics/metrics.ts';
import { createRequestMetrics } from '../../src/metrics/request-metrics.ts';
import { parseExposition, valueOf } from '../helpers/prom-text.ts';

const opts = (registry: Registry) => ({
  registry,
  counterName: 'x_requests_total',
  counterHelp: 'Requests.',
  histogramName: 'x_duration_seconds',
  histogramHelp: 'Durations.',
  buckets: [0.01, 0.1, 1],
});

t.test('request metrics: counts and cumulative buckets per series when requests are recorded', async (t) => {
  const registry = new Registry();
  const m = createRequestMetrics(opts(registry));
  const ok = m.slot('app', '2xx');
  for (const s of [0.005, 0.01, 0.05, 0.5, 2]) ok.record(s);
  m.slot('-', '4xx').record(0.001);
  t.equal(m.slot('app', '2xx'), ok, 'the same slot for the same labels');
  const families = parseExposition(await registry.metrics());
  const bucket = (route: string, sc: string, le: string) =>
    valueOf(families, 'x_duration_seconds', { route, status_class: sc, le }, 'x_duration_seconds_bucket');
  t.equal(valueOf(families, 'x_requests_total', { route: 'app', status_class: '2xx' }), 5);
  t.equal(valueOf(families, 'x_requests_total', { route: '-', status_class: '4xx' }), 1);
  t.equal(bucket('app', '2xx', '0.01'), 2, 'upper bound is inclusive');
  t.equal(bucket('app', '2xx', '0.1'), 3);
  t.equal(bucket('app', '2xx', '1'), 4);
  t.equal(bucket('app', '2xx', '+Inf'), 5);
  t.equal(valueOf(families, 'x_duration_seconds', { route: 'app', status_class: '2xx' }, 'x_duration_seconds_count'), 5);
  const sum = valueOf(families, 'x_duration_seconds', { route: 'app', status_class: '2xx' }, 'x_duration_seconds_sum') ?? 0;
  t.ok(Math.abs(sum - 2.565) < 1e-9, `sum ${sum}`);
  t.equal(bucket('-', '4xx', '0.01'), 1);
});

t.test('request metrics: reset zeroes every series when the registry is reset', async (t) => {
  const registry = new Registry();
  const m = createRequestMetrics(opts(registry));
  m.slot('app', '2xx').record(0.2);
  registry.resetMetrics();
  const families = parseExposition(await registry.metrics());
  t.equal(valueOf(families, 'x_requests_total', { route: 'app', status_class: '2xx' }), 0);
  t.equal(valueOf(families, 'x_duration_seconds', { route: 'app', status_class: '2xx', le: '+Inf' }, 'x_duration_seconds_bucket'), 0);
});

t.test('request metrics: refuses buckets when they are not ascending', async (t) => {
  t.throws(() => createRequestMetrics({ ...opts(new Registry()), buckets: [0.1, 0.1] }), /ascending/);
});

t.test('statusClass: names the class of every status and "other" when the status is outside 100-599', async (t) => {
  const cases: [number, string][] = [
    [100, '1xx'],
    [200, '2xx'],
    [308, '3xx'],
    [499, '4xx'],
    [599, '5xx'],
    [99, 'other'],
    [600, 'other'],
    [Number.NaN, 'other'],
  ];
  for (const [status, want] of cases) t.equal(statusClass(status), want, String(status));
});
