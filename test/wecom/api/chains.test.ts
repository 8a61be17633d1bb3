/**
 * The three token chains against the fake WeCom: self-built (covered everywhere else), 代开发
 * (gettoken with the authorising corp + the permanent code, configured or from the store), and
 * third-party suites / 代开发 templates (suite_access_token from the stored suite_ticket →
 * get_corp_token, get_permanent_code).
 */
import t from 'tap';
import { rejection, setup } from './helpers.ts';

const SCHOOL = 'wwschoolcorp01';
const TEMPLATE_SECRET = 'template-secret-abcdefghijklmnopqrstuvwxyz012345';
const SUITE_SECRET = 'suite-secret-abcdefghijklmnopqrstuvwxyz0123456789';
const PERMANENT = 'permanent-code-0123456789abcdefghijklmnopqrstuv';
const TICKET = 'suite-ticket-0123456789abcdefghijklmnopqrstuvwxyz';

const tickets = (map: Record<string, string>) => ({ get: (id: string) => map[id] });

t.test(
  'WecomApi: a 代开发 app gets its token from gettoken with the authorising corp and the permanent code when it is configured as the secret',
  async (t) => {
    const s = await setup(t, {
      wecom: { apps: [{ name: 'dk', kind: 'authorized', corp_id: SCHOOL, secret: { env: 'DK_SECRET' } }] },
      env: { DK_SECRET: PERMANENT },
    });
    s.fake.addApp({ name: 'school-dk', corpId: SCHOOL, secret: PERMANENT });
    const r = await s.api.call('dk', '/cgi-bin/user/get', { query: { userid: 'u1' } });
    t.equal(r['userid'], 'u1');
    t.same(
      s.fake.requests.map((r) => [r.path, r.query['corpid'], r.app]),
      [
        ['/cgi-bin/gettoken', SCHOOL, 'school-dk'],
        ['/cgi-bin/user/get', undefined, 'school-dk'],
      ],
    );
  },
);

t.test('WecomApi: a 代开发 app uses the stored permanent code of its template when no secret is configured', async (t) => {
  const codes = new Map([[`dktemplate01|${SCHOOL}`, PERMANENT]]);
  const s = await setup(t, {
    wecom: {
      apps: [{ name: 'dk', kind: 'authorized', corp_id: SCHOOL, suite: 'tpl' }],
      suites: [{ name: 'tpl', kind: 'template', suite_id: 'dktemplate01', secret: { env: 'TPL_SECRET' } }],
    },
    env: { TPL_SECRET: TEMPLATE_SECRET },
    permanentCodes: { get: (suite, corp) => codes.get(`${suite}|${corp}`) },
  });
  s.fake.addApp({ name: 'school-dk', corpId: SCHOOL, secret: PERMANENT });
  await s.api.call('dk', '/cgi-bin/get_api_domain_ip');
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 1);
  t.equal(s.fake.calls('/cgi-bin/service/get_suite_token'), 0, 'a 代开发 app token needs no suite token');

  // reset_permanent_code: the store now holds a new code, the old one stops working.
  s.fake.apps.splice(0, 1);
  s.fake.addApp({ name: 'school-dk-2', corpId: SCHOOL, secret: `${PERMANENT}-new` });
  codes.set(`dktemplate01|${SCHOOL}`, `${PERMANENT}-new`);
  await s.api.call('dk', '/cgi-bin/get_api_domain_ip');
  t.equal(s.fake.calls('/cgi-bin/gettoken'), 2, 'a new permanent code is a new credential: fetched at once');
  t.equal(s.fake.requests.at(-1)?.app, 'school-dk-2');
});

