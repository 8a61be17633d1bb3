/**
 * The CONNECT tunnel for vendor SDKs that only have a proxy setting: a separate listener that opens
 * a TCP tunnel to the WeCom API host and port (the configured api_base, nothing else) from the
 * pinned egress address. The SDK does TLS end to end with WeCom through it, so the tunnel sees only
 * ciphertext: it pins the egress IP, it does not inject tokens (the vendor keeps its own secret).
 *
 * Refusals: no or wrong Proxy-Authorization → 407, a source outside the client's CIDRs → 403, any
 * other host or port → 403, any method but CONNECT → 405. A forward-proxy egress profile is refused
 * at start-up (the tunnel would have to chain a CONNECT through it; it does not).
 */
import type { IncomingMessage, Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ERRORS, type ErrorCode } from '../../core/errors.ts';
import { sendError } from '../../core/http.ts';
import { createServer, STATUS_CODES } from '../../core/node-http.ts';
import type { Logger } from '../../core/logger.ts';
import type { Metrics } from '../../metrics/metrics.ts';
import type { WecomEgress } from '../api/index.ts';
import type { RelayClient, RelayClients } from './clients.ts';

export interface RelayTunnelDeps {
  /** The current generation's clients (a reload swaps them). */
  readonly clients: () => RelayClients | undefined;
  /** wecom.api_base: the one host:port the tunnel reaches. */
  readonly apiBase: string;
  readonly egress: WecomEgress;
  readonly connectTimeoutMs: number;
  readonly idleMs: number;
  /** Header timeout of the CONNECT request itself. */
  readonly headerTimeoutMs: number;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'relayTunnels' | 'relayTunnelsOpen'>;
}

export interface RelayTunnel {
  /** The listener (not listening yet: the composition root binds it). */
  readonly server: Server;
  /** The authority ("host:port") CONNECT requests must name. */
  readonly target: string;
  /** Sockets held now (CONNECTs being answered, both ends of open tunnels). */
  connections(): number;
  /** Stop accepting and cut every open tunnel. */
  close(): Promise<void>;
}

/** host and port of an http(s) origin; IPv6 without brackets. */
function targetOf(apiBase: string): { host: string; port: number; authority: string } {
  const u = new URL(apiBase);
  const port = u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return { host, port, authority: `${u.hostname.toLowerCase()}:${port}` };
}

