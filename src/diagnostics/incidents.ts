/**
 * Recent incidents for /diagnostics, `wegate doctor` and the logs: one entry per distinct
 * (app, API, cause, IPs), counted, with first/last seen and the action in English and 简体中文.
 * Bounded (lru-cache); logged once per distinct entry, not once per request; every occurrence is
 * counted in wegate_wecom_incidents_total{app,cause}.
 */
import { LRUCache } from 'lru-cache';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';

export interface IncidentInput {
  /** The app (or, for a vendor's own call seen in a response, the route) the incident belongs to. */
  readonly app: string;
  /** API path or route path, never a query. */
  readonly api: string;
  /** A fixed cause: pin_not_effective, not_in_trusted_ip, provider_ip_whitelist, bad_credentials … */
  readonly cause: string;
  readonly errcode?: number;
  /** The address WeCom saw. */
  readonly fromIp?: string;
  /** The address the admin whitelisted. */
  readonly expectedIp?: string;
  /** The local address wegate was pinned to. */
  readonly localAddress?: string;
  readonly hint?: string;
  /** Who made the failing call: wegate itself, or a vendor behind it (its response went through). */
  readonly source?: 'wegate' | 'vendor';
  /** For a vendor's incident: the request path (no query) of the latest response it was seen in. */
  readonly path?: string;
  readonly en: string;
  readonly zh: string;
}

export interface Incident extends IncidentInput {
  readonly key: string;
  /** ms since the epoch (injected clock). */
  readonly firstSeen: number;
  readonly lastSeen: number;
  readonly count: number;
}

export interface Incidents {
  /** Record one occurrence; returns the incident as it now stands. */
  record(input: IncidentInput): Incident;
  /** Most recent first. */
  list(): Incident[];
}

export interface IncidentsDeps {
  readonly clock: () => number;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'wecomIncidents'>;
  /** Distinct incidents kept (default 256); the least recently seen go first. */
  readonly max?: number;
}

export function createIncidents({ clock, logger, metrics, max = 256 }: IncidentsDeps): Incidents {
  const entries = new LRUCache<string, Incident>({ max });
  return {
    record(input) {
      const key = [input.source ?? 'wegate', input.app, input.api, input.cause, input.fromIp ?? '', input.expectedIp ?? ''].join('|');
      const now = clock();
      const prev = entries.get(key);
      const next: Incident = prev
        ? { ...prev, ...input, key, firstSeen: prev.firstSeen, lastSeen: now, count: prev.count + 1 }
        : { ...input, key, firstSeen: now, lastSeen: now, count: 1 };
      entries.set(key, next);
      metrics.wecomIncidents.inc({ app: input.app, cause: input.cause });
      if (!prev) {
        logger.warn(
          {
            incident: input.cause,
            app: input.app,
            api: input.api,
            errcode: input.errcode,
            from_ip: input.fromIp,
            expected_ip: input.expectedIp,
            local_address: input.localAddress,
            hint: input.hint,
            source: input.source ?? 'wegate',
            path: input.path,
            action_zh: input.zh,
          },
          input.en,
        );
      }
      return next;
    },
    list() {
      return [...entries.values()].sort((a, b) => b.lastSeen - a.lastSeen);
    },
  };
}
