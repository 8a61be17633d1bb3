/**
 * THE fake WeCom (qyapi.weixin.qq.com) every WeCom test grows: an HTTPS server on loopback with the
 * test CA, bound to every address ('::', dual-stack) so callers pinned to 127.0.0.2 / 127.0.0.3 reach
 * it and it sees their real source address.
 *
 * What it does today (later issues add to it with `route()` or new methods):
 * - gettoken for configured corps/secrets (same token while valid, as the real one), 40013 / 40001
 *   for a wrong corp / secret, from any IP (as the real one);
 * - business APIs (get_api_domain_ip, user/get, message/send …) check the token (40014 invalid,
 *   42001 expired) and the caller's address against the app's trusted IPs (60020 with the address);
 * - the third-party / 代开发 template chain: service/get_suite_token, get_corp_token, get_permanent_code
 *   (v1 and v2), v2/get_auth_info;
 * - faults: answer an errcode N times, hang, stream a huge body;
 * - records every request (path, query with secret values masked, body keys, source address, the app
 *   it matched) and counts calls per path.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer as createPlainServer } from 'node:http';
import { createServer, type Server } from 'node:https';
import { type IncomingMessage, request as httpRequest, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import type { Test } from 'tap';
import { aesKey, layout, pad32, rawDecrypt, rawEncrypt } from '../wecom/crypto/helpers.ts';

const TLS = join(import.meta.dirname, '../fixtures/tls');

/** Query / body fields the fake never records the value of. */
const SECRET_FIELDS = new Set([
  'corpsecret',
  'access_token',
  'suite_access_token',
  'provider_access_token',
  'suite_secret',
  'suite_ticket',
  'permanent_code',
  'auth_code',
  'code',
]);

export interface FakeApp {
  /** A name for assertions (which app a request matched). */
  readonly name: string;
  readonly corpId: string;
  /** The corpsecret (for a 代开发 app: its permanent code). */
  readonly secret: string;
  /** Source addresses allowed to call business APIs (企业可信IP); undefined = any. */
  trustedIps?: string[];
  /** expires_in of the tokens issued (default 7200). */
  expiresIn?: number;
}

export interface FakeSuite {
  readonly name: string;
  readonly suiteId: string;
  readonly secret: string;
  /** The suite_ticket currently valid (the fake "pushed" it). */
  ticket: string;
  /** 服务商 IP白名单: source addresses allowed for business APIs called with corp tokens of this suite. */
  trustedIps?: string[];
  expiresIn?: number;
  /** Authorised corps: auth_corpid → permanent_code. */
  readonly corps: Map<string, string>;
  /** Corp names get_auth_info answers (change_auth refreshes them). */
  corpNames?: Map<string, string>;
  /** Pending auth codes (single use): auth_code → corp id and the permanent code to hand out. */
  readonly authCodes: Map<string, { corpId: string; permanentCode: string; corpName?: string }>;
}

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  /** Query parameters; secret values replaced by "***". */
  readonly query: Record<string, string>;
  /** Top-level JSON body keys (values not kept: they may be secrets). */
  readonly bodyKeys: string[];
  /** The caller's source address (::ffff: removed). */
  readonly from: string;
  /** The fake app / suite the credentials matched, if any. */
  app?: string;
}

type Kind = 'corp' | 'suite';
interface Issued {
  readonly kind: Kind;
  readonly owner: string;
  /** For corp tokens: the trusted list to check (the app's, or the suite's IP白名单). */
  readonly trusted: () => string[] | undefined;
  expiresAt: number;
  state: 'valid' | 'invalid';
}

interface Fault {
  readonly errcode?: number;
  readonly hang?: boolean;
  readonly hugeBytes?: number;
  remaining: number;
}

export type Handler = (ctx: {
  req: IncomingMessage;
  res: ServerResponse;
  record: RecordedRequest;
  query: URLSearchParams;
  body: Record<string, unknown>;
  /** The corp token's owner after the token and IP checks passed. */
  app: string;
}) => Record<string, unknown> | void;

