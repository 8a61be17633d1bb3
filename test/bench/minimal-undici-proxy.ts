/**
 * Reference point for the benchmark: the smallest reasonable reverse proxy on undici's Agent.stream
 * (no header policy, no logging, no routing). `node minimal-undici-proxy.ts <port> <upstream origin>`
 */
import http from 'node:http';
import { Agent } from 'undici';

const port = Number(process.argv[2]);
const origin = process.argv[3] ?? 'http://127.0.0.1:8080';
const agent = new Agent({ keepAliveTimeout: 60_000 });
http
  .createServer((req, res) => {
    // GET/HEAD get no body: a stream body of unknown length would be sent chunked.
    const body = req.method === 'GET' || req.method === 'HEAD' ? null : req;
    const opts = { origin, path: req.url ?? '/', method: req.method as 'GET', headers: req.headers, body };
    agent
      .stream(opts, ({ statusCode, headers }) => res.writeHead(statusCode, headers))
      .catch(() => (res.headersSent ? res.destroy() : res.writeHead(502).end()));
  })
  .listen(port, '127.0.0.1', () => process.stdout.write(`listening ${port}\n`));
