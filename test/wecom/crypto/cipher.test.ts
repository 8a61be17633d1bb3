/**
 * createCallbackCipher, table-driven: round trips for every pad length 1..32, tampered and
 * malformed ciphertexts (built by the test's own AES path, never by encrypt()), signature shapes,
 * and the bounds checked before anything is decoded.
 */
import t from 'tap';
import { type CallbackCryptoCode, createCallbackCipher } from '../../../src/wecom/crypto/index.ts';
import { aesKey, layout, pad32, rawDecrypt, rawEncrypt, SAMPLE } from './helpers.ts';

const cipher = createCallbackCipher({ token: SAMPLE.token, encodingAesKey: SAMPLE.encodingAesKey });
const rid = Buffer.from(SAMPLE.receiveId);
const random = Buffer.from('0123456789abcdef');

/** A message of exactly `bytes` UTF-8 bytes, multi-byte characters included when it is long enough. */
function messageOf(bytes: number): string {
  return bytes >= 6 ? '中文' + 'x'.repeat(bytes - 6) : 'x'.repeat(bytes);
}

t.test('CallbackCipher: round-trips every pad length 1..32 when message lengths make each occur', async (t) => {
  const seen = new Set<number>();
  for (let pad = 1; pad <= 32; pad++) {
    // 20 + m + 18 + pad ≡ 0 (mod 32), m ≥ 32
    const m = 32 + ((((32 - pad - 38) % 32) + 32) % 32);
    const message = messageOf(m);
    const r16 = Buffer.alloc(16, pad);
    const ct = cipher.encrypt(message, SAMPLE.receiveId, r16);
    const raw = rawDecrypt(ct); // independently of decrypt()
    t.equal(raw.length % 32, 0, `pad ${pad}: whole 32-byte blocks`);
    t.equal(raw[raw.length - 1], pad, `pad ${pad}: pad value`);
    t.ok(
      raw.subarray(raw.length - pad).every((b) => b === pad),
      `pad ${pad}: all pad bytes equal`,
    );
    t.same(raw.subarray(0, 16), r16, `pad ${pad}: the random bytes lead`);
    t.equal(raw.readUInt32BE(16), Buffer.byteLength(message), `pad ${pad}: length field counts bytes`);
    t.same(cipher.decrypt(ct), { message, receiveId: SAMPLE.receiveId }, `pad ${pad}: decrypt gives it back`);
    seen.add(raw[raw.length - 1]!);
  }
  t.equal(seen.size, 32, 'every pad length 1..32 occurred');
});

t.test('CallbackCipher: round-trips edge messages when they are empty, aligned or non-ASCII', async (t) => {
  const cases: { name: string; message: string; receiveId: string }[] = [
    { name: 'empty message and empty receiveid (pad 12)', message: '', receiveId: '' },
    { name: 'content exactly 64 bytes (a whole block of pad)', message: 'x'.repeat(64 - 20 - 18), receiveId: SAMPLE.receiveId },
    { name: 'Chinese, emoji and a NUL', message: '张三 👩‍🏫 \u0000 <xml/>', receiveId: SAMPLE.receiveId },
    { name: 'a 代开发 encrypted corp id receiveid', message: '<xml/>', receiveId: 'wpXyZ-aBcD_eFgH12345678901234567' },
    { name: 'a 20 KiB message', message: 'y'.repeat(20 * 1024), receiveId: 'dk0123456789abcdef' },
  ];
  for (const c of cases) {
    const ct = cipher.encrypt(c.message, c.receiveId, random);
    t.same(cipher.decrypt(ct), { message: c.message, receiveId: c.receiveId }, c.name);
  }
  const aligned = rawDecrypt(cipher.encrypt('x'.repeat(64 - 20 - 18), SAMPLE.receiveId, random));
  t.equal(aligned.length, 96, 'an aligned plaintext gets a whole extra block');
  t.equal(aligned[95], 32, 'of pad value 32');
});

