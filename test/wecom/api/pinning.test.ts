/**
 * The loopback cases: the fake WeCom whitelists 127.0.0.2 for the app; the client is pinned
 * to an alias by a real undici Agent (localAddress), and the fake answers 60020 with the source
 * address it really saw.
 */
import t from 'tap';
import { parseExposition, valueOf } from '../../helpers/prom-text.ts';
import { CORP, ECARD, rejection, SECRET, setup } from './helpers.ts';

const trusted = (s: Awaited<ReturnType<typeof setup>>) =>
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.2'] });

t.test('WecomApi: a business API works when pinned to the whitelisted 127.0.0.2', async (t) => {
  const s = await setup(t, { wecom: ECARD, localAddress: '127.0.0.2', expectedIp: '127.0.0.2' });
  trusted(s);
  const r = await s.api.call('ecard', '/cgi-bin/get_api_domain_ip');
  t.same(r['ip_list'], ['182.254.11.176', '182.254.78.66']);
  t.same(
    s.fake.requests.map((r) => [r.path, r.from]),
    [
      ['/cgi-bin/gettoken', '127.0.0.2'],
      ['/cgi-bin/get_api_domain_ip', '127.0.0.2'],
    ],
    'WeCom saw the pinned address on every call',
  );
  t.same(s.incidents.list(), []);
});

t.test('WecomApi: 60020 is "IP not in 企业可信IP" naming 127.0.0.3 when pinned to 127.0.0.3 with expected_ip 127.0.0.3', async (t) => {
  const s = await setup(t, { wecom: ECARD, localAddress: '127.0.0.3', expectedIp: '127.0.0.3' });
  trusted(s);
  const e = await rejection(t, s.api.call('ecard', '/cgi-bin/user/get', { query: { userid: 'zhangsan' } }));
  t.equal(e['code'], 'WG_WECOM_IP_NOT_ALLOWED');
  t.equal(e['errcode'], 60020);
  t.equal(e['fromIp'], '127.0.0.3');
  const d = e['diagnosis'] as Record<string, unknown>;
  t.equal(d['cause'], 'not_in_trusted_ip');
  t.match(d['en'], /^IP not in 企业可信IP: .*127\.0\.0\.3.*应用管理 › ecard › 企业可信IP/);
  t.match(d['zh'], /127\.0\.0\.3.*应用管理 › ecard › 企业可信IP/);
  t.equal(s.fake.calls('/cgi-bin/user/get'), 1, '60020 is never retried');
  const [incident, ...more] = s.incidents.list();
  t.same(more, []);
  t.match(incident, {
    app: 'ecard',
    api: '/cgi-bin/user/get',
    cause: 'not_in_trusted_ip',
    fromIp: '127.0.0.3',
    expectedIp: '127.0.0.3',
    count: 1,
  });
  t.match(incident?.hint, /^\d+$/, 'hint kept for a support ticket');
});

t.test(
  'WecomApi: 60020 is "pin not effective: WeCom saw 127.0.0.3, expected 127.0.0.2" when pinned to 127.0.0.3 with expected_ip 127.0.0.2',
  async (t) => {
    const s = await setup(t, { wecom: ECARD, localAddress: '127.0.0.3', expectedIp: '127.0.0.2' });
    trusted(s);
    const e = await rejection(t, s.api.call('ecard', '/cgi-bin/message/send', { body: { touser: 'zhangsan', msgtype: 'text' } }));
    const d = e['diagnosis'] as Record<string, unknown>;
    t.equal(d['cause'], 'pin_not_effective');
    t.match(d['en'], /^Egress pin not effective: WeCom saw 127\.0\.0\.3, expected 127\.0\.0\.2/);
    t.match(d['zh'], /出口绑定未生效：企业微信看到的来源 IP 是 127\.0\.0\.3，预期为 127\.0\.0\.2/);
    t.equal(s.fake.calls('/cgi-bin/message/send'), 1);
  },
);

