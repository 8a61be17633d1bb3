/**
 * The doctor's suite_ticket check: from a stopped wegate's store file (opened read-only), from a
 * running wegate's /diagnostics (the running one holds the file exclusively), and without a store.
 */
import t from 'tap';
import { DOCTOR_CHECKS, type DoctorReport, runDoctor } from '../../src/diagnostics/doctor/index.ts';
import { makeConfig } from '../helpers/gateway.ts';
import { openStore, tempDir } from '../store/helpers.ts';
import { providerWorld, suiteEvent, TEMPLATE_ID, TICKET } from '../wecom/callback/provider-helpers.ts';

const checks = DOCTOR_CHECKS.filter((c) => c.name === 'wecom_suite_ticket');
const suites = [
  { name: 'tpl', kind: 'template', suite_id: 'dktemplate01', secret: { env: 'X' } },
  { name: 'third', kind: 'third_party', suite_id: 'wwsuite0002', secret: { env: 'X' } },
];
const config = (extra: Record<string, unknown>) =>
  makeConfig({
    listen: { http: '127.0.0.1:0' },
    admin: { listen: '127.0.0.1:0' },
    routes: [{ upstream: 'http://127.0.0.1:1' }],
    ...extra,
    wecom: {
      suites,
      callbacks: [
        {
          name: 'tpl_cb',
          kind: 'suite',
          path: '/wecom/template',
          suite: 'tpl',
          token: { env: 'X' },
          encoding_aes_key: { env: 'X' },
          deliver: { url: 'http://127.0.0.1:1/', secret: { env: 'X' } },
        },
      ],
    },
  });
const of = (r: DoctorReport) => r.results.filter((x) => x.check === 'wecom_suite_ticket');

t.test('doctor wecom_suite_ticket: ✓ for a fresh ticket, ⚠ when a push was missed, ✗ past 30 minutes or when none is stored', async (t) => {
  const dir = await tempDir(t);
  const { store, clock } = await openStore(t, { dir });
  await store.suiteTickets.put('dktemplate01', 'the-ticket-value-0123456789abcdefghijklmnop', 1_700_000_000);
  await store.close();
  const c = config({ state: { dir } });
  const at = (ms: number) => runDoctor('wegate.yaml', c, { env: {}, checks, now: () => clock() + ms });
  t.match(of(await at(60_000)), [
    { subject: 'suite tpl (dktemplate01)', status: 'ok', en: /received 60 s ago \(per the state store in / },
    {
      subject: 'suite third (wwsuite0002)',
      status: 'fail',
      en: /no suite_ticket received yet/,
      fix: { en: /指令回调URL/, zh: /刷新Ticket/ },
    },
  ]);
  t.match(of(await at(20 * 60_000)), [
    { status: 'warn', en: /at least one push was missed/, fix: { en: /回调URL to https:\/\/<your domain>\/wecom\/template/ } },
    {},
  ]);
  const old = of(await at(40 * 60_000));
  t.match(old, [{ status: 'fail', en: /older than 30 minutes/, zh: /已超过 30 分钟/ }, {}]);
  t.notOk(JSON.stringify(old).includes('the-ticket-value'), 'the ticket is not in the report');
});

t.test('doctor wecom_suite_ticket: the age comes from the running wegate when one answers on admin.listen', async (t) => {
  const w = await providerWorld(t);
  const gw = await w.start();
  await w.sender(gw).send(suiteEvent('suite_ticket', Math.floor(Date.now() / 1000), { SuiteTicket: TICKET }));
  const c = config({ admin: { listen: `127.0.0.1:${gw.adminPort}` }, state: { dir: w.stateDir } });
  const r = of(await runDoctor('wegate.yaml', c, { env: {}, checks }));
  t.match(r, [
    { subject: `suite tpl (${TEMPLATE_ID})`, status: 'ok', en: /received \d+ s ago \(per the running wegate \(127\.0\.0\.1:\d+\)\)/ },
    { subject: 'suite third (wwsuite0002)', status: 'fail' },
  ]);
});

t.test('doctor wecom_suite_ticket: ✗ naming state.dir when suites are configured without a state store', async (t) => {
  const r = of(await runDoctor('wegate.yaml', config({}), { env: {}, checks }));
  t.match(r, [
    { status: 'fail', en: /state\.dir is not set/ },
    { status: 'fail', en: /state\.dir is not set/ },
  ]);
});
