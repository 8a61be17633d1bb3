import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { type AccessLine, createAccessLog, createLogDestination, createLogger, redactText, redactValue } from '../../src/core/logger.ts';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return { lines, stream };
}

t.test('redactText: hides secret query parameters and JSON fields when they appear in text', async (t) => {
  const cases: [name: string, input: string, secret: string][] = [
    ['access_token in URL', 'GET /cgi-bin/user/get?access_token=AbC123xyz&userid=zhangsan', 'AbC123xyz'],
    ['corpsecret in URL', 'https://qyapi.weixin.qq.com/cgi-bin/gettoken?corpid=ww1&corpsecret=S3cr3tValue', 'S3cr3tValue'],
    ['OAuth code', '/wecom/oauth/callback?code=CODE9988&state=x', 'CODE9988'],
    ['upper-case name', '/x?ACCESS_TOKEN=TOPSECRET', 'TOPSECRET'],
    ['JSON body', '{"access_token":"tok-777","expires_in":7200}', 'tok-777'],
    ['form body', 'secret=hunter2&name=x', 'hunter2'],
    ['OAuth state', '/wecom/oauth/callback?state=ST4T3VALUE&x=1', 'ST4T3VALUE'],
    ['API key', 'https://vendor.example/api?key=K3YVALUE', 'K3YVALUE'],
    ['suite_ticket', 'suite_ticket=T1CKETVALUE', 'T1CKETVALUE'],
  ];
  for (const [name, input, secret] of cases) {
    const out = redactText(input);
    t.notMatch(out, secret, `${name}: secret removed`);
    t.match(out, '[REDACTED]', `${name}: marker present`);
  }
  t.equal(redactText('/api/user?id=7&codec=h264'), '/api/user?id=7&codec=h264', 'lookalike names untouched');
  t.equal(redactText('/api?monkey=1&keyboard=2'), '/api?monkey=1&keyboard=2', 'names containing "key" untouched');
});

t.test('redactValue: hides URL userinfo and secret parameters when a shown value carries them', async (t) => {
  const cases: [name: string, input: string, expected: string][] = [
    ['userinfo', 'https://u:hunter2@hub.example/x', 'https://[REDACTED]@hub.example/x'],
    ['userinfo in a sentence', 'got "http://admin:pw@10.0.0.1:8080"', 'got "http://[REDACTED]@10.0.0.1:8080"'],
    ['query secret', 'https://hub.example/?corpsecret=S3CR3T&corpid=ww1', 'https://hub.example/?corpsecret=[REDACTED]&corpid=ww1'],
    ['both', 'http://a:b@h/?token=T', 'http://[REDACTED]@h/?token=[REDACTED]'],
    ['an @ in a path is no userinfo', 'https://h/users/@me', 'https://h/users/@me'],
    ['plain text untouched', 'mail admin@school.edu.cn', 'mail admin@school.edu.cn'],
  ];
  for (const [name, input, expected] of cases) t.equal(redactValue(input), expected, name);
});

t.test('createLogger: redacts secrets in fields, headers and messages when logging', async (t) => {
  const { lines, stream } = capture();
  const log = createLogger({ level: 'info', destination: stream });
  log.info(
    {
      url: '/cb?code=OAUTHCODE1&state=s',
      req: { headers: { cookie: 'wegate_session=COOKIEVAL', authorization: 'Bearer AUTHVAL' } },
      access_token: 'FIELDTOKEN',
    },
    'fetching https://qyapi/cgi-bin/gettoken?corpsecret=MSGSECRET',
  );
  log.error({ err: new Error('upstream said access_token=ERRTOKEN is invalid') }, 'failed');
  const all = lines.join('\n');
  for (const s of ['OAUTHCODE1', 'COOKIEVAL', 'AUTHVAL', 'FIELDTOKEN', 'MSGSECRET', 'ERRTOKEN']) t.notMatch(all, s, `${s} not logged`);
  t.equal(lines.length, 2, 'both lines written');
  t.match(JSON.parse(lines[0] as string), { level: 'info', service: 'wegate' });
});

