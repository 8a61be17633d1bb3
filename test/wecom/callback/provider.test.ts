/**
 * Provider events handled by wegate (issue 12 item 6) through the real endpoint: the CallbackSender
 * posts encrypted 指令回调 events to a running gateway, WeCom is the fake over TLS (calls pinned to
 * 127.0.0.2), the state store is a real SQLite file, and the token chain of the authorised corp is
 * what proves the stored permanent code.
 */
import t from 'tap';
import { parseExposition, samplesOf, valueOf } from '../../helpers/prom-text.ts';
import {
  admin,
  assertNoSecrets,
  AUTH_CODE,
  AUTH_CODE_2,
  diagnostics,
  OLD_TICKET,
  PERMANENT,
  PERMANENT_2,
  providerWorld,
  SCHOOL,
  storeBytes,
  suiteEvent,
  TEMPLATE_ID,
  TICKET,
  until,
  V2,
} from './provider-helpers.ts';

const NOW_S = () => Math.floor(Date.now() / 1000);
const metric = async (gw: Parameters<typeof admin>[0], family: string, labels: Record<string, string>) =>
  valueOf(parseExposition(await admin(gw, '/metrics')), family, labels) ?? 0;

t.test('provider events: the newest suite_ticket by TimeStamp is kept when an older push arrives after a newer one', async (t) => {
  const w = await providerWorld(t);
  const gw = await w.start();
  const sender = w.sender(gw);
  const ts = NOW_S();
  const newer = await sender.send(suiteEvent('suite_ticket', ts, { SuiteTicket: TICKET }));
  const older = await sender.send(suiteEvent('suite_ticket', ts - 600, { SuiteTicket: OLD_TICKET }));
  t.same([newer.last.status, newer.last.body, older.last.status, older.last.body], [200, 'success', 200, 'success']);
  const d = await diagnostics(gw);
  t.match(d.provider.suites, [{ name: 'tpl', suiteId: TEMPLATE_ID, suiteTicketTimestamp: ts, suiteTicketAgeSeconds: Number }]);
  // The client's suite_access_token uses the stored ticket: the fake accepts only the newer one.
  w.suite.authCodes.set('direct-code-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefgh', { corpId: SCHOOL, permanentCode: PERMANENT });
  const grant = await gw.gw.wecom?.getPermanentCode('tpl', 'direct-code-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefgh');
  t.equal(grant?.corpId, SCHOOL, 'get_suite_token took the newest ticket');
  t.equal(await metric(gw, 'wegate_wecom_provider_events_total', { suite: 'tpl', type: 'suite_ticket', outcome: 'stored' }), 1);
  t.equal(await metric(gw, 'wegate_wecom_provider_events_total', { suite: 'tpl', type: 'suite_ticket', outcome: 'older' }), 1);
  t.equal(w.vendor.deliveries.length, 2, 'the vendor is told of both events');
  t.notMatch(w.vendor.deliveries[0]?.json, { fields: { SuiteTicket: String } }, 'without the ticket');
  await assertNoSecrets(t, gw, w.vendor);
});