t.test('CallbackCipher: rejects a decrypted plaintext with the right code when padding or length fields are broken', async (t) => {
  const msg = Buffer.from('<xml>hello</xml>');
  const body = layout(random, msg, rid); // 54 bytes → pad 10
  /** A 64-byte content padded with a whole block of 32s, its first pad byte replaced. */
  const firstPadByte = (value: number): Buffer => {
    const plain = pad32(layout(random, Buffer.alloc(64 - 20 - rid.length, 0x61), rid));
    plain[64] = value;
    return plain;
  };
  const cases: { name: string; plain: Buffer; code: CallbackCryptoCode }[] = [
    { name: 'pad value 0', plain: pad32(body, { count: 10, value: 0 }), code: 'WG_CALLBACK_BAD_PADDING' },
    { name: 'pad value 33', plain: pad32(body, { count: 10, value: 33 }), code: 'WG_CALLBACK_BAD_PADDING' },
    { name: 'pad value 255', plain: pad32(body, { count: 10, value: 255 }), code: 'WG_CALLBACK_BAD_PADDING' },
    {
      name: 'pad bytes not all equal',
      plain: Buffer.concat([body, Buffer.from([10, 10, 10, 10, 9, 10, 10, 10, 10, 10])]),
      code: 'WG_CALLBACK_BAD_PADDING',
    },
    { name: 'pad 32 with its first byte different', plain: firstPadByte(31), code: 'WG_CALLBACK_BAD_PADDING' },
    { name: 'a whole block of pad, no header', plain: Buffer.alloc(32, 32), code: 'WG_CALLBACK_BAD_LENGTH' },
    { name: 'header cut short (19 bytes + pad 13)', plain: pad32(random.subarray(0, 19)), code: 'WG_CALLBACK_BAD_LENGTH' },
    { name: 'length field 0xFFFFFFFF', plain: pad32(layout(random, msg, rid, 0xffffffff)), code: 'WG_CALLBACK_BAD_LENGTH' },
    {
      name: 'length field one past the content',
      plain: pad32(layout(random, msg, rid, msg.length + rid.length + 1)),
      code: 'WG_CALLBACK_BAD_LENGTH',
    },
  ];
  for (const c of cases) {
    t.equal(c.plain.length % 16, 0, `${c.name}: the test built whole AES blocks`);
    t.throws(() => cipher.decrypt(rawEncrypt(c.plain)), { code: c.code }, c.name);
  }
  // The boundary that is valid: the length field takes everything, the receiveid is empty.
  const all = pad32(layout(random, msg, rid, msg.length + rid.length));
  t.same(cipher.decrypt(rawEncrypt(all)), { message: msg.toString() + SAMPLE.receiveId, receiveId: '' }, 'length field up to the content');
  // Pads of 17..32 (which Node's own unpadding refuses) decrypt, on a 16- but not 32-aligned length too.
  const pad25 = Buffer.concat([layout(random, Buffer.from('abc'), Buffer.alloc(0)), Buffer.alloc(25, 25)]); // 23 + 25 = 48
  t.same(cipher.decrypt(rawEncrypt(firstPadByte(32))), { message: 'a'.repeat(26), receiveId: SAMPLE.receiveId }, 'pad 32 intact');
  t.same(cipher.decrypt(rawEncrypt(pad25)), { message: 'abc', receiveId: '' }, 'pad 25 on a 48-byte plaintext');
});

t.test('CallbackCipher: rejects a tampered ciphertext when the signature or the pad byte changes', async (t) => {
  const { msgSignature, timestamp, nonce, encrypt } = SAMPLE.post;
  const bytes = Buffer.from(encrypt, 'base64');
  // CBC: flipping a byte of the second-to-last block flips the same byte of the last plaintext block.
  const flipped = Buffer.from(bytes);
  flipped[flipped.length - 17]! ^= 0x80; // pad 30 → 158
  const tampered = flipped.toString('base64');
  t.notOk(cipher.verify(msgSignature, timestamp, nonce, tampered), 'the signature no longer holds');
  t.throws(() => cipher.decrypt(tampered), { code: 'WG_CALLBACK_BAD_PADDING' }, 'and the pad is invalid');
  const other = createCallbackCipher({ token: SAMPLE.token, encodingAesKey: 'a'.repeat(43) });
  t.throws(() => other.decrypt(encrypt), { code: /^WG_CALLBACK_BAD_(PADDING|LENGTH)$/ }, 'another EncodingAESKey decrypts to garbage');
  const otherToken = createCallbackCipher({ token: 'QDG6eL', encodingAesKey: SAMPLE.encodingAesKey });
  t.notOk(otherToken.verify(msgSignature, timestamp, nonce, encrypt), 'another Token does not verify');
});

