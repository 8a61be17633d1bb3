/**
 * Test helpers for the proxy: a tiny front server that does what the real server pipeline does before
 * calling the proxy (Host → ctx, parseTarget → ctx.path), fake upstreams that record what they
 * received, and route configs with the schema defaults filled in.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { Value } from '@sinclair/typebox/value';
import { Registry } from 'prom-client';
import { type RouteConfig, RouteSchema } from '../../src/config/schema.ts';
import { parseTarget, type RequestContext, sendError } from '../../src/core/http.ts';
import { createLogger, type Logger } from '../../src/core/logger.ts';
import { createMetrics, type Metrics } from '../../src/metrics/metrics.ts';
import { createProxy, type Proxy as GatewayProxy, type ObserverFactory } from '../../src/proxy/index.ts';

export const TLS_DIR = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));
export const CA_FILE = `${TLS_DIR}ca.pem`;
export const tlsFile = (name: string) => readFileSync(`${TLS_DIR}${name}`);

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** A route config as the loader would produce it (schema defaults filled). */
export function route(partial: Partial<RouteConfig> & { upstream: string }): RouteConfig {
  return Value.Default(RouteSchema, structuredClone(partial)) as RouteConfig;
}

export interface LogCapture {
  readonly logger: Logger;
  readonly lines: () => Record<string, unknown>[];
}

/** A logger writing JSON lines into memory. */
export function captureLogs(): LogCapture {
  const chunks: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void chunks.push(s) } });
  return {
    logger,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

export interface Front {
  readonly proxy: GatewayProxy;
  readonly metrics: Metrics;
  readonly logs: LogCapture;
  readonly port: number;
  readonly origin: string;
  readonly server: http.Server;
}

/** Start a front server (plain HTTP on 127.0.0.1) in front of createProxy(routes). */
export async function startFront(
  t: Teardown,
  routes: RouteConfig[],
  opts: { secure?: boolean; observer?: ObserverFactory } = {},
): Promise<Front> {
  const logs = captureLogs();
  const metrics = createMetrics({ registry: new Registry(), processMetrics: false });
  const proxy = createProxy({ routes, logger: logs.logger, metrics, ...(opts.observer ? { observer: opts.observer } : {}) });
  const makeCtx = (req: http.IncomingMessage): RequestContext | string => {
    const hostHeader = req.headers.host;
    if (typeof hostHeader !== 'string') return 'WG_BAD_HOST';
    const t = parseTarget(req.url);
    if (!t.ok) return t.code;
    const authority = hostHeader.toLowerCase();
    const host = authority.startsWith('[') ? authority.slice(0, authority.indexOf(']') + 1) : authority.split(':')[0];
    return {
      // A recognisable prefix lets tests tell the gateway's request id from an upstream's.
      id: `front-${randomUUID()}`,
      startedAt: process.hrtime.bigint(),
      clientIp: req.socket.remoteAddress ?? '',
      secure: opts.secure === true,
      host: host as string,
      authority,
      rawPath: t.rawPath,
      path: t.path,
      query: t.query,
    };
  };
  const server = http.createServer((req, res) => {
    const ctx = makeCtx(req);
    if (typeof ctx === 'string') {
      sendError(req, res, { id: 'x' }, ctx as 'WG_BAD_REQUEST');
      return;
    }
    const r = proxy.match(ctx.host, ctx.path);
    if (r === undefined) {
      sendError(req, res, ctx, 'WG_NOT_FOUND');
      return;
    }
    proxy.web(req, res, ctx, r);
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    const ctx = makeCtx(req);
    if (typeof ctx === 'string') {
      socket.destroy();
      return;
    }
    const r = proxy.match(ctx.host, ctx.path);
    if (r === undefined) {
      socket.destroy();
      return;
    }
    proxy.upgrade(req, socket, head, ctx, r);
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  t.teardown(async () => {
    proxy.closeWebSockets();
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
    await proxy.close();
  });
  return { proxy, metrics, logs, port, origin: `http://127.0.0.1:${port}`, server };
}

/** What a fake upstream saw. */
export interface Seen {
  readonly method: string;
  readonly url: string;
  readonly rawHeaders: string[];
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly remotePort: number;
  /** SNI the client sent (HTTPS upstreams). */
  readonly servername: string | false | null | undefined;
}

export interface Upstream {
  readonly port: number;
  readonly origin: string;
  readonly seen: Seen[];
  /** TCP connections accepted so far. */
  connections: number;
  readonly server: http.Server;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

const defaultHandler: Handler = (req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ url: req.url }));
};

async function listenUpstream(t: Teardown, server: http.Server, scheme: string, handler: Handler): Promise<Upstream> {
  const up: Upstream = { port: 0, origin: '', seen: [], connections: 0, server };
  const sockets = new Set<net.Socket>();
  server.on(scheme === 'https' ? 'secureConnection' : 'connection', (s: net.Socket) => {
    up.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      up.seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        rawHeaders: req.rawHeaders,
        headers: req.headers,
        body,
        remotePort: req.socket.remotePort ?? 0,
        servername: (req.socket as TLSSocket).servername,
      });
      handler(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  Object.assign(up, { port, origin: `${scheme}://127.0.0.1:${port}` });
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    server.closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
  });
  return up;
}

/** A plain HTTP upstream on 127.0.0.1. */
export function startUpstream(t: Teardown, handler: Handler = defaultHandler): Promise<Upstream> {
  return listenUpstream(t, http.createServer(), 'http', handler);
}

/** An HTTPS upstream on 127.0.0.1 with a certificate from test/fixtures/tls (default upstream.pem, from the test CA). */
export function startTlsUpstream(t: Teardown, handler: Handler = defaultHandler, cert = 'upstream'): Promise<Upstream> {
  const server = https.createServer({ cert: tlsFile(`${cert}.pem`), key: tlsFile(`${cert}.key`) });
  return listenUpstream(t, server as unknown as http.Server, 'https', handler);
}

export interface RawResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: string[];
  readonly body: string;
}

/** One request through node:http (raw headers allowed, no connection reuse). */
export function request(
  origin: string,
  path: string,
  opts: { method?: string; headers?: http.OutgoingHttpHeaders | string[]; body?: string | Buffer; agent?: http.Agent } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${origin}${path}`, {
      method: opts.method ?? 'GET',
      headers: opts.headers as http.OutgoingHttpHeaders,
      agent: opts.agent ?? false,
      setHost: !(Array.isArray(opts.headers) || opts.headers?.host !== undefined),
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.end(opts.body);
  });
}

/** Send raw bytes on a new TCP connection and collect everything until the server closes or `until` matches. */
export function rawExchange(port: number, data: string, until?: RegExp, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms; got ${JSON.stringify(got)}`));
    }, timeoutMs);
    s.on('data', (c) => {
      got += c.toString('latin1');
      if (until?.test(got)) {
        clearTimeout(timer);
        s.destroy();
        resolve(got);
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.write(data);
  });
}

/** Lower-case header names present in a raw header list. */
export function headerNames(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) out.push((raw[i] as string).toLowerCase());
  return out;
}
