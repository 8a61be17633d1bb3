/**
 * Failed relay / tunnel authentication is throttled per source address (review F6): after
 * AUTH_FAILURES_PER_MINUTE wrong tokens or passwords an address gets 429 before its credentials are
 * checked, other addresses are not affected; the budget comes back as the clock moves. Real gateway,
 * real fake WeCom, requests from 127.0.0.1 and from the alias 127.0.0.3; the gateway's clock is
 * injected, so a slow machine cannot refill a bucket between two requests.
 */
import { request as httpRequest } from 'node:http';
import t from 'tap';
import { AUTH_FAILURES_PER_MINUTE } from '../../../src/wecom/relay/clients.ts';
import { raw, rawStatus } from '../../helpers/gateway.ts';
import { parseExposition, valueOf } from '../../helpers/prom-text.ts';
import { basic, bearer, PASSWORD, relaySetup, sha256, TOKEN, VENDOR } from './helpers.ts';

const USER_GET = '/.wegate/relay/cgi-bin/user/get?userid=zhangsan';

/** GET the relay from `localAddress`; status and Retry-After. */
function relayGet(port: number, headers: Record<string, string>, localAddress = '127.0.0.1') {
  return new Promise<{ status: number; retryAfter: string | undefined }>((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, path: USER_GET, localAddress, headers: { host: 'api1.school.edu.cn', ...headers }, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

t.test('relay: answers 429 to an address when it sent too many wrong bearer tokens (review F6)', async (t) => {
  let now = Date.now();
  const { fake, gw } = await relaySetup(t, { now: () => now });
  const statuses: number[] = [];
  for (let i = 0; i < AUTH_FAILURES_PER_MINUTE; i++) statuses.push((await relayGet(gw.httpPort, bearer(`guess-${i}`))).status);
  t.same(new Set(statuses), new Set([401]), `the first ${AUTH_FAILURES_PER_MINUTE} wrong tokens get 401`);
  const wrong = await relayGet(gw.httpPort, bearer('guess-more'));
  t.equal(wrong.status, 429, 'the next failure is throttled');
  t.match(wrong.retryAfter, /^[1-9]\d*$/, 'with Retry-After');
  const right = await relayGet(gw.httpPort, bearer());
  t.equal(right.status, 429, 'a locked address is refused before its token is checked');
  t.equal(fake.requests.length, 0, 'WeCom was not called');
  const other = await relayGet(gw.httpPort, bearer(), '127.0.0.3');
  t.equal(other.status, 200, 'another address is not affected');
  const m = parseExposition(await gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: '-', result: 'unauthorized' }), AUTH_FAILURES_PER_MINUTE);
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: '-', result: 'auth_throttled' }), 2);
  t.equal(valueOf(m, 'wegate_relay_requests_total', { client: 'vendor', result: 'ok' }), 1);
  now += 3_000; // one failure's worth of budget back (20 a minute)
  t.equal((await relayGet(gw.httpPort, bearer())).status, 200, 'the address may try again when the budget refilled');
});

t.test('relay tunnel: answers 429 to an address when it sent too many wrong CONNECT passwords (review F6)', async (t) => {
  const now = Date.now();
  const s = await relaySetup(t, {
    now: () => now,
    clients: [{ ...VENDOR, connect_password_sha256: sha256(PASSWORD) }],
    relay: { connect_listen: '127.0.0.1:0' },
  });
  const port = s.gw.addrs.relayConnect?.port ?? 0;
  const target = `127.0.0.1:${s.fake.port}`;
  const connectWith = (password: string) =>
    raw(port, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: ${basic('vendor', password)}\r\n\r\n`, 1000);
  const statuses: number[] = [];
  for (let i = 0; i < AUTH_FAILURES_PER_MINUTE; i++) statuses.push(rawStatus(await connectWith(`wrong-${i}`)));
  t.same(new Set(statuses), new Set([407]), `the first ${AUTH_FAILURES_PER_MINUTE} wrong passwords get 407`);
  const locked = await connectWith(PASSWORD);
  t.equal(rawStatus(locked), 429, 'then the address is refused, the right password too');
  t.match(locked, /\r\nRetry-After: [1-9]\d*\r\n/i);
  t.notOk(locked.includes(PASSWORD) || locked.includes(TOKEN));
  const m = parseExposition(await s.gw.registry.metrics());
  t.equal(valueOf(m, 'wegate_relay_tunnels_total', { client: '-', result: 'unauthorized' }), AUTH_FAILURES_PER_MINUTE);
  t.equal(valueOf(m, 'wegate_relay_tunnels_total', { client: '-', result: 'auth_throttled' }), 1);
});
