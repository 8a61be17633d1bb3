import { Registry } from 'prom-client';
import t from 'tap';
import { createIncidents } from '../../src/diagnostics/index.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { parseExposition, valueOf } from '../helpers/prom-text.ts';
import { captureLogger } from '../helpers/gateway.ts';

const make = (max?: number, more: { maxVendor?: number; vendorLogsPerMinute?: number } = {}) => {
  let now = 1_000;
  const { logger, logs } = captureLogger();
  const registry = new Registry();
  const metrics = createMetrics({ registry, processMetrics: false });
  const incidents = createIncidents({ clock: () => now, logger, metrics, ...(max !== undefined ? { max } : {}), ...more });
  return { incidents, logs, registry, tick: (ms: number) => (now += ms) };
};

const input = (over: Record<string, unknown> = {}) => ({
  app: 'ecard',
  api: '/cgi-bin/message/send',
  cause: 'not_in_trusted_ip',
  errcode: 60020,
  fromIp: '47.111.68.103',
  expectedIp: '47.111.68.103',
  hint: '1',
  en: 'IP not in 企业可信IP: add it',
  zh: '来源 IP 不在企业可信IP中',
  ...over,
});

t.test('createIncidents: one entry counted with first/last seen when the same cause repeats', async (t) => {
  const { incidents, logs, registry, tick } = make();
  incidents.record(input({ hint: 'a' }));
  tick(500);
  incidents.record(input({ hint: 'b' }));
  tick(500);
  const last = incidents.record(input({ hint: 'c' }));
  t.match(last, { count: 3, firstSeen: 1_000, lastSeen: 2_000, hint: 'c' });
  t.equal(incidents.list().length, 1);
  t.equal(logs.lines.filter((l) => l['incident'] === 'not_in_trusted_ip').length, 1, 'logged once');
  t.equal(logs.lines[0]?.['msg'], 'IP not in 企业可信IP: add it');
  t.equal(logs.lines[0]?.['action_zh'], '来源 IP 不在企业可信IP中');
  t.equal(
    valueOf(parseExposition(await registry.metrics()), 'wegate_wecom_incidents_total', { app: 'ecard', cause: 'not_in_trusted_ip' }),
    3,
  );
});

t.test('createIncidents: separate entries, most recent first, when app, API, cause or IPs differ', async (t) => {
  const { incidents, logs, tick } = make();
  incidents.record(input());
  tick(1);
  incidents.record(input({ fromIp: '120.27.208.144', cause: 'pin_not_effective' }));
  tick(1);
  incidents.record(input({ api: '/cgi-bin/user/get' }));
  tick(1);
  incidents.record(input({ app: 'other' }));
  tick(1);
  incidents.record(input({ source: 'vendor' }));
  t.same(
    incidents.list().map((i) => [i.app, i.api, i.cause, i.fromIp, i.source ?? 'wegate']),
    [
      ['ecard', '/cgi-bin/message/send', 'not_in_trusted_ip', '47.111.68.103', 'vendor'],
      ['other', '/cgi-bin/message/send', 'not_in_trusted_ip', '47.111.68.103', 'wegate'],
      ['ecard', '/cgi-bin/user/get', 'not_in_trusted_ip', '47.111.68.103', 'wegate'],
      ['ecard', '/cgi-bin/message/send', 'pin_not_effective', '120.27.208.144', 'wegate'],
      ['ecard', '/cgi-bin/message/send', 'not_in_trusted_ip', '47.111.68.103', 'wegate'],
    ],
  );
  t.equal(logs.lines.length, 5);
});

t.test('createIncidents: keeps at most max entries when many distinct IPs fail', async (t) => {
  const { incidents } = make(10);
  for (let i = 0; i < 1000; i++) incidents.record(input({ fromIp: `10.0.${i >> 8}.${i & 255}` }));
  const list = incidents.list();
  t.equal(list.length, 10);
  t.equal(list[0]?.fromIp, '10.0.3.231', 'the latest kept');
});

