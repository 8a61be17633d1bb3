/**
 * WeCom callback crypto (WXBizMsgCrypt, document/path/91144): pure functions, importing only
 * node:crypto and core. See cipher.ts for the algorithm and what callers must do around it.
 */
export {
  type CallbackCipher,
  type CallbackCipherOptions,
  createCallbackCipher,
  DEFAULT_MAX_CIPHERTEXT_BYTES,
  type Decrypted,
} from './cipher.ts';
export { checkCallbackToken, checkEncodingAesKey, isStrictBase64 } from './checks.ts';
export { CallbackCryptoError, type CallbackCryptoCode } from './errors.ts';
export { checkReceiveId, createReceiveIdSet, type ReceiveIdSet } from './receive-id.ts';
export { buildPassiveReply, type PassiveReply } from './reply.ts';
