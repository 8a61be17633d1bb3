/**
 * The one error the callback crypto throws. Its code is a WG_CALLBACK_* entry of the error table
 * (status + bilingual text); the message says which check failed and never carries the Token, the
 * key, the ciphertext or the plaintext. Only WG_CALLBACK_BAD_RECEIVE_ID carries a decrypted value:
 * the receiveid seen, which is an id (corp id, suite id, template id), not a secret, and is what an
 * admin needs to fix the configuration (WeCom is not consistent about which id it uses).
 */
import { GatewayError } from '../../core/errors.ts';

export type CallbackCryptoCode =
  | 'WG_CALLBACK_BAD_SIGNATURE'
  | 'WG_CALLBACK_BAD_ENCODING'
  | 'WG_CALLBACK_BAD_LENGTH'
  | 'WG_CALLBACK_BAD_PADDING'
  | 'WG_CALLBACK_BAD_RECEIVE_ID';

export class CallbackCryptoError extends GatewayError {
  declare readonly code: CallbackCryptoCode;
  /** WG_CALLBACK_BAD_RECEIVE_ID only: the receiveid found in the (authenticated) plaintext. */
  readonly receiveId: string | undefined;

  constructor(code: CallbackCryptoCode, detail: string, receiveId?: string) {
    super(code, detail);
    this.name = 'CallbackCryptoError';
    this.receiveId = receiveId;
  }
}
