/**
 * Egress test helpers: a tiny "who am I" server (HTTP or HTTPS with the test CA, bound to 0.0.0.0)
 * that answers every request and every WebSocket with the caller's source address, so a test sees
 * which local address (or which proxy) a connection came from; and profiles built by createEgress.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { WebSocketServer } from 'ws';
import type { EgressProfileConfig } from '../../src/config/schema.ts';
import { createLogger, type Logger } from '../../src/core/logger.ts';
import { createEgress, type Egress } from '../../src/egress/index.ts';
import { createMetrics, type Metrics } from '../../src/metrics/metrics.ts';

export const TLS_DIR = join(import.meta.dirname, '../fixtures/tls');
export const CA = readFileSync(join(TLS_DIR, 'ca.pem'));

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface WhoAmI {
  readonly server: Server;
  readonly port: number;
  /** "http(s)://127.0.0.1:<port>" */
  readonly url: string;
  /** Source addresses of the requests and WebSockets seen, in order. */
  readonly seen: string[];
  /** TCP connections accepted so far. */
  readonly connections: () => number;
}

const plain = (a: string | undefined) => (a ?? '').replace(/^::ffff:/, '');

/** Answers `<source address>` to any request, and sends it on any WebSocket it accepts. */
export async function startWhoAmI(
  t: Teardown,
  opts: { tls?: boolean; answer?: (address: string) => string; host?: string } = {},
): Promise<WhoAmI> {
  const seen: string[] = [];
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const address = plain(req.socket.remoteAddress);
    seen.push(address);
    res.setHeader('content-type', 'text/plain');
    res.end(opts.answer ? opts.answer(address) : address);
  };
  const server = opts.tls
    ? createHttpsServer({ cert: readFileSync(join(TLS_DIR, 'upstream.pem')), key: readFileSync(join(TLS_DIR, 'upstream.key')) }, handler)
    : createHttpServer(handler);
  const wss = new WebSocketServer({ server });
  wss.on('connection', (ws, req) => {
    const address = plain(req.socket.remoteAddress);
    seen.push(address);
    ws.send(address);
  });
  let connections = 0;
  server.on('connection', () => connections++);
  server.listen(0, opts.host ?? '0.0.0.0');
  await once(server, 'listening');
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return { server, port, url: `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`, seen, connections: () => connections };
}

export interface Built {
  readonly egress: Egress;
  readonly metrics: Metrics;
  readonly registry: Registry;
  readonly logger: Logger;
  /** Parsed log lines so far. */
  readonly lines: () => Record<string, unknown>[];
  /** Raw log text so far. */
  readonly text: () => string;
}

/** createEgress with a real logger writing into memory and its own registry; closed in teardown. */
export async function buildEgress(t: Teardown, profiles: Record<string, EgressProfileConfig>, now?: () => number): Promise<Built> {
  const chunks: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void chunks.push(s) } });
  const registry = new Registry();
  const metrics = createMetrics({ registry, processMetrics: false });
  const egress = await createEgress({ profiles, logger, metrics, ...(now ? { now } : {}) });
  t.teardown(() => egress.close());
  return {
    egress,
    metrics,
    registry,
    logger,
    text: () => chunks.join(''),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}
