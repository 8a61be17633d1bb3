/** The `wecom:` config section: defaults, and every problem at once with its YAML line. */
import { join } from 'node:path';
import t from 'tap';
import { loadConfigText } from '../../../src/config/load.ts';
import { TLS_DIR } from '../../helpers/gateway.ts';

const load = (yaml: string) => loadConfigText(yaml, join(TLS_DIR, 'test.yaml'));
const head = 'listen: { http: ":8080" }\nroutes: [{ upstream: "https://a.example" }]\n';

t.test('config: the wecom section gets its defaults when only apps are given', async (t) => {
  const r = load(`${head}wecom:\n  corp_id: ww0123456789abcdef\n  apps:\n    - name: ecard\n      secret: { env: WEGATE_ECARD_SECRET }\n`);
  if (!r.ok) return t.fail(JSON.stringify(r.problems));
  t.match(r.config.wecom, {
    api_base: 'https://qyapi.weixin.qq.com',
    timeouts: { connect_ms: 3000, response_ms: 10000 },
    max_response_bytes: 1048576,
    retry: { attempts: 3, base_delay_ms: 200 },
    bad_secret_holdoff_ms: 900000,
    apps: [{ name: 'ecard', kind: 'self_built', secret: { env: 'WEGATE_ECARD_SECRET' } }],
    suites: [],
  });
});

t.test('config: a gateway config without a wecom section stays valid when WeCom is not used', async (t) => {
  const r = load(head);
  t.ok(r.ok);
  if (r.ok) t.equal(r.config.wecom, undefined);
});

t.test('config: every wecom problem is reported with its line when the section is wrong', async (t) => {
  const yaml = [
    head.trimEnd(),
    'egress:', // 3
    '  school: {}', // 4
    'wecom:', // 5
    '  egress: shcool', // 6
    '  apps:', // 7
    '    - name: ecard', // 8
    '      secret: "inline-secret-value"', // 9
    '    - name: ecard', // 10
    '      kind: self_bilt', // 11
    '      secret: { file: ./ca.pem, env: X }', // 12
    '    - name: dk', // 13
    '      kind: authorized', // 14
    '      corp_id: wwschool', // 15
    '      suite: vendor', // 16
    '    - name: tp', // 17
    '      kind: third_party', // 18
    '      corp_id: wwschool', // 19
    '  suites:', // 20
    '    - name: vendor', // 21
    '      suite_id: wwsuite', // 22
    '      secret: {}', // 23
    '',
  ].join('\n');
  const r = load(yaml);
  if (r.ok) return t.fail('accepted');
  const got = r.problems.map((p) => `${p.path} (line ${p.line}): ${p.message}`);
  const want = [
    /^wecom\.egress \(line 6\): must name an egress profile, got "shcool" \(defined: school\)$/,
    /^wecom\.apps\[0\]\.corp_id \(line 8\): must be set here or as wecom\.corp_id/,
    /^wecom\.apps\[0\]\.secret \(line 9\): must be a mapping \(key: value\), got \(value hidden, 19 characters\)$/,
    /^wecom\.apps\[1\]\.name \(line 10\): must be unique, got "ecard" which wecom\.apps\[0\] also uses$/,
    /^wecom\.apps\[1\]\.kind \(line 11\): must be one of "self_built", "authorized", "third_party", got "self_bilt" \(did you mean "self_built"\?\)$/,
    /^wecom\.apps\[1\]\.secret \(line 12\): must set exactly one of `file` or `env`, got both$/,
    /^wecom\.apps\[2\]\.suite \(line 16\): must name a suite of kind template \(代开发模板\) for an authorized app, got "vendor" of kind third_party$/,
    /^wecom\.apps\[3\]\.suite \(line 17\): must name the wecom\.suites entry of a third_party app$/,
    /^wecom\.suites\[0\]\.secret \(line 23\): must set exactly one of `file` or `env`, got neither$/,
  ];
  for (const w of want)
    t.ok(
      got.some((g) => w.test(g)),
      `${w.source}\n  got:\n  ${got.join('\n  ')}`,
    );
  t.notOk(JSON.stringify(r.problems).includes('inline-secret-value'), 'the inline secret is not echoed');
});
