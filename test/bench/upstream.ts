/**
 * The benchmark's upstream: answers GET /small (200 B) and GET /large (100 KiB) from precomputed
 * buffers. The default "raw" kind is a fixed-cost responder on node:net (find the end of each header
 * block, write a ready-made response) so it costs far less per request than any proxy in front of it
 * and is never what is being measured; "http" is a plain node:http server, kept for comparison.
 *
 * Run as a process: `node test/bench/upstream.ts <port> [raw|http]`; prints "listening <port>".
 */
import http from 'node:http';
import net from 'node:net';

/** Body of GET /small: 200 printable bytes. */
export const SMALL_BODY: Buffer = pattern(200);
/** Body of GET /large: 100 KiB printable bytes. */
export const LARGE_BODY: Buffer = pattern(100 * 1024);

export type UpstreamKind = 'raw' | 'http';

/** Deterministic printable bytes, not a short repetition (so a truncated or shifted body is detected). */
function pattern(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = 33 + ((i * 7 + (i >> 8)) % 94);
  return b;
}

function rawResponse(status: string, body: Buffer, extra = ''): Buffer {
  const head = `HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n${extra}\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

const SMALL_RES = rawResponse('200 OK', SMALL_BODY);
const LARGE_RES = rawResponse('200 OK', LARGE_BODY);
const SMALL_HEAD = SMALL_RES.subarray(0, SMALL_RES.length - SMALL_BODY.length);
const LARGE_HEAD = LARGE_RES.subarray(0, LARGE_RES.length - LARGE_BODY.length);
const NOT_FOUND = rawResponse('404 Not Found', Buffer.from('not found\n'));
// Requests with a body are never sent by the bench; answering them 501 and closing keeps the framing
// simple and makes a proxy that invents a body show up as errors instead of as miscounted requests.
const NOT_IMPLEMENTED = rawResponse('501 Not Implemented', Buffer.from('request bodies are not supported\n'), 'Connection: close\r\n');
const TOO_LARGE = rawResponse('431 Request Header Fields Too Large', Buffer.from('headers too large\n'), 'Connection: close\r\n');

const MAX_HEAD = 16 * 1024;
const BODY_HEADER = /\r\n(transfer-encoding:|content-length:[ \t]*0*[1-9])/i;
const CONNECTION_CLOSE = /\r\nconnection:[^\r]*\bclose\b/i;

/** Answer the complete header blocks in `buf`; returns the unparsed rest, or null when the connection must close. */
function answer(socket: net.Socket, buf: string): string | null {
  let start = 0;
  const out: Buffer[] = [];
  let close = false;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', start);
    if (end === -1) break;
    const head = buf.slice(start, end + 2);
    start = end + 4;
    const sp1 = head.indexOf(' ');
    const sp2 = head.indexOf(' ', sp1 + 1);
    const method = head.slice(0, sp1);
    const target = head.slice(sp1 + 1, sp2);
    const q = target.indexOf('?');
    const path = q === -1 ? target : target.slice(0, q);
    if (BODY_HEADER.test(head)) {
      out.push(NOT_IMPLEMENTED);
      close = true;
      break;
    }
    const isHead = method === 'HEAD';
    if (path === '/small') out.push(isHead ? SMALL_HEAD : SMALL_RES);
    else if (path === '/large') out.push(isHead ? LARGE_HEAD : LARGE_RES);
    else out.push(NOT_FOUND);
    if (CONNECTION_CLOSE.test(head)) {
      close = true;
      break;
    }
  }
  const rest = buf.slice(start);
  if (!close && rest.length > MAX_HEAD) {
    out.push(TOO_LARGE);
    close = true;
  }
  if (out.length === 1) socket.write(out[0]!);
  else if (out.length > 1) socket.write(Buffer.concat(out));
  if (close) {
    socket.end();
    return null;
  }
  return rest;
}

function createRawUpstream(): net.Server {
  return net.createServer({ noDelay: true }, (socket) => {
    let pending = '';
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      const rest = answer(socket, pending + chunk.toString('latin1'));
      if (rest === null) {
        pending = '';
        socket.removeAllListeners('data');
      } else pending = rest;
    });
  });
}

function createHttpUpstream(): http.Server {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    const body = path === '/small' ? SMALL_BODY : path === '/large' ? LARGE_BODY : null;
    if (!body) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  server.keepAliveTimeout = 60_000;
  return server;
}

/** Create the upstream server (not listening yet). */
export function createUpstream(kind: UpstreamKind): net.Server {
  return kind === 'raw' ? createRawUpstream() : createHttpUpstream();
}

if (import.meta.main) {
  const port = Number(process.argv[2] ?? 0);
  const kind = process.argv[3] === 'http' ? 'http' : 'raw';
  const server = createUpstream(kind);
  server.listen(port, '127.0.0.1', () => {
    const addr = server.address();
    process.stdout.write(`listening ${typeof addr === 'object' && addr ? addr.port : port}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
}
