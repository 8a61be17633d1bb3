/**
 * `wegate doctor` as a real process against real loopback peers: the fake WeCom over TLS (test CA)
 * trusting 127.0.0.2, egress profiles pinned to the loopback aliases, an IP echo, a live upstream,
 * one that refuses connections, a port held by another process and one held by a running wegate.
 * The processes start at once (each spends most of its time starting Node); each test awaits its own.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { startWhoAmI } from '../egress/helpers.ts';
import { FakeWecom } from '../helpers/fake-wecom.ts';
import { ADMIN, LOOPBACK, makeConfig, startGateway, startUpstream, TLS_DIR } from '../helpers/gateway.ts';

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');
const CORP = 'wwdoctorcorp0001';
const SECRET = 'doctor-app-secret-0123456789abcdefghijklmnop';
const WRONG = 'doctor-wrong-secret-9876543210zyxwvutsrqponm';

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function doctor(file: string, json = false): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MAIN, 'doctor', '--config', file, ...(json ? ['--json'] : [])], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 20_000,
      killSignal: 'SIGKILL',
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A port nothing listens on (bound, then released): connections to it are refused. */
async function refusedPort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  await new Promise((r) => s.close(r));
  return port;
}

const fake = await FakeWecom.start(t);
fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.2'] });
const echo = await startWhoAmI(t);
const up = await startUpstream(t, 'vendor');
const refused = await refusedPort();
const dir = t.testdir({
  'ecard-secret': `${SECRET}\n`,
  'wrong-secret': `${WRONG}\n`,
  verify: { 'WW_verify_54wuPnLpuTWkAF0Z.txt': '54wuPnLpuTWkAF0Z' },
});

// A port held by a process that is not wegate, and a running wegate (in this process) on fixed ports.
const squatter = createServer().listen(0, '127.0.0.1');
await once(squatter, 'listening');
t.teardown(() => squatter.close());
const running = await startGateway(t, makeConfig({ listen: LOOPBACK, admin: ADMIN, routes: [{ upstream: up.url }] }), {
  about: { version: 'test', pid: process.pid },
});

interface Opts {
  readonly pin?: string;
  readonly expected?: string;
  readonly secret?: string;
  readonly upstream?: string;
  readonly http?: string;
  readonly admin?: string;
}

let n = 0;
function config(o: Opts = {}): string {
  const file = join(dir, `doctor-${++n}.yaml`);
  const pin = o.pin ?? '127.0.0.2';
  writeFileSync(
    file,
    `listen: { http: "${o.http ?? '127.0.0.1:0'}" }
admin: { listen: "${o.admin ?? '127.0.0.1:0'}" }
verify_files: { dir: ./verify }
egress:
  wecom:
    local_address: ${pin}
    expected_ip: ${o.expected ?? pin}
    ip_echo: { url: "${echo.url}/ip" }
wecom:
  api_base: "${fake.url}"
  ca_file: ${JSON.stringify(join(TLS_DIR, 'ca.pem'))}
  egress: wecom
  corp_id: ${CORP}
  apps:
    - { name: ecard, secret: { file: ./${o.secret ?? 'ecard-secret'} } }
routes:
  - { name: vendor, host: api1.school.test, upstream: "${o.upstream ?? up.url}" }
`,
  );
  return file;
}

const runs = {
  trusted: doctor(config()),
  untrusted: doctor(config({ pin: '127.0.0.3' })),
  untrustedJson: doctor(config({ pin: '127.0.0.3' }), true),
  broken: doctor(config({ secret: 'wrong-secret', upstream: `http://127.0.0.1:${refused}` })),
  // listen.http is held by another process, admin.listen by the running wegate.
  ports: doctor(config({ http: `127.0.0.1:${(squatter.address() as { port: number }).port}`, admin: `127.0.0.1:${running.adminPort}` })),
  invalid: doctor(
    ((file) => {
      writeFileSync(file, 'listen: { http: "127.0.0.1:0" }\nroutes:\n  - upstream: "localhost:8080"\n');
      return file;
    })(join(dir, 'invalid.yaml')),
    true,
  ),
};

/** "✓ check: subject" lines of a text report. */
const marks = (out: string) => out.split('\n').filter((l) => /^[✓⚠✗–] /.test(l));
const block = (out: string, head: RegExp) => {
  const lines = out.split('\n');
  const i = lines.findIndex((l) => head.test(l));
  if (i === -1) return '';
  const end = lines.findIndex((l, j) => j > i && !l.startsWith('    '));
  return lines.slice(i, end === -1 ? undefined : end).join('\n');
};
const noSecrets = (t: Test, r: Run) => {
  for (const s of [SECRET, WRONG, ...fake.issuedTokens()]) t.notOk((r.stdout + r.stderr).includes(s), 'no secret or token printed');
};

