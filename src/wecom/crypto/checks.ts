/**
 * Checks of the callback settings and of callback input, done before anything is allocated for it.
 *
 * The config checks return the problem as the tail of a config message ("must be …, got …") or
 * undefined; the value itself never appears (Token and EncodingAESKey are secrets), only its length.
 */

/** EncodingAESKey: "长度固定为43个字符，从a-z, A-Z, 0-9共62个字符中选取" (document/path/91144). `+` and `/` are
 *  accepted too: they are base64, and base64(key + "=") is what the key is. */
const AES_KEY_RE = /^[A-Za-z0-9+/]{43}$/;

/** Token: "由英文或数字组成且长度不超过32位" (document/path/96238). */
const TOKEN_RE = /^[A-Za-z0-9]{1,32}$/;

/** Strict base64 (standard alphabet, `=` only as the final one or two characters, no whitespace). */
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

function characters(n: number): string {
  return n === 1 ? '1 character' : `${n} characters`;
}

/**
 * Why `value` is not a usable EncodingAESKey, or undefined when it is: exactly 43 characters of
 * the base64 alphabet. For the config validator (wecom apps' `encoding_aes_key`).
 */
export function checkEncodingAesKey(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'must be a string of 43 characters (A-Z, a-z, 0-9)';
  if (value.length !== 43) return `must be 43 characters (A-Z, a-z, 0-9), got ${characters(value.length)} (value hidden)`;
  if (!AES_KEY_RE.test(value)) return 'must be 43 characters of A-Z, a-z, 0-9 only, got other characters (value hidden)';
  return undefined;
}

/** Why `value` is not a usable callback Token, or undefined when it is: 1..32 letters or digits. */
export function checkCallbackToken(value: unknown): string | undefined {
  if (typeof value !== 'string') return 'must be a string of 1 to 32 letters or digits';
  if (value.length === 0 || value.length > 32) {
    return `must be 1 to 32 letters or digits, got ${characters(value.length)} (value hidden)`;
  }
  if (!TOKEN_RE.test(value)) return 'must be letters (A-Z, a-z) and digits only, got other characters (value hidden)';
  return undefined;
}

/** True when `s` is strict base64 (see BASE64_RE); the length rules are checked separately. */
export function isStrictBase64(s: string): boolean {
  return BASE64_RE.test(s);
}