t.test('WecomApi: a 代开发 app is not ready when its template has no permanent code stored yet', async (t) => {
  const s = await setup(t, {
    wecom: {
      apps: [{ name: 'dk', kind: 'authorized', corp_id: SCHOOL, suite: 'tpl' }],
      suites: [{ name: 'tpl', kind: 'template', suite_id: 'dktemplate01', secret: { env: 'TPL_SECRET' } }],
    },
    env: { TPL_SECRET: TEMPLATE_SECRET },
    permanentCodes: { get: () => undefined },
  });
  const e = await rejection(t, s.api.call('dk', '/cgi-bin/user/get'));
  t.equal(e['code'], 'WG_WECOM_NOT_READY');
  t.match(e['message'], /create_auth/);
  t.equal(s.fake.requests.length, 0);
});

const thirdParty = {
  apps: [{ name: 'vendor', kind: 'third_party', corp_id: SCHOOL, suite: 'suite' }],
  suites: [{ name: 'suite', kind: 'third_party', suite_id: 'wwsuite0001', secret: { env: 'SUITE_SECRET' } }],
};

t.test('WecomApi: a third-party app token comes from get_corp_token with the suite token of the stored suite_ticket', async (t) => {
  const s = await setup(t, {
    wecom: thirdParty,
    env: { SUITE_SECRET },
    suiteTickets: tickets({ wwsuite0001: TICKET }),
    permanentCodes: { get: (suite, corp) => (suite === 'wwsuite0001' && corp === SCHOOL ? PERMANENT : undefined) },
  });
  s.fake.addSuite({ name: 'suite', suiteId: 'wwsuite0001', secret: SUITE_SECRET, ticket: TICKET, corps: new Map([[SCHOOL, PERMANENT]]) });
  const r = await s.api.call('vendor', '/cgi-bin/message/send', { body: { touser: 'u1', msgtype: 'text' } });
  t.equal(r['errcode'], 0);
  t.same(
    s.fake.requests.map((r) => [r.method, r.path, r.bodyKeys.join(',')]),
    [
      ['POST', '/cgi-bin/service/get_suite_token', 'suite_id,suite_secret,suite_ticket'],
      ['POST', '/cgi-bin/service/get_corp_token', 'auth_corpid,permanent_code'],
      ['POST', '/cgi-bin/message/send', 'touser,msgtype'],
    ],
  );
  await s.api.call('vendor', '/cgi-bin/get_api_domain_ip');
  t.equal(s.fake.calls('/cgi-bin/service/get_corp_token'), 1, 'the corp token is cached');
  t.same(
    s.api.tokenStatus().map((st) => [st.name, st.kind, st.lastErrcode]),
    [
      ['vendor', 'third_party', 0],
      ['suite', 'suite', 0],
    ],
  );
});

t.test('WecomApi: 42009 refreshes the suite token once when get_corp_token finds it expired', async (t) => {
  const s = await setup(t, {
    wecom: thirdParty,
    env: { SUITE_SECRET },
    suiteTickets: tickets({ wwsuite0001: TICKET }),
    permanentCodes: { get: () => PERMANENT },
  });
  s.fake.addSuite({ name: 'suite', suiteId: 'wwsuite0001', secret: SUITE_SECRET, ticket: TICKET, corps: new Map([[SCHOOL, PERMANENT]]) });
  await s.api.accessToken('vendor');
  s.fake.expireTokens('suite');
  s.fake.invalidateTokens('suite/wwschoolcorp01');
  await s.api.call('vendor', '/cgi-bin/get_api_domain_ip');
  t.equal(s.fake.calls('/cgi-bin/service/get_suite_token'), 2, 'suite token refreshed once');
  t.equal(s.fake.calls('/cgi-bin/service/get_corp_token'), 3, 'first, the 42009 one, the retry');
});

