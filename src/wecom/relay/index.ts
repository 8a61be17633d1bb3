/**
 * The relay for vendor servers (opt-in, `relay:`): the API relay on `<gateway.prefix>relay/…` and
 * the CONNECT tunnel listener (`relay.connect_listen`). `createRelay` builds one configuration
 * generation (clients and the API relay handler); the rate-limit buckets (`createRelayLimiter`)
 * and the tunnel listener outlive reloads and are created once by the composition root.
 */
import type { RelayConfig, WecomConfig } from '../../config/schema.ts';
import type { Logger } from '../../core/logger.ts';
import type { Incidents } from '../../diagnostics/incidents.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import type { WecomApi } from '../api/index.ts';
import { type ApiRelayHandler, createApiRelay } from './api-relay.ts';
import { createRelayClients, type RelayClients, type RelayLimiter } from './clients.ts';

export { type ApiRelayHandler, stripAccessToken } from './api-relay.ts';
export {
  createRelayClients,
  createRelayLimiter,
  parseCidr,
  type RelayClient,
  type RelayClients,
  type RelayLimiter,
  TokenBucket,
} from './clients.ts';
export { createRelayTunnel, type RelayTunnel, type RelayTunnelDeps } from './tunnel.ts';

export interface RelayDeps {
  readonly config: RelayConfig;
  readonly wecom: WecomApi;
  readonly wecomConfig: WecomConfig;
  readonly limiter: RelayLimiter;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'relayRequests' | 'wecomApiCalls' | 'wecomApiDuration'>;
  readonly incidents?: Incidents;
}

export interface Relay {
  readonly clients: RelayClients;
  /** The `relay/` handler of the gateway paths stage. */
  readonly handle: ApiRelayHandler;
}

/** One generation of the relay. Owns no timers or sockets (the tunnel does: see createRelayTunnel). */
export function createRelay(deps: RelayDeps): Relay {
  const clients = createRelayClients(deps.config.clients, deps.limiter, deps.metrics.relayRequests);
  const handle = createApiRelay({
    clients,
    wecom: deps.wecom,
    wecomConfig: deps.wecomConfig,
    maxBodyBytes: deps.config.max_body_bytes,
    logger: deps.logger,
    metrics: deps.metrics,
    ...(deps.incidents ? { incidents: deps.incidents } : {}),
  });
  return { clients, handle };
}
