/**
 * The store as the WeCom client's SuiteTickets and PermanentCodes: the third-party token chain
 * (suite_ticket → suite_access_token → get_corp_token with the permanent code) against the fake
 * WeCom, fed by what the store holds.
 */
import t from 'tap';
import { rejection, setup } from '../wecom/api/helpers.ts';
import { openStore } from './helpers.ts';

const SCHOOL = 'wwschoolcorp01';
const SUITE_SECRET = 'suite-secret-abcdefghijklmnopqrstuvwxyz0123456789';
const PERMANENT = 'permanent-code-0123456789abcdefghijklmnopqrstuv';
const TICKET_OLD = 'suite-ticket-old-0123456789abcdefghijklmnopqrstu';
const TICKET = 'suite-ticket-0123456789abcdefghijklmnopqrstuvwxyz';
const wecom = {
  apps: [{ name: 'vendor', kind: 'third_party', corp_id: SCHOOL, suite: 'suite' }],
  suites: [{ name: 'suite', kind: 'third_party', suite_id: 'wwsuite0001', secret: { env: 'SUITE_SECRET' } }],
};

t.test('store: the WeCom client gets a third-party token from the stored newest suite_ticket and permanent code', async (t) => {
  const { store } = await openStore(t);
  await store.suiteTickets.put('wwsuite0001', TICKET, 1_700_000_600);
  await store.suiteTickets.put('wwsuite0001', TICKET_OLD, 1_700_000_000); // a late retry of an older push
  await store.permanentCodes.put({ suiteId: 'wwsuite0001', corpId: SCHOOL, permanentCode: PERMANENT, corpName: 'School' });
  const s = await setup(t, {
    wecom,
    env: { SUITE_SECRET },
    suiteTickets: store.suiteTickets,
    permanentCodes: store.permanentCodes,
  });
  s.fake.addSuite({ name: 'suite', suiteId: 'wwsuite0001', secret: SUITE_SECRET, ticket: TICKET, corps: new Map([[SCHOOL, PERMANENT]]) });
  const r = await s.api.call('vendor', '/cgi-bin/get_api_domain_ip');
  t.equal(r['errcode'], 0, 'the chain worked with the stored values');
  t.same(
    s.fake.requests.map((q) => q.path),
    ['/cgi-bin/service/get_suite_token', '/cgi-bin/service/get_corp_token', '/cgi-bin/get_api_domain_ip'],
  );
});

t.test('store: the WeCom client is not ready for a corp when cancel_auth made the store forget its code', async (t) => {
  const { store } = await openStore(t);
  await store.suiteTickets.put('wwsuite0001', TICKET, 1_700_000_600);
  await store.permanentCodes.put({ suiteId: 'wwsuite0001', corpId: SCHOOL, permanentCode: PERMANENT });
  await store.permanentCodes.cancel('wwsuite0001', SCHOOL);
  const s = await setup(t, { wecom, env: { SUITE_SECRET }, suiteTickets: store.suiteTickets, permanentCodes: store.permanentCodes });
  s.fake.addSuite({ name: 'suite', suiteId: 'wwsuite0001', secret: SUITE_SECRET, ticket: TICKET, corps: new Map([[SCHOOL, PERMANENT]]) });
  const e = await rejection(t, s.api.call('vendor', '/cgi-bin/get_api_domain_ip'));
  t.equal(e['code'], 'WG_WECOM_NOT_READY');
  t.notOk(JSON.stringify(s.logs.lines).includes(PERMANENT), 'the code is in no log line');
});
