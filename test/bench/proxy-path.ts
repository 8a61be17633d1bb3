/**
 * Measurement behind the proxy's choice of HTTP path (not part of `npm run bench`): the same small
 * response through (1) a minimal undici Agent.stream proxy, (2) a minimal http-proxy-3 proxy with a
 * keep-alive agent, (3) wegate's proxy feature (header policy, rewriting, metrics, timeouts) behind a
 * minimal front that does what the server pipeline does (parseTarget, match). Each proxy runs alone
 * on core 0, wrk and the upstream on core 1. Prints req/s and the proxy's CPU µs per request.
 *
 *   node test/bench/proxy-path.ts [seconds=5] [connections=64]
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const SELF = fileURLToPath(import.meta.url);
const NODE = process.execPath;
const BODY = Buffer.alloc(200, 'x');
const RESPONSE = Buffer.concat([
  Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: ${BODY.length}\r\nkeep-alive: timeout=60\r\n\r\n`),
  BODY,
]);

async function serve(kind: string, port: number, upstreamPort: number): Promise<void> {
  const origin = `http://127.0.0.1:${upstreamPort}`;
  if (kind === 'upstream') {
    // Fixed-cost responder: one response per header block received.
    net
      .createServer((s) => {
        let buf = '';
        s.on('data', (c) => {
          buf += c.toString('latin1');
          let i = buf.indexOf('\r\n\r\n');
          while (i !== -1) {
            s.write(RESPONSE);
            buf = buf.slice(i + 4);
            i = buf.indexOf('\r\n\r\n');
          }
        });
        s.on('error', () => {});
      })
      .listen(port, '127.0.0.1');
    return;
  }
  if (kind === 'undici') {
    const { Agent } = await import('undici');
    const agent = new Agent({ keepAliveTimeout: 60_000 });
    http
      .createServer((req, res) => {
        const body = req.method === 'GET' || req.method === 'HEAD' ? null : req;
        agent
          .stream({ origin, path: req.url ?? '/', method: 'GET', headers: req.headers, body }, ({ statusCode, headers }) =>
            res.writeHead(statusCode, headers as http.OutgoingHttpHeaders),
          )
          .catch(() => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
      })
      .listen(port, '127.0.0.1');
    return;
  }
  if (kind === 'http-proxy-3') {
    const { ProxyServer } = await import('http-proxy-3');
    const agent = new http.Agent({ keepAlive: true });
    const proxy = new ProxyServer({ target: origin, agent });
    proxy.on('error', (_e, _req, res) => {
      if (res instanceof http.ServerResponse && !res.headersSent) res.writeHead(502).end();
    });
    http.createServer((req, res) => proxy.web(req, res)).listen(port, '127.0.0.1');
    return;
  }
  if (kind === 'wegate') {
    const { Registry } = await import('prom-client');
    const { createProxy } = await import('../../src/proxy/index.ts');
    const { createLogger } = await import('../../src/core/logger.ts');
    const { createMetrics } = await import('../../src/metrics/metrics.ts');
    const { parseTarget, sendError } = await import('../../src/core/http.ts');
    const { Value } = await import('@sinclair/typebox/value');
    const { RouteSchema } = await import('../../src/config/schema.ts');
    const route = Value.Default(RouteSchema, { name: 'bench', upstream: origin });
    const proxy = createProxy({
      routes: [route as never],
      logger: createLogger({ level: 'info', destination: { write: () => {} } }),
      metrics: createMetrics({ registry: new Registry(), processMetrics: false }),
    });
    http
      .createServer((req, res) => {
        const t = parseTarget(req.url);
        const authority = (req.headers.host ?? '').toLowerCase();
        if (!t.ok) return sendError(req, res, { id: 'x' }, t.code);
        const ctx = {
          id: randomUUID(),
          startedAt: process.hrtime.bigint(),
          clientIp: req.socket.remoteAddress ?? '',
          secure: false,
          host: authority.split(':')[0] ?? '',
          authority,
          rawPath: t.rawPath,
          path: t.path,
          query: t.query,
        };
        const r = proxy.match(ctx.host, ctx.path);
        if (r === undefined) return sendError(req, res, ctx, 'WG_NOT_FOUND');
        proxy.web(req, res, ctx, r);
      })
      .listen(port, '127.0.0.1');
    return;
  }
  throw new Error(`unknown kind ${kind}`);
}

/** User+system CPU seconds of a process and its direct children (nginx workers). */
function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const s = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      if (Number(name) === pid || Number(f[1]) === pid) ticks += Number(f[11]) + Number(f[12]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks / 100;
}