/** Normalise an IPv4-mapped IPv6 address (::ffff:127.0.0.2 → 127.0.0.2). */
export const normaliseIp = (ip: string | undefined): string => (ip ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');

export const errmsgTail = (from: string, errcode: number) =>
  `hint: [${String(Date.now())}${String(Math.floor(Math.random() * 1e12)).padStart(12, '0')}], from ip: ${from}, more info at https://open.work.weixin.qq.com/devtool/query?e=${errcode}`;

const ERRMSG: Record<number, string> = {
  [-1]: 'system busy',
  40001: 'invalid credential',
  40013: 'invalid corpid',
  40014: 'invalid access_token',
  40082: 'invalid suite_acccess_token',
  40083: 'invalid SuiteId',
  40084: 'invalid permanent_code',
  40085: 'invalid suite ticket',
  40086: 'invalid auth corpid',
  40029: 'invalid code',
  41001: 'access_token missing',
  42001: 'access_token expired',
  42009: 'suite_access_token expired',
  45009: 'api freq out of limit',
  48002: 'api forbidden',
  60020: 'not allow to access from your ip',
};

export class FakeWecom {
  readonly server: Server | import('node:http').Server;
  readonly url: string;
  readonly port: number;
  readonly requests: RecordedRequest[] = [];
  readonly apps: FakeApp[] = [];
  readonly suites: FakeSuite[] = [];
  /** Clock of token expiry, ms; tests may move it (`fake.now += …`). */
  now = Date.now();
  readonly #tokens = new Map<string, Issued>();
  readonly #faults = new Map<string, Fault[]>();
  readonly #routes = new Map<string, Handler>();
  readonly #sockets = new Set<Socket>();
  #seq = 0;

  private constructor(server: Server | import('node:http').Server, port: number, tls: boolean) {
    this.server = server;
    this.port = port;
    this.url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    this.#defaultRoutes();
  }

  /** Start on an ephemeral port on every address; closed in t.teardown. */
  static async start(t: Test): Promise<FakeWecom> {
    const fake = await FakeWecom.listen();
    t.teardown(() => fake.close());
    return fake;
  }

  /** Start on `port` (0 = ephemeral) on every address; the caller closes it (the bench runs it as its own process). */
  static async listen(port = 0, opts: { tls?: boolean } = {}): Promise<FakeWecom> {
    const tls = opts.tls ?? true;
    // Plain HTTP only for the bench's attribution run (how much of the relay's cost is TLS).
    const server = tls
      ? createServer({ key: readFileSync(join(TLS, 'upstream.key')), cert: readFileSync(join(TLS, 'upstream.pem')) })
      : createPlainServer();
    server.listen(port, '::');
    await once(server, 'listening');
    const fake = new FakeWecom(server, (server.address() as AddressInfo).port, tls);
    server.on('connection', (s: Socket) => {
      fake.#sockets.add(s);
      s.on('close', () => fake.#sockets.delete(s));
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => fake.#handle(req, res));
    return fake;
  }

  close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  addApp(app: FakeApp): FakeApp {
    this.apps.push(app);
    return app;
  }

  addSuite(s: Omit<FakeSuite, 'corps' | 'authCodes'> & Partial<Pick<FakeSuite, 'corps' | 'authCodes'>>): FakeSuite {
    const suite: FakeSuite = { ...s, corps: s.corps ?? new Map(), authCodes: s.authCodes ?? new Map() };
    this.suites.push(suite);
    return suite;
  }

  /** Add or replace a handler for a business API path (token and IP checks run first). */
  route(path: string, handler: Handler): void {
    this.#routes.set(path, handler);
  }

  /** Calls seen on `path` (all methods). */
  calls(path: string): number {
    let n = 0;
    for (const r of this.requests) if (r.path === path) n++;
    return n;
  }

  /** Every token issued so far (for "never leaks" assertions). */
  issuedTokens(): string[] {
    return [...this.#tokens.keys()];
  }

  /** Invalidate every token issued to `owner` (app or suite name): the next use answers 40014 / 40082. */
  invalidateTokens(owner: string): void {
    for (const t of this.#tokens.values()) if (t.owner === owner) t.state = 'invalid';
  }

  /** Expire every token issued to `owner` now: the next use answers 42001 / 42009. */
  expireTokens(owner: string): void {
    for (const t of this.#tokens.values()) if (t.owner === owner) t.expiresAt = this.now - 1;
  }

  /** The next `times` requests to `path` answer `errcode` (e.g. -1, 45009) before anything else. */
  failNext(path: string, errcode: number, times = 1): void {
    this.#fault(path, { errcode, remaining: times });
  }

  /** Drop the faults still queued for `path` (WeCom works again). */
  clearFaults(path: string): void {
    this.#faults.delete(path);
  }

  /** The next `times` requests to `path` never get an answer (until the fake closes). */
  hang(path: string, times = 1): void {
    this.#fault(path, { hang: true, remaining: times });
  }

  /** The next `times` requests to `path` get a `bytes`-long body (streamed, 200, application/json). */
  hugeBody(path: string, bytes: number, times = 1): void {
    this.#fault(path, { hugeBytes: bytes, remaining: times });
  }

  #fault(path: string, f: Fault): void {
    const list = this.#faults.get(path) ?? [];
    list.push(f);
    this.#faults.set(path, list);
  }

  #issue(kind: Kind, owner: string, expiresIn: number, trusted: () => string[] | undefined): { token: string; expiresIn: number } {
    // The real gettoken returns the same token while it is valid.
    for (const [token, t] of this.#tokens) {
      if (t.kind === kind && t.owner === owner && t.state === 'valid' && t.expiresAt > this.now) {
        return { token, expiresIn: Math.floor((t.expiresAt - this.now) / 1000) };
      }
    }
    const token = `${kind}-${owner}-${++this.#seq}-${'x'.repeat(40)}`;
    this.#tokens.set(token, { kind, owner, trusted, expiresAt: this.now + expiresIn * 1000, state: 'valid' });
    return { token, expiresIn };
  }

  /** 0 when usable, else the errcode the real WeCom gives. */
  #check(token: string | null, kind: Kind): { errcode: number; issued?: Issued } {
    if (!token) return { errcode: 41001 };
    const t = this.#tokens.get(token);
    if (!t || t.kind !== kind || t.state === 'invalid') return { errcode: kind === 'suite' ? 40082 : 40014 };
    if (t.expiresAt <= this.now) return { errcode: kind === 'suite' ? 42009 : 42001 };
    return { errcode: 0, issued: t };
  }

  #defaultRoutes(): void {
    this.route('/cgi-bin/get_api_domain_ip', () => ({ ip_list: ['182.254.11.176', '182.254.78.66'] }));
    this.route('/cgi-bin/user/get', ({ query }) => ({ userid: query.get('userid') ?? '', name: '张三', department: [1] }));
    this.route('/cgi-bin/message/send', () => ({ invaliduser: '', msgid: `msg${++this.#seq}` }));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://qyapi.weixin.qq.com');
    const from = normaliseIp(req.socket.remoteAddress);
    const query: Record<string, string> = {};
    for (const [k, v] of url.searchParams) query[k] = SECRET_FIELDS.has(k) ? '***' : v;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let body: Record<string, unknown> = {};
    if (chunks.length > 0) {
      try {
        const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) body = parsed as Record<string, unknown>;
      } catch {
        return this.#send(res, { errcode: 47001, errmsg: 'data format error' });
      }
    }
    const record: RecordedRequest = { method: req.method ?? '', path: url.pathname, query, bodyKeys: Object.keys(body), from };
    this.requests.push(record);

    const faults = this.#faults.get(url.pathname);
    const fault = faults?.[0];
    if (fault && faults) {
      if (--fault.remaining <= 0) faults.shift();
      if (fault.hang) return; // held until the client gives up or the fake closes
      if (fault.hugeBytes !== undefined) return this.#huge(res, fault.hugeBytes);
      if (fault.errcode !== undefined) return this.#error(res, fault.errcode, from);
    }

    const p = url.searchParams;
    const str = (v: unknown) => (typeof v === 'string' ? v : '');
    switch (url.pathname) {
      case '/cgi-bin/gettoken': {
        // gettoken answers from any IP, as the real one does.
        const corpId = p.get('corpid') ?? '';
        const secret = p.get('corpsecret') ?? '';
        if (!corpId) return this.#error(res, 41002, from);
        if (!secret) return this.#error(res, 41004, from);
        if (!this.apps.some((a) => a.corpId === corpId)) return this.#error(res, 40013, from);
        const app = this.apps.find((a) => a.corpId === corpId && a.secret === secret);
        if (!app) return this.#error(res, 40001, from);
        record.app = app.name;
        const { token, expiresIn } = this.#issue('corp', app.name, app.expiresIn ?? 7200, () => app.trustedIps);
        return this.#send(res, { errcode: 0, errmsg: 'ok', access_token: token, expires_in: expiresIn });
      }
      case '/cgi-bin/service/get_suite_token': {
        const suite = this.suites.find((s) => s.suiteId === str(body['suite_id']));
        if (!suite) return this.#error(res, 40083, from);
        record.app = suite.name;
        if (suite.secret !== str(body['suite_secret'])) return this.#error(res, 40001, from);
        if (suite.ticket !== str(body['suite_ticket'])) return this.#error(res, 40085, from);
        const { token, expiresIn } = this.#issue('suite', suite.name, suite.expiresIn ?? 7200, () => undefined);
        // "因历史原因，该接口在调用失败时才返回errcode": no errcode on success.
        return this.#send(res, { suite_access_token: token, expires_in: expiresIn });
      }
      case '/cgi-bin/service/get_corp_token':
      case '/cgi-bin/service/v2/get_auth_info':
      case '/cgi-bin/service/get_permanent_code':
      case '/cgi-bin/service/v2/get_permanent_code': {
        const c = this.#check(p.get('suite_access_token'), 'suite');
        if (c.errcode !== 0 || !c.issued) return this.#error(res, c.errcode, from);
        const suite = this.suites.find((s) => s.name === c.issued?.owner) as FakeSuite;
        record.app = suite.name;
        if (url.pathname === '/cgi-bin/service/get_corp_token') {
          const corpId = str(body['auth_corpid']);
          const code = suite.corps.get(corpId);
          if (code === undefined) return this.#error(res, 40086, from);
          if (code !== str(body['permanent_code'])) return this.#error(res, 40084, from);
          const { token, expiresIn } = this.#issue('corp', `${suite.name}/${corpId}`, suite.expiresIn ?? 7200, () => suite.trustedIps);
          return this.#send(res, { access_token: token, expires_in: expiresIn });
        }
        if (url.pathname === '/cgi-bin/service/v2/get_auth_info') {
          const corpId = str(body['auth_corpid']);
          const code = suite.corps.get(corpId);
          if (code === undefined) return this.#error(res, 40086, from);
          if (code !== str(body['permanent_code'])) return this.#error(res, 40084, from);
          return this.#send(res, {
            errcode: 0,
            errmsg: 'ok',
            auth_corp_info: { corpid: corpId, corp_name: suite.corpNames?.get(corpId) ?? 'fake school' },
            auth_info: { agent: [{ agentid: 1000005, name: 'app', is_customized_app: true }] },
          });
        }
        const authCode = str(body['auth_code']);
        const grant = suite.authCodes.get(authCode);
        if (!grant) return this.#error(res, 40029, from);
        suite.authCodes.delete(authCode); // single use
        suite.corps.set(grant.corpId, grant.permanentCode);
        return this.#send(res, {
          permanent_code: grant.permanentCode,
          auth_corp_info: { corpid: grant.corpId, corp_name: grant.corpName ?? 'fake school' },
          auth_user_info: { userid: 'admin' },
        });
      }
    }

    const handler = this.#routes.get(url.pathname);
    if (!handler) return this.#send(res, { errcode: 404, errmsg: `unknown path ${url.pathname}` }, 404);
    const c = this.#check(p.get('access_token'), 'corp');
    if (c.errcode !== 0 || !c.issued) return this.#error(res, c.errcode, from);
    record.app = c.issued.owner;
    const trusted = c.issued.trusted();
    if (trusted && !trusted.includes(from)) return this.#error(res, 60020, from);
    const out = handler({ req, res, record, query: p, body, app: c.issued.owner });
    if (out) this.#send(res, { errcode: 0, errmsg: 'ok', ...out });
  }

  #error(res: ServerResponse, errcode: number, from: string): void {
    const head = ERRMSG[errcode] ?? 'error';
    this.#send(res, { errcode, errmsg: `${head}, ${errmsgTail(from, errcode)}` });
  }

  #send(res: ServerResponse, body: Record<string, unknown>, status = 200): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  /** Stream `bytes` of a JSON-looking body in 64 KiB chunks, honouring backpressure; stops when the client goes. */
  #huge(res: ServerResponse, bytes: number): void {
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(64 * 1024, 'a');
    let left = bytes;
    const pump = () => {
      while (left > 0 && !res.destroyed) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void res.once('drain', pump);
      }
      if (!res.destroyed) res.end();
    };
    res.write('{"errcode":0,"pad":"');
    pump();
  }
}

