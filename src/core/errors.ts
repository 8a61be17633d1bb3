/**
 * Every error wegate can answer a client with, in one table: a stable code, an HTTP status and a
 * short bilingual message. The README reproduces this table; test/core/errors.test.ts fails when a
 * code is missing there. Causes go to the log, never into the response.
 */

export interface ErrorSpec {
  readonly status: number;
  /** Short English text shown to the client. */
  readonly en: string;
  /** The same in 简体中文. */
  readonly zh: string;
}

export const ERRORS = {
  WG_BAD_REQUEST: { status: 400, en: 'Bad request', zh: '请求格式错误' },
  WG_BAD_HOST: { status: 400, en: 'Missing, duplicate or malformed Host header', zh: 'Host 请求头缺失、重复或格式错误' },
  WG_BAD_PATH: { status: 400, en: 'Request path is not allowed', zh: '请求路径不合法' },
  WG_BAD_HEADER: { status: 400, en: 'Request header is not allowed', zh: '请求头不合法' },
  WG_NOT_FOUND: { status: 404, en: 'No site is configured for this address', zh: '此地址未配置任何站点' },
  WG_REQUEST_TIMEOUT: { status: 408, en: 'The request was not received in time', zh: '请求接收超时' },
  WG_BODY_TOO_LARGE: { status: 413, en: 'Request body is too large', zh: '请求体过大' },
  WG_HEADERS_TOO_LARGE: { status: 431, en: 'Request headers are too large', zh: '请求头过大' },
  WG_UNSUPPORTED_TRANSFER_ENCODING: {
    status: 501,
    en: 'Transfer-Encoding other than a lone "chunked" is not supported',
    zh: '不支持除单独的 "chunked" 以外的 Transfer-Encoding',
  },
  WG_UPSTREAM_UNREACHABLE: { status: 502, en: 'The service behind this gateway cannot be reached', zh: '无法连接后端服务' },
  WG_UPSTREAM_BAD_RESPONSE: { status: 502, en: 'The service behind this gateway sent an invalid response', zh: '后端服务返回了无效的响应' },
  WG_UPSTREAM_TLS: {
    status: 502,
    en: 'The TLS certificate of the service behind this gateway was not accepted',
    zh: '后端服务的 TLS 证书校验失败',
  },
  WG_UPSTREAM_TIMEOUT: { status: 504, en: 'The service behind this gateway did not answer in time', zh: '后端服务响应超时' },
  WG_WECOM_UNREACHABLE: { status: 502, en: 'WeCom cannot be reached from this gateway', zh: '网关无法连接企业微信接口' },
  WG_WECOM_TIMEOUT: { status: 504, en: 'WeCom did not answer in time', zh: '企业微信接口响应超时' },
  WG_WECOM_BAD_RESPONSE: { status: 502, en: 'WeCom sent an invalid or oversized response', zh: '企业微信接口返回了无效或过大的响应' },
  WG_WECOM_CREDENTIALS: {
    status: 502,
    en: 'WeCom rejected the app credentials configured in this gateway',
    zh: '企业微信拒绝了网关配置的应用凭证',
  },
  WG_WECOM_IP_NOT_ALLOWED: {
    status: 502,
    en: "WeCom refused this gateway's IP address (60020)",
    zh: '企业微信拒绝了网关的出口 IP（60020）',
  },
  WG_WECOM_NOT_READY: { status: 503, en: 'The WeCom app is not authorised yet', zh: '企业微信应用尚未完成授权' },
  WG_WECOM_ERROR: { status: 502, en: 'WeCom answered with an error', zh: '企业微信接口返回错误' },
  WG_CALLBACK_BAD_SIGNATURE: {
    status: 403,
    en: 'The callback signature (msg_signature) is not valid',
    zh: '回调签名（msg_signature）校验失败',
  },
  WG_CALLBACK_BAD_ENCODING: { status: 400, en: 'The callback ciphertext is not valid base64', zh: '回调密文不是合法的 Base64' },
  WG_CALLBACK_BAD_LENGTH: {
    status: 400,
    en: 'The callback ciphertext or message length is out of bounds',
    zh: '回调密文或消息长度超出范围',
  },
  WG_CALLBACK_BAD_PADDING: {
    status: 400,
    en: 'The callback ciphertext does not decrypt to valid padding (wrong EncodingAESKey?)',
    zh: '回调密文解密后填充无效（EncodingAESKey 是否正确？）',
  },
  WG_CALLBACK_BAD_RECEIVE_ID: {
    status: 403,
    en: 'The callback is addressed to a receiveid not configured for this callback URL',
    zh: '回调的 receiveid 不在此回调地址配置的范围内',
  },
  WG_STORE_UNAVAILABLE: {
    status: 503,
    en: 'The state store cannot be written (disk full or read-only?)',
    zh: '状态存储无法写入（磁盘已满或只读？）',
  },
  WG_RELAY_UNAUTHORIZED: { status: 401, en: 'A valid relay token is required', zh: '需要有效的中继令牌' },
  WG_RELAY_FORBIDDEN_API: {
    status: 403,
    en: 'This WeCom API is not allowed for this relay client',
    zh: '此中继客户端无权调用该企业微信接口',
  },
  WG_RELAY_FORBIDDEN_SOURCE: {
    status: 403,
    en: 'This source address is not allowed for this relay client',
    zh: '此来源地址不允许使用该中继客户端',
  },
  WG_RELAY_RATE_LIMITED: { status: 429, en: 'Too many relay requests, slow down', zh: '中继请求过于频繁，请稍后重试' },
  WG_METHOD_NOT_ALLOWED: { status: 405, en: 'Method not allowed here', zh: '此处不允许该请求方法' },
  WG_PROXY_AUTH_REQUIRED: { status: 407, en: 'Proxy authentication required', zh: '需要代理认证' },
  WG_TUNNEL_FORBIDDEN_TARGET: {
    status: 403,
    en: 'Only the WeCom API host can be reached through this tunnel',
    zh: '此隧道只能连接企业微信接口域名',
  },
  WG_CALLBACK_BAD_PAYLOAD: {
    status: 400,
    en: 'The callback request is malformed (query, XML or a missing field)',
    zh: '回调请求格式错误（查询参数、XML 或缺少字段）',
  },
  WG_CALLBACK_STALE: {
    status: 403,
    en: 'The callback timestamp is outside the accepted window',
    zh: '回调时间戳超出允许的时间窗口',
  },
  WG_CALLBACK_METHOD: { status: 405, en: 'A callback URL accepts only GET and POST', zh: '回调地址只接受 GET 和 POST 请求' },
  WG_CALLBACK_NOT_DELIVERED: {
    status: 503,
    en: 'The callback could not be handed to the service behind this gateway; WeCom will retry',
    zh: '回调未能交付给后端服务，企业微信将会重试',
  },
  WG_SHUTTING_DOWN: { status: 503, en: 'The gateway is restarting, please retry', zh: '网关正在重启，请稍后重试' },
  WG_TOO_MANY_CONNECTIONS: { status: 503, en: 'Too many connections, please retry later', zh: '连接数过多，请稍后重试' },
  WG_INTERNAL: { status: 500, en: 'Internal gateway error', zh: '网关内部错误' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** An error that maps to a client response. `cause` is logged, never sent. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ?? ERRORS[code].en, options);
    this.name = 'GatewayError';
    this.code = code;
    this.status = ERRORS[code].status;
  }
}

/** Exit code for a bad configuration (sysexits EX_CONFIG); systemd's RestartPreventExitStatus uses it. */
export const EXIT_CONFIG = 78;