t.test('wegate doctor: every check passes and exit is 0 when the egress is pinned to the trusted 127.0.0.2', async (t) => {
  const r = await runs.trusted;
  t.equal(r.code, 0, `exit 0`, { output: r.stdout + r.stderr });
  t.same(
    marks(r.stdout).filter((l) => /^[⚠✗]/.test(l)),
    [],
    'no ✗ and no ⚠',
  );
  for (const want of [
    /^✓ config: /,
    /^✓ listeners: listen\.http 127\.0\.0\.1:0$/,
    /^✓ listeners: admin\.listen 127\.0\.0\.1:0$/,
    /^✓ verify_files: /,
    /^✓ egress: egress wecom$/,
    /^✓ public_ip: egress wecom$/,
    /^✓ upstreams: routes\[0\] \(vendor\) → http:\/\/127\.0\.0\.1:\d+$/,
    /^✓ wecom_token: app ecard$/,
    /^✓ wecom_trusted_ip: app ecard$/,
  ]) {
    t.ok(
      marks(r.stdout).some((l) => want.test(l)),
      `${want}`,
    );
  }
  t.match(block(r.stdout, /^✓ public_ip/), /public IP 127\.0\.0\.2 matches expected_ip\n {4}出口公网 IP 127\.0\.0\.2 与 expected_ip 一致/);
  t.match(block(r.stdout, /^✓ verify_files/), /WW_verify_54wuPnLpuTWkAF0Z\.txt served at the root of api1\.school\.test/);
  t.match(r.stdout, /0 ✗/);
  noSecrets(t, r);
  const seen = fake.requests.filter((q) => q.path === '/cgi-bin/get_api_domain_ip').map((q) => q.from);
  t.ok(seen.includes('127.0.0.2'), 'the probe reached the fake from the pinned address');
});

t.test('wegate doctor: ✗ with the 60020 sentence naming 127.0.0.3 and exit 1 when pinned to 127.0.0.3', async (t) => {
  const r = await runs.untrusted;
  t.equal(r.code, 1, `exit 1`, { output: r.stdout + r.stderr });
  t.ok(marks(r.stdout).includes('✓ wecom_token: app ecard'), 'gettoken works from any IP: it proves nothing');
  const b = block(r.stdout, /^✗ wecom_trusted_ip: app ecard$/);
  t.match(
    b,
    /IP not in 企业可信IP: WeCom refused app "ecard" calling \/cgi-bin\/get_api_domain_ip from 127\.0\.0\.3\. Add 127\.0\.0\.3 to 应用管理 › ecard › 企业可信IP/,
  );
  t.match(b, /来源 IP 不在企业可信IP中：.*127\.0\.0\.3.*应用管理 › ecard › 企业可信IP/);
  t.match(b, /errcode 60020/);
  t.match(r.stdout, /1 ✗/);
  noSecrets(t, r);
});

t.test('wegate doctor: --json parses and has the same verdicts as the text report', async (t) => {
  const [text, json] = await Promise.all([runs.untrusted, runs.untrustedJson]);
  t.equal(json.code, 1);
  const report = JSON.parse(json.stdout) as {
    ok: boolean;
    exitCode: number;
    summary: Record<string, number>;
    results: { check: string; subject: string; status: string; en: string; zh: string }[];
  };
  t.equal(report.ok, false);
  t.equal(report.exitCode, 1);
  const mark: Record<string, string> = { ok: '✓', warn: '⚠', fail: '✗', skip: '–' };
  t.same(
    report.results.map((x) => `${mark[x.status]} ${x.check}: ${x.subject}`.replace(/doctor-\d+\.yaml/, 'F')),
    marks(text.stdout).map((l) => l.replace(/doctor-\d+\.yaml/, 'F')),
  );
  const probe = report.results.find((x) => x.check === 'wecom_trusted_ip');
  t.match(probe, { status: 'fail', en: /127\.0\.0\.3.*应用管理 › ecard › 企业可信IP/, zh: /127\.0\.0\.3/ });
  t.equal(report.summary['fail'], 1);
  noSecrets(t, json);
});

t.test('wegate doctor: ✗ explaining 40001 without the secret, and ✗ for the refusing upstream, when both are wrong', async (t) => {
  const r = await runs.broken;
  t.equal(r.code, 1, `exit 1`, { output: r.stdout + r.stderr });
  const token = block(r.stdout, /^✗ wecom_token: app ecard$/);
  t.match(
    token,
    /WeCom rejected the secret of app "ecard" \(40001\) from file .*wrong-secret: copy it again from 应用管理 › ecard › Secret/,
  );
  t.match(token, /企业微信拒绝了应用 "ecard" 的 Secret/);
  t.ok(marks(r.stdout).includes('– wecom_trusted_ip: app ecard'), 'the probe is skipped without a token');
  const upstream = block(r.stdout, /^✗ upstreams: routes\[0\] \(vendor\)/);
  t.match(upstream, new RegExp(`→ http://127\\.0\\.0\\.1:${refused}\\n {4}connection refused \\(ECONNREFUSED\\)`));
  t.match(upstream, /fix: is the service running on 127\.0\.0\.1:\d+\?/);
  t.match(r.stdout, /2 ✗/);
  noSecrets(t, r);
});

t.test('wegate doctor: ⚠ naming the running wegate for its port and ✗ naming ss for a port another process holds', async (t) => {
  const r = await runs.ports;
  t.equal(r.code, 1, 'exit 1', { output: r.stdout });
  const admin = block(r.stdout, /^⚠ listeners: admin\.listen /);
  t.match(
    admin,
    new RegExp(`in use by a running wegate \\(pid ${process.pid}, its admin listener answers at 127\\.0\\.0\\.1:${running.adminPort}\\)`),
  );
  t.match(admin, /端口正被运行中的 wegate 使用/);
  const http = block(r.stdout, /^✗ listeners: listen\.http /);
  t.match(http, /address in use by another process \(EADDRINUSE\)/, 'a wegate running elsewhere does not own this port');
  t.match(http, /fix: find it with `ss -ltnp 'sport = :\d+'`/);
});

t.test('wegate doctor: exit 78 with the problem as a ✗ when the configuration is invalid', async (t) => {
  const r = await runs.invalid;
  t.equal(r.code, 78);
  const report = JSON.parse(r.stdout) as { exitCode: number; results: { check: string; status: string; subject: string }[] };
  t.equal(report.exitCode, 78);
  t.match(report.results, [{ check: 'config', status: 'fail', subject: 'routes[0].upstream (line 3)' }]);
});
