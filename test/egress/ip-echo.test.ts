/**
 * The IP echo: a profile asks an echo server which address it is seen with and compares it with
 * expected_ip, at start-up and on its timer; a mismatch is logged once per change and exported as
 * wegate_egress_ip_mismatch. The echo server here answers the caller's real source address (the
 * profile is pinned to 127.0.0.3) until the test makes it answer 127.0.0.2, as a fixed NAT would.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { canonicalIp } from '../../src/egress/ip-echo.ts';
import { waitFor } from '../helpers/gateway.ts';
import { parseExposition, valueOf } from '../helpers/prom-text.ts';
import { startForwardProxy } from '../helpers/forward-proxy.ts';
import { type Built, buildEgress } from './helpers.ts';

interface Echo {
  readonly url: string;
  readonly port: number;
  /** What the next answers are: undefined = the caller's source address; a number = that HTTP status. */
  answer: string | number | undefined;
  requests: number;
}

async function startEcho(t: Test): Promise<Echo> {
  const echo: Echo = { url: '', port: 0, answer: undefined, requests: 0 };
  const server = createServer((req, res) => {
    echo.requests++;
    if (typeof echo.answer === 'number') {
      res.statusCode = echo.answer;
      res.end('<html>upstream trouble</html>');
      return;
    }
    res.end(`${echo.answer ?? req.socket.remoteAddress?.replace(/^::ffff:/, '')}\n`);
  });
  server.listen(0, '0.0.0.0');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return Object.assign(echo, { url: `http://127.0.0.1:${port}/ip`, port });
}

async function metric(b: Built, family: string, labels: Record<string, string>, name = family): Promise<number | undefined> {
  return valueOf(parseExposition(await b.registry.metrics()), family, labels, name);
}

const mismatchLines = (b: Built) => b.lines().filter((l) => /WeCom will see/.test(String(l['msg'])));
const matchLines = (b: Built) => b.lines().filter((l) => /matches expected_ip/.test(String(l['msg'])));

t.test('egress ip echo: logs a mismatch once and exports 1, then 0 when the IP echo matches expected_ip again', async (t) => {
  const echo = await startEcho(t);
  let clock = 1_000_000;
  const b = await buildEgress(
    t,
    { wecom: { local_address: '127.0.0.3', expected_ip: '127.0.0.2', ip_echo: { url: echo.url, interval_ms: 1000, timeout_ms: 2000 } } },
    () => clock,
  );
  const wecom = b.egress.profile('wecom');
  if (!wecom) throw new Error('profile missing');
  // The start-up check is already running: checkAll() joins it.
  await b.egress.checkAll();
  t.same(wecom.status, { observedIp: '127.0.0.3', matches: false, checkedAt: 1_000_000, error: undefined });
  t.equal(await metric(b, 'wegate_egress_ip_mismatch', { profile: 'wecom' }), 1);
  clock += 5;
  await wecom.checkNow();
  t.equal(wecom.status.checkedAt, 1_000_005);
  t.equal(await metric(b, 'wegate_egress_check_total', { profile: 'wecom', result: 'mismatch' }), 2);
  const [line, ...more] = mismatchLines(b);
  t.same(more, [], 'the same mismatch is logged once');
  t.equal(line?.['level'], 'warn', 'as a warning');
  t.match(line?.['msg'], /WeCom will see 127\.0\.0\.3 but expected_ip is 127\.0\.0\.2.*60020.*企业可信IP/);
  t.match(line, { egress: 'wecom', observed_ip: '127.0.0.3', expected_ip: '127.0.0.2' });

  // The egress is fixed (NAT now maps to the whitelisted IP): the timer notices.
  echo.answer = '127.0.0.2';
  await waitFor(() => wecom.status.matches === true, 5000);
  t.equal(wecom.status.observedIp, '127.0.0.2', 'the timer ran the check again');
  t.equal(await metric(b, 'wegate_egress_ip_mismatch', { profile: 'wecom' }), 0);
  t.equal(matchLines(b).length, 1, 'the match is logged once');
  t.equal(mismatchLines(b).length, 1, 'no new mismatch line');
  t.same(
    b.egress.snapshot().map((s) => ({ ...s, checkedAt: typeof s.checkedAt })),
    [
      {
        name: 'wecom',
        localAddress: '127.0.0.3',
        family: 4,
        proxy: undefined,
        expectedIp: '127.0.0.2',
        ipEcho: true,
        observedIp: '127.0.0.2',
        matches: true,
        checkedAt: 'number',
        error: undefined,
      },
    ],
  );

  // An echo that breaks: the error is recorded and logged once, the last known IP and metric stay.
  echo.answer = 500;
  await wecom.checkNow();
  await wecom.checkNow();
  t.equal(wecom.status.error, 'IP echo http://127.0.0.1:' + echo.port + '/ip answered HTTP 500');
  t.equal(wecom.status.observedIp, '127.0.0.2');
  t.equal(b.lines().filter((l) => /the IP echo failed/.test(String(l['msg']))).length, 1);
  t.equal(await metric(b, 'wegate_egress_check_total', { profile: 'wecom', result: 'error' }), 2);
  t.equal(await metric(b, 'wegate_egress_ip_mismatch', { profile: 'wecom' }), 0);

  // Closed: no check runs any more.
  await b.egress.close();
  const before = echo.requests;
  await wecom.checkNow();
  await b.egress.checkAll();
  t.equal(echo.requests, before, 'no request after close');
});