t.test('WecomApi: an incident is logged once and counted per occurrence when the same 60020 repeats', async (t) => {
  const s = await setup(t, { wecom: ECARD, localAddress: '127.0.0.3', expectedIp: '127.0.0.3' });
  trusted(s);
  for (let i = 0; i < 5; i++) await rejection(t, s.api.call('ecard', '/cgi-bin/get_api_domain_ip'));
  const [incident] = s.incidents.list();
  t.equal(incident?.count, 5);
  const warned = s.logs.lines.filter((l) => l['incident'] === 'not_in_trusted_ip');
  t.equal(warned.length, 1, 'one log line for one distinct cause');
  const m = parseExposition(await s.registry.metrics());
  t.equal(valueOf(m, 'wegate_wecom_incidents_total', { app: 'ecard', cause: 'not_in_trusted_ip' }), 5);
  t.equal(valueOf(m, 'wegate_wecom_api_calls_total', { api: '/cgi-bin/get_api_domain_ip', errcode: '60020' }), 5);
  t.equal(valueOf(m, 'wegate_wecom_api_calls_total', { api: '/cgi-bin/gettoken', errcode: '0' }), 1, 'gettoken works from any IP, once');
});

t.test('WecomApi: gettoken succeeds from a non-whitelisted address when only business APIs are guarded', async (t) => {
  const s = await setup(t, { wecom: ECARD, localAddress: '127.0.0.3' });
  trusted(s);
  const token = await s.api.accessToken('ecard');
  t.ok(token.length > 0);
  t.same(
    s.fake.requests.map((r) => [r.path, r.from, r.app]),
    [['/cgi-bin/gettoken', '127.0.0.3', 'ecard']],
  );
});

t.test(
  'WecomApi: 60020 is "pin not effective" naming the address family when the call leaves over IPv6 (::1) but 127.0.0.2 is expected',
  async (t) => {
    const s = await setup(t, { wecom: ECARD, localAddress: '::1', expectedIp: '127.0.0.2', family: 4 });
    s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.2'] });
    // The same fake, reached over IPv6 loopback (its certificate names ::1 too).
    const v6 = await setup(t, {
      wecom: { ...ECARD, api_base: `https://[::1]:${s.fake.port}` },
      fake: s.fake,
      localAddress: '::1',
      expectedIp: '127.0.0.2',
      family: 4,
    });
    const e = await rejection(t, v6.api.call('ecard', '/cgi-bin/get_api_domain_ip'));
    t.equal(s.fake.requests.at(-1)?.from, '::1', 'WeCom saw the IPv6 source');
    const d = e['diagnosis'] as Record<string, unknown>;
    t.equal(d['cause'], 'pin_not_effective');
    t.match(d['en'], /^Egress pin not effective: WeCom saw ::1, expected 127\.0\.0\.2.*left over IPv6 although the egress is IPv4/);
  },
);

t.test('WecomApi.probe: reports ok from the whitelisted pin and the diagnosis from another when doctor or readiness asks', async (t) => {
  const good = await setup(t, { wecom: ECARD, localAddress: '127.0.0.2', expectedIp: '127.0.0.2' });
  trusted(good);
  t.same(await good.api.probe('ecard'), { app: 'ecard', ok: true });
  const bad = await setup(t, { wecom: ECARD, fake: good.fake, localAddress: '127.0.0.3', expectedIp: '127.0.0.2' });
  const r = await bad.api.probe('ecard');
  t.equal(r.ok, false);
  if (!r.ok) t.equal(r.error.diagnosis?.cause, 'pin_not_effective');
  t.equal(good.fake.calls('/cgi-bin/get_api_domain_ip'), 2, 'the probe calls a guarded API, not only gettoken');
});

t.test('WecomApi.explain: diagnoses and records a passed-through 60020 answer when the relay hands one in', async (t) => {
  const s = await setup(t, { wecom: ECARD, localAddress: '127.0.0.2', expectedIp: '127.0.0.2' });
  const answer = {
    errcode: 60020,
    errmsg:
      'not allow to access from your ip, hint: [1669020802500610298213653], from ip: 120.27.208.144, more info at https://open.work.weixin.qq.com/devtool/query?e=60020',
  };
  const e = s.api.explain('ecard', '/cgi-bin/message/send', answer);
  t.equal(e?.diagnosis?.cause, 'pin_not_effective');
  t.equal(e?.fromIp, '120.27.208.144');
  t.match(s.incidents.list(), [{ app: 'ecard', api: '/cgi-bin/message/send', fromIp: '120.27.208.144', count: 1 }]);
  t.equal(s.api.explain('ecard', '/cgi-bin/message/send', { errcode: 0, errmsg: 'ok' }), undefined);
  t.equal(s.api.explain('ecard', '/cgi-bin/user/get', { errcode: 40003, errmsg: 'invalid userid' })?.code, 'WG_WECOM_ERROR');
});
