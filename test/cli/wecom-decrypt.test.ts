/**
 * `wegate wecom decrypt`: the official vector (URL check and POST) given directly and from a config,
 * one-line reasons naming the failed check, and one real process reading the body from stdin.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { runWecomDecrypt } from '../../src/cli/wecom-decrypt.ts';
import { CallbackSender } from '../helpers/fake-wecom.ts';
import { SAMPLE } from '../wecom/crypto/helpers.ts';

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');
const POST_QUERY = `msg_signature=${SAMPLE.post.msgSignature}&timestamp=${SAMPLE.post.timestamp}&nonce=${SAMPLE.post.nonce}`;
const POST_BODY = `<xml><ToUserName><![CDATA[${SAMPLE.receiveId}]]></ToUserName><Encrypt><![CDATA[${SAMPLE.post.encrypt}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>`;
const DIRECT = ['--token', SAMPLE.token, '--aes-key', SAMPLE.encodingAesKey];

async function run(argv: string[], env: Record<string, string> = {}, stdin = '') {
  let out = '';
  let err = '';
  const code = await runWecomDecrypt(argv, { env, out: (s) => (out += s), err: (s) => (err += s), readStdin: async () => stdin });
  return { code, out, err };
}

function tmp(t: Test, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'wegate-decrypt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

t.test('wegate wecom decrypt: prints the plaintext with exit 0 when the official URL check is given directly', async (t) => {
  const r = await run([...DIRECT, '--receive-id', SAMPLE.receiveId, '--query', SAMPLE.get.query]);
  t.equal(r.code, 0, r.err);
  t.equal(r.out, `URL check (GET): signature ok (签名正确), receiveid "${SAMPLE.receiveId}" accepted\n${SAMPLE.get.plaintext}\n`);
});

t.test('wegate wecom decrypt: decrypts the official POST with its 30-byte pad when the body is a file', async (t) => {
  const dir = tmp(t, { 'body.xml': POST_BODY });
  const r = await run([...DIRECT, '--query', POST_QUERY, '--body', join(dir, 'body.xml')]);
  t.equal(r.code, 0, r.err);
  t.ok(r.out.endsWith(`${SAMPLE.post.plaintext}\n`));
  t.match(r.out, /receiveid "wx5823bf96d3bd56c7" not checked/);
});

t.test('wegate wecom decrypt: one line naming the check and exit 1 when signature, receiveid, padding or encoding is bad', async (t) => {
  const sender = new CallbackSender({
    origin: 'http://127.0.0.1:1',
    path: '/',
    token: SAMPLE.token,
    encodingAesKey: SAMPLE.encodingAesKey,
    receiveId: SAMPLE.receiveId,
  });
  const badPad = sender.encrypt('x'.repeat(10), { pad: { count: 32 - ((20 + 10 + 18) % 32), value: 0 } });
  const cases: [string, string[], RegExp][] = [
    ['signature', ['--query', SAMPLE.get.query.replace('5c45ff5e', '5c45ff5f')], /^bad signature \(签名错误\): .*decoded twice/],
    [
      'receiveid',
      ['--receive-id', 'wwOther', '--query', SAMPLE.get.query],
      /^bad receiveid \(receiveid 不符\): the message is for "wx5823bf96d3bd56c7", accepted: "wwOther"\n$/,
    ],
    ['padding', ['--query', sender.query(badPad, { echostr: true })], /^bad padding/],
    ['encoding', ['--query', sender.query('A*B/CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC', { echostr: true })], /^bad encoding/],
    ['query', ['--query', 'timestamp=1&nonce=2&echostr=x'], /^bad query \(查询参数错误\): msg_signature is missing\n$/],
    ['POST without body', ['--query', POST_QUERY], /^bad query .*no --body for a POST/],
  ];
  for (const [name, args, re] of cases) {
    const r = await run([...DIRECT, ...args]);
    t.equal(r.code, 1, name);
    t.match(r.err, re, name);
    t.equal(r.err.trimEnd().split('\n').length, 1, `${name}: one line`);
    t.equal(r.out, '', `${name}: no plaintext`);
  }
});

t.test(
  'wegate wecom decrypt: uses the callback of the config, secrets from files and env, when --config and --app are given',
  async (t) => {
    const dir = tmp(t, { token: `${SAMPLE.token}\n` });
    const yaml = [
      'listen: { http: ":8080" }',
      'routes: [{ upstream: "http://127.0.0.1:1" }]',
      'wecom:',
      '  callbacks:',
      '    - name: sample',
      '      path: /cb',
      `      receive_ids: [${SAMPLE.receiveId}]`,
      '      token: { file: token }',
      '      encoding_aes_key: { env: SAMPLE_AES }',
      '      deliver: { url: "http://127.0.0.1:1/", secret: { env: NOT_NEEDED } }',
      '',
    ].join('\n');
    writeFileSync(join(dir, 'wegate.yaml'), yaml);
    const cfg = ['--config', join(dir, 'wegate.yaml')];
    const ok = await run([...cfg, '--app', 'sample', '--query', SAMPLE.get.query], { SAMPLE_AES: SAMPLE.encodingAesKey });
    t.equal(ok.code, 0, ok.err);
    t.match(ok.out, /accepted\n1616140317555161061\n$/);
    const missing = await run([...cfg, '--app', 'nope', '--query', SAMPLE.get.query], { SAMPLE_AES: SAMPLE.encodingAesKey });
    t.equal(missing.code, 78);
    t.match(missing.err, /no wecom.callbacks entry named "nope" .*\(defined: sample\)/);
    const noEnv = await run([...cfg, '--app', 'sample', '--query', SAMPLE.get.query]);
    t.equal(noEnv.code, 78);
    t.match(noEnv.err, /the environment variable SAMPLE_AES is not set/);
  },
);

t.test('wegate wecom decrypt: usage errors exit 2 when the arguments are incomplete or mixed', async (t) => {
  for (const args of [
    [],
    ['--query', 'x'],
    [...DIRECT],
    ['--config', 'a.yaml', ...DIRECT, '--query', 'x'],
    ['--token', 'T', '--query', 'x'],
    [...DIRECT, '--bogus'],
  ]) {
    t.equal((await run(args)).code, 2, args.join(' '));
  }
  const bad = await run(['--token', 'x'.repeat(40), '--aes-key', SAMPLE.encodingAesKey, '--query', 'x']);
  t.match(bad.err, /--token must be 1 to 32 letters or digits, got 40 characters \(value hidden\)/);
});

t.test('wegate wecom decrypt: the real command reads the POST body from stdin when --body is "-"', async (t) => {
  const p = spawn(process.execPath, [MAIN, 'wecom', 'decrypt', ...DIRECT, '--query', POST_QUERY, '--body', '-'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
  t.teardown(() => clearTimeout(timer));
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (d) => (stdout += d));
  p.stderr.on('data', (d) => (stderr += d));
  p.stdin.end(POST_BODY);
  const code = await new Promise<number | null>((resolve) => p.on('close', resolve));
  t.equal(code, 0, stderr);
  t.match(stdout, /^POST: signature ok/);
  t.ok(stdout.includes('<Content><![CDATA[hello]]></Content>'));
});
