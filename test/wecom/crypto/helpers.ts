/**
 * The official WXBizMsgCrypt sample vector and an independent, test-only AES-256-CBC path (raw key
 * Buffer, hand-built layout and padding) used to make ciphertexts the code under test never made.
 *
 * Source of the vector: the official WeCom callback library's PHP sample,
 * https://github.com/sbzhu/weworkapi_php/blob/0855251597a9879090766fae9d475e2ef91f28bd/callback/Sample.php
 * (the same POST is in the official C# sample and in the comments of
 * https://github.com/sbzhu/weworkapi_python/blob/27220fbe9d5251d46101e33751568eae9f413666/callback/Sample.py).
 * Token QDG6eK, EncodingAESKey jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C,
 * receiveid (corp id) wx5823bf96d3bd56c7.
 */
import { createDecipheriv, createCipheriv } from 'node:crypto';

export const SAMPLE = {
  token: 'QDG6eK',
  encodingAesKey: 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C',
  receiveId: 'wx5823bf96d3bd56c7',
  /** 使用示例一：验证回调URL — the GET exactly as the sample shows it (echostr URL-encoded once). */
  get: {
    query:
      'msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589&nonce=263014780' +
      '&echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp%2B4RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D',
    msgSignature: '5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3',
    timestamp: '1409659589',
    nonce: '263014780',
    echostr: 'P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ==',
    /** The reply WeCom expects (what the sample's VerifyURL returns). */
    plaintext: '1616140317555161061',
  },
  /** 使用示例二：对用户回复的消息解密 — the POST (its plaintext is padded with 30 bytes). */
  post: {
    msgSignature: '477715d11cdb4164915debcba66cb864d751f3e6',
    timestamp: '1409659813',
    nonce: '1372623149',
    encrypt:
      'RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3QczcdCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZZIs2pDBS8R07+qN+E7Q==',
    /** The decrypted message as the sample's comment shows it. */
    plaintext:
      '<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n<FromUserName><![CDATA[mycreate]]></FromUserName>\n' +
      '<CreateTime>1409659813</CreateTime>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n' +
      '<MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>',
  },
} as const;

/** AESKey = Base64_Decode(EncodingAESKey + "="), written out here independently of src/. */
export function aesKey(encodingAesKey: string): Buffer {
  return Buffer.from(encodingAesKey + '=', 'base64');
}

export const SAMPLE_KEY = aesKey(SAMPLE.encodingAesKey);

/** random(16) ‖ uint32be(len) ‖ msg ‖ receiveid, unpadded; `lengthField` overrides the length. */
export function layout(random: Buffer, message: Buffer, receiveId: Buffer, lengthField = message.length): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(lengthField >>> 0);
  return Buffer.concat([random, len, message, receiveId]);
}

/** PKCS#7 to a multiple of 32, or with a forced pad value/count (count bytes of value `value`). */
export function pad32(plain: Buffer, force?: { count: number; value: number }): Buffer {
  const count = force?.count ?? 32 - (plain.length % 32);
  const value = force?.value ?? count;
  return Buffer.concat([plain, Buffer.alloc(count, value)]);
}

/** AES-256-CBC without padding, raw key, IV = first 16 key bytes; base64. */
export function rawEncrypt(padded: Buffer, key: Buffer = SAMPLE_KEY): string {
  const c = createCipheriv('aes-256-cbc', key, key.subarray(0, 16));
  c.setAutoPadding(false);
  return Buffer.concat([c.update(padded), c.final()]).toString('base64');
}

/** The decrypted bytes of a base64 ciphertext, padding left in place. */
export function rawDecrypt(ciphertext: string, key: Buffer = SAMPLE_KEY): Buffer {
  const d = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16));
  d.setAutoPadding(false);
  return Buffer.concat([d.update(Buffer.from(ciphertext, 'base64')), d.final()]);
}
