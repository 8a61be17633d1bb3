/**
 * One HTTP exchange with WeCom through an injected undici dispatcher: a deadline covering connect +
 * answer (undici's own defaults are 300 s), a size cap read as the body streams in, and JSON parsed
 * without letting `__proto__` / `constructor` keys through. Errors carry no URL (it holds the token).
 */
import type { Dispatcher } from 'undici';
import { explainEgressError } from '../../egress/index.ts';
// undici's request() alone, not its index (fetch, WebSocket, caches, mocks: ~2.3 MB heap, ~4 MB RSS): see egress/undici.ts.
import { undici } from '../../egress/undici.ts';

export interface ExchangeOptions {
  readonly dispatcher: Dispatcher;
  readonly method: 'GET' | 'POST';
  /** JSON text for POST. */
  readonly body?: string;
  readonly connectMs: number;
  readonly responseMs: number;
  readonly maxBytes: number;
}

export type ExchangeFailure = 'timeout' | 'unreachable' | 'bad_response' | 'too_large';

/** A transport-level failure; `reason` is safe to show (no URL, no body). */
export class ExchangeError extends Error {
  readonly failure: ExchangeFailure;
  constructor(failure: ExchangeFailure, reason: string, options?: { cause?: unknown }) {
    super(reason, options);
    this.name = 'ExchangeError';
    this.failure = failure;
  }
}

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Keys JSON.parse would create as own properties that later code could mistake for the prototype. */
const reviver = (key: string, value: unknown): unknown =>
  key === '__proto__' || key === 'constructor' || key === 'prototype' ? undefined : value;

/** Parse a WeCom answer: a JSON object or an ExchangeError. */
export function parseJsonObject(text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text, reviver);
  } catch {
    throw new ExchangeError('bad_response', `WeCom answered something that is not JSON (${text.length} bytes)`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ExchangeError('bad_response', 'WeCom answered JSON that is not an object');
  }
  return parsed as Record<string, unknown>;
}

/**
 * WeCom's errcode of a parsed answer, read one way for the client and the relay: absent means
 * success (get_suite_token / get_corp_token send it only on failure), a whole number or its decimal
 * string ("60020") is that code, anything else (1.5, "x", true, a 10-digit string) is undefined: an
 * answer that would read as success or as nonsense, refused as bad_response.
 */
export function answerErrcode(json: Readonly<Record<string, unknown>>): number | undefined {
  const e = json['errcode'];
  if (e === undefined) return 0;
  if (typeof e === 'number') return Number.isSafeInteger(e) ? e : undefined;
  return typeof e === 'string' && /^-?\d{1,9}$/.test(e) ? Number(e) : undefined;
}

/** GET/POST `url`; resolves with the parsed JSON object of a 200 answer. */
export async function exchange(url: URL, opts: ExchangeOptions): Promise<Record<string, unknown>> {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), opts.connectMs + opts.responseMs);
  try {
    let res: Dispatcher.ResponseData;
    try {
      res = await undici().request.call(opts.dispatcher, {
        origin: url.origin,
        path: `${url.pathname}${url.search}`,
        method: opts.method,
        headers:
          opts.body !== undefined
            ? { 'content-type': 'application/json; charset=utf-8', accept: 'application/json' }
            : { accept: 'application/json' },
        ...(opts.body !== undefined ? { body: opts.body } : {}),
        headersTimeout: opts.responseMs,
        bodyTimeout: opts.responseMs,
        signal: deadline.signal,
      });
    } catch (e) {
      throw transportError(e, deadline.signal.aborted, opts);
    }
    const declared = Number(res.headers['content-length']);
    if (Number.isFinite(declared) && declared > opts.maxBytes) {
      res.body.destroy();
      throw new ExchangeError('too_large', `WeCom's answer is ${declared} bytes, more than the ${opts.maxBytes}-byte cap`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length;
        if (size > opts.maxBytes) {
          res.body.destroy();
          throw new ExchangeError('too_large', `WeCom's answer exceeded the ${opts.maxBytes}-byte cap; aborted`);
        }
        chunks.push(chunk as Buffer);
      }
    } catch (e) {
      if (e instanceof ExchangeError) throw e;
      throw transportError(e, deadline.signal.aborted, opts);
    }
    if (res.statusCode !== 200) {
      throw new ExchangeError('bad_response', `WeCom answered HTTP ${res.statusCode}`);
    }
    return parseJsonObject(Buffer.concat(chunks, size).toString('utf8'));
  } finally {
    clearTimeout(timer);
  }
}

function transportError(e: unknown, aborted: boolean, opts: ExchangeOptions): ExchangeError {
  const code = (e as { code?: unknown }).code;
  if (aborted || (typeof code === 'string' && TIMEOUT_CODES.has(code))) {
    return new ExchangeError('timeout', `WeCom did not answer within ${opts.connectMs + opts.responseMs} ms`, { cause: e });
  }
  return new ExchangeError('unreachable', `WeCom could not be reached (${unreachableReason(e, code)})`, { cause: e });
}

/**
 * Why WeCom could not be reached, safe to show: a forward proxy's refusal of the tunnel (a wrong
 * proxy password → "proxy authentication failed, check proxy.credentials_file (代理认证失败 …)"),
 * explained by src/egress; else the error code. Never the URL (it holds the token) or the password.
 */
export function unreachableReason(e: unknown, code: unknown = (e as { code?: unknown } | null)?.code): string {
  const explained = explainEgressError(e);
  if (e instanceof Error && explained !== e.message) return explained;
  return typeof code === 'string' ? code : 'connection failed';
}
