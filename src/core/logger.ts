/**
 * Logger factory. pino JSON to an injected destination (tests pass a stream and assert on it).
 * Secrets are redacted twice over: structured keys by pino's compiled redact paths, and secret query
 * parameters / key=value pairs inside any URL or message string by `redactText`.
 */
import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';

export type { Logger };

/** Query parameter / field names whose values are secrets (WeCom and generic). */
export const SECRET_PARAM_NAMES = [
  'access_token',
  'suite_access_token',
  'provider_access_token',
  'code',
  'auth_code',
  'corpsecret',
  'secret',
  'suite_secret',
  'permanent_code',
  'token',
  'encoding_aes_key',
  'encodingaeskey',
  'echostr',
  'password',
] as const;

const CENSOR = '[REDACTED]';

// name=value in query strings, form bodies and log text; case-insensitive; stops at & # space " ' ; ,
const SECRET_PAIR_RE = new RegExp(`((?:^|[?&;\\s"'])(?:${SECRET_PARAM_NAMES.join('|')})=)[^&#\\s"';,]*`, 'gi');
// "name":"value" inside JSON text
const SECRET_JSON_RE = new RegExp(`("(?:${SECRET_PARAM_NAMES.join('|')})"\\s*:\\s*)"(?:[^"\\\\]|\\\\.)*"`, 'gi');

/** Replace secret values inside free text (URLs, query strings, JSON snippets). */
export function redactText(text: string): string {
  return text.replace(SECRET_PAIR_RE, `$1${CENSOR}`).replace(SECRET_JSON_RE, `$1"${CENSOR}"`);
}

const REDACT_PATHS = [
  ...SECRET_PARAM_NAMES.flatMap((n) => [n, `*.${n}`]),
  'authorization',
  'cookie',
  'set-cookie',
  '*.authorization',
  '*.cookie',
  '*["set-cookie"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["set-cookie"]',
  '*.headers["proxy-authorization"]',
];

export interface LoggerFactoryOptions {
  readonly level?: LoggerOptions['level'];
  /** Where JSON lines go; default stdout (chosen by cli/). */
  readonly destination?: DestinationStream;
  readonly base?: Record<string, unknown>;
}

export function createLogger({ level = 'info', destination, base }: LoggerFactoryOptions = {}): Logger {
  const opts: LoggerOptions = {
    level,
    base: base ?? { service: 'wegate' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    formatters: { level: (label) => ({ level: label }) },
    hooks: {
      // Messages and string fields can carry URLs with secrets in them.
      logMethod(args, method) {
        const redacted = args.map((a) => (typeof a === 'string' ? redactText(a) : a));
        method.apply(this, redacted as Parameters<typeof method>);
      },
    },
    serializers: {
      err: (e: unknown) => serializeError(e),
      url: (u: unknown) => (typeof u === 'string' ? redactText(u) : u),
      path: (u: unknown) => (typeof u === 'string' ? redactText(u) : u),
    },
  };
  return destination ? pino(opts, destination) : pino(opts);
}

/** Errors as log fields: type, code, message (redacted); stack only for non-operational errors. */
export function serializeError(e: unknown): Record<string, unknown> {
  if (!(e instanceof Error)) return { message: redactText(String(e)) };
  const out: Record<string, unknown> = { type: e.name, message: redactText(e.message) };
  const code = (e as { code?: unknown }).code;
  if (code !== undefined) out.code = code;
  if (e.cause !== undefined) out.cause = serializeError(e.cause);
  if (e.stack && !('status' in e)) out.stack = redactText(e.stack);
  return out;
}