function nginxConf(dir: string, port: number, upPort: number): string {
  return `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${dir}/cb; proxy_temp_path ${dir}/pt; fastcgi_temp_path ${dir}/ft;
  uwsgi_temp_path ${dir}/ut; scgi_temp_path ${dir}/st; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:${upPort}; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:${port};
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Real-IP $remote_addr; proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-Host $host; } } }
`;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s.destroy() !== undefined));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`port ${port} never opened`);
}

function startChild(core: number, args: string[]) {
  return spawn('taskset', ['-c', String(core), NODE, SELF, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
}

function hasNginx(): boolean {
  try {
    execFileSync('nginx', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 5);
  const conns = Number(process.argv[3] ?? 64);
  const upPort = await freePort();
  const upstream = startChild(1, ['serve', 'upstream', String(upPort), '0']);
  await waitPort(upPort);
  const rows: string[] = [];
  try {
    const kinds = ['undici', 'http-proxy-3', 'wegate', ...(hasNginx() ? ['nginx'] : [])];
    for (const kind of kinds) {
      const port = await freePort();
      let child: ReturnType<typeof spawn>;
      if (kind === 'nginx') {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wegate-proxy-path-'));
        fs.writeFileSync(path.join(dir, 'nginx.conf'), nginxConf(dir, port, upPort));
        child = spawn('taskset', ['-c', '0', 'nginx', '-c', path.join(dir, 'nginx.conf'), '-p', dir], { stdio: 'ignore' });
      } else {
        child = startChild(0, ['serve', kind, String(port), String(upPort)]);
      }
      try {
        await waitPort(port);
        // Warm-up, then the measured run.
        execFileSync('taskset', ['-c', '1', 'wrk', '-t1', `-c${conns}`, '-d2s', `http://127.0.0.1:${port}/small`], { stdio: 'ignore' });
        // taskset execs node, so the child's pid is the proxy's.
        const pid = child.pid as number;
        const cpu0 = cpuSeconds(pid);
        const out = execFileSync('taskset', [
          '-c',
          '1',
          'wrk',
          '-t1',
          `-c${conns}`,
          `-d${seconds}s`,
          '--latency',
          `http://127.0.0.1:${port}/small`,
        ]).toString();
        const cpu = cpuSeconds(pid) - cpu0;
        const total = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0);
        const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0);
        const errors = /Non-2xx|Socket errors/.exec(out) ? ' (errors!)' : '';
        const p99 = /Latency Distribution[\s\S]*?99%\s+(\S+)/.exec(out)?.[1] ?? '?';
        rows.push(
          `${kind.padEnd(13)} ${rps.toFixed(0).padStart(7)} req/s  p99 ${p99.padStart(8)}  ${((cpu / total) * 1e6).toFixed(1).padStart(6)} µs CPU/req${errors}`,
        );
      } finally {
        child.kill(kind === 'nginx' ? 'SIGQUIT' : 'SIGKILL');
        await sleep(300);
      }
    }
  } finally {
    upstream.kill('SIGKILL');
  }
  process.stdout.write(`${conns} connections, ${seconds} s, 200 B responses\n${rows.join('\n')}\n`);
}

if (process.argv[2] === 'serve') await serve(process.argv[3] ?? '', Number(process.argv[4]), Number(process.argv[5]));
else await main();
