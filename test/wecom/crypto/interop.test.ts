/**
 * Interop with an independent AES implementation: OpenSSL's `openssl enc` (a child process) encrypts
 * WeCom's layout for decrypt(), decrypts what encrypt() makes, and shows the official POST's 30-byte
 * pad, which OpenSSL's own PKCS#7 handling (16-byte blocks) refuses exactly as Node's does.
 */
import { execFileSync } from 'node:child_process';
import t from 'tap';
import { createCallbackCipher } from '../../../src/wecom/crypto/index.ts';
import { layout, SAMPLE, SAMPLE_KEY } from './helpers.ts';

const cipher = createCallbackCipher({ token: SAMPLE.token, encodingAesKey: SAMPLE.encodingAesKey });
const keyHex = SAMPLE_KEY.toString('hex');
const ivHex = SAMPLE_KEY.subarray(0, 16).toString('hex');

function openssl(args: string[], input: Buffer | string): Buffer {
  return execFileSync('openssl', ['enc', '-aes-256-cbc', '-K', keyHex, '-iv', ivHex, ...args], {
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
    timeout: 10_000,
  });
}

t.test('CallbackCipher.decrypt: reads what openssl enc encrypted when the plaintext follows the WeCom layout', async (t) => {
  const rid = Buffer.from(SAMPLE.receiveId);
  const cases = [
    { pad: 1, message: 'x'.repeat(64 - 1 - 20 - 18) },
    { pad: 30, message: '<xml><Content><![CDATA[你好]]></Content></xml>'.padEnd(128 - 30 - 20 - 18 - 4, ' ') },
    { pad: 32, message: 'y'.repeat(64 - 20 - 18) },
  ];
  for (const c of cases) {
    const body = layout(Buffer.from('fedcba9876543210'), Buffer.from(c.message), rid);
    const pad = 32 - (body.length % 32);
    t.equal(pad, c.pad, `the test built pad ${c.pad}`);
    const ciphertext = openssl(['-nopad', '-base64', '-A'], Buffer.concat([body, Buffer.alloc(pad, pad)]))
      .toString('latin1')
      .trim();
    t.same(cipher.decrypt(ciphertext), { message: c.message, receiveId: SAMPLE.receiveId }, `pad ${c.pad}`);
  }
});

t.test('CallbackCipher.encrypt: produces what openssl enc -d -nopad decrypts to the WeCom layout', async (t) => {
  const random = Buffer.from('0123456789abcdef');
  const message = '<xml><Content><![CDATA[this is a test 测试]]></Content></xml>';
  const plain = openssl(['-d', '-nopad', '-base64', '-A'], cipher.encrypt(message, SAMPLE.receiveId, random));
  const msgLen = Buffer.byteLength(message);
  const content = 20 + msgLen + SAMPLE.receiveId.length;
  const pad = 32 - (content % 32);
  t.equal(plain.length, content + pad, 'length is content + pad');
  t.equal(plain.length % 32, 0, 'whole 32-byte blocks');
  t.same(plain.subarray(0, 16), random, 'random(16) first');
  t.equal(plain.readUInt32BE(16), msgLen, 'then the big-endian byte length');
  t.equal(plain.toString('utf8', 20, 20 + msgLen), message, 'then the message');
  t.equal(plain.toString('utf8', 20 + msgLen, content), SAMPLE.receiveId, 'then the receiveid');
  t.same([...plain.subarray(content)], Array(pad).fill(pad), `then ${pad} bytes of ${pad}`);
});

t.test('openssl enc: shows the 30-byte pad of the official POST when decrypting without padding', async (t) => {
  const plain = openssl(['-d', '-nopad', '-base64', '-A'], SAMPLE.post.encrypt);
  t.equal(plain.length, 352);
  t.same([...plain.subarray(352 - 30)], Array(30).fill(30), 'pad 30');
  t.equal(plain.toString('utf8', 20, 20 + plain.readUInt32BE(16)), SAMPLE.post.plaintext, 'the sample plaintext');
  t.throws(() => openssl(['-d', '-base64', '-A'], SAMPLE.post.encrypt), 'standard PKCS#7 unpadding refuses it');
});
