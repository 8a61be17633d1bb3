/**
 * Logger factory. pino JSON to an injected destination (tests pass a stream and assert on it).
 * Secrets are redacted twice over: structured keys by pino's compiled redact paths, and secret query
 * parameters / key=value pairs inside any URL or message string by `redactText`.
 * Also the two hot-path pieces: a pre-built writer for the flat access-log line (`createAccessLog`)
 * and a batching fd destination (`createLogDestination`).
 */
import { writeSync as fsWriteSync, writev as fsWritev } from 'node:fs';
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
  'state',
  'key',
  'ticket',
  'suite_ticket',
] as const;

const CENSOR = '[REDACTED]';

/** Beyond the exact names: any name with one of these inside (client_secret, appsecret, csrf_token, passwd, api_key …). */
const SECRET_NAME_PART = /secret|token|passw|ticket|credential|aes_?key|api_?key|access_?key|private_?key/;
const SECRET_NAMES: ReadonlySet<string> = new Set(SECRET_PARAM_NAMES);
// Cheap pre-test: text without any of these cannot hold a secret name (plain or %-encoded), so it skips the regexes.
// %4x..%7x: an encoded letter ("corp%73ecret"); %3D: an encoded "=".
const SECRET_HINT = /secret|token|passw|ticket|credential|key|code|state|echostr|%[3-7][0-9A-Fa-f]/i;

/**
 * Is a parameter / field name a secret's? Decoded first (%XX, ASCII: enough to read a name), case
 * folded, and each part of a form encoder's "a[b]" / "a.b" tested: "corp%73ecret", "corpsecret[]",
 * "data[client_secret]" are all secret names; "codec", "monkey", "errcode" are not.
 */
export function isSecretName(raw: string): boolean {
  if (!/[%[.]/.test(raw)) {
    const lower = raw.toLowerCase();
    return SECRET_NAMES.has(lower) || SECRET_NAME_PART.test(lower);
  }
  const name = (
    raw.includes('%') ? raw.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(Number.parseInt(h, 16))) : raw
  ).toLowerCase();
  for (const part of name.split(/[[\].]/)) {
    if (part !== '' && (SECRET_NAMES.has(part) || SECRET_NAME_PART.test(part))) return true;
  }
  return false;
}

