import t from 'tap';
import { classifyUpstreamError } from '../../src/proxy/failures.ts';

t.test('classifyUpstreamError: maps upstream failures to a status code and metric kind when they happen', async (t) => {
  const err = (code: string | undefined, name = 'Error') => Object.assign(new Error('x'), { code, name });
  const cases: [name: string, error: unknown, kind: string, code: string][] = [
    ['refused', err('ECONNREFUSED'), 'refused', 'WG_UPSTREAM_UNREACHABLE'],
    ['host unreachable', err('EHOSTUNREACH'), 'refused', 'WG_UPSTREAM_UNREACHABLE'],
    ['DNS name unknown', err('ENOTFOUND'), 'dns', 'WG_UPSTREAM_UNREACHABLE'],
    ['DNS temporary failure', err('EAI_AGAIN'), 'dns', 'WG_UPSTREAM_UNREACHABLE'],
    ['connect timeout', err('UND_ERR_CONNECT_TIMEOUT'), 'timeout', 'WG_UPSTREAM_TIMEOUT'],
    ['headers timeout', err('UND_ERR_HEADERS_TIMEOUT'), 'timeout', 'WG_UPSTREAM_TIMEOUT'],
    ['body timeout', err('UND_ERR_BODY_TIMEOUT'), 'timeout', 'WG_UPSTREAM_TIMEOUT'],
    ['http-proxy-3 connect timeout', err('ECONNECT_TIMEOUT'), 'timeout', 'WG_UPSTREAM_TIMEOUT'],
    ['self-signed', err('DEPTH_ZERO_SELF_SIGNED_CERT'), 'tls', 'WG_UPSTREAM_TLS'],
    ['unknown CA', err('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), 'tls', 'WG_UPSTREAM_TLS'],
    ['name mismatch', err('ERR_TLS_CERT_ALTNAME_INVALID'), 'tls', 'WG_UPSTREAM_TLS'],
    ['TLS protocol', err('ERR_SSL_WRONG_VERSION_NUMBER'), 'tls', 'WG_UPSTREAM_TLS'],
    ['reset', err('ECONNRESET'), 'reset', 'WG_UPSTREAM_BAD_RESPONSE'],
    ['socket closed', err('UND_ERR_SOCKET'), 'reset', 'WG_UPSTREAM_BAD_RESPONSE'],
    ['parser error without code', err(undefined, 'HTTPParserError'), 'bad_response', 'WG_UPSTREAM_BAD_RESPONSE'],
    ['llhttp error', err('HPE_INVALID_CONSTANT'), 'bad_response', 'WG_UPSTREAM_BAD_RESPONSE'],
    ['length mismatch', err('UND_ERR_RES_CONTENT_LENGTH_MISMATCH'), 'bad_response', 'WG_UPSTREAM_BAD_RESPONSE'],
    [
      'cause carries the code',
      Object.assign(new Error('fetch failed'), { cause: err('ECONNREFUSED') }),
      'refused',
      'WG_UPSTREAM_UNREACHABLE',
    ],
    ['unknown', err('EWHATEVER'), 'other', 'WG_UPSTREAM_UNREACHABLE'],
    ['not an error', 'boom', 'other', 'WG_UPSTREAM_UNREACHABLE'],
    ['null', null, 'other', 'WG_UPSTREAM_UNREACHABLE'],
  ];
  for (const [name, error, kind, code] of cases) t.same(classifyUpstreamError(error), { kind, code }, name);
});
