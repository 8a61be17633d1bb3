/**
 * Secrets and tokens never leave the client: after a run through every path that fails or succeeds
 * (wrong secret, 60020, 40014 refresh, timeout, third-party chain, permanent-code exchange), no log
 * line, metric, error message, token status or incident contains a corpsecret, suite secret,
 * suite_ticket, permanent code or access token. Secrets are read from a file or an env variable.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { serializeError } from '../../../src/core/logger.ts';
import { readSecret } from '../../../src/wecom/api/index.ts';
import { CORP, rejection, SECRET, setup } from './helpers.ts';

const SCHOOL = 'wwschoolcorp01';
const SUITE_SECRET = 'suite-secret-LEAKCHECK-abcdefghijklmnopqrstuvwxyz';
const TICKET = 'suite-ticket-LEAKCHECK-0123456789abcdefghijklmnop';
const PERMANENT = 'permanent-code-LEAKCHECK-0123456789abcdefghijkl';
const AUTH_CODE = 'auth-code-LEAKCHECK-0123456789';
const WRONG = 'wrong-secret-LEAKCHECK-0123456789abcdef';

t.test('WecomApi: no secret or token appears in logs, metrics, errors, status or incidents when every path is taken', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wegate-secret-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ecard'), `${SECRET}\n`, { mode: 0o600 });
  const s = await setup(t, {
    wecom: {
      corp_id: CORP,
      timeouts: { connect_ms: 100, response_ms: 200 },
      apps: [
        { name: 'ecard', secret: { file: join(dir, 'ecard') } },
        { name: 'broken', secret: { env: 'WRONG' } },
        { name: 'vendor', kind: 'third_party', corp_id: SCHOOL, suite: 'suite' },
      ],
      suites: [{ name: 'suite', suite_id: 'wwsuite0001', secret: { env: 'SUITE_SECRET' } }],
    },
    env: { WRONG, SUITE_SECRET },
    localAddress: '127.0.0.3',
    expectedIp: '127.0.0.2',
    suiteTickets: { get: () => TICKET },
    permanentCodes: { get: () => PERMANENT },
  });
  s.fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.3'] });
  const suite = s.fake.addSuite({
    name: 'suite',
    suiteId: 'wwsuite0001',
    secret: SUITE_SECRET,
    ticket: TICKET,
    trustedIps: ['127.0.0.2'],
    corps: new Map([[SCHOOL, PERMANENT]]),
  });
  suite.authCodes.set(AUTH_CODE, { corpId: SCHOOL, permanentCode: PERMANENT });

  const errors: unknown[] = [];
  const fail = async (p: Promise<unknown>) => errors.push(await rejection(t, p));
  await s.api.call('ecard', '/cgi-bin/user/get', { query: { userid: 'u1' } });
  s.fake.invalidateTokens('ecard');
  await s.api.call('ecard', '/cgi-bin/message/send', { body: { touser: 'u1' } });
  await fail(s.api.call('broken', '/cgi-bin/user/get'));
  await fail(s.api.call('broken', '/cgi-bin/user/get'));
  await fail(s.api.call('vendor', '/cgi-bin/user/get')); // 60020: the suite whitelists 127.0.0.2 only
  s.fake.hang('/cgi-bin/get_api_domain_ip');
  await fail(s.api.call('ecard', '/cgi-bin/get_api_domain_ip'));
  t.equal((await s.api.getPermanentCode('suite', AUTH_CODE)).permanentCode, PERMANENT);
  await fail(s.api.getPermanentCode('suite', AUTH_CODE));
  t.equal(errors.length, 5);

  const secrets = [SECRET, WRONG, SUITE_SECRET, TICKET, PERMANENT, AUTH_CODE, ...s.fake.issuedTokens()];
  t.ok(s.fake.issuedTokens().length >= 3, 'tokens were issued');
  const places: Record<string, string> = {
    logs: s.logs.text(),
    metrics: await s.registry.metrics(),
    status: JSON.stringify(s.api.tokenStatus()),
    incidents: JSON.stringify(s.incidents.list()),
    errors: JSON.stringify(errors.map((e) => ({ ...(e as object), message: (e as Error).message, log: serializeError(e) }))),
  };
  t.ok(s.logs.lines.length > 0 && s.incidents.list().length >= 2, 'there was something to look at');
  for (const [where, text] of Object.entries(places)) {
    for (const secret of secrets) t.notOk(text.includes(secret), `${where} does not contain ${secret.slice(0, 14)}…`);
  }
});

t.test('readSecret: names the source and hides the value when a secret cannot be used', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wegate-secret-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'two-lines'), 'line-one-secret\nline-two-secret\n');
  writeFileSync(join(dir, 'crlf'), 'crlf-secret\r\n');
  t.throws(
    () => readSecret({ env: 'NOPE' }, {}, 'wecom.apps[0] (ecard)'),
    /wecom\.apps\[0\] \(ecard\): the environment variable NOPE is not set/,
  );
  t.throws(() => readSecret({ file: join(dir, 'missing') }, {}, 'x'), /cannot be read \(ENOENT\)/);
  try {
    readSecret({ file: join(dir, 'two-lines') }, {}, 'x');
    t.fail('accepted two lines');
  } catch (e) {
    t.match((e as Error).message, /must hold one line \(got 31 characters\)/);
    t.notOk((e as Error).message.includes('line-one-secret'));
  }
  t.same(readSecret({ file: join(dir, 'crlf') }, {}, 'x'), { value: 'crlf-secret', where: `file ${join(dir, 'crlf')}` });
  t.same(readSecret({ env: 'S' }, { S: 'from-env' }, 'x'), { value: 'from-env', where: 'env S' });
});