t.test("createLogger: keeps an error's code readable and still redacts a code field when logging both", async (t) => {
  const { lines, stream } = capture();
  const log = createLogger({ level: 'info', destination: stream });
  const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
  log.warn({ err: Object.assign(new Error('upstream failed', { cause }), { code: 'UND_ERR_SOCKET' }), code: 'OAUTH-CODE-9' }, 'failed');
  const line = JSON.parse(lines[0] as string) as { code: string; err: { error_code: string; cause: { error_code: string } } };
  t.equal(line.err.error_code, 'UND_ERR_SOCKET', 'the error code is there for the admin');
  t.equal(line.err.cause.error_code, 'ECONNREFUSED', "and the cause's");
  t.equal(line.code, '[REDACTED]', 'a code field is still a secret');
  t.notMatch(lines[0], 'OAUTH-CODE-9');
});

t.test('createLogger: logs a stack for programming errors and none for operational failures', async (t) => {
  const { lines, stream } = capture();
  const log = createLogger({ level: 'info', destination: stream });
  const thrown = (f: () => unknown): unknown => {
    try {
      f();
    } catch (e) {
      return e;
    }
    throw new Error('expected a throw');
  };
  const operational = {
    'a system error': thrown(() => readFileSync(join(tmpdir(), 'wegate-no-such-file-\u0001'))),
    'an undici error': Object.assign(new Error('Headers Timeout Error'), { code: 'UND_ERR_HEADERS_TIMEOUT' }),
    'a certificate check': Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' }),
    'an OpenSSL error': Object.assign(new Error('wrong version number'), { code: 'ERR_SSL_WRONG_VERSION_NUMBER' }),
  };
  const programming = {
    'a TypeError': thrown(() => (null as unknown as { x: number }).x),
    "Node's ERR_INVALID_ARG_TYPE": thrown(() => Buffer.from(5 as unknown as string)),
  };
  for (const [name, err] of [...Object.entries(operational), ...Object.entries(programming)]) log.warn({ err, case: name }, 'failed');
  const byCase = new Map(
    lines.map((l) => JSON.parse(l) as { case: string; err: { stack?: string; error_code?: string } }).map((l) => [l.case, l.err]),
  );
  t.equal(byCase.get('a system error')?.error_code, 'ENOENT', 'a real system error');
  t.equal(byCase.get("Node's ERR_INVALID_ARG_TYPE")?.error_code, 'ERR_INVALID_ARG_TYPE', 'a real Node argument error');
  for (const name of Object.keys(operational)) t.equal(byCase.get(name)?.stack, undefined, `${name}: no stack`);
  for (const name of Object.keys(programming))
    t.match(byCase.get(name)?.stack, /logger\.test\.ts/, `${name}: the stack points at the code`);
});

const accessFields = {
  req_id: 'abc-1',
  method: 'GET',
  host: 'api1.school.test',
  url: '/x',
  status: 200,
  route: 'api1',
  upstream: 'https://hub.example:8080',
  us: 1234,
  bytes: 380,
  client_ip: '127.0.0.1',
  error_code: undefined,
  completed: true,
} as const;

t.test('createAccessLog: writes one pino-shaped JSON line per request when the level allows info', async (t) => {
  const { lines, stream } = capture();
  const log = createAccessLog(createLogger({ level: 'info', destination: stream }));
  log.write(accessFields);
  log.write({
    ...accessFields,
    req_id: 'abc-2',
    us: 5,
    host: '',
    upstream: undefined,
    status: 499,
    error_code: 'WG_NOT_FOUND',
    completed: false,
  });
  t.equal(lines.length, 0, 'queued until the end of the event-loop turn');
  await new Promise((r) => setImmediate(r));
  t.equal(lines.length, 2, 'written together once the turn ends');
  const [a, b] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(a, { level: 'info', service: 'wegate', log: 'access', req_id: 'abc-1', method: 'GET', host: 'api1.school.test' });
  t.match(a, {
    url: '/x',
    status: 200,
    route: 'api1',
    upstream: 'https://hub.example:8080',
    ms: 1.234,
    bytes: 380,
    client_ip: '127.0.0.1',
  });
  t.ok(!Number.isNaN(Date.parse(a?.time as string)), 'ISO time');
  t.notOk('completed' in (a ?? {}), 'completed omitted when true');
  t.notOk('error_code' in (a ?? {}), 'error_code omitted when absent');
  t.match(b, { ms: 0.005, status: 499, error_code: 'WG_NOT_FOUND', completed: false });
  t.notOk('host' in (b ?? {}), 'empty host omitted');
  t.notOk('upstream' in (b ?? {}), 'no upstream omitted');
});

