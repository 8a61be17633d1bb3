/**
 * WXBizMsgCrypt, the WeCom callback crypto (document/path/91144), as pure functions: no I/O, no
 * logging, randomness passed in.
 *
 * - msg_signature = hex(sha1(concat(sort([Token, timestamp, nonce, ciphertext])))).
 * - AESKey = base64(EncodingAESKey + "=") (32 bytes); AES-256-CBC, IV = the first 16 key bytes.
 * - plaintext = random(16) ‖ uint32be(len(msg)) ‖ msg ‖ receiveid, PKCS#7-padded to a multiple of
 *   **32** bytes. Node's automatic unpadding accepts pads of at most 16, so it rejects about half of
 *   genuine messages ("bad decrypt"): padding is added and removed here by hand (`setAutoPadding(false)`).
 *
 * Callers:
 * - verify the signature first, then decrypt, then check the receiveid against the set configured
 *   for the callback path (receive-id.ts) — WeCom is not consistent about which id it uses;
 * - pass the query values decoded exactly once (`new URLSearchParams(query).get('echostr')`): a
 *   second decoding turns the `+` of base64 into a space, which is rejected here as bad base64.
 */
import { createCipheriv, createDecipheriv, createHash, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import { checkCallbackToken, checkEncodingAesKey, isStrictBase64 } from './checks.ts';
import { CallbackCryptoError } from './errors.ts';
import { buildPassiveReply } from './reply.ts';

/** WeCom's PKCS#7 block: 32 bytes (document/path/91144: "PKCS#7填充至32字节的倍数"). */
const PAD_BLOCK = 32;
/** random(16) ‖ msg_len(4). */
const HEADER = 20;
/** The smallest ciphertext: one 32-byte block (base64: 44 characters). */
const MIN_BYTES = 32;
/** Default upper bound of a decoded ciphertext; callback bodies are limited to a few hundred KiB anyway. */
export const DEFAULT_MAX_CIPHERTEXT_BYTES = 512 * 1024;

const SIGNATURE_RE = /^[0-9a-f]{40}$/;

export interface CallbackCipherOptions {
  /** The callback Token (1..32 letters/digits). */
  readonly token: string;
  /** The callback EncodingAESKey (43 base64 characters). */
  readonly encodingAesKey: string;
  /** Largest decoded ciphertext accepted by decrypt() and produced by encrypt(), bytes (default 512 KiB). */
  readonly maxCiphertextBytes?: number;
}

export interface Decrypted {
  /** The message: the echostr plaintext of a URL check, or the inner XML of a POST. */
  readonly message: string;
  /** The receiveid found after the message; check it with a ReceiveIdSet. */
  readonly receiveId: string;
}

export interface CallbackCipher {
  /** msg_signature for these values (40 lower-case hex digits). */
  sign(timestamp: string, nonce: string, ciphertext: string): string;
  /** True when `signature` is the msg_signature of these values; compared in constant time. */
  verify(signature: string, timestamp: string, nonce: string, ciphertext: string): boolean;
  /** base64 ciphertext of `message` for `receiveId`; `random16` is the 16 random bytes of the layout. */
  encrypt(message: string, receiveId: string, random16: Uint8Array): string;
  /** The message and receiveid of a base64 ciphertext (strictly checked); throws CallbackCryptoError. */
  decrypt(ciphertext: string): Decrypted;
  /** The XML of an encrypted passive reply carrying `message` (encrypt + sign + reply.ts). */
  passiveReply(message: string, receiveId: string, timestamp: string, nonce: string, random16: Uint8Array): string;
}

function badLength(detail: string): CallbackCryptoError {
  return new CallbackCryptoError('WG_CALLBACK_BAD_LENGTH', detail);
}

function notBase64(): CallbackCryptoError {
  return new CallbackCryptoError('WG_CALLBACK_BAD_ENCODING', 'ciphertext has characters outside base64 (A-Z a-z 0-9 + / and a final =)');
}

/**
 * A cipher for one callback (Token + EncodingAESKey). The AES key is made once as a KeyObject:
 * on Node 24 a KeyObject makes createDecipheriv several times cheaper than a raw key Buffer
 * (test/wecom/crypto/bench.ts). Throws a TypeError naming the bad setting (never its value).
 */
export function createCallbackCipher(options: CallbackCipherOptions): CallbackCipher {
  const tokenProblem = checkCallbackToken(options.token);
  if (tokenProblem !== undefined) throw new TypeError(`callback token ${tokenProblem}`);
  const keyProblem = checkEncodingAesKey(options.encodingAesKey);
  if (keyProblem !== undefined) throw new TypeError(`callback encoding_aes_key ${keyProblem}`);
  const maxBytes = options.maxCiphertextBytes ?? DEFAULT_MAX_CIPHERTEXT_BYTES;
  if (!Number.isSafeInteger(maxBytes) || maxBytes < MIN_BYTES) throw new TypeError(`maxCiphertextBytes must be an integer ≥ ${MIN_BYTES}`);
  // base64 length of maxBytes bytes, padding included.
  const maxChars = Math.ceil(maxBytes / 3) * 4;

  const token = options.token;
  const raw = Buffer.from(options.encodingAesKey + '=', 'base64');
  const key: KeyObject = createSecretKey(raw);
  const iv = Buffer.from(raw.subarray(0, 16));
  raw.fill(0);

  function digest(timestamp: string, nonce: string, ciphertext: string): Buffer {
    // Default sort compares UTF-16 code units; the official libraries sort bytes. Both agree on
    // ASCII, which is all WeCom sends (digits, letters, base64) and all a Token may contain.
    return createHash('sha1').update([token, timestamp, nonce, ciphertext].sort().join('')).digest();
  }

  function sign(timestamp: string, nonce: string, ciphertext: string): string {
    return digest(timestamp, nonce, ciphertext).toString('hex');
  }

  function verify(signature: string, timestamp: string, nonce: string, ciphertext: string): boolean {
    // Shape first (says nothing about the expected value), then a constant-time compare of the
    // 20 digest bytes; timingSafeEqual needs equal lengths, which the shape guarantees.
    if (typeof signature !== 'string' || !SIGNATURE_RE.test(signature)) return false;
    return timingSafeEqual(Buffer.from(signature, 'hex'), digest(timestamp, nonce, ciphertext));
  }

  function encrypt(message: string, receiveId: string, random16: Uint8Array): string {
    if (random16.length !== 16) throw new TypeError('encrypt needs exactly 16 random bytes');
    const msgLen = Buffer.byteLength(message);
    const content = HEADER + msgLen + Buffer.byteLength(receiveId);
    const pad = PAD_BLOCK - (content % PAD_BLOCK); // 1..32: an aligned plaintext gets a whole block
    const total = content + pad;
    if (total > maxBytes) throw badLength(`message too long to encrypt: ${total} bytes padded, at most ${maxBytes}`);
    const plain = Buffer.allocUnsafe(total);
    plain.set(random16, 0);
    plain.writeUInt32BE(msgLen, 16);
    plain.write(message, HEADER, 'utf8');
    plain.write(receiveId, HEADER + msgLen, 'utf8');
    plain.fill(pad, content);
    const cipher = createCipheriv('aes-256-cbc', key, iv).setAutoPadding(false);
    const head = cipher.update(plain);
    const tail = cipher.final();
    return (tail.length === 0 ? head : Buffer.concat([head, tail])).toString('base64');
  }

  function decrypt(ciphertext: string): Decrypted {
    if (typeof ciphertext !== 'string') throw new CallbackCryptoError('WG_CALLBACK_BAD_ENCODING', 'ciphertext is not a string');
    // Length bounds first, from the string alone, before any Buffer is made.
    const n = ciphertext.length;
    if (n < 44) throw badLength(`ciphertext too short: ${n} base64 characters, at least 44`);
    if (n > maxChars) throw badLength(`ciphertext too long: ${n} base64 characters, at most ${maxChars}`);
    if (n % 4 !== 0) throw new CallbackCryptoError('WG_CALLBACK_BAD_ENCODING', `ciphertext length ${n} is not a multiple of 4`);
    const eq = ciphertext.charCodeAt(n - 1) !== 61 ? 0 : ciphertext.charCodeAt(n - 2) !== 61 ? 1 : 2;
    const size = (n / 4) * 3 - eq;
    if (size % 16 !== 0 || size < MIN_BYTES) {
      // Only on this error path is the string scanned, to name what is wrong with it.
      if (!isStrictBase64(ciphertext)) throw notBase64();
      throw badLength(`ciphertext is ${size} bytes, not a whole number of AES blocks ≥ ${MIN_BYTES}`);
    }

    // Buffer.from(…, 'base64') skips invalid characters and whitespace, accepts base64url and stops
    // at the first "=", so the decoded bytes are encoded again and must give back the very string:
    // strict (standard alphabet, final padding only, canonical). No whitespace is tolerated: a space
    // is the `+` of a value URL-decoded twice. The allocation is bounded by the checks above. For a
    // 500-byte message the round trip costs ~0.22 µs and an alphabet regex ~0.63 µs (best of 30
    // rounds, Node 24; verify+decrypt is ~5.3 µs in all, test/wecom/crypto/bench.ts), and the regex
    // would still let non-canonical encodings through.
    const bytes = Buffer.from(ciphertext, 'base64');
    if (bytes.length !== size || bytes.toString('base64') !== ciphertext) {
      throw isStrictBase64(ciphertext)
        ? new CallbackCryptoError('WG_CALLBACK_BAD_ENCODING', 'ciphertext is not canonical base64')
        : notBase64();
    }
    const decipher = createDecipheriv('aes-256-cbc', key, iv).setAutoPadding(false);
    const head = decipher.update(bytes);
    const tail = decipher.final();
    const plain = tail.length === 0 ? head : Buffer.concat([head, tail]);

    // PKCS#7 over 32-byte blocks: 1..32 bytes, all equal to the count. The signature (checked
    // first by the caller) covers the ciphertext, so the early exits here are no padding oracle.
    const len = plain.length;
    const pad = plain[len - 1] ?? 0;
    if (pad < 1 || pad > PAD_BLOCK) throw new CallbackCryptoError('WG_CALLBACK_BAD_PADDING', `pad value ${pad} is not 1..${PAD_BLOCK}`);
    for (let i = len - pad; i < len - 1; i++) {
      if (plain[i] !== pad) throw new CallbackCryptoError('WG_CALLBACK_BAD_PADDING', `pad bytes differ from the pad value ${pad}`);
    }
    const content = len - pad;
    if (content < HEADER) throw badLength(`plaintext is ${content} bytes, shorter than its ${HEADER}-byte header`);
    const msgLen = plain.readUInt32BE(16);
    if (msgLen > content - HEADER) throw badLength(`message length field ${msgLen} exceeds the ${content - HEADER} bytes that follow it`);
    return {
      message: plain.toString('utf8', HEADER, HEADER + msgLen),
      receiveId: plain.toString('utf8', HEADER + msgLen, content),
    };
  }

  function passiveReply(message: string, receiveId: string, timestamp: string, nonce: string, random16: Uint8Array): string {
    const ciphertext = encrypt(message, receiveId, random16);
    return buildPassiveReply({ encrypt: ciphertext, signature: sign(timestamp, nonce, ciphertext), timestamp, nonce });
  }

  return { sign, verify, encrypt, decrypt, passiveReply };
}
