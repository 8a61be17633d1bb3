/**
 * Shared test helpers for the server and app tests: a config with defaults filled, a gateway on
 * ephemeral loopback ports with captured logs, a loopback upstream, and raw-socket / HTTP(S) clients.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { type Agent, request as httpsRequest } from 'node:https';
import { type AddressInfo, connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { type PeerCertificate, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { Registry } from 'prom-client';
import type { Test } from 'tap';
import { WebSocketServer } from 'ws';
import { createGateway, type Gateway, type GatewayDeps, type ListenAddresses } from '../../src/app.ts';
import { loadConfigText } from '../../src/config/load.ts';
import type { Config } from '../../src/config/schema.ts';
import { createLogger } from '../../src/core/logger.ts';

export const TLS_DIR = join(import.meta.dirname, '../fixtures/tls');
export const CA = readFileSync(join(TLS_DIR, 'ca.pem'));

/** A validated Config from a plain object, defaults filled by the real loader. */
export function makeConfig(partial: Record<string, unknown>): Config {
  const r = loadConfigText(JSON.stringify(partial), join(TLS_DIR, 'test.yaml'));
  if (!r.ok) throw new Error(`test config invalid: ${JSON.stringify(r.problems)}`);
  return r.config;
}

/** Log lines captured from a real pino logger. */
export interface LogCapture {
  readonly lines: Record<string, unknown>[];
  readonly text: () => string;
}

export function captureLogger(): { logger: GatewayDeps['logger']; logs: LogCapture } {
  const raw: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: {
      write(s: string) {
        raw.push(s);
        for (const l of s.split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      },
    },
  });
  return { logger, logs: { lines, text: () => raw.join('') } };
}

export interface Running {
  readonly gw: Gateway;
  readonly addrs: ListenAddresses;
  readonly logs: LogCapture;
  readonly registry: Registry;
  readonly httpPort: number;
  readonly httpsPort: number;
  readonly adminPort: number;
}

/** createGateway + listen on ephemeral loopback ports; closed (drain 0) in teardown. */
export async function startGateway(t: Test, config: Config, extra: Partial<GatewayDeps> = {}): Promise<Running> {
  const { logger, logs } = captureLogger();
  const registry = new Registry();
  const gw = await createGateway(config, { logger, registry, processMetrics: false, certWatchDebounceMs: 50, ...extra });
  t.teardown(() => gw.close({ drainTimeoutMs: 0 }));
  const addrs = await gw.listen();
  return {
    gw,
    addrs,
    logs,
    registry,
    httpPort: addrs.http?.port ?? 0,
    httpsPort: addrs.https?.port ?? 0,
    adminPort: addrs.admin.port,
  };
}

/** Listen addresses for a test gateway: every listener on 127.0.0.1, ephemeral ports. */
export const LOOPBACK = { http: '127.0.0.1:0', header_timeout_ms: 5000 } as const;
export const ADMIN = { listen: '127.0.0.1:0' } as const;

export interface Upstream {
  readonly server: Server;
  readonly url: string;
  readonly port: number;
  /** Requests seen: method, url, headers. */
  readonly seen: { method: string; url: string; headers: IncomingHttpHeaders }[];
  /** Pending held responses (GET /hold...), released by calling them. */
  readonly held: Set<() => void>;
}

/**
 * A loopback upstream: answers "<name> <url>" as text; `/hold…` waits until the test releases it;
 * `/slow-body` reads the whole body before answering; WebSocket echo on any path.
 */
export async function startUpstream(
  t: Test,
  name = 'up',
  handler?: (req: IncomingMessage, res: ServerResponse) => void,
): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const held = new Set<() => void>();
  const server = createHttpServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    if (handler) return handler(req, res);
    if (req.url?.startsWith('/hold')) {
      const release = () => {
        held.delete(release);
        res.end(`${name} held ${req.url}`);
      };
      held.add(release);
      return;
    }
    let body = '';
    req.on('data', (d: Buffer) => (body += d));
    req.on('end', () => {
      res.setHeader('content-type', 'text/plain');
      res.end(`${name} ${req.method} ${req.url}${body ? ` body=${body}` : ''}`);
    });
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws) => ws.on('message', (m) => ws.send(`echo:${String(m)}`)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return { server, url: `http://127.0.0.1:${port}`, port, seen, held };
}

export interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** The request went over a kept-alive connection. */
  readonly reused: boolean;
  /** Serial number of the server certificate (HTTPS only). */
  readonly serial: string | undefined;
}

export interface RequestOptions {
  readonly method?: string;
  readonly path?: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  /** HTTPS with the test CA; `servername` for SNI. */
  readonly tls?: { readonly servername?: string; readonly agent?: Agent };
  readonly agent?: import('node:http').Agent;
}

/** One HTTP(S) request to 127.0.0.1:port with the given Host; resolves with the whole reply. */
export function send(port: number, host: string, opts: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const common = {
      host: '127.0.0.1',
      port,
      method: opts.method ?? 'GET',
      path: opts.path ?? '/',
      headers: { host, ...opts.headers },
    };
    const onRes = (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      const peer = (res.socket as TLSSocket).getPeerCertificate?.();
      const serial = peer?.serialNumber;
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, reused: req.reusedSocket, serial }));
      res.on('error', reject);
    };
    const req = opts.tls
      ? httpsRequest(
          { ...common, ca: CA, servername: opts.tls.servername ?? host.replace(/:\d+$/, ''), agent: opts.tls.agent ?? false },
          onRes,
        )
      : httpRequest({ ...common, agent: opts.agent ?? false }, onRes);
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Write raw bytes to 127.0.0.1:port and collect everything until the server closes (or `waitMs`, then close). */
export function raw(port: number, text: string | readonly string[], waitMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (out += d));
    socket.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on('connect', () => {
      for (const part of typeof text === 'string' ? [text] : text) socket.write(part, 'latin1');
    });
  });
}

/** The status code of the first response in raw HTTP text (0 when there is none). */
export const rawStatus = (text: string): number => Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);

/** TLS handshake to 127.0.0.1:port with SNI `servername` (undefined = none); returns the peer certificate. */
export function peerCertificate(port: number, servername: string | undefined): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca: CA,
      ...(servername ? { servername } : { servername: '' }),
      checkServerIdentity: () => undefined,
    });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      socket.end();
      resolve(cert);
    });
    socket.once('error', reject);
  });
}

/** Poll `cond` every 10 ms until it holds or `ms` pass (bounded); resolves with its last value. */
export async function waitFor<T>(cond: () => T | Promise<T>, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  let v = await cond();
  while (!v && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 10));
    v = await cond();
  }
  return v;
}
