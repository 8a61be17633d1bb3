/**
 * The receiveid check. WeCom is not consistent about which id it encrypts for (the GET check of a
 * 服务商-side URL uses the provider's corp id, 指令回调 the suite id, 数据回调 the authorising corp id,
 * and encrypted corp ids of 代开发 apps are case-sensitive), so a callback path accepts a *set* of
 * ids, checked after the signature and the decryption; the id seen is reported when it is not in
 * the set (WECOM-FACTS §2.2).
 */
import { timingSafeEqual } from 'node:crypto';
import type { Decrypted } from './cipher.ts';
import { CallbackCryptoError } from './errors.ts';

/** How much of an unexpected receiveid an error carries (ids are 18–64 characters in practice). */
const REPORTED_CHARS = 128;

export interface ReceiveIdSet {
  /** True when `receiveId` is exactly (case-sensitive, byte for byte) one of the ids; constant time per id. */
  has(receiveId: string): boolean;
  readonly size: number;
}

/** A set of accepted receiveids. An empty string is a valid id (personal-subject third-party apps). */
export function createReceiveIdSet(ids: Iterable<string>): ReceiveIdSet {
  const accepted = [...new Set(ids)].map((id) => Buffer.from(id, 'utf8'));
  return {
    size: accepted.length,
    has(receiveId: string): boolean {
      const seen = Buffer.from(receiveId, 'utf8');
      let found = false;
      // Every id is compared (no early exit); lengths first, as timingSafeEqual requires.
      for (const id of accepted) if (id.length === seen.length && timingSafeEqual(id, seen)) found = true;
      return found;
    },
  };
}

/** Throws WG_CALLBACK_BAD_RECEIVE_ID, carrying the id seen, when `decrypted.receiveId` is not in `accepted`. */
export function checkReceiveId(decrypted: Decrypted, accepted: ReceiveIdSet): void {
  if (accepted.has(decrypted.receiveId)) return;
  const seen = decrypted.receiveId.slice(0, REPORTED_CHARS);
  throw new CallbackCryptoError(
    'WG_CALLBACK_BAD_RECEIVE_ID',
    `receiveid ${JSON.stringify(seen)} is not one of the ${accepted.size} configured for this callback`,
    seen,
  );
}