// name=value (or name%3Dvalue) in query strings, form bodies, paths and log text; spaces after "=" are
// skipped (`corpsecret= S` still hides S); the value stops at & # space " ' ; ,
const PAIR_RE = /(^|[?&;/\s"'])((?:[^=&#?\s"';,/%]|%(?!3[Dd])[0-9A-Fa-f]{2})+)(=|%3[Dd])([ \t]*[^&#\s"';,]*)/g;
// "name":"value" inside JSON text
const JSON_RE = /("([^"\\]{1,128})"\s*:\s*)"(?:[^"\\]|\\.)*"/g;

const censorPair = (m: string, lead: string, name: string, sep: string): string =>
  isSecretName(name) ? `${lead}${name}${sep}${CENSOR}` : m;
const censorJson = (m: string, head: string, name: string): string => (isSecretName(name) ? `${head}"${CENSOR}"` : m);

/** Replace secret values inside free text (URLs, query strings, JSON snippets). */
export function redactText(text: string): string {
  // Each pattern needs its '=' (or %3D) or '"', and a hint of a secret name: most text (every plain
  // path, most queries) skips both regexes. Measured by hand (Node 24, 1e6 calls each, before → after
  // this rule): "/api/v1/user/list" 0.011 → 0.019 µs, "?page=1&size=20" 0.115 → 0.038 µs, a CJK
  // query 0.12 → 0.07 µs, "?corpid=…&corpsecret=…" or an OAuth "?code=…&state=…" 0.2 → 0.65 µs (rare:
  // once per login), against ≈ 105 µs of proxying per request.
  let out = text;
  const pair = out.includes('=') || out.includes('%3');
  const json = out.includes('"');
  if ((!pair && !json) || !SECRET_HINT.test(out)) return out;
  if (pair) out = out.replace(PAIR_RE, censorPair);
  if (json) out = out.replace(JSON_RE, censorJson);
  return out;
}

// scheme://user:password@ — the userinfo of a URL anywhere in the text, up to the LAST "@" of the
// authority, as the URL parser reads it ("http://u:p@ss@h" has the password "p@ss").
const USERINFO_RE = /\b([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/?#\s"']*@/g;

/**
 * `redactText` plus the userinfo of any URL in the text: for values shown off the hot path (config
 * problems, `wegate check`, reload errors). The access log needs only `redactText` (its URL is a path).
 */
export function redactValue(text: string): string {
  const out = redactText(text);
  return out.includes('@') ? out.replace(USERINFO_RE, '$1[REDACTED]@') : out;
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

/**
 * Errors as log fields: type, the error's code, message (redacted); stack only for non-operational
 * errors. The code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, CERT_HAS_EXPIRED …) is logged as
 * `error_code`: a field named `code` is redacted wherever it appears (an OAuth code is a secret),
 * which turned every error's code into "[REDACTED]".
 */
export function serializeError(e: unknown): Record<string, unknown> {
  if (!(e instanceof Error)) return { message: redactText(String(e)) };
  const out: Record<string, unknown> = { type: e.name, message: redactText(e.message) };
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') out.error_code = typeof code === 'string' ? redactText(code) : code;
  if (e.cause !== undefined) out.cause = serializeError(e.cause);
  if (e.stack && !isOperational(e, code)) out.stack = redactText(e.stack);
  return out;
}

/**
 * An error that reports the world, not a bug: the code says what happened and a stack only adds
 * noise to the admin's log. Our own errors carry an HTTP status; undici's codes start with
 * `UND_ERR_`; system errors (ECONNREFUSED, ETIMEDOUT …) carry the failed syscall; OpenSSL reports
 * `ERR_SSL_…`, Node's TLS layer `ERR_TLS_…`, certificate checks a bare reason (CERT_HAS_EXPIRED).
 * Node's other `ERR_…` codes (ERR_INVALID_ARG_TYPE …) are programming errors and keep their stack,
 * as does anything without a code.
 */
function isOperational(e: Error, code: unknown): boolean {
  if ('status' in e || typeof (e as { syscall?: unknown }).syscall === 'string') return true;
  if (typeof code !== 'string') return false;
  return !code.startsWith('ERR_') || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_');
}

/** The fields of one access-log line. A fixed, flat shape: no headers, so no Cookie or Authorization. */
export interface AccessLine {
  readonly req_id: string;
  readonly method: string;
  /** Omitted when empty (the Host was missing or invalid). */
  readonly host: string;
  /** Path and query as received; secret query parameters are redacted by the writer. */
  readonly url: string;
  readonly status: number;
  readonly route: string;
  readonly upstream: string | undefined;
  /** Duration in whole microseconds; written as milliseconds with three decimals (`"ms":1.234`). */
  readonly us: number;
  readonly bytes: number;
  readonly client_ip: string;
  readonly error_code: string | undefined;
  /** false when the response did not finish (logged as "completed":false; omitted when true). */
  readonly completed: boolean;
}

// Strings that JSON.stringify would change: quote, backslash, control characters, lone surrogates.
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;

function jsonString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : `"${s}"`;
}

const FRACTION = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));

/** Integer microseconds as a JSON number of milliseconds, by integer arithmetic (a double's String() is slow). */
function msFromUs(us: number): string {
  if (!Number.isSafeInteger(us) || us < 0) return jsonNumber(us / 1000);
  return `${Math.floor(us / 1000)}.${FRACTION[us % 1000] as string}`;
}

function jsonNumber(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/** The access-log writer of one pipeline (see createAccessLog). */
export interface AccessLog {
  /** Log one request. Lines logged in one turn of the event loop are formatted and written together at its end. */
  write(line: AccessLine): void;
  /** Format and write what is queued now (shutdown, tests). */
  flush(): void;
}

/** Queued lines beyond this many are formatted at once, without waiting for the end of the turn. */
const ACCESS_QUEUE_MAX = 256;

const ASCII = (text: string): Uint8Array => Uint8Array.from(text, (ch) => ch.charCodeAt(0));

/**
 * Copy `s` into `buf` at `at` when it is printable ASCII that JSON leaves as it is (no quote,
 * backslash, control character or DEL); -1 otherwise. `buf` has room (the caller reserved it).
 */
function putPlain(buf: Buffer, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return -1;
    buf[at++] = c;
  }
  return at;
}

function putBytes(buf: Buffer, at: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) buf[at++] = bytes[i] as number;
  return at;
}

/** Digits of a non-negative safe integer (what String(n) gives), or -1 for anything else. */
function putUint(buf: Buffer, at: number, n: number): number {
  if (!Number.isSafeInteger(n) || n < 0) return -1;
  let end = at + 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) end++;
  let x = n;
  for (let p = end - 1; p >= at; p--) {
    buf[p] = 0x30 + (x % 10);
    x = Math.floor(x / 10);
  }
  return end;
}