t.test('createAccessLog: redacts secret query parameters and escapes hostile text when the URL carries them', async (t) => {
  const { lines, stream } = capture();
  const log = createAccessLog(createLogger({ level: 'info', destination: stream }));
  log.write({ ...accessFields, url: '/cb?code=OAUTH-CODE-1&state=STATE-3&access_token=TOKEN-2&page=2' });
  log.write({ ...accessFields, url: '/a"b\\c\u0001\n", "status": 1', method: 'G"ET' });
  log.flush();
  t.equal(lines.length, 2, 'a newline in the URL does not split the line');
  const [a, b] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  t.notMatch(lines[0], 'OAUTH-CODE-1');
  t.notMatch(lines[0], 'TOKEN-2');
  t.notMatch(lines[0], 'STATE-3');
  t.match(a?.url, /&page=2$/, 'other parameters kept');
  t.equal(b?.url, '/a"b\\c\u0001\n", "status": 1', 'URL kept verbatim inside one JSON string');
  t.equal(b?.status, 200, 'no field injected');
  t.equal(b?.method, 'G"ET');
});

t.test('createAccessLog: writes nothing when the level is above info', async (t) => {
  const { lines, stream } = capture();
  const logger = createLogger({ level: 'warn', destination: stream });
  const log = createAccessLog(logger);
  log.write(accessFields);
  log.flush();
  t.equal(lines.length, 0);
  logger.level = 'info';
  log.write(accessFields);
  log.flush();
  t.equal(lines.length, 1, 'follows a level change at run time');
});

function tempFd(t: Test): { fd: number; read: () => string } {
  const dir = mkdtempSync(join(tmpdir(), 'wegate-log-'));
  const file = join(dir, 'out.log');
  const fd = openSync(file, 'w');
  t.teardown(() => {
    closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  return { fd, read: () => readFileSync(file, 'utf8') };
}

/** Write `rounds` × `perRound` lines (`line(n)`), pausing with `pause` between rounds; then flush. */
async function writeRounds(
  t: Test,
  dest: ReturnType<typeof createLogDestination>,
  rounds: number,
  perRound: number,
  line: (n: number) => string,
  pause: () => Promise<unknown>,
): Promise<string> {
  const expected: string[] = [];
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < perRound; i++) {
      const l = line(round * perRound + i);
      expected.push(l);
      t.equal(dest.write(l), true);
    }
    await pause();
  }
  await flushed(dest);
  return expected.join('');
}

function flushed(dest: ReturnType<typeof createLogDestination>): Promise<void> {
  return new Promise<void>((resolve, reject) => dest.flush((err) => (err ? reject(err) : resolve())));
}

t.test('createLogDestination: writes every line in order when lines arrive faster than writes', async (t) => {
  const { fd, read } = tempFd(t);
  const dest = createLogDestination({ fd, intervalMs: 5, batchBytes: 1024 });
  const expected = await writeRounds(
    t,
    dest,
    20,
    50,
    (n) => `{"n":${n}}\n`,
    () => new Promise((r) => setImmediate(r)),
  );
  t.equal(read(), expected);
  t.equal(dest.dropped, 0);
});

t.test('createLogDestination: flushSync writes what is buffered when the process is exiting', async (t) => {
  const { fd, read } = tempFd(t);
  const dest = createLogDestination({ fd, intervalMs: 10_000 });
  dest.write('one\n');
  dest.write('two\n');
  dest.flushSync();
  t.equal(read(), 'one\ntwo\n');
});

t.test('createLogDestination: drops and counts lines, then says so, when the buffer limit is reached', async (t) => {
  const { fd, read } = tempFd(t);
  const dest = createLogDestination({ fd, maxBufferedBytes: 100 });
  const line = `${'x'.repeat(39)}\n`;
  const accepted = [0, 1, 2, 3].map(() => dest.write(line));
  t.same(accepted, [true, true, false, false], 'two 40-char lines fit in 100, the rest are refused');
  t.equal(dest.dropped, 2);
  await new Promise<void>((r) => dest.flush(() => r()));
  t.equal(dest.write('after\n'), true);
  await new Promise<void>((r) => dest.flush(() => r()));
  const out = read().split('\n').filter(Boolean);
  t.equal(out.length, 4, 'two lines, the notice, the next line');
  t.match(JSON.parse(out[2] as string), { level: 'warn', dropped: 2 });
  t.equal(out[3], 'after');
});

