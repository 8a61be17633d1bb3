/**
 * Receiveid sets: exact, case-sensitive membership (several ids per callback path), and the
 * WG_CALLBACK_BAD_RECEIVE_ID error that reports the id seen.
 */
import t from 'tap';
import { CallbackCryptoError, checkReceiveId, createReceiveIdSet } from '../../../src/wecom/crypto/index.ts';

t.test('ReceiveIdSet: matches exactly one of several ids when WeCom uses different ids for one path', async (t) => {
  // e.g. a 服务商-side URL: the GET check uses the provider corp id, POSTs the suite id.
  const set = createReceiveIdSet(['wwprovider00000001', 'ww_suite_000000001', 'wwprovider00000001']);
  t.equal(set.size, 2, 'duplicates collapse');
  const cases: { name: string; seen: string; ok: boolean }[] = [
    { name: 'the provider corp id', seen: 'wwprovider00000001', ok: true },
    { name: 'the suite id', seen: 'ww_suite_000000001', ok: true },
    { name: 'upper-case variant (encrypted corp ids are case-sensitive)', seen: 'WWPROVIDER00000001', ok: false },
    { name: 'a prefix', seen: 'wwprovider0000000', ok: false },
    { name: 'with a trailing space', seen: 'wwprovider00000001 ', ok: false },
    { name: 'empty', seen: '', ok: false },
    { name: 'same length, other bytes', seen: 'wwprovider00000002', ok: false },
    { name: 'non-ASCII of the same character count', seen: 'wwprovider0000000é', ok: false },
  ];
  for (const c of cases) t.equal(set.has(c.seen), c.ok, c.name);
});

t.test('ReceiveIdSet: accepts the empty receiveid only when it is configured (personal-subject apps)', async (t) => {
  t.ok(createReceiveIdSet(['']).has(''));
  t.notOk(createReceiveIdSet(['ww1']).has(''));
  t.notOk(createReceiveIdSet([]).has(''), 'an empty set accepts nothing');
});

t.test('checkReceiveId: throws WG_CALLBACK_BAD_RECEIVE_ID naming the id seen when it is not configured', async (t) => {
  const set = createReceiveIdSet(['ww0123456789abcdef']);
  t.doesNotThrow(() => checkReceiveId({ message: 'm', receiveId: 'ww0123456789abcdef' }, set));
  const err = t.throws(() => checkReceiveId({ message: 'secret content', receiveId: 'dk9876543210fedcba' }, set)) as CallbackCryptoError;
  t.type(err, CallbackCryptoError);
  t.equal(err.code, 'WG_CALLBACK_BAD_RECEIVE_ID');
  t.equal(err.status, 403);
  t.equal(err.receiveId, 'dk9876543210fedcba');
  t.match(err.message, /"dk9876543210fedcba" is not one of the 1 configured/);
  t.notMatch(err.message, /secret content/, 'the message is not in the error');
  const long = 'x'.repeat(5000);
  const errLong = t.throws(() => checkReceiveId({ message: '', receiveId: long }, set)) as CallbackCryptoError;
  t.equal(errLong.receiveId?.length, 128, 'a huge receiveid is cut to 128 characters');
  t.ok(errLong.message.length < 300, 'and so is the message');
});
