/**
 * The relay's pure parts, table-driven: the token bucket (injected clock), CIDR parsing, the
 * access_token stripping of the vendor's query, and credential lookup.
 */
import { Registry } from 'prom-client';
import t from 'tap';
import { createMetrics } from '../../../src/metrics/metrics.ts';
import { createRelayClients, createRelayLimiter, parseCidr, stripAccessToken, TokenBucket } from '../../../src/wecom/relay/index.ts';
import { basic, PASSWORD, sha256, TOKEN } from './helpers.ts';

t.test('TokenBucket: allows the burst, then refills at the rate when time passes', async (t) => {
  let now = 0;
  const b = new TokenBucket(2, 3, () => now);
  t.same([b.take(), b.take(), b.take()], [0, 0, 0], 'burst of 3');
  t.equal(b.take(), 1, 'empty: wait about a second');
  now += 500;
  t.equal(b.take(), 0, 'half a second at 2/s refills one');
  t.ok(b.take() > 0);
  now += 60_000;
  t.same([b.take(), b.take(), b.take(), b.take() > 0], [0, 0, 0, true], 'never more than the burst');
});

t.test('RelayLimiter: a reload keeps the bucket of a client when its limits change', async (t) => {
  let now = 0;
  const limiter = createRelayLimiter(() => now);
  const a = limiter.bucket('v', 1, 2);
  a.take();
  a.take();
  const b = limiter.bucket('v', 1, 10);
  t.equal(a, b, 'the same bucket');
  t.ok(b.take() > 0, 'still empty: a reload does not refill it');
  now += 1000;
  t.equal(b.take(), 0);
});

t.test('parseCidr: parses addresses and blocks when they are well-formed', async (t) => {
  const cases: [string, ReturnType<typeof parseCidr>][] = [
    ['203.0.113.7', { address: '203.0.113.7', prefix: 32, family: 'ipv4' }],
    ['10.0.0.0/8', { address: '10.0.0.0', prefix: 8, family: 'ipv4' }],
    ['::ffff:10.0.0.1', { address: '10.0.0.1', prefix: 32, family: 'ipv4' }],
    ['2001:db8::/32', { address: '2001:db8::', prefix: 32, family: 'ipv6' }],
    ['10.0.0.0/33', undefined],
    ['10.0.0.0/', undefined],
    ['10.0.0/8', undefined],
    ['example.com', undefined],
    ['2001:db8::/129', undefined],
  ];
  for (const [text, want] of cases) t.same(parseCidr(text), want, text);
});

t.test('stripAccessToken: removes every spelling of access_token when the vendor sends one', async (t) => {
  const cases: [string, string][] = [
    ['', ''],
    ['?', ''],
    ['?userid=zhangsan', 'userid=zhangsan'],
    ['?access_token=x', ''],
    ['?userid=a&access_token=x&b=2', 'userid=a&b=2'],
    ['?ACCESS_TOKEN=x&Access_Token=y&a=1', 'a=1'],
    ['?access%5Ftoken=x&access%5ftoken=y', ''],
    ['?access_token&a=1', 'a=1'],
    ['?access+token=x&a=%E5%BC%A0', 'access+token=x&a=%E5%BC%A0'],
    ['?a=access_token', 'a=access_token'],
    ['?%ZZ=1&suite_access_token=s', '%ZZ=1&suite_access_token=s'],
  ];
  for (const [query, want] of cases) t.equal(stripAccessToken(query), want, query);
});

t.test('RelayClients: finds a client only by its exact token or password when credentials are presented', async (t) => {
  const metrics = createMetrics({ registry: new Registry(), processMetrics: false });
  const clients = createRelayClients(
    [
      {
        name: 'v',
        app: 'ecard',
        token_sha256: sha256(TOKEN).toUpperCase(),
        apis: [],
        connect_password_sha256: sha256(PASSWORD),
        source_cidrs: [],
        rate: { per_second: 1, burst: 1 },
      },
    ],
    createRelayLimiter(),
    metrics.relayRequests,
  );
  t.equal(clients.byBearer(`Bearer ${TOKEN}`)?.name, 'v', 'upper-case hex in the config works too');
  t.equal(clients.byBearer(`bearer ${TOKEN}`)?.name, 'v', 'the scheme is case-insensitive');
  for (const h of [undefined, '', TOKEN, `Bearer  ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Token ${TOKEN}`, `Bearer\t${TOKEN}`])
    t.equal(clients.byBearer(h), undefined, String(h));
  t.equal(clients.byBasic(basic('v', PASSWORD))?.name, 'v');
  for (const h of [
    undefined,
    basic('v', `${PASSWORD} `),
    basic('w', PASSWORD),
    basic('', PASSWORD),
    'Basic',
    'Basic %%%',
    `Basic ${Buffer.from('v').toString('base64')}`,
  ])
    t.equal(clients.byBasic(h), undefined, String(h));
});
