import http from 'node:http';
import net from 'node:net';
import t from 'tap';
import { createUpstream, LARGE_BODY, SMALL_BODY, type UpstreamKind } from './upstream.ts';

async function listen(kind: UpstreamKind): Promise<{ port: number; close: () => Promise<void> }> {
  const server = createUpstream(kind);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (!addr || typeof addr !== 'object') throw new Error('no address');
  return {
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        (server as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

function get(port: number, path: string, agent: http.Agent): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      })
      .on('error', reject);
  });
}

/** Write raw bytes, collect everything until the server closes or `until` matches. */
function raw(port: number, data: string, until: (s: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const s = net.connect(port, '127.0.0.1', () => s.write(data));
    const timer = setTimeout(() => {
      s.destroy();
      resolve(got);
    }, 5000);
    s.on('data', (c: Buffer) => {
      got += c.toString('latin1');
      if (until(got)) {
        clearTimeout(timer);
        s.destroy();
        resolve(got);
      }
    });
    s.on('end', () => {
      clearTimeout(timer);
      resolve(got);
    });
    s.on('error', reject);
  });
}

for (const kind of ['raw', 'http'] as const) {
  t.test(`bench upstream (${kind}): serves exact bodies over one keep-alive connection when asked repeatedly`, async (t) => {
    const up = await listen(kind);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    t.teardown(async () => {
      agent.destroy();
      await up.close();
    });
    for (let i = 0; i < 3; i++) {
      const small = await get(up.port, '/small', agent);
      t.equal(small.status, 200);
      t.ok(small.body.equals(SMALL_BODY), 'small body exact');
      const large = await get(up.port, '/large?x=1', agent);
      t.equal(large.status, 200);
      t.ok(large.body.equals(LARGE_BODY), 'large body exact');
    }
    t.equal((await get(up.port, '/other', agent)).status, 404);
    t.equal(SMALL_BODY.length, 200);
    t.equal(LARGE_BODY.length, 100 * 1024);
  });
}

t.test('bench upstream (raw): answers every pipelined request when several arrive in one packet', async (t) => {
  const up = await listen('raw');
  t.teardown(up.close);
  const req = 'GET /small HTTP/1.1\r\nHost: x\r\n\r\n';
  const got = await raw(
    up.port,
    req.repeat(3),
    (s) => s.split('HTTP/1.1 200 OK').length - 1 === 3 && s.endsWith(SMALL_BODY.toString('latin1')),
  );
  t.equal(got.split('HTTP/1.1 200 OK').length - 1, 3);
});

t.test('bench upstream (raw): answers 501 and closes when a request has a body', async (t) => {
  const up = await listen('raw');
  t.teardown(up.close);
  const chunked = await raw(up.port, 'POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', () => false);
  t.match(chunked, /^HTTP\/1\.1 501 /);
  const sized = await raw(up.port, 'POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc', () => false);
  t.match(sized, /^HTTP\/1\.1 501 /);
});

t.test('bench upstream (raw): closes after answering when the request says Connection: close', async (t) => {
  const up = await listen('raw');
  t.teardown(up.close);
  const got = await raw(
    up.port,
    'GET /small HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /small HTTP/1.1\r\nHost: x\r\n\r\n',
    () => false,
  );
  t.equal(got.split('HTTP/1.1 200 OK').length - 1, 1);
});
