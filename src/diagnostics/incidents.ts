/**
 * Recent incidents for /diagnostics, `wegate doctor` and the logs: one entry per distinct
 * (app, API, cause, IPs), counted, with first/last seen and the action in English and 简体中文.
 * Bounded (lru-cache); logged once per distinct entry, not once per request; every occurrence is
 * counted in wegate_wecom_incidents_total{app,cause}.
 *
 * A vendor's incidents (seen in its responses, `source: 'vendor'`) are kept in a bucket of their
 * own, so however many a vendor produces they never evict wegate's own (review F3: 400 requests to
 * a vendor page filled the whole list and pushed out the gateway's real not_in_trusted_ip); and at
 * most `vendorLogsPerMinute` new ones are logged per minute of the injected clock, the others only
 * counted (one line says logging paused, one line after the minute says how many were not logged).
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
  /** Distinct incidents of wegate's own calls kept (default 256); the least recently seen go first. */
  readonly max?: number;
  /** Distinct vendor incidents kept, apart from wegate's own (default 64); the least recently seen go first. */
  readonly maxVendor?: number;
  /** New vendor incidents logged per minute (default 10); the rest are counted, not logged. */
  readonly vendorLogsPerMinute?: number;
}

const MINUTE_MS = 60_000;

export function createIncidents({ clock, logger, metrics, max = 256, maxVendor = 64, vendorLogsPerMinute = 10 }: IncidentsDeps): Incidents {
  const own = new LRUCache<string, Incident>({ max });
  const vendor = new LRUCache<string, Incident>({ max: maxVendor });
  // The vendor log budget: a window of one minute from its first logged incident.
  let windowStart = 0;
  let logged = 0;
  let notLogged = 0;

  /** Whether a new vendor incident may be logged now; logs the pause and the previous window's tally. */
  const vendorMayLog = (now: number): boolean => {
    if (logged > 0 && now - windowStart >= MINUTE_MS) {
      if (notLogged > 0) {
        logger.warn(
          {
            source: 'vendor',
            vendor_incidents_not_logged: notLogged,
            window_s: Math.round((now - windowStart) / 1000),
            action_zh: `上一时间窗口内另有 ${notLogged} 条新的服务商故障未写入日志；均已计入 wegate_wecom_incidents_total，最近的记录见 /diagnostics。`,
          },
          `${notLogged} more new vendor incidents were not logged in the previous window; all are counted in wegate_wecom_incidents_total and the latest are in /diagnostics.`,
        );
      }
      logged = notLogged = 0;
    }
    if (logged === 0) windowStart = now;
    if (logged < vendorLogsPerMinute) {
      logged++;
      return true;
    }
    if (notLogged++ === 0) {
      logger.warn(
        {
          source: 'vendor',
          vendor_logs_per_minute: vendorLogsPerMinute,
          action_zh: `一分钟内新的服务商故障超过 ${vendorLogsPerMinute} 条：本分钟其余的只计数、不写日志（见 wegate_wecom_incidents_total 和 /diagnostics）。`,
        },
        `More than ${vendorLogsPerMinute} new vendor incidents within a minute: the rest of this minute's are counted (wegate_wecom_incidents_total, /diagnostics), not logged.`,
      );
    }
    return false;
  };

  return {
    record(input) {
      const source = input.source ?? 'wegate';
      const entries = source === 'vendor' ? vendor : own;
      const key = [source, input.app, input.api, input.cause, input.fromIp ?? '', input.expectedIp ?? ''].join('|');
      const now = clock();
      const prev = entries.get(key);
      const next: Incident = prev
        ? { ...prev, ...input, key, firstSeen: prev.firstSeen, lastSeen: now, count: prev.count + 1 }
        : { ...input, key, firstSeen: now, lastSeen: now, count: 1 };
      entries.set(key, next);
      metrics.wecomIncidents.inc({ app: input.app, cause: input.cause });
      if (!prev && (source !== 'vendor' || vendorMayLog(now))) {
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
            source,
            path: input.path,
            action_zh: input.zh,
          },
          input.en,
        );
      }
      return next;
    },
    list() {
      return [...own.values(), ...vendor.values()].sort((a, b) => b.lastSeen - a.lastSeen);
    },
  };
}