/**
 * A writer for access-log lines on `logger` (one made by createLogger): the same JSON line pino would
 * write (level label, ISO time, the logger's bindings, `"log":"access"`) built directly from the
 * fixed fields and written to the logger's own destination, honouring its current level. This skips
 * pino's generic path (hooks, serializers, compiled redaction) that a per-request line cannot afford;
 * the only free text, the URL, goes through `redactText`.
 *
 * Lines are queued and formatted in one go at the end of the event-loop turn (setImmediate): one
 * tight loop over the turn's lines instead of formatting between the requests' other work measured
 * 1.4 µs less CPU per request under load. The queue holds the caller's objects for that one turn only,
 * so they still die young.
 *
 * On a destination made by createLogDestination a line whose text needs no JSON escaping (every
 * ordinary request) is encoded byte by byte straight into the destination's buffer; building it as a
 * string first allocated about 1 KB per request and cost about 0.7 µs more. Any other line (quotes,
 * control characters, non-ASCII, odd numbers) and any other destination get the string, with the
 * same bytes.
 */
export function createAccessLog(logger: Logger): AccessLog {
  const internals = logger as unknown as Record<symbol, unknown>;
  const stream = internals[pino.symbols.streamSym] as DestinationStream;
  const direct = typeof (stream as Partial<LogDestination>).writeEncoded === 'function' ? (stream as LogDestination) : undefined;
  // The bindings exactly as pino serialised them, e.g. `,"service":"wegate"`.
  const bindings = `${(internals[pino.symbols.chindingsSym] as string | undefined) ?? ''},"log":"access"`;
  let lastMs = -1;
  let lastTime = '';
  // `,"route":…,"upstream":…` per (route, upstream): both come from the config, so few distinct pairs.
  // Two levels of maps, so a lookup allocates no key string. The UTF-8 bytes ride along for `direct`.
  const routeParts = new Map<string, Map<string | undefined, { text: string; bytes: Uint8Array }>>();
  const routePart = (route: string, upstream: string | undefined): { text: string; bytes: Uint8Array } => {
    let byUpstream = routeParts.get(route);
    if (byUpstream === undefined) {
      // Bounded all the same: a caller could pass anything.
      if (routeParts.size >= 1024) routeParts.clear();
      byUpstream = new Map();
      routeParts.set(route, byUpstream);
    }
    let part = byUpstream.get(upstream);
    if (part === undefined) {
      const text = `,"route":${jsonString(route)}${upstream === undefined ? '' : `,"upstream":${jsonString(upstream)}`}`;
      part = { text, bytes: new Uint8Array(Buffer.from(text, 'utf8')) };
      if (byUpstream.size >= 64) byUpstream.clear();
      byUpstream.set(upstream, part);
    }
    return part;
  };
  const format = (l: AccessLine): string => {
    let line = `{"level":"info","time":"${lastTime}"${bindings},"req_id":${jsonString(l.req_id)},"method":${jsonString(l.method)}`;
    if (l.host !== '') line += `,"host":${jsonString(l.host)}`;
    line += `,"url":${jsonString(redactText(l.url))},"status":${jsonNumber(l.status)}${routePart(l.route, l.upstream).text},"ms":${msFromUs(l.us)},"bytes":${jsonNumber(l.bytes)},"client_ip":${jsonString(l.client_ip)}`;
    if (l.error_code !== undefined) line += `,"error_code":${jsonString(l.error_code)}`;
    if (!l.completed) line += ',"completed":false';
    return `${line}}\n`;
  };

  // The constant parts of a line as bytes, for `direct`.
  const HEAD = ASCII('{"level":"info","time":"');
  const BINDINGS = new Uint8Array(Buffer.from(`"${bindings},"req_id":"`, 'utf8'));
  const METHOD = ASCII('","method":"');
  const HOST = ASCII('","host":"');
  const URL_ = ASCII('","url":"');
  const STATUS = ASCII('","status":');
  const MS = ASCII(',"ms":');
  const BYTES = ASCII(',"bytes":');
  const CLIENT_IP = ASCII(',"client_ip":"');
  const ERROR_CODE = ASCII('","error_code":"');
  const QUOTE = ASCII('"');
  const INCOMPLETE = ASCII(',"completed":false');
  const END = ASCII('}\n');
  // Every constant part, and three numbers of at most 16 digits (plus the ms point and fraction).
  const FIXED =
    HEAD.length +
    BINDINGS.length +
    METHOD.length +
    HOST.length +
    URL_.length +
    STATUS.length +
    MS.length +
    BYTES.length +
    CLIENT_IP.length +
    ERROR_CODE.length +
    QUOTE.length +
    INCOMPLETE.length +
    END.length +
    3 * 16 +
    4;

  // The line being encoded (encode is made once, not a closure per line).
  let line: AccessLine | undefined;
  let url = '';
  let route: Uint8Array = new Uint8Array(0);
  const encode = (buf: Buffer, start: number): number => {
    const l = line as AccessLine;
    let at = putBytes(buf, start, HEAD);
    if ((at = putPlain(buf, at, lastTime)) < 0) return -1;
    at = putBytes(buf, at, BINDINGS);
    if ((at = putPlain(buf, at, l.req_id)) < 0) return -1;
    at = putBytes(buf, at, METHOD);
    if ((at = putPlain(buf, at, l.method)) < 0) return -1;
    if (l.host !== '') {
      at = putBytes(buf, at, HOST);
      if ((at = putPlain(buf, at, l.host)) < 0) return -1;
    }
    at = putBytes(buf, at, URL_);
    if ((at = putPlain(buf, at, url)) < 0) return -1;
    at = putBytes(buf, at, STATUS);
    if ((at = putUint(buf, at, l.status)) < 0) return -1;
    at = putBytes(buf, at, route);
    at = putBytes(buf, at, MS);
    const us = l.us;
    if ((at = putUint(buf, at, Number.isSafeInteger(us) ? Math.floor(us / 1000) : -1)) < 0) return -1;
    buf[at++] = 0x2e;
    at = putPlain(buf, at, FRACTION[us % 1000] as string);
    at = putBytes(buf, at, BYTES);
    if ((at = putUint(buf, at, l.bytes)) < 0) return -1;
    at = putBytes(buf, at, CLIENT_IP);
    if ((at = putPlain(buf, at, l.client_ip)) < 0) return -1;
    if (l.error_code !== undefined) {
      at = putBytes(buf, at, ERROR_CODE);
      if ((at = putPlain(buf, at, l.error_code)) < 0) return -1;
    }
    at = putBytes(buf, at, QUOTE);
    if (!l.completed) at = putBytes(buf, at, INCOMPLETE);
    return putBytes(buf, at, END);
  };
  const writeLine = (l: AccessLine): void => {
    if (direct !== undefined) {
      line = l;
      url = redactText(l.url);
      route = routePart(l.route, l.upstream).bytes;
      const max =
        FIXED +
        lastTime.length +
        l.req_id.length +
        l.method.length +
        l.host.length +
        url.length +
        route.length +
        l.client_ip.length +
        (l.error_code?.length ?? 0);
      const r = direct.writeEncoded(max, encode);
      line = undefined;
      if (r !== 'declined') return;
    }
    stream.write(format(l));
  };

  const queue: AccessLine[] = [];
  let scheduled: NodeJS.Immediate | undefined;
  const flush = () => {
    if (scheduled !== undefined) clearImmediate(scheduled);
    scheduled = undefined;
    if (queue.length === 0) return;
    const now = Date.now();
    if (now !== lastMs) {
      lastMs = now;
      lastTime = new Date(now).toISOString();
    }
    // Index loop, then truncate: the same array is reused every turn.
    for (let i = 0; i < queue.length; i++) writeLine(queue[i] as AccessLine);
    queue.length = 0;
  };
  return {
    write(l: AccessLine): void {
      if (!logger.isLevelEnabled('info')) return;
      if (queue.push(l) === 1) scheduled = setImmediate(flush);
      else if (queue.length >= ACCESS_QUEUE_MAX) flush();
    },
    flush,
  };
}

