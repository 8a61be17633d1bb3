/**
 * The per-request metrics (a counter and a latency histogram by route and status class) as plain
 * numbers in pre-resolved slots, exposed on the prom-client registry as two ordinary metrics.
 *
 * Why not prom-client's Counter/Histogram here: their `labels(...)` children hash the label object
 * again on every `inc()`/`observe()`; on the proxy path that was about 1 µs of the ~40 µs CPU a
 * request costs. A slot is looked up once per (route, status class) and then updated with additions.
 * Everything else (process metrics, errors, reloads …) stays on prom-client's own classes.
 */
import type { Registry } from 'prom-client';

/** One (route, status class) series: its counter and its histogram. */
export interface RequestSlot {
  /** Count one answered request that took `seconds`. */
  record(seconds: number): void;
}

export interface RequestMetrics {
  /** The slot for these label values (created on first use; route names and classes are bounded). */
  slot(route: string, statusClass: string): RequestSlot;
}

export interface RequestMetricsOptions {
  readonly registry: Registry;
  readonly counterName: string;
  readonly counterHelp: string;
  readonly histogramName: string;
  readonly histogramHelp: string;
  /** Upper bounds in seconds, ascending (+Inf is implied). */
  readonly buckets: readonly number[];
}

interface Series {
  readonly labels: { route: string; status_class: string };
  count: number;
  sum: number;
  /** Non-cumulative count per bucket; the last one is +Inf. */
  readonly buckets: Float64Array;
}

/** The value shape prom-client's Registry serialises (`metric.get()`). */
interface MetricValue {
  readonly value: number;
  readonly labels: Record<string, string | number>;
  readonly metricName?: string;
}

class Slot implements RequestSlot {
  readonly #s: Series;
  readonly #bounds: readonly number[];
  constructor(series: Series, bounds: readonly number[]) {
    this.#s = series;
    this.#bounds = bounds;
  }
  record(seconds: number): void {
    const s = this.#s;
    s.count++;
    s.sum += seconds;
    const b = this.#bounds;
    let i = 0;
    while (i < b.length && seconds > (b[i] as number)) i++;
    s.buckets[i] = (s.buckets[i] ?? 0) + 1;
  }
}

export function createRequestMetrics(opts: RequestMetricsOptions): RequestMetrics {
  const bounds = [...opts.buckets];
  for (let i = 1; i < bounds.length; i++) {
    if (!((bounds[i] as number) > (bounds[i - 1] as number))) throw new Error('histogram buckets must be ascending');
  }
  const series: Series[] = [];
  // route → status class → slot: a lookup allocates no key string.
  const slots = new Map<string, Map<string, Slot>>();
  // registry.resetMetrics() resets both metrics (prom-client keeps the series, at zero).
  const resetAll = () => {
    for (const s of series) {
      s.count = 0;
      s.sum = 0;
      s.buckets.fill(0);
    }
  };

  opts.registry.registerMetric({
    name: opts.counterName,
    help: opts.counterHelp,
    type: 'counter',
    aggregator: 'sum',
    reset: () => resetAll(),
    get: async () => ({
      name: opts.counterName,
      help: opts.counterHelp,
      type: 'counter',
      aggregator: 'sum',
      values: series.map((s): MetricValue => ({ value: s.count, labels: { ...s.labels } })),
    }),
  } as unknown as Parameters<Registry['registerMetric']>[0]);

  opts.registry.registerMetric({
    name: opts.histogramName,
    help: opts.histogramHelp,
    type: 'histogram',
    aggregator: 'sum',
    reset: () => resetAll(),
    get: async () => {
      const values: MetricValue[] = [];
      for (const s of series) {
        let cumulative = 0;
        for (let i = 0; i <= bounds.length; i++) {
          cumulative += s.buckets[i] as number;
          values.push({
            value: cumulative,
            labels: { ...s.labels, le: i < bounds.length ? (bounds[i] as number) : '+Inf' },
            metricName: `${opts.histogramName}_bucket`,
          });
        }
        values.push({ value: s.sum, labels: { ...s.labels }, metricName: `${opts.histogramName}_sum` });
        values.push({ value: s.count, labels: { ...s.labels }, metricName: `${opts.histogramName}_count` });
      }
      return { name: opts.histogramName, help: opts.histogramHelp, type: 'histogram', aggregator: 'sum', values };
    },
  } as unknown as Parameters<Registry['registerMetric']>[0]);

  return {
    slot(route, statusClass) {
      let byClass = slots.get(route);
      if (byClass === undefined) {
        byClass = new Map();
        slots.set(route, byClass);
      }
      let slot = byClass.get(statusClass);
      if (slot === undefined) {
        const s: Series = { labels: { route, status_class: statusClass }, count: 0, sum: 0, buckets: new Float64Array(bounds.length + 1) };
        series.push(s);
        slot = new Slot(s, bounds);
        byClass.set(statusClass, slot);
      }
      return slot;
    },
  };
}
