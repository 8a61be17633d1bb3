/**
 * All metric definitions, on an injected prom-client Registry (never the global one).
 * Label values are bounded: route names from the config, status classes, fixed kinds. Never raw
 * paths, hosts or anything a client chooses.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, type Registry } from 'prom-client';
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
  /** WeCom API exchanges by API path (never the query) and errcode ("0", "60020" …, or timeout/unreachable/bad_response/too_large). */
  readonly wecomApiCalls: Counter<'api' | 'errcode'>;
  readonly wecomApiDuration: Histogram<'api'>;
  /** Access / suite token refreshes by app (or suite) name and result (ok, rejected, error). */
  readonly wecomTokenRefreshes: Counter<'app' | 'result'>;
  /** Diagnosed WeCom incidents (60020 …), each occurrence, by app and cause. */
  readonly wecomIncidents: Counter<'app' | 'cause'>;
  /** Vendor responses (by route, errcode) that only show 60020 / 48002 in a page or text: counted, no incident. */
  readonly wecomVendorErrorMentions: Counter<'route' | 'errcode'>;
  /** Readiness probe per WeCom app (get_api_domain_ip): 1 ready, 0 not (never fails /readyz). */
  readonly wecomReady: Gauge<'app'>;
  /** 1 while an egress profile's IP echo shows another public IP than its expected_ip, 0 when it matches. */
  readonly egressIpMismatch: Gauge<'profile'>;
  /** IP-echo checks by profile and result (match, mismatch, no_expected_ip, error). */
  readonly egressChecks: Counter<'profile' | 'result'>;
  /** Responses cut off because the client read nothing for send_ms, by route. */
  readonly sendTimeouts: Counter<'route'>;
  /** API relay requests by client name ("-" before authentication) and result (a fixed set, see src/wecom/relay/). */
  readonly relayRequests: Counter<'client' | 'result'>;
  /** CONNECT tunnel attempts by client name ("-" before authentication) and result. */
  readonly relayTunnels: Counter<'client' | 'result'>;
  readonly relayTunnelsOpen: Gauge;
  /** WeCom callbacks by callback name and outcome (ok, bad_signature, bad_payload, duplicate, stale, refused, not_delivered). */
  readonly wecomCallbacks: Counter<'callback' | 'outcome'>;
  /** Deliveries of callbacks to the vendor, by callback name and result (ok, rejected, timeout, error). */
  readonly wecomCallbackDeliveries: Counter<'callback' | 'result'>;
  /** Provider events (指令回调) handled by wegate, by suite, InfoType and outcome (stored, older, recorded, duplicate, updated, cancelled, unknown_corp, invalid). */
  readonly wecomProviderEvents: Counter<'suite' | 'type' | 'outcome'>;
  /** AuthCode → permanent code exchanges, by suite and result (ok, retry, rejected, expired). */
  readonly wecomPermanentCodeExchanges: Counter<'suite' | 'result'>;
  /** Queued callbacks not delivered yet (in flight included), per callback; read from the store at scrape. */
  readonly wecomCallbackQueueDepth: Gauge<'callback'>;
  /** Age of the oldest queued callback in seconds, per callback (0 when none). */
  readonly wecomCallbackQueueOldestAge: Gauge<'callback'>;
  /** Dead-lettered callbacks waiting for a re-drive, per callback. */
  readonly wecomCallbackDeadLetters: Gauge<'callback'>;
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
    wecomApiCalls: new Counter({
      name: 'wegate_wecom_api_calls_total',
      help: 'WeCom API exchanges, by API path and errcode (0 = success; timeout, unreachable, bad_response, too_large for transport failures).',
      labelNames: ['api', 'errcode'],
      registers,
    }),
    wecomApiDuration: new Histogram({
      name: 'wegate_wecom_api_duration_seconds',
      help: 'Duration of one WeCom API exchange, by API path.',
      labelNames: ['api'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    wecomTokenRefreshes: new Counter({
      name: 'wegate_wecom_token_refreshes_total',
      help: 'WeCom access/suite token refreshes, by app (or suite) and result (ok, rejected = credentials refused, error).',
      labelNames: ['app', 'result'],
      registers,
    }),
    wecomIncidents: new Counter({
      name: 'wegate_wecom_incidents_total',
      help: 'Diagnosed WeCom incidents (60020 and friends), each occurrence, by app and cause.',
      labelNames: ['app', 'cause'],
      registers,
    }),
    wecomVendorErrorMentions: new Counter({
      name: 'wegate_wecom_vendor_error_mentions_total',
      help: "Vendor responses that show WeCom errcode 60020 / 48002 in a page or text without being WeCom's error JSON, by route and errcode: counted only, never an incident (the text may be a visitor's input echoed back).",
      labelNames: ['route', 'errcode'],
      registers,
    }),
    wecomReady: new Gauge({
      name: 'wegate_wecom_ready',
      help: 'Per WeCom app: 1 when the readiness probe (gettoken + get_api_domain_ip, guarded by 企业可信IP) last succeeded, 0 when it failed.',
      labelNames: ['app'],
      registers,
    }),
    egressIpMismatch: new Gauge({
      name: 'wegate_egress_ip_mismatch',
      help: 'Per egress profile: 1 when the public IP seen by its IP echo differs from expected_ip (WeCom will answer 60020), 0 when it matches.',
      labelNames: ['profile'],
      registers,
    }),
    egressChecks: new Counter({
      name: 'wegate_egress_check_total',
      help: 'IP-echo checks of the egress profiles, by profile and result (match, mismatch, no_expected_ip, error).',
      labelNames: ['profile', 'result'],
      registers,
    }),
    sendTimeouts: new Counter({
      name: 'wegate_send_timeouts_total',
      help: 'Responses cut off because the client read none of it for send_ms (connection closed, upstream request aborted), by route.',
      labelNames: ['route'],
      registers,
    }),
    relayRequests: new Counter({
      name: 'wegate_relay_requests_total',
      help: 'API relay requests, by client ("-" before authentication) and result (ok, wecom_error, ip_refused, token_error, upstream_error, unauthorized, auth_throttled, forbidden_api, forbidden_source, rate_limited, too_large, bad_request).',
      labelNames: ['client', 'result'],
      registers,
    }),
    relayTunnels: new Counter({
      name: 'wegate_relay_tunnels_total',
      help: 'CONNECT tunnel attempts, by client ("-" before authentication) and result (opened, unauthorized, auth_throttled, forbidden_source, forbidden_target, bad_method, connect_failed).',
      labelNames: ['client', 'result'],
      registers,
    }),
    relayTunnelsOpen: new Gauge({
      name: 'wegate_relay_tunnels_open',
      help: 'CONNECT tunnels currently open.',
      registers,
    }),
    wecomCallbacks: new Counter({
      name: 'wegate_wecom_callbacks_total',
      help: 'WeCom callback requests, by callback and outcome (ok, bad_signature, bad_payload, duplicate, stale, refused, not_delivered).',
      labelNames: ['callback', 'outcome'],
      registers,
    }),
    wecomCallbackDeliveries: new Counter({
      name: 'wegate_wecom_callback_deliveries_total',
      help: 'Deliveries of decrypted callbacks to the vendor, by callback and result (ok, rejected = non-2xx, timeout, error, queued = sync fallback to the queue, dead_letter).',
      labelNames: ['callback', 'result'],
      registers,
    }),
    wecomProviderEvents: new Counter({
      name: 'wegate_wecom_provider_events_total',
      help: 'Provider events (指令回调: suite_ticket, create_auth, reset_permanent_code, change_auth, cancel_auth) handled by wegate, by suite, type and outcome.',
      labelNames: ['suite', 'type', 'outcome'],
      registers,
    }),
    wecomPermanentCodeExchanges: new Counter({
      name: 'wegate_wecom_permanent_code_exchanges_total',
      help: 'AuthCode → permanent code exchanges (service/v2/get_permanent_code), by suite and result (ok, retry, rejected, expired).',
      labelNames: ['suite', 'result'],
      registers,
    }),
    wecomCallbackQueueDepth: new Gauge({
      name: 'wegate_wecom_callback_queue_depth',
      help: 'Queued callbacks not delivered yet (in flight included), per callback.',
      labelNames: ['callback'],
      registers,
    }),
    wecomCallbackQueueOldestAge: new Gauge({
      name: 'wegate_wecom_callback_queue_oldest_age_seconds',
      help: 'Age of the oldest queued callback not delivered yet, per callback (0 when none).',
      labelNames: ['callback'],
      registers,
    }),
    wecomCallbackDeadLetters: new Gauge({
      name: 'wegate_wecom_callback_dead_letters',
      help: 'Dead-lettered callbacks (attempts or age exhausted) waiting for a re-drive, per callback.',
      labelNames: ['callback'],
      registers,
    }),
  };
}