t.test('CallbackCipher.verify: refuses msg_signature shapes when they are not the 40 lower-case hex digits', async (t) => {
  const { msgSignature: good, timestamp, nonce, encrypt } = SAMPLE.post;
  const flipLast = good.slice(0, 39) + (good.endsWith('0') ? '1' : '0');
  const cases: { name: string; signature: unknown; ok: boolean }[] = [
    { name: 'the right one', signature: good, ok: true },
    { name: 'wrong last digit', signature: flipLast, ok: false },
    { name: 'short (39)', signature: good.slice(0, 39), ok: false },
    { name: 'long (41)', signature: good + '0', ok: false },
    { name: 'non-hex', signature: good.slice(0, 39) + 'g', ok: false },
    { name: 'upper-case hex', signature: good.toUpperCase(), ok: false },
    { name: 'non-ASCII in 40 characters', signature: good.slice(0, 39) + 'é', ok: false },
    { name: 'duplicated parameter joined', signature: `${good},${good}`, ok: false },
    { name: 'empty', signature: '', ok: false },
    { name: 'an array (a duplicated parameter not joined)', signature: [good, good], ok: false },
    { name: 'undefined', signature: undefined, ok: false },
  ];
  for (const c of cases) t.equal(cipher.verify(c.signature as string, timestamp, nonce, encrypt), c.ok, c.name);
  t.notOk(cipher.verify(good, timestamp + '0', nonce, encrypt), 'another timestamp');
  t.notOk(cipher.verify(good, timestamp, nonce + '0', encrypt), 'another nonce');
});

t.test('CallbackCipher.decrypt: rejects ciphertexts that are not strict base64 when characters or padding are off', async (t) => {
  const good: string = SAMPLE.get.echostr; // 88 characters, ends in ==
  const cases: { name: string; ciphertext: unknown; code: CallbackCryptoCode }[] = [
    { name: 'space where a + was', ciphertext: good.replaceAll('+', ' '), code: 'WG_CALLBACK_BAD_ENCODING' },
    { name: 'base64url alphabet', ciphertext: good.replaceAll('+', '-').replaceAll('/', '_'), code: 'WG_CALLBACK_BAD_ENCODING' },
    {
      name: 'a newline inside (length multiple of 4)',
      ciphertext: good.slice(0, 40) + '\n' + good.slice(41),
      code: 'WG_CALLBACK_BAD_ENCODING',
    },
    { name: 'CRLF appended', ciphertext: good + '\r\n\r\n', code: 'WG_CALLBACK_BAD_ENCODING' },
    { name: 'still percent-encoded', ciphertext: good.replace('/', '%2F').slice(0, 88), code: 'WG_CALLBACK_BAD_ENCODING' },
    { name: '= in the middle', ciphertext: good.slice(0, 40) + '=' + good.slice(41), code: 'WG_CALLBACK_BAD_ENCODING' },
    { name: 'three = at the end', ciphertext: good.slice(0, 85) + '===', code: 'WG_CALLBACK_BAD_ENCODING' },
    { name: 'length not a multiple of 4', ciphertext: good.slice(0, 87), code: 'WG_CALLBACK_BAD_ENCODING' },
    { name: 'a NUL character', ciphertext: good.slice(0, 40) + '\u0000' + good.slice(41), code: 'WG_CALLBACK_BAD_ENCODING' },
    { name: 'full-width letters', ciphertext: good.slice(0, 40) + 'Ａ' + good.slice(41), code: 'WG_CALLBACK_BAD_ENCODING' },
    {
      name: 'non-canonical final character (Q → R, the same bytes)',
      ciphertext: good.slice(0, 85) + 'R==',
      code: 'WG_CALLBACK_BAD_ENCODING',
    },
    { name: 'not a string', ciphertext: 42, code: 'WG_CALLBACK_BAD_ENCODING' },
    { name: 'empty', ciphertext: '', code: 'WG_CALLBACK_BAD_LENGTH' },
    { name: '43 characters', ciphertext: good.slice(0, 43), code: 'WG_CALLBACK_BAD_LENGTH' },
    {
      name: 'decodes to 36 bytes (not whole AES blocks)',
      ciphertext: Buffer.alloc(36, 1).toString('base64'),
      code: 'WG_CALLBACK_BAD_LENGTH',
    },
  ];
  for (const c of cases) t.throws(() => cipher.decrypt(c.ciphertext as string), { code: c.code }, c.name);
});

