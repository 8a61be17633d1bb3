/**
 * The admin listener (default 127.0.0.1:9464): Prometheus metrics, health probes and /diagnostics.
 * A separate server, so nothing here is reachable through the public listeners whatever the route
 * table says.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from '../core/node-http.ts';
import type { Registry } from 'prom-client';
import type { Logger } from '../core/logger.ts';
import { type DiagnosticsSnapshot, renderDiagnosticsHtml } from '../diagnostics/index.ts';
import type { CallbackQueueAdmin } from '../wecom/callback/index.ts';

export interface AdminDeps {
  readonly registry: Registry;
  readonly logger: Logger;
  /** Listening and not shutting down. */
  ready(): boolean;
  /** Refresh gauges computed at scrape time (certificate expiry, the callback queue); also before /diagnostics. */
  beforeScrape?(): void | Promise<void>;
  /** The callback queue (GET /callbacks/queue, POST /callbacks/queue/redrive); 404 without it. */
  callbackQueue?: CallbackQueueAdmin;
  /** What /diagnostics shows (src/diagnostics/ builds it); without it /diagnostics is 404. */
  diagnostics?(): DiagnosticsSnapshot;
}

/** JSON when asked for (?format=json, or an Accept naming application/json before text/html); HTML otherwise. */
function wantsJson(req: IncomingMessage, query: string): boolean {
  const format = new URLSearchParams(query).get('format');
  if (format === 'json') return true;
  if (format === 'html') return false;
  const accept = req.headers.accept ?? '';
  const json = accept.indexOf('application/json');
  const html = accept.indexOf('text/html');
  return json !== -1 && (html === -1 || json < html);
}

function text(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

const json = (res: ServerResponse, status: number, body: unknown) =>
  text(res, status, `${JSON.stringify(body, null, 2)}\n`, 'application/json; charset=utf-8');
const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/**
 * GET /callbacks/queue[?app=A][&state=pending|dead][&limit=N]: ids, event types, attempts, last
 * error and ages — never a payload. POST /callbacks/queue/redrive?id=N or ?app=A: dead letters back
 * to pending, delivered at once. The admin listener is loopback by default: who reaches it may re-drive.
 */
async function callbackQueue(req: IncomingMessage, res: ServerResponse, path: string, query: string, cq: CallbackQueueAdmin) {
  const p = new URLSearchParams(query);
  const app = p.get('app') ?? undefined;
  if (path === '/callbacks/queue') {
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(res, 405, 'method not allowed\n');
    const state = p.get('state') ?? undefined;
    if (state !== undefined && state !== 'pending' && state !== 'dead') return json(res, 400, { error: 'state must be pending or dead' });
    const limit = p.has('limit') ? Number(p.get('limit')) : 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) return json(res, 400, { error: 'limit must be 1..1000' });
    const now = Date.now();
    const [entries, stats] = await Promise.all([
      cq.store.queue.list({ ...(app !== undefined ? { app } : {}), ...(state !== undefined ? { state } : {}), limit }),
      cq.refreshStats(),
    ]);
    return json(res, 200, {
      callbacks: stats
        .filter((s) => app === undefined || s.app === app)
        .map((s) => ({ callback: s.app, depth: s.depth, oldestAgeSeconds: Math.round(s.oldestAgeMs / 1000), deadLetters: s.dead })),
      items: entries.map((e) => ({
        id: e.id,
        callback: e.app,
        idempotencyKey: e.idempotencyKey,
        event: e.eventType,
        state: e.state,
        inFlight: e.inFlight,
        attempts: e.attempts,
        payloadBytes: e.payloadBytes,
        ageSeconds: Math.round((now - e.createdAt) / 1000),
        nextAttemptAt: e.state === 'pending' ? iso(e.nextAttemptAt) : null,
        lastError: e.lastError ?? null,
        deadReason: e.deadReason ?? null,
        deadAt: iso(e.deadAt),
      })),
    });
  }
  if (req.method !== 'POST') return text(res, 405, 'method not allowed\n');
  req.resume();
  // A browser on the admin host sends Origin with a cross-site POST (a form needs no preflight);
  // curl and `wegate wecom queue` send none: refuse it, so no web page can re-drive the queue.
  if (req.headers.origin !== undefined) return json(res, 403, { error: 'cross-origin request refused' });
  const id = p.get('id');
  if (id !== null) {
    const n = Number(id);
    if (!Number.isSafeInteger(n) || n < 1) return json(res, 400, { error: 'id must be a positive integer' });
    return json(res, 200, { redriven: await cq.redrive({ id: n }) });
  }
  if (app !== undefined && app !== '') return json(res, 200, { redriven: await cq.redrive({ app }) });
  return json(res, 400, { error: 'give id=N or app=NAME' });
}

/** Create (not start) the admin HTTP server: GET /metrics, /healthz, /readyz, /diagnostics, the callback queue. */
export function createAdminServer(deps: AdminDeps): Server {
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const q = req.url?.indexOf('?') ?? -1;
    const path = q === -1 ? req.url : req.url?.slice(0, q);
    if (path === '/callbacks/queue' || path === '/callbacks/queue/redrive') {
      if (!deps.callbackQueue) return text(res, 404, 'not found\n');
      return callbackQueue(req, res, path, q === -1 ? '' : (req.url ?? '').slice(q + 1), deps.callbackQueue);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(res, 405, 'method not allowed\n');
    switch (path) {
      case '/metrics': {
        await deps.beforeScrape?.();
        const body = await deps.registry.metrics();
        return text(res, 200, body, deps.registry.contentType);
      }
      case '/healthz':
        return text(res, 200, 'ok\n');
      case '/readyz':
        return deps.ready() ? text(res, 200, 'ready\n') : text(res, 503, 'not ready\n');
      case '/diagnostics': {
        if (!deps.diagnostics) return text(res, 404, 'not found\n');
        await deps.beforeScrape?.();
        const snapshot = deps.diagnostics();
        res.setHeader('vary', 'Accept');
        res.setHeader('x-content-type-options', 'nosniff');
        if (wantsJson(req, q === -1 ? '' : (req.url ?? '').slice(q + 1))) {
          return text(res, 200, `${JSON.stringify(snapshot, null, 2)}\n`, 'application/json; charset=utf-8');
        }
        // The page has no script: nothing it shows can run, whatever a vendor's answer held.
        res.setHeader('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'");
        return text(res, 200, renderDiagnosticsHtml(snapshot), 'text/html; charset=utf-8');
      }
      default:
        return text(res, 404, 'not found\n');
    }
  };
  const server = createServer({ headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 1000 }, (req, res) => {
    handle(req, res).catch((e: unknown) => {
      deps.logger.error({ err: e }, 'admin request failed');
      if (!res.headersSent) text(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  return server;
}
