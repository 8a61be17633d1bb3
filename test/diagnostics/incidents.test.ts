import { Registry } from 'prom-client';
import t from 'tap';
import { createIncidents } from '../../src/diagnostics/index.ts';
import { createMetrics } from '../../src/metrics/metrics.ts';
import { parseExposition, valueOf } from '../helpers/prom-text.ts';
import { captureLogger } from '../helpers/gateway.ts';

const make = (max?: number) => {
  let now = 1_000;
  const { logger, logs } = captureLogger();
  const registry = new Registry();
  const metrics = createMetrics({ registry, processMetrics: false });
  const incidents = createIncidents({ clock: () => now, logger, metrics, ...(max !== undefined ? { max } : {}) });
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