t.test('CallbackCipher.decrypt: rejects huge input on its length alone when it exceeds the bound', async (t) => {
  // 64 Mi characters that are not even base64: the length check answers before any scan or decode.
  t.throws(() => cipher.decrypt('!'.repeat(64 * 1024 * 1024)), { code: 'WG_CALLBACK_BAD_LENGTH' }, '64 MiB of garbage');
  const small = createCallbackCipher({ token: SAMPLE.token, encodingAesKey: SAMPLE.encodingAesKey, maxCiphertextBytes: 64 });
  t.same(small.decrypt(SAMPLE.get.echostr), { message: SAMPLE.get.plaintext, receiveId: SAMPLE.receiveId }, '64 bytes fit a 64-byte bound');
  t.throws(() => small.decrypt(SAMPLE.post.encrypt), { code: 'WG_CALLBACK_BAD_LENGTH' }, 'the 352-byte POST does not');
  t.throws(() => small.encrypt('x'.repeat(100), '', random), { code: 'WG_CALLBACK_BAD_LENGTH' }, 'nor does encrypt make more');
  t.throws(() => small.decrypt('A'.repeat(92)), { code: 'WG_CALLBACK_BAD_LENGTH' }, '88 characters is the bound for 64 bytes');
});

t.test('createCallbackCipher: refuses bad settings without echoing them when Token, key or bounds are invalid', async (t) => {
  const cases: { name: string; token: string; key: string; max?: number }[] = [
    { name: 'token with a dash', token: 'QDG-6eK', key: SAMPLE.encodingAesKey },
    { name: 'empty token', token: '', key: SAMPLE.encodingAesKey },
    { name: 'key of 42', token: SAMPLE.token, key: SAMPLE.encodingAesKey.slice(0, 42) },
    { name: 'key with =', token: SAMPLE.token, key: SAMPLE.encodingAesKey.slice(0, 42) + '=' },
    { name: 'bound below one block', token: SAMPLE.token, key: SAMPLE.encodingAesKey, max: 16 },
  ];
  for (const c of cases) {
    const opts = { token: c.token, encodingAesKey: c.key, ...(c.max !== undefined ? { maxCiphertextBytes: c.max } : {}) };
    const err = t.throws(() => createCallbackCipher(opts), TypeError, c.name) as Error;
    if (c.key.length > 0) t.notMatch(err.message, c.key.slice(0, 20), `${c.name}: key not in the message`);
    if (c.token.length > 0) t.notMatch(err.message, c.token, `${c.name}: token not in the message`);
  }
  t.throws(() => cipher.encrypt('x', '', Buffer.alloc(15)), TypeError, 'encrypt wants exactly 16 random bytes');
});

t.test('CallbackCipher: uses base64(EncodingAESKey + "=") as the key when keys differ only in it', async (t) => {
  // The same plaintext under two keys decrypts only under its own key (the test's AES path makes it).
  const key2 = 'B'.repeat(43);
  const plain = pad32(layout(random, Buffer.from('<xml/>'), rid));
  const other = createCallbackCipher({ token: SAMPLE.token, encodingAesKey: key2 });
  t.same(other.decrypt(rawEncrypt(plain, aesKey(key2))), { message: '<xml/>', receiveId: SAMPLE.receiveId });
  t.equal(cipher.encrypt('<xml/>', SAMPLE.receiveId, random), rawEncrypt(plain), 'encrypt is AES-256-CBC with IV = first 16 key bytes');
});