t.test('WecomApi: getPermanentCode exchanges an auth code once and returns the corp when create_auth arrives', async (t) => {
  const s = await setup(t, {
    wecom: { suites: [{ name: 'tpl', kind: 'template', suite_id: 'dktemplate01', secret: { env: 'TPL_SECRET' } }] },
    env: { TPL_SECRET: TEMPLATE_SECRET },
    suiteTickets: tickets({ dktemplate01: TICKET }),
  });
  const suite = s.fake.addSuite({ name: 'tpl', suiteId: 'dktemplate01', secret: TEMPLATE_SECRET, ticket: TICKET });
  suite.authCodes.set('auth-code-1', { corpId: SCHOOL, permanentCode: PERMANENT, corpName: '某某学校' });
  const grant = await s.api.getPermanentCode('tpl', 'auth-code-1');
  t.equal(grant.permanentCode, PERMANENT);
  t.equal(grant.corpId, SCHOOL);
  t.equal(grant.corpName, '某某学校');
  t.notOk('permanent_code' in grant.info, 'the code is not repeated in info');
  t.match(grant.info, { auth_corp_info: { corpid: SCHOOL } });
  const e = await rejection(t, s.api.getPermanentCode('tpl', 'auth-code-1'));
  t.equal(e['errcode'], 40029, 'an auth code is single use');
});

t.test('WecomApi: a third-party suite is not ready when no suite_ticket has arrived', async (t) => {
  const s = await setup(t, {
    wecom: thirdParty,
    env: { SUITE_SECRET },
    suiteTickets: tickets({}),
    permanentCodes: { get: () => PERMANENT },
  });
  const e = await rejection(t, s.api.call('vendor', '/cgi-bin/user/get'));
  t.equal(e['code'], 'WG_WECOM_NOT_READY');
  t.match(e['message'], /no suite_ticket received yet.*指令回调URL/);
  t.equal(s.fake.requests.length, 0);
});

t.test('WecomApi: a stale suite_ticket is held off until a new ticket arrives when WeCom answers 40085', async (t) => {
  const current: Record<string, string> = { wwsuite0001: 'old-ticket' };
  const s = await setup(t, {
    wecom: thirdParty,
    env: { SUITE_SECRET },
    suiteTickets: tickets(current),
    permanentCodes: { get: () => PERMANENT },
  });
  s.fake.addSuite({ name: 'suite', suiteId: 'wwsuite0001', secret: SUITE_SECRET, ticket: TICKET, corps: new Map([[SCHOOL, PERMANENT]]) });
  for (let i = 0; i < 3; i++) {
    const e = await rejection(t, s.api.call('vendor', '/cgi-bin/user/get'));
    t.equal(e['errcode'], 40085);
  }
  t.equal(s.fake.calls('/cgi-bin/service/get_suite_token'), 1, 'the rejected ticket is not sent again');
  t.equal(s.logs.lines.filter((l) => l['level'] === 'error').length, 1, 'the refusal is logged once, not per call');
  current['wwsuite0001'] = TICKET;
  t.equal((await s.api.call('vendor', '/cgi-bin/user/get'))['errcode'], 0, 'a new ticket is tried at once');
});

t.test('WecomApi: 60020 of a third-party app names the 服务商 IP白名单 when the suite whitelist lacks the address', async (t) => {
  const s = await setup(t, {
    wecom: thirdParty,
    env: { SUITE_SECRET },
    suiteTickets: tickets({ wwsuite0001: TICKET }),
    permanentCodes: { get: () => PERMANENT },
    localAddress: '127.0.0.3',
    expectedIp: '127.0.0.3',
  });
  s.fake.addSuite({
    name: 'suite',
    suiteId: 'wwsuite0001',
    secret: SUITE_SECRET,
    ticket: TICKET,
    trustedIps: ['127.0.0.2'],
    corps: new Map([[SCHOOL, PERMANENT]]),
  });
  const e = await rejection(t, s.api.call('vendor', '/cgi-bin/user/get'));
  const d = e['diagnosis'] as Record<string, unknown>;
  t.equal(d['cause'], 'provider_ip_whitelist');
  t.match(d['en'], /127\.0\.0\.3 to 服务商管理后台 › 服务商信息 › 基本信息 › IP白名单/);
});