/** What `LogDestination.writeEncoded` did with a line. */
export type EncodedWrite = 'written' | 'dropped' | 'declined';

export interface LogDestination extends DestinationStream {
  write(line: string): boolean;
  /**
   * Encode one line straight into the buffer being filled, without building it as a string first:
   * `encode(buf, at)` writes at most `maxBytes` bytes from offset `at` and returns the end offset,
   * or -1 to decline (nothing it wrote is kept; the caller then writes the line as a string).
   * 'dropped' when the line is over the buffer limit or logging has stopped, as `write` would.
   */
  writeEncoded(maxBytes: number, encode: (buf: Buffer, at: number) => number): EncodedWrite;
  /** Write what is buffered now; `cb` runs once it reached the descriptor (or the descriptor failed). */
  flush(cb?: (err?: Error) => void): void;
  /** Write what is buffered synchronously (at process exit). */
  flushSync(): void;
  /** Lines dropped so far because the reader could not keep up. */
  readonly dropped: number;
}

export interface LogDestinationOptions {
  /** Usually 1 (stdout): a file, a pipe (Docker) or journald's socket (systemd). */
  readonly fd: number;
  /** Under load, at most one write per this many milliseconds (default 50); a lone line goes out at once. */
  readonly intervalMs?: number;
  /** Write without waiting for the interval once this many bytes are buffered (default 64 KiB); also the size of one buffer. */
  readonly batchBytes?: number;
  /** Drop (and count) lines beyond this many buffered bytes: a stuck reader must not eat the memory (default 8 MiB). */
  readonly maxBufferedBytes?: number;
}

