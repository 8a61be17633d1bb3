/**
 * The proxy's response observer hook (src/proxy/observer.ts) with a plain observer written here: what
 * it is offered, and what holding, letting go and replacing do to the response on the wire.
 */
import type { IncomingHttpHeaders } from 'node:http';
import net from 'node:net';
import t from 'tap';
import type { BodySink, ObserverFactory, Replacement } from '../../src/proxy/index.ts';
import { request, route, startFront, startUpstream } from './helpers.ts';

interface Seen {
  status: number;
  headers: IncomingHttpHeaders;
  chunks: Buffer[];
  ended: boolean;
  head: string[] | null;
}

/** Holds (or only looks at) bodies up to `limit` bytes; replaces a held body that says REPLACE. */
function observer(opts: { hold: boolean; limit: number }, seen: Seen[]): ObserverFactory {
  return (r) =>
    r.name === 'watched'
      ? {
          open(_req, _ctx, status, headers): BodySink {
            const s: Seen = { status, headers, chunks: [], ended: false, head: null };
            seen.push(s);
            let size = 0;
            return {
              hold: opts.hold,
              data(chunk) {
                size += chunk.length;
                s.chunks.push(chunk);
                return size <= opts.limit;
              },
              end(head): Replacement | undefined {
                s.ended = true;
                s.head = head;
                if (head === null || !Buffer.concat(s.chunks).includes('REPLACE')) return undefined;
                const body = `replaced ${status}`;
                return {
                  head: ['x-request-id', head[1] as string, 'content-type', 'text/plain', 'content-length', String(body.length)],
                  body,
                };
              },
            };
          },
        }
      : undefined;
}

t.test('proxy observer: a holding sink replaces the response and the status is kept when it asks to', async (t) => {
  const up = await startUpstream(t, (_req, res) => {
    res.writeHead(201, { 'content-type': 'application/json', 'x-up': '1' });
    res.end('{"say":"REPLACE"}');
  });
  const seen: Seen[] = [];
  const front = await startFront(t, [route({ name: 'watched', upstream: up.origin })], {
    observer: observer({ hold: true, limit: 1024 }, seen),
  });
  const r = await request(front.origin, '/x');
  t.equal(r.status, 201);
  t.equal(r.body, 'replaced 201');
  t.equal(r.headers['content-type'], 'text/plain');
  t.equal(r.headers['x-up'], undefined, 'the head is the replacement');
  t.match(r.headers['x-request-id'], /^front-/);
  t.equal(seen[0]?.status, 201);
  t.equal(seen[0]?.headers['x-up'], '1', 'the observer saw the upstream head');
  t.ok(seen[0]?.head?.includes('x-up'), 'end() got the head the proxy would have sent');
});

t.test('proxy observer: a held response leaves unchanged when the sink does not replace it', async (t) => {
  const up = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'x-up': '1' });
    res.end('nothing to see');
  });
  const seen: Seen[] = [];
  const front = await startFront(t, [route({ name: 'watched', upstream: up.origin })], {
    observer: observer({ hold: true, limit: 1024 }, seen),
  });
  const r = await request(front.origin, '/x');
  t.equal(r.body, 'nothing to see');
  t.equal(r.headers['x-up'], '1');
  t.equal(seen[0]?.ended, true);
});

t.test(
  'proxy observer: a holding sink that lets go mid-body streams the response unchanged when the body is larger than its limit',
  async (t) => {
    const parts = ['REPLACE-', 'a'.repeat(3000), 'b'.repeat(3000), 'end'];
    const up = await startUpstream(t, (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      let i = 0;
      const next = () => {
        const p = parts[i++];
        if (p === undefined) return void res.end();
        res.write(p);
        setImmediate(next);
      };
      next();
    });
    const seen: Seen[] = [];
    const front = await startFront(t, [route({ name: 'watched', upstream: up.origin })], {
      observer: observer({ hold: true, limit: 4000 }, seen),
    });
    const r = await request(front.origin, '/x');
    t.equal(r.status, 200);
    t.equal(r.body, parts.join(''), 'every byte, in order');
    t.equal(seen[0]?.ended, false, 'end() is not called once the sink let go');
  },
);

t.test('proxy observer: a non-holding sink sees every chunk and the end while the response passes unchanged', async (t) => {
  const up = await startUpstream(t, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('REPLACE ');
    setImmediate(() => res.end('second'));
  });
  const seen: Seen[] = [];
  const front = await startFront(
    t,
    [route({ name: 'watched', upstream: up.origin }), route({ name: 'other', path: '/other', upstream: up.origin })],
    {
      observer: observer({ hold: false, limit: 1024 }, seen),
    },
  );
  const r = await request(front.origin, '/x');
  t.equal(r.body, 'REPLACE second', 'never replaced without a hold');
  t.equal(Buffer.concat(seen[0]?.chunks ?? []).toString(), 'REPLACE second');
  t.equal(seen[0]?.ended, true);
  t.equal(seen[0]?.head, null);
  await request(front.origin, '/other');
  t.equal(seen.length, 1, 'a route the factory gave no observer is not offered anything');
});

t.test('proxy observer: a held response whose upstream resets mid-body answers 502 when nothing was sent yet', async (t) => {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('data', () => {
      s.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"partial":');
      setImmediate(() => s.destroy());
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => srv.close(resolve));
  });
  const seen: Seen[] = [];
  const port = (srv.address() as net.AddressInfo).port;
  const front = await startFront(t, [route({ name: 'watched', upstream: `http://127.0.0.1:${port}` })], {
    observer: observer({ hold: true, limit: 1024 }, seen),
  });
  const r = await request(front.origin, '/x');
  t.equal(r.status, 502);
  t.match(JSON.parse(r.body), { error: 'WG_UPSTREAM_BAD_RESPONSE' });
  t.equal(seen[0]?.ended, false);
});