t.test(
  'provider events: create_auth is answered success, exchanged once through the pinned egress and the corp token works when the AuthCode arrives',
  async (t) => {
    const w = await providerWorld(t);
    w.suite.authCodes.set(AUTH_CODE, { corpId: SCHOOL, permanentCode: PERMANENT, corpName: '某某学校' });
    // What WeCom knows once the code is handed out: gettoken with the school's corp id and the permanent code.
    w.fake.addApp({ name: 'school-code-1', corpId: SCHOOL, secret: PERMANENT });
    const gw = await w.start();
    const sender = w.sender(gw);
    await sender.send(suiteEvent('suite_ticket', NOW_S(), { SuiteTicket: TICKET }));
    const event = suiteEvent('create_auth', NOW_S(), { AuthCode: AUTH_CODE, State: 'st1' });
    const first = await sender.send(event);
    t.same([first.last.status, first.last.body], [200, 'success']);
    await until(t, 'the permanent code is stored', async () => (await diagnostics(gw)).provider.corps.length === 1);
    // WeCom's retry of the same event (re-encrypted, same plaintext) is answered and not exchanged again.
    const retry = await sender.send(event);
    t.same([retry.last.status, retry.last.body], [200, 'success']);
    t.equal(w.fake.calls(V2), 1, 'get_permanent_code called once');
    t.same(
      w.fake.requests.filter((r) => r.path.startsWith('/cgi-bin/service/')).map((r) => [r.path, r.from]),
      [
        ['/cgi-bin/service/get_suite_token', '127.0.0.2'],
        [V2, '127.0.0.2'],
      ],
      'through the pinned egress',
    );
    const token = await gw.gw.wecom?.accessToken('school');
    t.ok(token, '代开发 gettoken works with the stored permanent code');
    t.match(w.fake.requests.at(-1), { path: '/cgi-bin/gettoken', app: 'school-code-1', from: '127.0.0.2' });
    t.match((await diagnostics(gw)).provider.corps, [{ suiteId: TEMPLATE_ID, corpId: SCHOOL, corpName: '某某学校', status: 'active' }]);
    t.equal(await metric(gw, 'wegate_wecom_permanent_code_exchanges_total', { suite: 'tpl', result: 'ok' }), 1);
    t.equal(await metric(gw, 'wegate_wecom_provider_events_total', { suite: 'tpl', type: 'create_auth', outcome: 'recorded' }), 1);
    const notice = w.vendor.deliveries.find((d) => d.json['event'] === 'create_auth');
    t.match(notice?.json, { fields: { InfoType: 'create_auth', State: 'st1' } }, 'the vendor is told, without the AuthCode');
    await assertNoSecrets(t, gw, w.vendor);
    await gw.gw.close({ drainTimeoutMs: 0 });
    const bytes = await storeBytes(w.stateDir);
    t.ok(bytes.includes(SCHOOL), 'the file is the store (the corp id is in it)');
    t.notOk(bytes.includes(PERMANENT), 'the permanent code is sealed in the DB file');
    t.notOk(bytes.includes(AUTH_CODE), 'the AuthCode is sealed in the DB file');
  },
);

t.test('provider events: reset_permanent_code replaces the code and drops the old token when the secret is reset', async (t) => {
  const w = await providerWorld(t);
  w.suite.authCodes.set(AUTH_CODE, { corpId: SCHOOL, permanentCode: PERMANENT });
  w.fake.addApp({ name: 'school-code-1', corpId: SCHOOL, secret: PERMANENT });
  const gw = await w.start();
  const sender = w.sender(gw);
  await sender.send(suiteEvent('suite_ticket', NOW_S(), { SuiteTicket: TICKET }));
  await sender.send(suiteEvent('create_auth', NOW_S(), { AuthCode: AUTH_CODE }));
  await until(
    t,
    'first code stored',
    async () => (await metric(gw, 'wegate_wecom_permanent_code_exchanges_total', { suite: 'tpl', result: 'ok' })) === 1,
  );
  const oldToken = await gw.gw.wecom?.accessToken('school');
  // 重新获取secret: WeCom hands out a new code; the old one stops working (WECOM-FACTS §1.2 ⚠: assumed).
  w.suite.authCodes.set(AUTH_CODE_2, { corpId: SCHOOL, permanentCode: PERMANENT_2 });
  w.fake.apps.splice(0, w.fake.apps.length);
  w.fake.addApp({ name: 'school-code-2', corpId: SCHOOL, secret: PERMANENT_2 });
  const reset = await sender.send(suiteEvent('reset_permanent_code', NOW_S(), { AuthCode: AUTH_CODE_2 }));
  t.same([reset.last.status, reset.last.body], [200, 'success']);
  await until(
    t,
    'second code stored',
    async () => (await metric(gw, 'wegate_wecom_permanent_code_exchanges_total', { suite: 'tpl', result: 'ok' })) === 2,
  );
  const newToken = await gw.gw.wecom?.accessToken('school');
  t.not(newToken, oldToken, 'the old token is not handed out any more');
  t.match(w.fake.requests.at(-1), { path: '/cgi-bin/gettoken', app: 'school-code-2' }, 'gettoken with the new code');
  const r = await gw.gw.wecom?.call('school', '/cgi-bin/get_api_domain_ip');
  t.equal(r?.['errcode'], 0, 'business calls work with the new token');
  await assertNoSecrets(t, gw, w.vendor);
});

