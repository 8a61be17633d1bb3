/**
 * The public HTTP/HTTPS servers: Node server options against slow and malformed clients, socket
 * tracking for a shutdown that cannot hang, and the listen-address helpers shared with the admin
 * listener.
 */
import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { parseListenAddress } from '../core/addresses.ts';
import type { LiveList } from '../core/live-list.ts';
import { createServer as createHttpServer } from '../core/node-http.ts';
import type { ConnectionLimiter } from './connection-limit.ts';
import type { Pipeline } from './pipeline.ts';
import type { CertStore } from './tls.ts';

export interface ListenerTimeouts {
  readonly headerTimeoutMs: number;
  readonly requestTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
}

export interface PublicServerOptions {
  readonly secure: boolean;
  readonly timeouts: ListenerTimeouts;
  readonly pipeline: Pipeline;
  /** Every accepted socket, until it closes (server.close() alone never finishes with upgraded or silent sockets). */
  readonly sockets: LiveList<Socket>;
  /** The HTTPS listener's certificate selection (delegating, so a reload can swap the store). */
  readonly tls?: { readonly defaultOptions: SecureContextOptions; readonly SNICallback: CertStore['SNICallback'] };
  /** listen.max_connections(_per_ip), shared by the public listeners. */
  readonly limiter?: ConnectionLimiter;
}

/** Node checks header/request timeouts only every `connectionsCheckingInterval` (30 s by default): check often enough. */
export function checkingInterval(t: ListenerTimeouts): number {
  return Math.max(25, Math.min(1000, Math.floor(Math.min(t.headerTimeoutMs, t.requestTimeoutMs) / 2)));
}

/** Set (or update, on reload) the timeout fields of a public server. */
export function applyTimeouts(server: Server, t: ListenerTimeouts): void {
  // Node requires headersTimeout <= requestTimeout.
  server.requestTimeout = t.requestTimeoutMs;
  server.headersTimeout = Math.min(t.headerTimeoutMs, t.requestTimeoutMs);
  server.keepAliveTimeout = t.keepAliveTimeoutMs;
}

/** Create (not start) a public listener wired to the pipeline. */
export function createPublicServer(opts: PublicServerOptions): Server {
  const { secure, timeouts, pipeline, sockets } = opts;
  const common = {
    connectionsCheckingInterval: checkingInterval(timeouts),
    headersTimeout: Math.min(timeouts.headerTimeoutMs, timeouts.requestTimeoutMs),
    requestTimeout: timeouts.requestTimeoutMs,
    keepAliveTimeout: timeouts.keepAliveTimeoutMs,
    // The pipeline answers a missing Host itself, with a request id and for HTTP/1.0 too.
    requireHostHeader: false,
    noDelay: true,
    // A request without Content-Length or Transfer-Encoding has no body: Node then skips the
    // request stream's 'data'/'end'/'close' life cycle (measured 1.2 µs less CPU per request). The
    // pipeline never listens to a body-less request's stream events (client aborts are seen on the response).
    optimizeEmptyRequests: true,
    // Only WebSocket handshakes are upgraded; h2c and other Upgrade requests are ordinary requests.
    shouldUpgradeCallback: pipeline.shouldUpgrade,
  };
  let server: Server;
  if (secure) {
    if (!opts.tls) throw new Error('HTTPS listener without certificates');
    server = createHttpsServer({
      ...common,
      ...opts.tls.defaultOptions,
      SNICallback: opts.tls.SNICallback,
      // A client that never finishes the handshake is a slow client too.
      handshakeTimeout: timeouts.headerTimeoutMs,
    }) as unknown as Server;
  } else {
    server = createHttpServer(common);
  }
  applyTimeouts(server, timeouts);
  server.on('connection', (socket: Socket) => {
    const node = sockets.add(socket);
    socket.once('close', () => sockets.delete(node));
  });
  const limiter = opts.limiter;
  // TLS connections count once the handshake is done: that socket is the one requests arrive on.
  if (limiter !== undefined) server.on(secure ? 'secureConnection' : 'connection', (socket: Socket) => limiter.admit(socket));
  server.on('request', pipeline.request(secure));
  server.on('checkContinue', pipeline.checkContinue(secure));
  server.on('upgrade', pipeline.upgrade(secure));
  server.on('connect', pipeline.connect(secure));
  server.on('clientError', pipeline.clientError);
  if (secure) server.on('tlsClientError', (_err: Error, socket: Socket) => socket.destroy());
  return server;
}

/** Bind `server` to `address`; rejects with a readable message on EADDRINUSE/EACCES. */
export function listenOn(server: Server, address: string, what: string): Promise<AddressInfo> {
  const parsed = parseListenAddress(address);
  if (!parsed.ok) return Promise.reject(new Error(`cannot listen on ${JSON.stringify(address)} for ${what}: it ${parsed.reason}`));
  const { host, port } = parsed.value;
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      const hint =
        e.code === 'EACCES' && port < 1024
          ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)'
          : e.code === 'EADDRINUSE'
            ? ' (another process is using it)'
            : '';
      reject(new Error(`cannot listen on ${address} for ${what}: ${e.code ?? e.message}${hint}`, { cause: e }));
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve(server.address() as AddressInfo);
    });
  });
}
