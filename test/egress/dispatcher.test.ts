/**
 * The profiles' own dispatchers (what the WeCom client uses), against real loopback servers: a
 * pinned local address is the source address the server sees (127.0.0.2 / 127.0.0.3 aliases), and a
 * proxy profile goes through a real tinyproxy whose outgoing address is 127.0.0.3.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { createRequire } from 'node:module';
import type { Dispatcher } from 'undici';
import { startForwardProxy } from '../helpers/forward-proxy.ts';
import { explainEgressError } from '../../src/egress/index.ts';
import { undici } from '../../src/egress/undici.ts';
import { buildEgress, CA, startWhoAmI } from './helpers.ts';

t.test("egress dispatcher: runs without undici's index when the gateway never loads it", async (t) => {
  const require = createRequire(import.meta.url);
  t.notOk(require.cache[require.resolve('undici')], 'undici/index.js is not loaded in this test process');
});

// undici's own request(), by the path src/egress loads it: importing undici's index here would copy
// the API methods onto Dispatcher.prototype and hide a dispatcher that needs them (as the gateway
// process never loads that index).
async function whoSees(d: Dispatcher, url: string): Promise<string> {
  const { origin, pathname } = new URL(url);
  const res = await undici().request.call(d, { origin, path: pathname, method: 'GET' });
  const body = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${body}`);
  return body;
}

async function credentials(t: Test, content: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wegate-egress-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'proxy');
  await writeFile(file, content, { mode: 0o600 });
  return file;
}

t.test('egress dispatcher: the server sees the pinned local address when local_address is 127.0.0.2 or 127.0.0.3', async (t) => {
  const who = await startWhoAmI(t, { tls: true });
  const { egress } = await buildEgress(t, { two: { local_address: '127.0.0.2' }, three: { local_address: '127.0.0.3' }, free: {} });
  const [two, three, free] = ['two', 'three', 'free'].map((n) => egress.profile(n));
  if (!two || !three || !free) throw new Error('profiles missing');
  t.equal(two.family, 4, 'the address family is pinned from the address');
  t.equal(two.viaProxy, false);
  t.equal(await whoSees(two.createDispatcher({ ca: CA }), who.url), '127.0.0.2');
  t.equal(await whoSees(three.createDispatcher({ ca: CA }), who.url), '127.0.0.3');
  // Without a pin the kernel picks 127.0.0.1 for a loopback destination: the pin is what changed it.
  t.equal(await whoSees(free.createDispatcher({ ca: CA }), who.url), '127.0.0.1');
  t.same(who.seen, ['127.0.0.2', '127.0.0.3', '127.0.0.1']);
});

t.test('egress dispatcher: an IPv6 local address pins family 6 when local_address is ::1', async (t) => {
  const who = await startWhoAmI(t, { tls: true, host: '::' });
  const { egress } = await buildEgress(t, { v6: { local_address: '::1' } });
  const v6 = egress.profile('v6');
  t.equal(v6?.family, 6);
  t.equal(await whoSees(v6?.createDispatcher({ ca: CA }) as Dispatcher, `https://[::1]:${who.port}/`), '::1');
});

t.test('egress dispatcher: a TLS error is reported when the private CA is not given', async (t) => {
  const who = await startWhoAmI(t, { tls: true });
  const { egress } = await buildEgress(t, { two: { local_address: '127.0.0.2' } });
  const err = await whoSees(egress.profile('two')?.dispatcher as Dispatcher, who.url).then(
    () => undefined,
    (e: Error & { code?: string }) => e,
  );
  t.match(err?.code, /SELF_SIGNED|UNABLE_TO|CERT/, 'the default dispatcher trusts the system CAs only');
});

t.test("egress dispatcher: the server sees the proxy's address when the profile goes through tinyproxy", async (t) => {
  const who = await startWhoAmI(t, { tls: true });
  const plain = await startWhoAmI(t);
  const proxy = await startForwardProxy(t, { connectPorts: [who.port, plain.port] });
  const { egress } = await buildEgress(t, { fwd: { proxy: { url: proxy.url } } });
  const fwd = egress.profile('fwd');
  if (!fwd) throw new Error('profile missing');
  t.equal(fwd.viaProxy, true);
  t.equal(fwd.proxyOrigin, proxy.url);
  t.equal(await whoSees(fwd.createDispatcher({ ca: CA }), who.url), '127.0.0.3', 'TLS to the target inside the tunnel');
  t.equal(await whoSees(fwd.dispatcher, plain.url), '127.0.0.3', 'plain HTTP targets are tunnelled too');
  t.same([...who.seen, ...plain.seen], ['127.0.0.3', '127.0.0.3']);
});

t.test('egress dispatcher: the proxy is reached from the local address when both are set', async (t) => {
  const who = await startWhoAmI(t);
  // This proxy serves 127.0.0.2 only: a connection from the default 127.0.0.1 is refused.
  const proxy = await startForwardProxy(t, { connectPorts: [who.port], allow: ['127.0.0.2'] });
  const { egress } = await buildEgress(t, {
    pinned: { local_address: '127.0.0.2', proxy: { url: proxy.url } },
    unpinned: { proxy: { url: proxy.url } },
  });
  t.equal(await whoSees(egress.profile('pinned')?.dispatcher as Dispatcher, who.url), '127.0.0.3');
  const err = await whoSees(egress.profile('unpinned')?.dispatcher as Dispatcher, who.url).then(
    () => undefined,
    (e: Error) => e,
  );
  t.match(err?.message, /Proxy response \(403\)/, 'tinyproxy refuses 127.0.0.1');
  t.same(who.seen, ['127.0.0.3']);
});

t.test('egress dispatcher: a wrong proxy password is a clear error and never shown when the proxy refuses it', async (t) => {
  const who = await startWhoAmI(t);
  const proxy = await startForwardProxy(t, { connectPorts: [who.port], auth: { user: 'wegate', password: 'right-pass-5521' } });
  const good = await credentials(t, 'wegate:right-pass-5521\n');
  const bad = await credentials(t, 'wegate:wrong-pass-7734\n');
  const built = await buildEgress(t, {
    good: { proxy: { url: proxy.url, credentials_file: good } },
    bad: { proxy: { url: proxy.url, credentials_file: bad } },
    none: { proxy: { url: proxy.url } },
  });
  const { egress } = built;
  t.equal(await whoSees(egress.profile('good')?.dispatcher as Dispatcher, who.url), '127.0.0.3', 'the right password opens the tunnel');
  for (const name of ['bad', 'none']) {
    const err = await whoSees(egress.profile(name)?.dispatcher as Dispatcher, who.url).then(
      () => undefined,
      (e: Error) => e,
    );
    if (err === undefined) {
      t.fail(`${name}: the request went through`);
      continue;
    }
    const explained = explainEgressError(err);
    // tinyproxy answers a refused Proxy-Authorization with 401; RFC 9110 proxies with 407.
    t.match(explained, /refused the tunnel with HTTP (401|407): proxy authentication failed, check proxy\.credentials_file/, name);
    for (const text of [err.message, String(err.stack), explained, JSON.stringify(egress.snapshot()), built.text()]) {
      t.notMatch(text, /wrong-pass-7734|right-pass-5521|d2VnYXRl/, `${name}: no password or Basic token in what is shown`);
    }
  }
  t.same(who.seen, ['127.0.0.3'], 'only the authenticated request reached the server');
});