t.test('provider events: calls for the corp are refused saying it cancelled when cancel_auth arrives', async (t) => {
  const w = await providerWorld(t);
  w.suite.authCodes.set(AUTH_CODE, { corpId: SCHOOL, permanentCode: PERMANENT });
  w.fake.addApp({ name: 'school-code-1', corpId: SCHOOL, secret: PERMANENT });
  const gw = await w.start();
  const sender = w.sender(gw);
  await sender.send(suiteEvent('suite_ticket', NOW_S(), { SuiteTicket: TICKET }));
  await sender.send(suiteEvent('create_auth', NOW_S(), { AuthCode: AUTH_CODE }));
  await until(t, 'code stored', async () => (await diagnostics(gw)).provider.corps.length === 1);
  t.ok(await gw.gw.wecom?.accessToken('school'));
  const gettokens = w.fake.calls('/cgi-bin/gettoken');
  const cancel = await sender.send(suiteEvent('cancel_auth', NOW_S(), { AuthCorpId: SCHOOL }));
  t.same([cancel.last.status, cancel.last.body], [200, 'success']);
  const e = await gw.gw.wecom?.accessToken('school').then(
    () => undefined,
    (err: unknown) => err as Record<string, unknown>,
  );
  t.equal(e?.['code'], 'WG_WECOM_NOT_READY');
  t.match(e?.['message'], /cancelled its authorisation.*cancel_auth at \d{4}-/);
  t.equal(w.fake.calls('/cgi-bin/gettoken'), gettokens, 'no WeCom call with the forgotten code');
  t.match((await diagnostics(gw)).provider.corps, [{ corpId: SCHOOL, status: 'cancelled', cancelledAt: String }]);
  t.ok(
    gw.logs.lines.some((l) => l['info_type'] === 'cancel_auth' && l['corp_id'] === SCHOOL && l['outcome'] === 'cancelled'),
    'the audit line',
  );
  await assertNoSecrets(t, gw, w.vendor);
});

t.test('provider events: a failed exchange is retried and not lost across a restart when WeCom fails meanwhile', async (t) => {
  const w = await providerWorld(t);
  w.suite.authCodes.set(AUTH_CODE, { corpId: SCHOOL, permanentCode: PERMANENT });
  w.fake.addApp({ name: 'school-code-1', corpId: SCHOOL, secret: PERMANENT });
  w.fake.failNext(V2, -1, 1000);
  const first = await w.start();
  const sender = w.sender(first);
  await sender.send(suiteEvent('suite_ticket', NOW_S(), { SuiteTicket: TICKET }));
  const createAuth = suiteEvent('create_auth', NOW_S(), { AuthCode: AUTH_CODE });
  const ack = await sender.send(createAuth);
  t.same([ack.last.status, ack.last.body], [200, 'success'], 'answered before the exchange');
  await until(t, 'a second attempt', () => w.fake.calls(V2) >= 2);
  t.ok((await metric(first, 'wegate_wecom_permanent_code_exchanges_total', { suite: 'tpl', result: 'retry' })) >= 2);
  t.match((await diagnostics(first)).provider.authCodes, [{ infoType: 'create_auth', state: 'pending', lastError: /-1|busy/ }]);
  await assertNoSecrets(t, first, w.vendor);
  await first.gw.close({ drainTimeoutMs: 0 });

  w.fake.clearFaults(V2);
  const second = await w.start();
  await until(t, 'exchanged after the restart', async () => (await diagnostics(second)).provider.corps.length === 1);
  t.ok(await second.gw.wecom?.accessToken('school'), 'the corp token works');
  t.match((await diagnostics(second)).provider.authCodes, [{ state: 'done', corpId: SCHOOL }]);
  // A late WeCom retry of the same event after the restart (the in-memory de-dup keys are gone): the store knows the code.
  const calls = w.fake.calls(V2);
  const late = await w.sender(second).send(createAuth);
  t.same([late.last.status, late.last.body], [200, 'success']);
  t.equal(w.fake.calls(V2), calls, 'not exchanged again');
  t.equal(await metric(second, 'wegate_wecom_provider_events_total', { suite: 'tpl', type: 'create_auth', outcome: 'duplicate' }), 1);
  await assertNoSecrets(t, second, w.vendor);
});