// ---------------------------------------------------------------------------------------------
// The callback sender: WeCom's side of 接收消息 / 指令回调 / 数据回调. It encrypts with the test-only
// raw-key AES of test/wecom/crypto/helpers.ts (never src/wecom/crypto) and POSTs like WeCom: it waits
// `answerTimeoutMs` (5 s) for an answer, and without a 200 it tries again, up to `retries` (3) more
// times, each attempt `retryIntervalMs` after the previous one started (WeCom: right after its 5 s).

export interface CallbackSenderOptions {
  /** http://host:port of the listener; the sender adds `path` and the query. */
  readonly origin: string;
  readonly path: string;
  readonly token: string;
  readonly encodingAesKey: string;
  /** The receiveid WeCom encrypts for (corp id, suite id …). */
  readonly receiveId: string;
  /** Host header (default the origin's). */
  readonly host?: string;
  /** How long WeCom waits for an answer (default 5000 ms). */
  readonly answerTimeoutMs?: number;
  /** Retries after the first attempt (default 3: "总共重试三次", so up to four deliveries). */
  readonly retries?: number;
  /** From one attempt's start to the next one's (default 5000 ms, WeCom's timing). */
  readonly retryIntervalMs?: number;
  /** Wall clock, seconds (the timestamp parameter). */
  readonly nowS?: () => number;
}

