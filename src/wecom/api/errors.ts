/**
 * The one error type the WeCom API client throws. It is a GatewayError (code, status, bilingual
 * table entry), so a relay or login handler can answer with it directly; it carries what WeCom said
 * (errcode, hint, the IP it saw), the diagnosis and the console step — never a secret or a token.
 */
import { type ErrorCode, GatewayError } from '../../core/errors.ts';
import type { CredentialAdvice, IpDiagnosis } from './diagnose.ts';

/**
 * - wecom: WeCom answered an errcode;
 * - credentials: WeCom rejected the configured secret / corp id / ticket (held off, not retried);
 * - ip: 60020 / 48009, with a diagnosis;
 * - timeout, unreachable, bad_response (non-JSON, HTTP status ≠ 200), too_large: transport;
 * - not_ready: no suite_ticket / permanent code yet; config: an unknown app or API path.
 */
export type WecomErrorKind =
  'wecom' | 'credentials' | 'ip' | 'timeout' | 'unreachable' | 'bad_response' | 'too_large' | 'not_ready' | 'config';

export interface WecomErrorInit {
  readonly kind: WecomErrorKind;
  readonly app: string;
  readonly api: string;
  readonly errcode?: number;
  readonly hint?: string;
  readonly fromIp?: string;
  readonly diagnosis?: IpDiagnosis;
  readonly advice?: CredentialAdvice;
  /** WeCom's parsed answer for an errcode (holds errcode/errmsg; no secrets). */
  readonly response?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

const CODES: Record<WecomErrorKind, ErrorCode> = {
  wecom: 'WG_WECOM_ERROR',
  credentials: 'WG_WECOM_CREDENTIALS',
  ip: 'WG_WECOM_IP_NOT_ALLOWED',
  timeout: 'WG_WECOM_TIMEOUT',
  unreachable: 'WG_WECOM_UNREACHABLE',
  bad_response: 'WG_WECOM_BAD_RESPONSE',
  too_large: 'WG_WECOM_BAD_RESPONSE',
  not_ready: 'WG_WECOM_NOT_READY',
  config: 'WG_WECOM_ERROR',
};

export class WecomApiError extends GatewayError {
  readonly kind: WecomErrorKind;
  readonly app: string;
  readonly api: string;
  readonly errcode: number | undefined;
  readonly hint: string | undefined;
  readonly fromIp: string | undefined;
  readonly diagnosis: IpDiagnosis | undefined;
  readonly advice: CredentialAdvice | undefined;
  readonly response: Readonly<Record<string, unknown>> | undefined;

  constructor(message: string, init: WecomErrorInit) {
    super(CODES[init.kind], message, init.cause !== undefined ? { cause: init.cause } : undefined);
    this.name = 'WecomApiError';
    this.kind = init.kind;
    this.app = init.app;
    this.api = init.api;
    this.errcode = init.errcode;
    this.hint = init.hint;
    this.fromIp = init.fromIp;
    this.diagnosis = init.diagnosis;
    this.advice = init.advice;
    this.response = init.response;
  }
}