/** A complete error response written on a raw socket, which is then closed. */
function answer(socket: Duplex, code: ErrorCode, id: string, extra = ''): void {
  const spec = ERRORS[code];
  const body = `${JSON.stringify({ error: code, status: spec.status, message: spec.en, message_zh: spec.zh, request_id: id })}\n`;
  socket.end(
    `HTTP/1.1 ${spec.status} ${STATUS_CODES[spec.status]}\r\n${extra}Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
  );
  setTimeout(() => socket.destroy(), 1000).unref();
}

export function createRelayTunnel(deps: RelayTunnelDeps): RelayTunnel {
  const { egress, logger, metrics } = deps;
  if (egress.viaProxy) {
    throw new Error(
      `relay.connect_listen: the WeCom egress "${egress.name}" is a forward proxy; the CONNECT tunnel does not chain through another proxy. ` +
        'Use an egress profile with local_address for WeCom, or remove relay.connect_listen (the API relay works with either). / ' +
        `relay.connect_listen：企业微信出口 "${egress.name}" 为正向代理，CONNECT 隧道不支持再经代理转发；请为企业微信使用 local_address 类型的出口，或删除 relay.connect_listen（接口中继两种出口均可使用）。`,
    );
  }
  const target = targetOf(deps.apiBase);
  const open = new Set<Socket>();
  let seq = 0;
  const nextId = () => `tunnel-${(++seq).toString(36)}`;

  const server = createServer({
    requireHostHeader: false,
    headersTimeout: deps.headerTimeoutMs,
    requestTimeout: deps.headerTimeoutMs,
    // Node checks these timeouts only every connectionsCheckingInterval (30 s by default).
    connectionsCheckingInterval: Math.max(25, Math.min(1000, Math.floor(deps.headerTimeoutMs / 2))),
  });
  server.on('request', (req, res) => {
    metrics.relayTunnels.inc({ client: '-', result: 'bad_method' });
    sendError(req, res, { id: nextId() }, 'WG_METHOD_NOT_ALLOWED', { allow: 'CONNECT' });
  });
  server.on('upgrade', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    metrics.relayTunnels.inc({ client: '-', result: 'bad_method' });
    answer(socket, 'WG_METHOD_NOT_ALLOWED', nextId(), 'Allow: CONNECT\r\n');
  });
  server.on('clientError', (_err: Error, socket: Duplex) => socket.destroy());

  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    // Tracked from here, refused or not (close() cuts them; a refused one leaves the set when it closes).
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    const id = nextId();
    const clients = deps.clients();
    const count = (client: RelayClient | undefined, result: string) => metrics.relayTunnels.inc({ client: client?.name ?? '-', result });
    const source = socket.remoteAddress ?? '';
    // An address that failed authentication too often is refused before its password is looked at.
    const locked = clients?.authWait(source) ?? 0;
    if (locked > 0) {
      count(undefined, 'auth_throttled');
      return answer(socket, 'WG_RELAY_RATE_LIMITED', id, `Retry-After: ${locked}\r\n`);
    }
    const client = clients?.byBasic(req.headers['proxy-authorization']);
    if (!client) {
      clients?.authFailed(source);
      count(undefined, 'unauthorized');
      return answer(socket, 'WG_PROXY_AUTH_REQUIRED', id, 'Proxy-Authenticate: Basic realm="wegate"\r\n');
    }
    if (!client.allowsSource(socket.remoteAddress ?? '')) {
      count(client, 'forbidden_source');
      return answer(socket, 'WG_RELAY_FORBIDDEN_SOURCE', id);
    }
    if ((req.url ?? '').toLowerCase() !== target.authority) {
      count(client, 'forbidden_target');
      logger.info({ client: client.name, target: (req.url ?? '').slice(0, 200), req_id: id }, 'relay tunnel: target refused');
      return answer(socket, 'WG_TUNNEL_FORBIDDEN_TARGET', id);
    }
    const upstream = connect({
      host: target.host,
      port: target.port,
      ...(egress.localAddress !== undefined ? { localAddress: egress.localAddress } : {}),
      ...(egress.family !== undefined ? { family: egress.family } : {}),
      noDelay: true,
    });
    const connectTimer = setTimeout(
      () => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'ETIMEDOUT' })),
      deps.connectTimeoutMs,
    );
    let established = false;
    upstream.once('connect', () => {
      clearTimeout(connectTimer);
      established = true;
      if (socket.destroyed) return upstream.destroy();
      count(client, 'opened');
      metrics.relayTunnelsOpen.inc();
      open.add(upstream);
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      socket.pipe(upstream);
      upstream.pipe(socket);
      // Idle either way for idleMs → both closed.
      socket.setTimeout(deps.idleMs, () => socket.destroy());
      upstream.setTimeout(deps.idleMs, () => upstream.destroy());
    });
    upstream.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(connectTimer);
      if (established) return socket.destroy();
      count(client, 'connect_failed');
      logger.warn({ client: client.name, error_code: e.code, req_id: id }, 'relay tunnel: WeCom could not be reached');
      answer(socket, e.code === 'ETIMEDOUT' ? 'WG_WECOM_TIMEOUT' : 'WG_WECOM_UNREACHABLE', id);
    });
    upstream.once('close', () => {
      if (established && open.delete(upstream)) metrics.relayTunnelsOpen.dec();
      socket.destroy();
    });
    socket.once('close', () => upstream.destroy());
  });

  return {
    server,
    target: target.authority,
    connections: () => open.size,
    close() {
      for (const s of open) s.destroy();
      return new Promise((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