/** One answer WeCom got (status 0 = no answer within the timeout or a network error). */
export interface CallbackAnswer {
  readonly status: number;
  readonly body: string;
  readonly headers: Record<string, string | string[] | undefined>;
}

export interface SentCallback {
  readonly attempts: CallbackAnswer[];
  /** True when one attempt got a 200. */
  readonly acked: boolean;
  readonly last: CallbackAnswer;
}

export class CallbackSender {
  readonly options: CallbackSenderOptions;
  readonly #key: Buffer;
  /** Every answer WeCom got, in order. */
  readonly answers: CallbackAnswer[] = [];

  constructor(options: CallbackSenderOptions) {
    this.options = options;
    this.#key = aesKey(options.encodingAesKey);
  }

  /** WeCom's msg_signature: sha1 of the sorted token, timestamp, nonce and ciphertext. */
  sign(timestamp: string, nonce: string, ciphertext: string): string {
    return createHash('sha1').update([this.options.token, timestamp, nonce, ciphertext].sort().join('')).digest('hex');
  }

  /** base64 ciphertext of `message`; `pad` forces the padding (count bytes of `value`), `receiveId` another id. */
  encrypt(message: string, opts: { receiveId?: string; pad?: { count: number; value: number }; lengthField?: number } = {}): string {
    const msg = Buffer.from(message, 'utf8');
    const plain = layout(
      randomBytes(16),
      msg,
      Buffer.from(opts.receiveId ?? this.options.receiveId, 'utf8'),
      opts.lengthField ?? msg.length,
    );
    return rawEncrypt(pad32(plain, opts.pad), this.#key);
  }

  /** The message inside a passive reply's Encrypt (checks nothing but the layout). */
  decrypt(ciphertext: string): { message: string; receiveId: string } {
    const plain = rawDecrypt(ciphertext, this.#key);
    const pad = plain[plain.length - 1] as number;
    const len = plain.readUInt32BE(16);
    return { message: plain.toString('utf8', 20, 20 + len), receiveId: plain.toString('utf8', 20 + len, plain.length - pad) };
  }

  timestamp(): string {
    return String(this.options.nowS ? this.options.nowS() : Math.floor(Date.now() / 1000));
  }

  /** The query of a signed request over `ciphertext` (echostr added for a URL check, encoded once). */
  query(ciphertext: string, opts: { echostr?: boolean; timestamp?: string; nonce?: string; signature?: string } = {}): string {
    const timestamp = opts.timestamp ?? this.timestamp();
    const nonce = opts.nonce ?? String(randomBytes(4).readUInt32BE(0));
    const sig = opts.signature ?? this.sign(timestamp, nonce, ciphertext);
    const q = `msg_signature=${sig}&timestamp=${timestamp}&nonce=${nonce}`;
    return opts.echostr ? `${q}&echostr=${encodeURIComponent(ciphertext)}` : q;
  }

  /** One request, answered or not within answerTimeoutMs. */
  request(method: string, pathAndQuery: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<CallbackAnswer> {
    const url = new URL(this.options.origin);
    const timeout = this.options.answerTimeoutMs ?? 5_000;
    const sent: Record<string, string> = {
      host: this.options.host ?? url.host,
      'user-agent': 'Mozilla/4.0',
      ...(body !== undefined ? { 'content-type': 'text/xml', 'content-length': String(Buffer.byteLength(body)) } : {}),
      ...headers,
    };
    // An empty value removes a default header (content-length for a chunked body).
    for (const [k, v] of Object.entries(sent)) if (v === '') delete sent[k];
    return new Promise((resolve) => {
      let done = false;
      const finish = (a: CallbackAnswer) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.answers.push(a);
        resolve(a);
      };
      const req = httpRequest({
        host: url.hostname,
        port: url.port,
        method,
        path: pathAndQuery,
        agent: false,
        headers: sent,
      });
      const timer = setTimeout(() => {
        req.destroy();
        finish({ status: 0, body: '', headers: {} });
      }, timeout);
      req.on('error', () => finish({ status: 0, body: '', headers: {} }));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => finish({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
        res.on('error', () => finish({ status: 0, body: '', headers: {} }));
      });
      req.end(body);
    });
  }

  /** WeCom's URL check of `plaintext` (GET with echostr), one attempt. */
  urlCheck(plaintext: string, opts: { receiveId?: string; raw?: (q: string) => string } = {}): Promise<CallbackAnswer> {
    const echostr = this.encrypt(plaintext, opts.receiveId !== undefined ? { receiveId: opts.receiveId } : {});
    const q = this.query(echostr, { echostr: true });
    return this.request('GET', `${this.options.path}?${opts.raw ? opts.raw(q) : q}`);
  }

  /** The POST body WeCom sends for a ciphertext. */
  envelope(ciphertext: string, toUserName = this.options.receiveId, agentId = ''): string {
    return `<xml><ToUserName><![CDATA[${toUserName}]]></ToUserName><AgentID><![CDATA[${agentId}]]></AgentID><Encrypt><![CDATA[${ciphertext}]]></Encrypt></xml>`;
  }

  /**
   * Deliver `message` as WeCom does: POST, and on no 200 within the answer timeout, retry (each
   * retry re-encrypts with a new random, nonce and signature; the plaintext is the same).
   */
  async send(message: string): Promise<SentCallback> {
    const attempts: CallbackAnswer[] = [];
    const retries = this.options.retries ?? 3;
    const interval = this.options.retryIntervalMs ?? 5_000;
    for (let i = 0; i <= retries; i++) {
      const started = Date.now();
      const ciphertext = this.encrypt(message);
      const a = await this.request('POST', `${this.options.path}?${this.query(ciphertext)}`, this.envelope(ciphertext));
      attempts.push(a);
      if (a.status === 200) return { attempts, acked: true, last: a };
      if (i < retries) await new Promise((r) => setTimeout(r, Math.max(0, started + interval - Date.now())));
    }
    return { attempts, acked: false, last: attempts[attempts.length - 1] as CallbackAnswer };
  }
}
