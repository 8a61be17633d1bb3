/**
 * The query of a callback request, decoded exactly once. WeCom URL-encodes echostr ("企业在获取请求时
 * 需要做Urldecode处理", document/path/90238): `%2B` is the `+` of base64. Each value goes through
 * decodeURIComponent once, never through URLSearchParams / form decoding, which would turn a raw `+`
 * into a space: a raw `+` is kept as `+` (it can only be base64's). A repeated parameter is refused
 * (which of two msg_signature values WeCom meant cannot be known).
 */

export interface CallbackQuery {
  readonly msgSignature: string;
  readonly timestamp: string;
  readonly nonce: string;
  /** Present on the URL check (GET) only. */
  readonly echostr: string | undefined;
}

export type QueryResult = { ok: true; query: CallbackQuery } | { ok: false; reason: string };

const WANTED = new Set(['msg_signature', 'timestamp', 'nonce', 'echostr']);
/** Longest query accepted (an echostr is a few hundred characters). */
const MAX_QUERY = 4096;
const TIMESTAMP_RE = /^[0-9]{1,20}$/;

/** Parse `?msg_signature=…&timestamp=…&nonce=…[&echostr=…]` (as received, with its "?"); other parameters are ignored. */
export function parseCallbackQuery(raw: string): QueryResult {
  if (raw.length > MAX_QUERY) return { ok: false, reason: `query longer than ${MAX_QUERY} characters` };
  const found = new Map<string, string>();
  const text = raw.startsWith('?') ? raw.slice(1) : raw;
  if (text !== '') {
    for (const pair of text.split('&')) {
      const eq = pair.indexOf('=');
      const name = eq === -1 ? pair : pair.slice(0, eq);
      if (!WANTED.has(name)) continue;
      if (found.has(name)) return { ok: false, reason: `${name} appears more than once` };
      let value: string;
      try {
        value = decodeURIComponent(eq === -1 ? '' : pair.slice(eq + 1));
      } catch {
        return { ok: false, reason: `${name} has malformed percent-encoding` };
      }
      found.set(name, value);
    }
  }
  const msgSignature = found.get('msg_signature');
  const timestamp = found.get('timestamp');
  const nonce = found.get('nonce');
  if (msgSignature === undefined || msgSignature === '') return { ok: false, reason: 'msg_signature is missing' };
  if (timestamp === undefined || !TIMESTAMP_RE.test(timestamp)) return { ok: false, reason: 'timestamp is missing or not digits' };
  if (nonce === undefined || nonce === '' || nonce.length > 64)
    return { ok: false, reason: 'nonce is missing or longer than 64 characters' };
  return { ok: true, query: { msgSignature, timestamp, nonce, echostr: found.get('echostr') } };
}