t.test('createLogDestination: keeps bytes exact when lines are multi-byte, longer than a buffer, and buffers are reused', async (t) => {
  const { fd, read } = tempFd(t);
  const dest = createLogDestination({ fd, intervalMs: 1, batchBytes: 256 });
  // ASCII, Chinese (3 bytes each), an emoji (a surrogate pair, 4 bytes), and now and then a line over 256 bytes.
  const line = (n: number) =>
    n % 7 === 0 ? `{"n":${n},"long":"${'长'.repeat(120)}"}\n` : `{"n":${n},"msg":"学校 ${'x'.repeat(n % 50)} 🎓"}\n`;
  const expected = await writeRounds(t, dest, 30, 12, line, () => new Promise((r) => setTimeout(r, 2)));
  t.equal(read(), expected, 'every line, in order, byte for byte');
  t.equal(dest.dropped, 0);
});

t.test(
  'createLogDestination: never writes into memory it did not allocate when a long line came from the shared Buffer pool',
  async (t) => {
    const { fd, read } = tempFd(t);
    // Default sizes: a 25 000-byte line is longer than a third of a 64 KiB buffer, so it gets a buffer of
    // its own from Buffer.from(), which is a slice of Node's shared 64 KiB pool.
    const dest = createLogDestination({ fd, intervalMs: 1 });
    const long = `${'a'.repeat(25_000)}\n`;
    dest.write(long);
    const neighbour = Buffer.from('bytes that belong to someone else');
    await flushed(dest);
    const more = Array.from({ length: 2000 }, (_, n) => `{"n":${n},"pad":"${'x'.repeat(20)}"}\n`);
    for (const l of more) dest.write(l);
    await flushed(dest);
    t.equal(neighbour.toString(), 'bytes that belong to someone else', 'a Buffer allocated next to the long line is untouched');
    t.equal(read(), long + more.join(''));
  },
);

t.test(
  'createAccessLog: writes the same bytes straight into a log destination as through a plain stream when lines are ordinary, hostile or odd',
  async (t) => {
    const base = { service: 'wegate', site: '一中' };
    const lines: AccessLine[] = [
      accessFields,
      { ...accessFields, host: '', upstream: undefined, error_code: 'WG_NOT_FOUND', status: 404, completed: false },
      { ...accessFields, url: '/cb?code=OAUTH-CODE-1&state=s&access_token=TOKEN-2' },
      { ...accessFields, route: '教务', upstream: 'https://学校.example' },
      { ...accessFields, us: 0, bytes: 0, status: 101 },
      { ...accessFields, us: 999, bytes: 2 ** 40 },
      { ...accessFields, us: 1000 },
      { ...accessFields, us: 123_456_789 },
      // Each of these needs escaping or is not a plain number: the string path writes them.
      { ...accessFields, url: '/a"b\\c\u0001\n' },
      { ...accessFields, url: '/caf\u00e9' },
      { ...accessFields, url: '/del\u007f' },
      { ...accessFields, method: 'G"ET' },
      { ...accessFields, us: 1.5 },
      { ...accessFields, us: -3 },
      { ...accessFields, status: Number.NaN },
      { ...accessFields, bytes: -1 },
    ];

    const { lines: viaStream, stream } = capture();
    const plain = createAccessLog(createLogger({ level: 'info', destination: stream, base }));
    for (const l of lines) plain.write(l);
    plain.flush();

    const { fd, read } = tempFd(t);
    const dest = createLogDestination({ fd, intervalMs: 1 });
    const used = { encoded: 0, declined: 0, strings: 0 };
    const writeEncoded = dest.writeEncoded.bind(dest);
    const write = dest.write.bind(dest);
    dest.writeEncoded = (max, encode) => {
      const r = writeEncoded(max, encode);
      if (r === 'written') used.encoded++;
      else if (r === 'declined') used.declined++;
      return r;
    };
    dest.write = (line) => {
      used.strings++;
      return write(line);
    };
    const direct = createAccessLog(createLogger({ level: 'info', destination: dest, base }));
    for (const l of lines) direct.write(l);
    direct.flush();
    await flushed(dest);

    const sameTime = (text: string) => text.replace(/"time":"[^"]+"/g, '"time":"T"');
    t.equal(sameTime(read()), sameTime(`${viaStream.join('\n')}\n`), 'byte for byte the same lines');
    t.same(used, { encoded: 8, declined: 8, strings: 8 }, 'ordinary lines are encoded directly; the others fall back to the string');
    t.notMatch(read(), 'OAUTH-CODE-1', 'the secret is redacted on the direct path too');
  },
);

