/** `wecom.callbacks`: validation with lines, `queue` refused without `state:`, and the secrets checked at start-up. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { loadConfigText } from '../../../src/config/load.ts';
import { ADMIN, LOOPBACK, makeConfig, startGateway, TLS_DIR } from '../../helpers/gateway.ts';

const load = (yaml: string) => loadConfigText(yaml, join(TLS_DIR, 'test.yaml'));
const head = 'listen: { http: ":8080" }\nroutes: [{ upstream: "https://a.example" }]\n';
const EXAMPLE = join(import.meta.dirname, '../../../config/wegate.example.yaml');

t.test('config: the commented wecom block of the example, callbacks included, is valid when uncommented', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wegate-cb-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const f of ['ecard', 'ecard-callback-token', 'ecard-callback-aeskey']) writeFileSync(join(dir, f), 'x\n');
  const block = /^# wecom:\n(?:#.*\n)+/m.exec(readFileSync(EXAMPLE, 'utf8'))?.[0] ?? '';
  const yaml = `${head}${block.replace(/^# ?/gm, '').replaceAll('/etc/wegate/secrets/', `${dir}/`)}`;
  const r = load(yaml);
  if (!r.ok) return t.fail(JSON.stringify(r.problems));
  t.match(r.config.wecom?.callbacks, [
    {
      name: 'ecard-callback',
      kind: 'app',
      path: '/wecom/ecard/callback',
      app: 'ecard',
      max_age_s: 600,
      deliver: { mode: 'sync', timeout_ms: 4000 },
    },
  ]);
});

t.test('config: callback defaults are filled when only the required keys are given', async (t) => {
  const r = load(
    `${head}wecom:\n  corp_id: ww0123456789abcdef\n  callbacks:\n    - name: cb\n      path: /cb\n      token: { env: T }\n      encoding_aes_key: { env: K }\n      deliver: { url: "http://10.0.0.8/cb", secret: { env: S } }\n`,
  );
  if (!r.ok) return t.fail(JSON.stringify(r.problems));
  t.match(r.config.wecom?.callbacks[0], {
    kind: 'app',
    receive_ids: [],
    max_age_s: 600,
    max_body_bytes: 262144,
    dedupe_ttl_s: 900,
    deliver: { mode: 'sync', max_response_bytes: 65536 },
  });
});

t.test('config: every callback problem is reported with its line, queue refused without state, when the list is wrong', async (t) => {
  const yaml = [
    head.trimEnd(),
    'wecom:', // 3
    '  callbacks:', // 4
    '    - name: a', // 5
    '      kind: data', // 6
    '      path: /cb', // 7
    '      token: { env: T, file: ca.pem }', // 8
    '      encoding_aes_key: { env: K }', // 9
    '      deliver: { mode: queue, url: "http://v/cb", secret: { env: S } }', // 10
    '    - name: a', // 11
    '      kind: suite', // 12
    '      path: /cb', // 13
    '      app: nope', // 14
    '      token: { env: T }', // 15
    '      encoding_aes_key: { env: K }', // 16
    '      deliver: { url: "http://v/cb", secret: { env: S }, timeout_ms: 1000 }', // 17
    '    - name: b', // 18
    '      path: "/cb/../x"', // 19
    '      receive_ids: [ww1]', // 20
    '      token: "inline"', // 21
    '      encoding_aes_key: { env: K }', // 22
    '      deliver: { url: "ftp://v", secret: { env: S } }', // 23
    '',
  ].join('\n');
  const r = load(yaml);
  if (r.ok) return t.fail('accepted');
  const got = r.problems.map((p) => `${p.path} (line ${p.line}): ${p.message}`);
  const expect = [
    /^wecom\.callbacks\[0\]\.token \(line 8\): must set exactly one of `file` or `env`, got both/,
    /^wecom\.callbacks\[0\]\.receive_ids \(line 5\): must list the authorising corp ids/,
    /^wecom\.callbacks\[0\]\.deliver\.mode \(line 10\): queue needs the state store: set state\.dir/,
    /^wecom\.callbacks\[1\]\.name \(line 11\): must be unique/,
    /^wecom\.callbacks\[1\]\.path \(line 13\): must be unique/,
    /^wecom\.callbacks\[1\]\.app \(line 14\): must name an entry of wecom\.apps/,
    /^wecom\.callbacks\[1\]\.suite \(line 11\): must name the wecom\.suites entry/,
    /^wecom\.callbacks\[1\]\.deliver\.timeout_ms \(line 17\): must be at most 900 for a suite callback/,
    /^wecom\.callbacks\[2\]\.path \(line 19\): must be an absolute path/,
    /^wecom\.callbacks\[2\]\.token \(line 21\)/,
    /^wecom\.callbacks\[2\]\.deliver\.url \(line 23\): must be an absolute http\(s\) URL/,
  ];
  for (const re of expect)
    if (
      !t.ok(
        got.some((g) => re.test(g)),
        re.source,
      )
    )
      t.comment(got.join('\n'));
  t.notOk(got.join('\n').includes('inline'), 'the inline secret is not echoed');
});

t.test('config: deliver.mode queue is accepted, with the retry defaults, when state.dir is set', async (t) => {
  const r = load(
    `${head}state: { dir: ${JSON.stringify(tmpdir())} }\nwecom:\n  corp_id: ww0123456789abcdef\n  callbacks:\n    - name: cb\n      path: /cb\n      token: { env: T }\n      encoding_aes_key: { env: K }\n      deliver: { mode: queue, url: "http://10.0.0.8/cb", secret: { env: S } }\n`,
  );
  if (!r.ok) return t.fail(JSON.stringify(r.problems));
  t.match(r.config.wecom?.callbacks[0]?.deliver, {
    mode: 'queue',
    max_attempts: 12,
    max_queue_age_s: 86_400,
    backoff_base_ms: 1_000,
    backoff_max_ms: 300_000,
  });
});

const cbConfig = () =>
  makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [{ upstream: 'http://127.0.0.1:1' }],
    wecom: {
      callbacks: [
        {
          name: 'cb',
          path: '/cb',
          receive_ids: ['ww1'],
          token: { env: 'T' },
          encoding_aes_key: { env: 'K' },
          deliver: { url: 'http://127.0.0.1:1/', secret: { env: 'S' } },
        },
      ],
    },
  });
const GOOD_KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';

t.test(
  'createGateway: refuses to start, naming the key and source but not the value, when a callback Token or key is malformed',
  async (t) => {
    const longToken = 'A'.repeat(33);
    await t.rejects(
      startGateway(t, cbConfig(), { env: { T: longToken, K: GOOD_KEY, S: 's' } }),
      /^wecom\.callbacks\[0\] \(cb\)\.token \(env T\): must be 1 to 32 letters or digits, got 33 characters \(value hidden\)$/,
    );
    await t.rejects(
      startGateway(t, cbConfig(), { env: { T: 'tok', K: GOOD_KEY.slice(1), S: 's' } }),
      /wecom\.callbacks\[0\] \(cb\)\.encoding_aes_key \(env K\): must be 43 characters .*got 42 characters \(value hidden\)/,
    );
    await t.rejects(
      startGateway(t, cbConfig(), { env: { T: 'tok', K: GOOD_KEY } }),
      /deliver\.secret: the environment variable S is not set/,
    );
    const e = await startGateway(t, cbConfig(), { env: { T: 'tok!', K: GOOD_KEY, S: 's' } }).catch((err: unknown) => err as Error);
    t.notOk(String(e).includes('tok!'));
  },
);