t.test('egress ip echo: rejects an answer that is not an IP address when the echo sends HTML', async (t) => {
  const echo = await startEcho(t);
  echo.answer = '<html>captive portal</html>';
  const b = await buildEgress(t, { p: { ip_echo: { url: echo.url, interval_ms: 600_000, timeout_ms: 2000 } } });
  await b.egress.checkAll();
  const p = b.egress.profile('p');
  t.match(p?.status.error, /answered \d+ bytes that are not an IP address \(body not shown\)/);
  t.notMatch(p?.status.error, /captive/);
  echo.answer = '{"ip":"2001:DB8:0:0::1"}';
  await p?.checkNow();
  t.equal(p?.status.observedIp, '2001:db8::1', 'JSON answers are read and IPv6 is canonical');
  t.equal(p?.status.matches, undefined, 'nothing to compare without expected_ip');
  t.equal(await metric(b, 'wegate_egress_check_total', { profile: 'p', result: 'no_expected_ip' }), 1);
  t.equal(await metric(b, 'wegate_egress_ip_mismatch', { profile: 'p' }), undefined, 'no mismatch sample without expected_ip');
});

t.test("egress ip echo: sees the proxy's outgoing address when the profile goes through tinyproxy", async (t) => {
  const echo = await startEcho(t);
  const proxy = await startForwardProxy(t, { connectPorts: [echo.port] });
  const b = await buildEgress(t, {
    fwd: { proxy: { url: proxy.url }, expected_ip: '127.0.0.3', ip_echo: { url: echo.url, interval_ms: 600_000, timeout_ms: 2000 } },
  });
  await b.egress.checkAll();
  t.same(b.egress.profile('fwd')?.status, {
    observedIp: '127.0.0.3',
    matches: true,
    checkedAt: b.egress.profile('fwd')?.status.checkedAt,
    error: undefined,
  });
  t.equal(await metric(b, 'wegate_egress_ip_mismatch', { profile: 'fwd' }), 0);
});

t.test('canonicalIp: compares IPv4-mapped and differently written IPv6 addresses as equal when they are the same', async (t) => {
  t.equal(canonicalIp('::ffff:47.111.68.103'), '47.111.68.103');
  t.equal(canonicalIp('2001:0DB8::0001'), '2001:db8::1');
  t.equal(canonicalIp('47.111.68.103'), '47.111.68.103');
});
