/**
 * The official WXBizMsgCrypt sample vector (helpers.ts names its source): the URL check (GET) and
 * the POST whose plaintext carries a 30-byte pad, and the `+` of an echostr decoded once vs twice.
 */
import { createDecipheriv } from 'node:crypto';
import t from 'tap';
import { CallbackCryptoError, checkReceiveId, createCallbackCipher, createReceiveIdSet } from '../../../src/wecom/crypto/index.ts';
import { rawDecrypt, SAMPLE, SAMPLE_KEY } from './helpers.ts';

const cipher = createCallbackCipher({ token: SAMPLE.token, encodingAesKey: SAMPLE.encodingAesKey });
const corp = createReceiveIdSet([SAMPLE.receiveId]);

t.test('CallbackCipher: answers the official URL check with its plaintext when given the sample GET', async (t) => {
  const q = new URLSearchParams(SAMPLE.get.query); // the query decoded exactly once
  const [sig, ts, nonce, echostr] = ['msg_signature', 'timestamp', 'nonce', 'echostr'].map((k) => q.get(k) ?? '');
  t.equal(echostr, SAMPLE.get.echostr, 'decoded once, the echostr keeps its + and /');
  t.equal(cipher.sign(ts!, nonce!, echostr!), SAMPLE.get.msgSignature, 'msg_signature reproduced');
  t.ok(cipher.verify(sig!, ts!, nonce!, echostr!), 'signature verified');
  const out = cipher.decrypt(echostr!);
  t.same(out, { message: SAMPLE.get.plaintext, receiveId: SAMPLE.receiveId });
  t.doesNotThrow(() => checkReceiveId(out, corp), 'receiveid is the configured corp id');
});

t.test('CallbackCipher: decrypts the official POST with its 30-byte pad when given the sample message', async (t) => {
  const { msgSignature, timestamp, nonce, encrypt, plaintext } = SAMPLE.post;
  t.equal(cipher.sign(timestamp, nonce, encrypt), msgSignature, 'msg_signature reproduced');
  t.ok(cipher.verify(msgSignature, timestamp, nonce, encrypt), 'signature verified');
  // Independently of src/: the pad really is 30 bytes of 0x1e.
  const raw = rawDecrypt(encrypt);
  t.equal(raw.length % 32, 0, 'plaintext is a whole number of 32-byte blocks');
  t.equal(raw[raw.length - 1], 30, 'pad value 30');
  t.same([...raw.subarray(raw.length - 30)], Array(30).fill(30), 'all 30 pad bytes equal');
  t.same(cipher.decrypt(encrypt), { message: plaintext, receiveId: SAMPLE.receiveId });
});

t.test("Node's automatic unpadding: rejects the official POST when pads exceed 16 (why unpadding is by hand)", async (t) => {
  const d = createDecipheriv('aes-256-cbc', SAMPLE_KEY, SAMPLE_KEY.subarray(0, 16));
  d.update(Buffer.from(SAMPLE.post.encrypt, 'base64'));
  t.throws(() => d.final(), /bad decrypt/, 'setAutoPadding(true) fails on a 30-byte pad');
});

t.test('CallbackCipher: rejects an echostr whose + became a space when the query is decoded twice', async (t) => {
  const once = new URLSearchParams(SAMPLE.get.query).get('echostr') ?? '';
  const twice = new URLSearchParams(`echostr=${once}`).get('echostr') ?? '';
  t.not(twice, once, 'a second form-decoding changes the value');
  t.match(twice, / /, 'the + became a space');
  t.notOk(cipher.verify(SAMPLE.get.msgSignature, SAMPLE.get.timestamp, SAMPLE.get.nonce, twice), 'signature fails');
  t.throws(() => cipher.decrypt(twice), { code: 'WG_CALLBACK_BAD_ENCODING' }, 'decrypt names the encoding, never skips the space');
  t.equal(decodeURIComponent(SAMPLE.get.query.split('echostr=')[1]!), once, 'decodeURIComponent once agrees with URLSearchParams');
});

t.test('CallbackCipher: reports the receiveid seen when the sample is checked against another corp', async (t) => {
  const out = cipher.decrypt(SAMPLE.post.encrypt);
  const err = t.throws(() => checkReceiveId(out, createReceiveIdSet(['ww0123456789abcdef', 'dk0123456789abcdef']))) as CallbackCryptoError;
  t.equal(err.code, 'WG_CALLBACK_BAD_RECEIVE_ID');
  t.equal(err.status, 403);
  t.equal(err.receiveId, SAMPLE.receiveId, 'the id seen is carried for the log');
  t.match(err.message, SAMPLE.receiveId);
  t.notMatch(err.message, /hello|mycreate/, 'no plaintext in the error');
});

t.test('CallbackCipher: refuses the sample when the signature of the GET is presented for the POST', async (t) => {
  const { timestamp, nonce, encrypt } = SAMPLE.post;
  t.notOk(cipher.verify(SAMPLE.get.msgSignature, timestamp, nonce, encrypt));
  t.notOk(cipher.verify(SAMPLE.post.msgSignature, timestamp, nonce, SAMPLE.get.echostr));
});
