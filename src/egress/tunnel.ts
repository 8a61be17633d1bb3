/**
 * HTTP CONNECT tunnels through a forward proxy for the connections that undici's ProxyAgent cannot
 * serve: the route pools of src/proxy (a Pool per upstream origin whose `connect` opens the tunnel,
 * which is what ProxyAgent builds inside for each origin, without its per-request header copy and
 * its need for `origin` in every dispatch) and WebSocket upgrades through http-proxy-3 (an
 * http(s).Agent whose createConnection opens the tunnel). The CONNECT itself is undici's: a Client to
 * the proxy (reached from the profile's local address) and its connect() API.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import type { ClientRequestArgs } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { buildConnector } from 'undici';
import { Agent as HttpAgent } from '../core/node-http.ts';
import { undici } from './undici.ts';

/** How to reach the forward proxy. `authorization` is a secret: never logged, never in an error. */
export interface TunnelSettings {
  /** "http://10.0.0.9:3128" */
  readonly proxyOrigin: string;
  readonly authorization: string | undefined;
  readonly localAddress: string | undefined;
  readonly family: 4 | 6 | undefined;
}

/** The forward proxy refused or broke the tunnel. `statusCode` is the proxy's answer to CONNECT (0 when none). */
export class EgressProxyError extends Error {
  override readonly name = 'EgressProxyError';
  readonly code = 'WG_EGRESS_PROXY';
  readonly statusCode: number;
  constructor(message: string, statusCode: number, options?: { cause?: unknown }) {
    super(message, options);
    this.statusCode = statusCode;
  }
}

const noop = (): void => {};

const authority = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);
const unbracket = (host: string) => (host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host);

/** What a proxy's refusal of CONNECT means (English + 简体中文), to append to a message; "" when nothing specific. */
export function refusalHint(status: number): string {
  // tinyproxy answers a wrong password with 401, RFC 9110 proxies with 407.
  if (status === 407 || status === 401)
    return ': proxy authentication failed, check proxy.credentials_file (代理认证失败，请检查 proxy.credentials_file)';
  if (status === 403) return ': the proxy does not allow this client or port (代理拒绝了本机或该端口)';
  return '';
}

const refusal = (origin: string, target: string, status: number) =>
  `egress proxy ${origin} refused the tunnel to ${target} with HTTP ${status}${refusalHint(status)}`;

/**
 * Open a CONNECT tunnel to host:port; resolves with the raw socket (TLS is the caller's). Fails with
 * an EgressProxyError when the proxy answers anything but 200, a timeout error (code ETIMEDOUT)
 * after `timeoutMs`, or the error connecting to the proxy (ECONNREFUSED …).
 */
export async function openTunnel(t: TunnelSettings, host: string, port: number, timeoutMs: number): Promise<Socket> {
  const { Client, connect } = undici();
  const target = authority(unbracket(host), port);
  const client = new Client(t.proxyOrigin, {
    ...(t.localAddress !== undefined ? { localAddress: t.localAddress } : {}),
    connect: { timeout: timeoutMs, ...(t.family !== undefined ? { family: t.family } : {}) },
  });
  const abort = new AbortController();
  const timer = setTimeout(() => {
    abort.abort(
      Object.assign(new Error(`egress proxy ${t.proxyOrigin} did not open the tunnel to ${target} within ${timeoutMs} ms`), {
        code: 'ETIMEDOUT',
      }),
    );
  }, timeoutMs);
  timer.unref();
  try {
    const { socket, statusCode } = await connect.call(client, {
      origin: t.proxyOrigin,
      path: target,
      headers: t.authorization !== undefined ? { host: target, 'proxy-authorization': t.authorization } : { host: target },
      signal: abort.signal,
    });
    if (statusCode !== 200) {
      socket.on('error', noop).destroy();
      throw new EgressProxyError(refusal(t.proxyOrigin, target, statusCode), statusCode);
    }
    return socket as Socket;
  } catch (err) {
    if (err instanceof EgressProxyError) throw err;
    if (abort.signal.aborted) throw abort.signal.reason;
    const code = (err as { code?: unknown }).code;
    // undici treats these as recoverable on an established connection and would retry the connect
    // for ever (see undici's proxy-agent.js, #3897): the tunnel failed, say so.
    if (code === 'UND_ERR_SOCKET' || code === 'UND_ERR_INFO') {
      throw new EgressProxyError(`egress proxy ${t.proxyOrigin} closed the connection before the tunnel to ${target} was open`, 0, {
        cause: err,
      });
    }
    throw err;
  } finally {
    clearTimeout(timer);
    // The tunnel socket has left the client (undici detaches it on CONNECT): closing the client is safe.
    client.close().catch(noop);
  }
}

/**
 * An undici `connect` function for a Pool: the tunnel, then TLS inside it for https origins with the
 * pool's own TLS options (CA, servername, verification), as ProxyAgent does for each origin.
 */
export function tunnelConnector(t: TunnelSettings, tls: buildConnector.BuildOptions): buildConnector.connector {
  const { buildConnector } = undici();
  const timeoutMs = tls.timeout ?? 10_000;
  const endpoint = buildConnector({ ...tls, allowH2: false });
  return (opts, callback) => {
    const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
    openTunnel(t, opts.hostname, port, timeoutMs).then(
      (socket) => {
        if (opts.protocol !== 'https:') callback(null, socket);
        else endpoint({ ...opts, httpSocket: socket }, callback);
      },
      (err: Error) => callback(err, null),
    );
  };
}

type ConnectCallback = (err: Error | null, stream: Duplex) => void;

/** createConnection of the tunnel agents: the tunnel, then for wss TLS with the request's own options. */
function connectThrough(
  t: TunnelSettings,
  secure: boolean,
  timeoutMs: number,
  options: ClientRequestArgs,
  callback: ConnectCallback,
): void {
  const host = unbracket(options.host ?? options.hostname ?? 'localhost');
  const port = Number(options.port) || (secure ? 443 : 80);
  openTunnel(t, host, port, timeoutMs).then(
    (socket) => {
      if (!secure) {
        callback(null, socket);
        return;
      }
      let done = false;
      const tlsSocket = tlsConnect({ ...(options as object), socket, ALPNProtocols: ['http/1.1'] });
      tlsSocket.once('secureConnect', () => {
        done = true;
        callback(null, tlsSocket);
      });
      tlsSocket.once('error', (err) => {
        if (done) return;
        done = true;
        socket.destroy();
        callback(err, tlsSocket);
      });
    },
    (err: Error) => callback(err, undefined as unknown as Duplex),
  );
}

/**
 * An http(s).Agent whose every connection is a tunnel through the proxy (for http-proxy-3's
 * `agent`): plain for ws:// upstreams, TLS to the upstream inside the tunnel for wss://.
 */
export function createTunnelAgent(t: TunnelSettings, secure: boolean, timeoutMs: number): HttpAgent {
  const agent = secure ? new HttpsAgent({ keepAlive: false }) : new HttpAgent({ keepAlive: false });
  agent.createConnection = (options: ClientRequestArgs, callback?: ConnectCallback): undefined => {
    connectThrough(t, secure, timeoutMs, options, callback ?? noop);
    return undefined;
  };
  return agent;
}
