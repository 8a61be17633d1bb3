/**
 * The WeCom client, its direct egress and the callback deliverer use undici's parts by their module
 * paths (src/egress/undici.ts), not undici's index (fetch, WebSocket, caches, mocks: ~2.3 MB heap and
 * ~4 MB RSS in `wegate serve`). Checked in a fresh process: this test process may load the index
 * through other imports, and the index copies request() onto every dispatcher, which would hide a
 * call that needs it.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';

const run = promisify(execFile);
const src = (p: string) => fileURLToPath(new URL(`../../src/${p}`, import.meta.url));

t.test("wecom modules: undici's index stays unloaded when the gateway modules load and a WeCom exchange runs", async (t) => {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ errcode: 0, errmsg: 'ok', path: req.url }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as AddressInfo;
  const script = `
    import { createRequire } from 'node:module';
    await import(${JSON.stringify(src('app.ts'))});
    const { createDirectWecomEgress } = await import(${JSON.stringify(src('wecom/api/direct-egress.ts'))});
    const { exchange } = await import(${JSON.stringify(src('wecom/api/http.ts'))});
    const { createDeliverer } = await import(${JSON.stringify(src('wecom/callback/deliver.ts'))});
    const direct = createDirectWecomEgress({ timeouts: { connect_ms: 2000 } });
    const answer = await exchange(new URL('http://127.0.0.1:${port}/cgi-bin/get_api_domain_ip?access_token=x'), {
      dispatcher: direct.egress.dispatcher, method: 'GET', connectMs: 2000, responseMs: 2000, maxBytes: 4096,
    });
    const deliverer = createDeliverer({ now: Date.now });
    await Promise.all([direct.close(), deliverer.close()]);
    const require = createRequire(${JSON.stringify(src('app.ts'))});
    console.log(JSON.stringify({ answer, index: require.cache[require.resolve('undici')] !== undefined }));
  `;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 10_000 });
  const out = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { answer?: Record<string, unknown>; index?: boolean };
  t.same(out.answer, { errcode: 0, errmsg: 'ok', path: '/cgi-bin/get_api_domain_ip?access_token=x' }, 'the exchange went through');
  t.equal(out.index, false, 'undici/index.js was never loaded');
});