t.test('provider events: an AuthCode WeCom refuses is given up at once, not retried, when get_permanent_code answers 40029', async (t) => {
  const w = await providerWorld(t);
  const gw = await w.start();
  const sender = w.sender(gw);
  await sender.send(suiteEvent('suite_ticket', NOW_S(), { SuiteTicket: TICKET }));
  await sender.send(suiteEvent('create_auth', NOW_S(), { AuthCode: AUTH_CODE })); // the fake does not know it
  await until(
    t,
    'given up',
    async () => (await metric(gw, 'wegate_wecom_permanent_code_exchanges_total', { suite: 'tpl', result: 'rejected' })) === 1,
  );
  t.equal(w.fake.calls(V2), 1);
  t.match((await diagnostics(gw)).provider.authCodes, [{ state: 'failed', lastError: /refused the AuthCode/ }]);
  t.ok(
    gw.logs.lines.some((l) => /authorise the app again/.test(String(l['msg']))),
    'the log says what to do',
  );
});

t.test('provider events: an InfoType wegate does not handle goes to the vendor and is answered success', async (t) => {
  const w = await providerWorld(t);
  const gw = await w.start();
  const sender = w.sender(gw);
  const r = await sender.send(suiteEvent('change_contact', NOW_S(), { AuthCorpId: SCHOOL, ChangeType: 'create_user', UserID: 'zhangsan' }));
  t.same([r.last.status, r.last.body], [200, 'success']);
  t.equal(w.vendor.deliveries.length, 1);
  t.match(w.vendor.deliveries[0]?.json, { event: 'change_contact', fields: { UserID: 'zhangsan' } });
  const handled = samplesOf(parseExposition(await admin(gw, '/metrics')), 'wegate_wecom_provider_events_total');
  t.same(handled, [], 'not counted as a provider event wegate handled');
});

t.test('provider events: change_auth refreshes the corp name with get_auth_info when the authorisation changes', async (t) => {
  const w = await providerWorld(t);
  w.suite.authCodes.set(AUTH_CODE, { corpId: SCHOOL, permanentCode: PERMANENT, corpName: 'old name' });
  w.suite.corpNames = new Map([[SCHOOL, 'new name']]);
  const gw = await w.start();
  const sender = w.sender(gw);
  await sender.send(suiteEvent('suite_ticket', NOW_S(), { SuiteTicket: TICKET }));
  await sender.send(suiteEvent('create_auth', NOW_S(), { AuthCode: AUTH_CODE }));
  await until(t, 'code stored', async () => (await diagnostics(gw)).provider.corps.length === 1);
  const r = await sender.send(suiteEvent('change_auth', NOW_S(), { AuthCorpId: SCHOOL }));
  t.same([r.last.status, r.last.body], [200, 'success']);
  await until(t, 'name refreshed', async () => JSON.stringify((await diagnostics(gw)).provider.corps).includes('new name'));
  t.equal(w.fake.calls('/cgi-bin/service/v2/get_auth_info'), 1);
  await assertNoSecrets(t, gw, w.vendor);
});

t.test('createGateway: refuses to start, naming state.dir, when suites are configured without a state store', async (t) => {
  const w = await providerWorld(t, { state: false });
  await t.rejects(w.start(), /wecom\.suites needs the state store: set state\.dir/);
});