/**
 * A pino destination for a file descriptor. Lines are buffered and written together, at most one
 * asynchronous write in flight (the libuv thread pool, so a slow pipe never blocks the event loop),
 * and under load at most one write per `intervalMs`: a write costs a syscall and a thread hand-off,
 * which per line was the largest part of the access log's cost. EAGAIN (a non-blocking pipe that is
 * full) is retried; any other error (EPIPE: the reader is gone) stops logging instead of throwing.
 * Lines that would exceed `maxBufferedBytes` are dropped and a warning line with the count is written
 * in their place. The caller calls `flushSync()` on process exit.
 *
 * Each line is encoded into a reused `batchBytes` buffer as it arrives, not kept as a string until
 * the batch is written: a string held that long (up to `intervalMs`) outlives two young-generation
 * collections and is copied into the old generation, which under load made the old generation grow
 * by megabytes a second and a full collection necessary to get them back.
 */
export function createLogDestination({
  fd,
  intervalMs = 50,
  batchBytes = 64 * 1024,
  maxBufferedBytes = 8 * 1024 * 1024,
}: LogDestinationOptions): LogDestination {
  /** Filled buffers waiting for their write, in order (each exactly its bytes). */
  let chunks: Buffer[] = [];
  /** The buffer being filled, and how many of its bytes are used. */
  let cur: Buffer | null = null;
  let curLen = 0;
  /** Bytes buffered and not yet handed to write(). */
  let buffered = 0;
  /** Buffers handed to writev() and not yet acknowledged. */
  let inflight: Buffer[] | null = null;
  /** A writev() call is in progress in the thread pool (not merely waiting to retry EAGAIN). */
  let writing = false;
  /** Written `batchBytes` buffers, kept for reuse (at most two: one filling while one is written). */
  const spare: Buffer[] = [];
  /**
   * The memory of the buffers this destination allocated itself: only those may be reused. A size
   * check is not enough: Buffer.from() of a short string hands out a slice of Node's shared pool,
   * whose slab has the same 64 KiB size, and writing into it would overwrite other Buffers.
   */
  const own = new WeakSet<ArrayBufferLike>();
  let lastWriteAt = 0;
  let timer: NodeJS.Timeout | undefined;
  let retry: NodeJS.Timeout | undefined;
  let immediate: NodeJS.Immediate | undefined;
  let broken = false;
  let dropped = 0;
  let droppedUnreported = 0;
  let waiters: ((err?: Error) => void)[] = [];

  const settle = (err?: Error) => {
    const w = waiters;
    waiters = [];
    for (const cb of w) cb(err);
  };
  const cancelTimers = () => {
    clearTimeout(timer);
    timer = undefined;
    clearTimeout(retry);
    retry = undefined;
    if (immediate !== undefined) clearImmediate(immediate);
    immediate = undefined;
  };
  /** Everything buffered (the current buffer sealed), taken out of the buffer. */
  const takeBuffered = (): Buffer[] => {
    if (cur !== null && curLen > 0) {
      chunks.push(cur.subarray(0, curLen));
      cur = null;
      curLen = 0;
    }
    const out = chunks;
    chunks = [];
    buffered = 0;
    return out;
  };
  const fail = (err: Error) => {
    // The reader is gone (EPIPE) or the descriptor is unusable: stop logging rather than crash or grow.
    broken = true;
    inflight = null;
    takeBuffered();
    cancelTimers();
    settle(err);
  };
  const allocate = (): Buffer => {
    const b = Buffer.allocUnsafeSlow(batchBytes);
    own.add(b.buffer);
    return b;
  };
  const append = (line: string) => {
    // A UTF-16 code unit never needs more than 3 bytes of UTF-8 (a surrogate pair: 4 for 2 units).
    const worst = line.length * 3;
    if (cur === null || curLen + worst > cur.length) {
      if (cur !== null && curLen > 0) chunks.push(cur.subarray(0, curLen));
      cur = null;
      curLen = 0;
      if (worst > batchBytes) {
        // A line longer than a whole buffer gets its own (never reused).
        const single = Buffer.from(line, 'utf8');
        chunks.push(single);
        buffered += single.length;
        return;
      }
      cur = spare.pop() ?? allocate();
    }
    const n = cur.write(line, curLen, 'utf8');
    curLen += n;
    buffered += n;
  };

  const onWritten = (err: NodeJS.ErrnoException | null, n: number) => {
    writing = false;
    if (inflight === null) return;
    if (err) {
      if (err.code === 'EAGAIN') {
        // A full non-blocking pipe: try the same bytes again shortly; new lines keep buffering meanwhile.
        retry = setTimeout(writeInflight, 10);
        return;
      }
      fail(err);
      return;
    }
    // Drop what was written from the front; a short write leaves the rest in flight.
    let i = 0;
    while (i < inflight.length && n >= (inflight[i] as Buffer).length) {
      const done = inflight[i] as Buffer;
      n -= done.length;
      if (own.has(done.buffer) && spare.length < 2) spare.push(Buffer.from(done.buffer, 0, batchBytes));
      i++;
    }
    if (i < inflight.length) {
      inflight = inflight.slice(i);
      inflight[0] = (inflight[0] as Buffer).subarray(n);
      writeInflight();
      return;
    }
    inflight = null;
    if (buffered > 0) schedule();
    else settle();
  };

  function writeInflight(): void {
    retry = undefined;
    if (inflight === null || writing) return;
    writing = true;
    fsWritev(fd, inflight, null, onWritten);
  }

  const start = () => {
    clearTimeout(timer);
    timer = undefined;
    immediate = undefined;
    if (inflight !== null || buffered === 0) return;
    inflight = takeBuffered();
    lastWriteAt = Date.now();
    writeInflight();
  };

  function schedule(): void {
    if (inflight !== null || immediate !== undefined) return;
    const wait = waiters.length > 0 || buffered >= batchBytes ? 0 : lastWriteAt + intervalMs - Date.now();
    if (wait <= 0) {
      clearTimeout(timer);
      timer = undefined;
      immediate = setImmediate(start);
    } else if (timer === undefined) {
      timer = setTimeout(start, wait);
      // An idle process may exit: the exit handler's flushSync() writes what is left.
      timer.unref();
    }
  }

  /** May a line of about `bytes` bytes be buffered? Counts the drop if not; reports earlier drops first. */
  const admit = (bytes: number): boolean => {
    if (broken) return false;
    if (buffered + bytes > maxBufferedBytes) {
      dropped++;
      droppedUnreported++;
      return false;
    }
    if (droppedUnreported > 0) {
      // Where the gap is, say so: the reader was too slow for this many lines.
      append(
        `{"level":"warn","time":"${new Date().toISOString()}","msg":"log output could not keep up; lines dropped","dropped":${droppedUnreported}}\n`,
      );
      droppedUnreported = 0;
    }
    return true;
  };

  return {
    write(line: string): boolean {
      // line.length: the exact byte count for ASCII, a lower bound otherwise; cheap and close enough for a limit.
      if (!admit(line.length)) return false;
      append(line);
      schedule();
      return true;
    },
    writeEncoded(maxBytes: number, encode: (buf: Buffer, at: number) => number): EncodedWrite {
      if (maxBytes > batchBytes) return 'declined';
      if (!admit(maxBytes)) return 'dropped';
      if (cur === null || curLen + maxBytes > cur.length) {
        if (cur !== null && curLen > 0) chunks.push(cur.subarray(0, curLen));
        cur = spare.pop() ?? allocate();
        curLen = 0;
      }
      const end = encode(cur, curLen);
      // -1 declines; an end past the promised room would mean truncated bytes: decline that too.
      if (end < curLen || end > curLen + maxBytes) return 'declined';
      buffered += end - curLen;
      curLen = end;
      schedule();
      return 'written';
    },
    flush(cb?: (err?: Error) => void): void {
      if (broken || (inflight === null && buffered === 0)) {
        if (cb) process.nextTick(cb);
        return;
      }
      if (cb) waiters.push(cb);
      if (inflight === null) {
        cancelTimers();
        start();
      }
    },
    flushSync(): void {
      cancelTimers();
      if (broken) return;
      // Bytes waiting for an EAGAIN retry go first; bytes already inside a writev() call will land on their own.
      const pending = [...(inflight !== null && !writing ? inflight : []), ...takeBuffered()];
      if (!writing) inflight = null;
      const deadline = Date.now() + 2000;
      for (let buf of pending) {
        while (buf.length > 0) {
          try {
            buf = buf.subarray(fsWriteSync(fd, buf));
          } catch (e) {
            // A full non-blocking pipe: wait a little (bounded); anything else: give up quietly.
            if ((e as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() > deadline) return;
            Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
          }
        }
      }
    },
    get dropped() {
      return dropped;
    },
  };
}
