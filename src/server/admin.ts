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

export interface AdminDeps {
  readonly registry: Registry;
  readonly logger: Logger;
  /** Listening and not shutting down. */
  ready(): boolean;
  /** Refresh gauges that are cheap to compute at scrape time (certificate expiry). */
  beforeScrape?(): void;
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

/** Create (not start) the admin HTTP server: GET /metrics, /healthz, /readyz, /diagnostics. */
export function createAdminServer(deps: AdminDeps): Server {
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const q = req.url?.indexOf('?') ?? -1;
    const path = q === -1 ? req.url : req.url?.slice(0, q);
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(res, 405, 'method not allowed\n');
    switch (path) {
      case '/metrics': {
        deps.beforeScrape?.();
        const body = await deps.registry.metrics();
        return text(res, 200, body, deps.registry.contentType);
      }
      case '/healthz':
        return text(res, 200, 'ok\n');
      case '/readyz':
        return deps.ready() ? text(res, 200, 'ready\n') : text(res, 503, 'not ready\n');
      case '/diagnostics': {
        if (!deps.diagnostics) return text(res, 404, 'not found\n');
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