const vendorInput = (i: number) =>
  input({
    app: 'vendor-route',
    api: '/',
    cause: 'vendor_ip_not_trusted',
    source: 'vendor',
    fromIp: `10.66.${i >> 8}.${i & 255}`,
    expectedIp: undefined,
  });

t.test("createIncidents: keeps wegate's own incidents when a vendor's distinct incidents outnumber the list (review F3)", async (t) => {
  const { incidents, tick } = make(10, { maxVendor: 5 });
  incidents.record(input());
  for (let i = 0; i < 100; i++) {
    tick(1);
    incidents.record(vendorInput(i));
  }
  const list = incidents.list();
  t.equal(list.length, 6, "wegate's own entry and the vendor's bucket of 5");
  t.match(list.at(-1), { app: 'ecard', cause: 'not_in_trusted_ip', source: undefined, count: 1, firstSeen: 1_000 });
  t.same(
    list.slice(0, 5).map((i) => i.fromIp),
    ['10.66.0.99', '10.66.0.98', '10.66.0.97', '10.66.0.96', '10.66.0.95'],
    "the vendor's latest",
  );
  tick(1);
  for (let i = 0; i < 20; i++) incidents.record(input({ api: `/cgi-bin/api/${i}` }));
  t.equal(incidents.list().filter((i) => i.source === 'vendor').length, 5, "wegate's own never evict the vendor's either");
  t.equal(incidents.list().length, 15);
});

t.test(
  'createIncidents: logs at most vendorLogsPerMinute new vendor incidents a minute and counts the rest when a vendor floods (review F3)',
  async (t) => {
    const { incidents, logs, registry, tick } = make(undefined, { vendorLogsPerMinute: 3 });
    const vendorLines = () => logs.lines.filter((l) => l['incident'] === 'vendor_ip_not_trusted');
    for (let i = 0; i < 10; i++) {
      tick(1_000);
      incidents.record(vendorInput(i));
      incidents.record(vendorInput(i));
    }
    incidents.record(input());
    t.same(
      vendorLines().map((l) => l['from_ip']),
      ['10.66.0.0', '10.66.0.1', '10.66.0.2'],
      'the first 3 new ones are logged',
    );
    const paused = logs.lines.filter((l) => l['vendor_logs_per_minute'] === 3);
    t.equal(paused.length, 1, 'one line says vendor logging paused');
    t.match(paused[0], { level: 'warn', source: 'vendor', msg: /^More than 3 new vendor incidents within a minute/ });
    t.match(paused[0]?.['action_zh'], /一分钟内新的服务商故障超过 3 条/);
    t.equal(logs.lines.filter((l) => l['incident'] === 'not_in_trusted_ip').length, 1, "wegate's own are logged during the pause");
    t.equal(incidents.list().length, 11, 'all recorded');
    const m = parseExposition(await registry.metrics());
    t.equal(
      valueOf(m, 'wegate_wecom_incidents_total', { app: 'vendor-route', cause: 'vendor_ip_not_trusted' }),
      20,
      'every occurrence counted',
    );

    tick(50_000); // 59 s after the first: still the same minute
    incidents.record(vendorInput(100));
    t.equal(vendorLines().length, 3);
    tick(1_000); // the minute is over
    incidents.record(vendorInput(101));
    const tally = logs.lines.filter((l) => l['vendor_incidents_not_logged'] !== undefined);
    t.match(tally, [
      {
        level: 'warn',
        source: 'vendor',
        vendor_incidents_not_logged: 8,
        window_s: 60,
        msg: /^8 more new vendor incidents were not logged/,
      },
    ]);
    t.same(
      vendorLines()
        .map((l) => l['from_ip'])
        .slice(3),
      ['10.66.0.101'],
      'the new minute logs again',
    );
    t.equal(logs.lines.filter((l) => l['vendor_logs_per_minute'] !== undefined).length, 1);
  },
);
