/**
 * De-duplication of WeCom's retries. WeCom re-sends a callback it got no 200 for within 5 s, "总共
 * 重试三次" (up to four deliveries of one message: plan for it), and a 200 is sometimes followed by a
 * retry anyway. The key never merges two genuinely different events:
 * - MsgId when the message has one (WeCom: "有msgid的消息推荐使用msgid排重");
 * - otherwise a hash of the decrypted plaintext with the callback name. WeCom's own advice for
 *   events (FromUserName + CreateTime) merges several change_contact / external-contact events of
 *   one second (FromUserName=sys), and 指令回调 events have no MsgId, FromUserName or CreateTime at
 *   all; a retry carries the same plaintext (only the encryption is new), a different event never.
 * Never the Encrypt value or msg_signature: whether a retry re-encrypts is not documented.
 *
 * The keys live in memory (bounded, with a TTL) behind DedupeKeys, which the durable store will
 * implement; a key is recorded only once the vendor took the message, so an undelivered one is
 * delivered again on WeCom's next retry.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';

export interface DedupeKeys {
  /** True when `key` was recorded within the TTL. */
  has(key: string): boolean | Promise<boolean>;
  /** Record `key` (a delivered message). */
  add(key: string): void | Promise<void>;
}

export interface MemoryDedupeOptions {
  /** Keys kept at most (the oldest go first). */
  readonly max: number;
  readonly ttlMs: number;
  /** Clock in ms (injected for tests). */
  readonly now?: () => number;
}

export function createMemoryDedupe(options: MemoryDedupeOptions): DedupeKeys {
  const now = options.now;
  const cache = new LRUCache<string, true>({
    max: options.max,
    ttl: options.ttlMs,
    ttlAutopurge: false,
    // No cached clock reading (lru-cache's default caches it for 1 ms with a timer): the injected clock decides.
    ttlResolution: 0,
    ...(now ? { perf: { now } } : {}),
  });
  return {
    has: (key) => cache.has(key),
    add: (key) => {
      cache.set(key, true);
    },
  };
}

/** The idempotency key of one message of one callback (hex, 64 characters). */
export function dedupeKey(callback: string, msgId: string | undefined, plaintext: string): string {
  const h = createHash('sha256').update(callback).update('\0');
  if (msgId !== undefined && msgId !== '') h.update('msgid\0').update(msgId);
  else h.update('plain\0').update(plaintext);
  return h.digest('hex');
}