t.test('createLogDestination: writeEncoded keeps nothing of a declined line and drops over the limit when encoding directly', async (t) => {
  const { fd, read } = tempFd(t);
  const dest = createLogDestination({ fd, intervalMs: 1, batchBytes: 256, maxBufferedBytes: 260 });
  const put = (text: string) => (buf: Buffer, at: number) => at + buf.write(text, at, 'latin1');
  t.equal(dest.writeEncoded(20, put('one\n')), 'written');
  t.equal(
    dest.writeEncoded(20, (buf, at) => (buf.write('half of a line', at, 'latin1'), -1)),
    'declined',
    'the encoder declines',
  );
  t.equal(dest.writeEncoded(4, put('longer than promised\n')), 'declined', 'more bytes than promised are not kept');
  t.equal(dest.writeEncoded(257, put('two\n')), 'declined', 'a line that might not fit in one buffer is left to write()');
  t.equal(dest.writeEncoded(20, put('two\n')), 'written');
  t.equal(dest.writeEncoded(1000, put('three\n')), 'declined');
  // 8 bytes buffered: room for 250 more is within the 260-byte limit once, not twice.
  t.equal(dest.writeEncoded(250, put(`${'x'.repeat(10)}\n`)), 'written');
  t.equal(dest.writeEncoded(250, put(`${'y'.repeat(10)}\n`)), 'dropped');
  await flushed(dest);
  t.equal(dest.dropped, 1, 'the line over maxBufferedBytes is counted');
  t.equal(dest.writeEncoded(20, put('four\n')), 'written');
  await flushed(dest);
  const out = read().split('\n');
  t.same(out.slice(0, 3), ['one', 'two', 'x'.repeat(10)], 'only the written lines, none of the declined bytes');
  t.match(out[3], /"dropped":1/, 'the drop is reported before the next line');
  t.equal(out[4], 'four');
  t.equal(out.length, 6, 'nothing else');
});

t.test(
  'redactValue: hides the secret when a password has an unencoded "@", a space follows "=", or the name is not a listed one (F4)',
  async (t) => {
    const S = 'SEKRET123abc';
    const cases: [name: string, input: string][] = [
      ['an "@" in the password (the URL parser takes the last "@")', `http://u:p@ss${S}@10.0.0.9:3128`],
      ['two "@" in the password', `https://u:a@b@${S}@h.example/x`],
      ['a space after "="', `http://h/x?corpsecret= ${S}`],
      ['a tab after "="', `corpsecret=\t${S}`],
      ['client_secret', `https://h/x?client_secret=${S}`],
      ['appsecret', `https://h/x?appsecret=${S}`],
      ['corpsecret[]', `https://h/x?corpsecret[]=${S}`],
      ['bracketed form field', `data[client_secret]=${S}`],
      ['a percent-encoded name', `https://h/x?a=1&corp%73ecret=${S}`],
      ['an upper-case percent-encoded name', `https://h/x?CORP%53ECRET=${S}`],
      ['an encoded "="', `https://h/x?corpsecret%3D${S}`],
      ['an encoded "=" in lower case', `https://h/x?access_token%3d${S}`],
      ['a path segment name=value', `/nonexistent/corpsecret=${S}`],
      ['a JSON field not in the list', `{"client_secret":"${S}"}`],
      ['passwd', `passwd=${S}`],
      ['csrf_token', `/form?csrf_token=${S}`],
    ];
    for (const [name, input] of cases) {
      const out = redactValue(input);
      t.notMatch(out, S, `${name}: ${out}`);
      t.match(out, '[REDACTED]', `${name}: marker present`);
    }
    t.equal(
      redactValue(`http://u:p@ss${S}@10.0.0.9:3128`),
      'http://[REDACTED]@10.0.0.9:3128',
      'the host after the last "@" is still shown',
    );
    // Ordinary parameters stay readable.
    for (const plain of [
      '/x?corpid=ww1&agentid=1000002',
      '/x?errcode=60020&errmsg=ip',
      '/api?monkey=1&keyboard=2&codec=h264',
      '/s?q=%E5%BC%A0&sort=asc',
      '/x?sec=1',
      '/a%2Fb?keyword=k',
    ]) {
      t.equal(redactText(plain), plain, `${plain} untouched`);
    }
  },
);
