/**
 * All metric definitions, on an injected prom-client Registry (never the global one).
 * Label values are bounded: route names from the config, status classes, fixed kinds. Never raw
 * paths, hosts or anything a client chooses.
 */
import { Counter, collectDefaultMetrics, Gauge, type Registry } from 'prom-client';
import { createRequestMetrics, type RequestMetrics } from './request-metrics.ts';

/** Why an upstream exchange failed; a fixed set so the label stays bounded. */
export type UpstreamErrorKind = 'refused' | 'dns' | 'timeout' | 'reset' | 'tls' | 'bad_response' | 'other';

export interface Metrics {
  readonly registry: Registry;
  /**
   * wegate_http_requests_total and wegate_http_request_duration_seconds, by route ("-" when none
   * matched, "verify_file", "redirect") and status class ("2xx"…).
   */
  readonly requests: RequestMetrics;
  readonly upstreamErrors: Counter<'route' | 'kind'>;
  readonly websocketsOpen: Gauge<'route'>;
  readonly configReloads: Counter<'result'>;
  readonly certExpirySeconds: Gauge<'cert'>;
  /** TLS certificate reloads (SIGHUP, file change) by result (success, error). */
  readonly certReloads: Counter<'result'>;
  readonly verifyFiles: Gauge;
  readonly rejectedRequests: Counter<'code'>;
  /** Responses cut off because the client read nothing for send_ms, by route. */
  readonly sendTimeouts: Counter<'route'>;
}

export interface MetricsOptions {
  readonly registry: Registry;
  /** Collect prom-client's default process metrics (CPU, memory, event loop lag, handles). */
  readonly processMetrics?: boolean;
}

const STATUS_CLASSES = ['other', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;

/** "2xx" … "5xx" (constant strings: called per request), "other" outside 100–599. */
export function statusClass(status: number): string {
  return status >= 100 && status < 600 ? (STATUS_CLASSES[Math.floor(status / 100)] as string) : 'other';
}

export function createMetrics({ registry, processMetrics = true }: MetricsOptions): Metrics {
  if (processMetrics) collectDefaultMetrics({ register: registry, prefix: 'wegate_' });
  const registers = [registry];
  return {
    registry,
    requests: createRequestMetrics({
      registry,
      counterName: 'wegate_http_requests_total',
      counterHelp: 'Requests answered, by route and status class.',
      histogramName: 'wegate_http_request_duration_seconds',
      histogramHelp: 'Time from request start to response end, by route and status class.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    }),
    upstreamErrors: new Counter({
      name: 'wegate_upstream_errors_total',
      help: 'Failed upstream exchanges, by route and kind (refused, dns, timeout, reset, tls, bad_response, other).',
      labelNames: ['route', 'kind'],
      registers,
    }),
    websocketsOpen: new Gauge({
      name: 'wegate_websockets_open',
      help: 'WebSocket connections currently proxied, by route.',
      labelNames: ['route'],
      registers,
    }),
    configReloads: new Counter({
      name: 'wegate_config_reloads_total',
      help: 'Configuration reloads, by result (success, invalid, error).',
      labelNames: ['result'],
      registers,
    }),
    certExpirySeconds: new Gauge({
      name: 'wegate_tls_cert_expiry_seconds',
      help: 'Seconds until each served certificate expires (negative when expired), by certificate subject name.',
      labelNames: ['cert'],
      registers,
    }),
    certReloads: new Counter({
      name: 'wegate_tls_cert_reloads_total',
      help: 'TLS certificate reloads, by result (success, error); on error the previous certificates stay in use.',
      labelNames: ['result'],
      registers,
    }),
    verifyFiles: new Gauge({
      name: 'wegate_verify_files_loaded',
      help: 'Verification files currently served from memory.',
      registers,
    }),
    rejectedRequests: new Counter({
      name: 'wegate_rejected_requests_total',
      help: 'Requests refused before routing, by error code (bad host, bad path, bad header …).',
      labelNames: ['code'],
      registers,
    }),
    sendTimeouts: new Counter({
      name: 'wegate_send_timeouts_total',
      help: 'Responses cut off because the client read none of it for send_ms (connection closed, upstream request aborted), by route.',
      labelNames: ['route'],
      registers,
    }),
  };
}
