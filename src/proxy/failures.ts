/**
 * Upstream failures mapped deliberately to a client answer and a bounded metric kind:
 * unreachable (refused, DNS, network) and TLS verification → 502, timeouts → 504, an invalid or
 * truncated response → 502.
 */
import type { ErrorCode } from '../core/errors.ts';
import type { UpstreamErrorKind } from '../metrics/metrics.ts';

export interface Failure {
  readonly kind: UpstreamErrorKind;
  readonly code: ErrorCode;
}

const REFUSED: Failure = { kind: 'refused', code: 'WG_UPSTREAM_UNREACHABLE' };
const DNS: Failure = { kind: 'dns', code: 'WG_UPSTREAM_UNREACHABLE' };
const TIMEOUT: Failure = { kind: 'timeout', code: 'WG_UPSTREAM_TIMEOUT' };
const TLS: Failure = { kind: 'tls', code: 'WG_UPSTREAM_TLS' };
const RESET: Failure = { kind: 'reset', code: 'WG_UPSTREAM_BAD_RESPONSE' };
const BAD: Failure = { kind: 'bad_response', code: 'WG_UPSTREAM_BAD_RESPONSE' };
const OTHER: Failure = { kind: 'other', code: 'WG_UPSTREAM_UNREACHABLE' };

/** OpenSSL certificate verification results that Node surfaces as error codes. */
const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_CA',
  'HOSTNAME_MISMATCH',
  'EPROTO',
]);

/** Classify an error from undici or node:http/tls talking to an upstream. */
export function classifyUpstreamError(err: unknown): Failure {
  const code = (err as { code?: unknown } | null)?.code;
  // undici's HTTPParserError has no code when llhttp gave none (e.g. "Expected HTTP/").
  if ((err as Error | null)?.name === 'HTTPParserError') return BAD;
  if (typeof code !== 'string') {
    const cause = (err as { cause?: unknown } | null)?.cause;
    return cause !== undefined && cause !== err ? classifyUpstreamError(cause) : OTHER;
  }
  switch (code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return REFUSED;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
    case 'EAI_NONAME':
      return DNS;
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
    case 'ETIMEDOUT':
    case 'ECONNECT_TIMEOUT':
      return TIMEOUT;
    case 'ECONNRESET':
    case 'EPIPE':
    case 'UND_ERR_SOCKET':
      return RESET;
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_HEADERS_OVERFLOW':
    case 'UND_ERR_RES_EXCEEDED_MAX_SIZE':
    case 'UND_ERR_INFO':
      return BAD;
  }
  if (TLS_CODES.has(code) || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_')) return TLS;
  if (code.startsWith('HPE_')) return BAD;
  return OTHER;
}
