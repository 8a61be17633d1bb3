/**
 * Micro-benchmark of the callback crypto, run by hand (not by tap, not a test):
 *
 *   npx node test/wecom/crypto/bench.ts
 *
 * For a ~500-byte message: createDecipheriv with a KeyObject vs a raw key Buffer (bare node:crypto),
 * and verify+decrypt through createCallbackCipher vs the bare ceiling for the same bytes (base64
 * decode, AES-256-CBC with a KeyObject, SHA-1). Prints one JSON line.
 */
import { createDecipheriv, createHash, createSecretKey } from 'node:crypto';
import { createCallbackCipher } from '../../../src/wecom/crypto/index.ts';
import { aesKey, SAMPLE } from './helpers.ts';

const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 15);
const N = Number(process.env['BENCH_N'] ?? 20_000);

const cipher = createCallbackCipher({ token: SAMPLE.token, encodingAesKey: SAMPLE.encodingAesKey });
const message = `<xml><ToUserName><![CDATA[${SAMPLE.receiveId}]]></ToUserName><Content><![CDATA[${'x'.repeat(400)}]]></Content></xml>`;
const ciphertext = cipher.encrypt(message, SAMPLE.receiveId, Buffer.alloc(16, 1));
const timestamp = '1409659813';
const nonce = '1372623149';
const signature = cipher.sign(timestamp, nonce, ciphertext);
const raw = aesKey(SAMPLE.encodingAesKey);
const keyObject = createSecretKey(raw);
const iv = raw.subarray(0, 16);

let sink = 0;
/**
 * Best ops/s of each candidate over ROUNDS rounds of N calls, the candidates interleaved round by
 * round so that load from other processes on a shared machine hits them alike.
 */
function bestOpsPerSecond(candidates: Record<string, () => number>): Record<string, number> {
  const best: Record<string, number> = {};
  for (const [name, fn] of Object.entries(candidates)) {
    for (let i = 0; i < N / 4; i++) sink += fn();
    best[name] = 0;
  }
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of Object.entries(candidates)) {
      const start = process.hrtime.bigint();
      for (let i = 0; i < N; i++) sink += fn();
      const s = Number(process.hrtime.bigint() - start) / 1e9;
      best[name] = Math.max(best[name] ?? 0, Math.round(N / s));
    }
  }
  return best;
}

function bareDecrypt(key: typeof keyObject | Buffer): number {
  const d = createDecipheriv('aes-256-cbc', key, iv).setAutoPadding(false);
  return d.update(Buffer.from(ciphertext, 'base64')).length + d.final().length;
}

const ops = bestOpsPerSecond({
  decryptRawKey: () => bareDecrypt(raw),
  decryptKeyObject: () => bareDecrypt(keyObject),
  ceiling: () => {
    const digest = createHash('sha1').update([SAMPLE.token, timestamp, nonce, ciphertext].sort().join('')).digest();
    return digest.length + bareDecrypt(keyObject);
  },
  wegate: () => {
    if (!cipher.verify(signature, timestamp, nonce, ciphertext)) throw new Error('signature');
    return cipher.decrypt(ciphertext).message.length;
  },
});
const decryptRawKey = ops['decryptRawKey']!;
const decryptKeyObject = ops['decryptKeyObject']!;
const ceiling = ops['ceiling']!;
const wegate = ops['wegate']!;

console.log(
  JSON.stringify({
    node: process.version,
    message_bytes: Buffer.byteLength(message),
    ciphertext_chars: ciphertext.length,
    bare_decrypt_raw_key_ops_per_s: decryptRawKey,
    bare_decrypt_key_object_ops_per_s: decryptKeyObject,
    key_object_speedup: Number((decryptKeyObject / decryptRawKey).toFixed(2)),
    ceiling_verify_decrypt_ops_per_s: ceiling,
    wegate_verify_decrypt_ops_per_s: wegate,
    crypto_vs_ceiling: Number((wegate / ceiling).toFixed(3)),
    sink: sink > 0,
  }),
);
