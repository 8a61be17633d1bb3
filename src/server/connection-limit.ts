/**
 * Caps on concurrent client connections over the public listeners, in total and per client IP
 * (listen.max_connections, listen.max_connections_per_ip; 0 = no limit). A connection beyond a cap
 * is not cut at accept: it is marked, and the pipeline answers its request with a complete HTTP
 * 503 WG_TOO_MANY_CONNECTIONS and `Connection: close` (as nginx's limit_conn does), so the client
 * reads a clear answer instead of a reset, over TLS too, with a request id and an access-log line.
 * Plain connections are counted when accepted, TLS ones once their handshake is done (a pending
 * handshake is bounded by the handshake timeout).
 */
import type { Socket } from 'node:net';
import type { Logger } from '../core/logger.ts';

/** Set on a socket that is over a cap; the pipeline refuses its requests. */
export const kOverLimit = Symbol('wegate.overLimit');
const kCounted = Symbol('wegate.counted');

type LimitedSocket = Socket & { [kOverLimit]?: true; [kCounted]?: string | undefined };

export interface ConnectionLimits {
  /** 0 = no limit. */
  readonly maxConnections: number;
  /** 0 = no limit. */
  readonly maxPerIp: number;
}

export interface ConnectionLimiter {
  /** A new client connection (plain: accepted; TLS: handshake done): count it, or mark it over a cap. */
  admit(socket: Socket): void;
  /** New caps (reload); connections already open stay. */
  configure(limits: ConnectionLimits): void;
  /** Connections counted now (open and admitted). */
  readonly open: number;
}

export interface ConnectionLimiterDeps extends ConnectionLimits {
  readonly logger: Logger;
}

/** The peer address, never a header. IPv4 clients of a dual-stack listener appear as "::ffff:a.b.c.d": without the prefix. */
export function clientIp(address: string | undefined): string {
  if (address === undefined) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export function createConnectionLimiter(deps: ConnectionLimiterDeps): ConnectionLimiter {
  const { logger } = deps;
  let limits: ConnectionLimits = { maxConnections: deps.maxConnections, maxPerIp: deps.maxPerIp };
  let open = 0;
  const perIp = new Map<string, number>();

  function release(this: LimitedSocket): void {
    const ip = this[kCounted];
    if (ip === undefined) return;
    this[kCounted] = undefined;
    open--;
    const n = (perIp.get(ip) ?? 1) - 1;
    if (n === 0) perIp.delete(ip);
    else perIp.set(ip, n);
  }

  return {
    admit(socket) {
      const s = socket as LimitedSocket;
      const ip = clientIp(s.remoteAddress);
      const fromIp = perIp.get(ip) ?? 0;
      const { maxConnections, maxPerIp } = limits;
      const over =
        maxConnections > 0 && open >= maxConnections
          ? 'max_connections'
          : maxPerIp > 0 && fromIp >= maxPerIp
            ? 'max_connections_per_ip'
            : '';
      if (over !== '') {
        s[kOverLimit] = true;
        // The address is the client's own (no secret); debug, since a flood would fill the log.
        logger.debug({ client_ip: ip, limit: over, open, from_ip: fromIp }, 'connection over the limit: its requests get 503');
        return;
      }
      open++;
      perIp.set(ip, fromIp + 1);
      s[kCounted] = ip;
      s.once('close', release);
    },
    configure(next) {
      limits = { maxConnections: next.maxConnections, maxPerIp: next.maxPerIp };
    },
    get open() {
      return open;
    },
  };
}
