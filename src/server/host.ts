/**
 * Host header validation. llhttp accepts a second Host header (and keeps the first silently),
 * HTTP/1.0 requests without Host and odd values such as `a.com/\:552`, `evil@good` or `a:9000:80`;
 * the gateway routes on Host, so it checks the raw headers itself.
 */
import { isIPv6 } from 'node:net';

export type HostCheck =
  | {
      readonly ok: true /** lower-case, no port, no trailing dot */;
      readonly host: string /** lower-case value as sent */;
      readonly authority: string;
    }
  | { readonly ok: false; readonly reason: 'missing' | 'duplicate' | 'malformed' };

// reg-name of letters, digits, "-" and "_" in dot-separated labels (optional trailing dot), or an
// IPv6 literal; then an optional port of 1–5 digits. Anything else (userinfo, path, second colon) fails.
const HOST_RE =
  /^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?|\[([0-9a-f:.]{2,45})\])(?::([0-9]{1,5}))?$/;

const MISSING: HostCheck = { ok: false, reason: 'missing' };
const DUPLICATE: HostCheck = { ok: false, reason: 'duplicate' };
const MALFORMED: HostCheck = { ok: false, reason: 'malformed' };

/** Find exactly one well-formed Host header in `rawHeaders` (name/value pairs as received). */
export function checkHost(rawHeaders: readonly string[]): HostCheck {
  let value: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    if (name.length === 4 && (name === 'Host' || name === 'host' || name.toLowerCase() === 'host')) {
      if (value !== undefined) return DUPLICATE;
      value = rawHeaders[i + 1] as string;
    }
  }
  if (value === undefined || value === '') return MISSING;
  if (value.length > 260) return MALFORMED;
  const authority = value.toLowerCase();
  const m = HOST_RE.exec(authority);
  if (m === null) return MALFORMED;
  const v6 = m[1];
  const port = m[2];
  if (v6 !== undefined && !isIPv6(v6)) return MALFORMED;
  if (port !== undefined) {
    const n = Number(port);
    if (n < 1 || n > 65535) return MALFORMED;
  }
  let host = port === undefined ? authority : authority.slice(0, authority.length - port.length - 1);
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.length > 253) return MALFORMED;
  return { ok: true, host, authority };
}
