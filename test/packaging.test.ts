/**
 * Packaging (issue item 12): the systemd unit, the Dockerfile and the README carry what an admin
 * relies on. The files are parsed (unit sections and keys, Dockerfile instructions, README
 * headings), so a directive moved into a comment or the wrong section fails here.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PRODUCTION_ENTRY, PRODUCTION_ENV, PRODUCTION_NODE_FLAGS } from './bench/production.ts';
import t from 'tap';
import { loadConfigFile } from '../src/config/load.ts';
import { EXIT_CONFIG } from '../src/core/errors.ts';

const ROOT = join(import.meta.dirname, '..');
const read = (p: string) => readFile(join(ROOT, p), 'utf8');

/** systemd unit → section → key → values (in order; repeated keys accumulate). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      current = new Map();
      sections.set(sec[1] as string, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq === -1 || current === undefined) throw new Error(`not a unit line: ${line}`);
    const key = line.slice(0, eq).trim();
    const values = current.get(key) ?? [];
    values.push(line.slice(eq + 1).trim());
    current.set(key, values);
  }
  return sections;
}

/** Dockerfile → instructions [KEYWORD, arguments] with line continuations joined and comments dropped. */
function parseDockerfile(text: string): [string, string][] {
  const out: [string, string][] = [];
  let pending = '';
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = `${pending}${line}`.trim();
    pending = '';
    if (full === '') continue;
    const sp = full.search(/\s/);
    out.push([full.slice(0, sp).toUpperCase(), full.slice(sp + 1).trim()]);
  }
  return out;
}

/** "30s", "1min 30s", "90" (seconds) → seconds. */
function unitSeconds(v: string): number {
  let total = 0;
  for (const m of v.matchAll(/(\d+)\s*(ms|s|sec|min|m|h)?/g)) {
    const n = Number(m[1]);
    const u = m[2] ?? 's';
    total += u === 'ms' ? n / 1000 : u === 'min' || u === 'm' ? n * 60 : u === 'h' ? n * 3600 : n;
  }
  return total;
}

t.test('systemd unit: has every directive the issue lists when installed as systemd/wegate.service', async (t) => {
  const unit = parseUnit(await read('systemd/wegate.service'));
  const svc = unit.get('Service');
  if (svc === undefined) throw new Error('no [Service] section');
  const one = (k: string) => {
    const v = svc.get(k);
    t.ok(v !== undefined, `${k} is set`);
    return v?.at(-1) ?? '';
  };
  const user = one('User');
  t.ok(user !== '' && user !== 'root' && user !== '0', `dedicated non-root user (${user})`);
  t.equal(one('NoNewPrivileges'), 'yes');
  t.equal(one('ProtectSystem'), 'strict');
  t.ok((svc.get('ReadWritePaths') ?? []).join(' ').split(/\s+/).includes('/var/lib/wegate'), 'state dir writable');
  t.same(one('AmbientCapabilities').split(/\s+/), ['CAP_NET_BIND_SERVICE'], 'only CAP_NET_BIND_SERVICE granted');
  t.same(one('CapabilityBoundingSet').split(/\s+/), ['CAP_NET_BIND_SERVICE'], 'and nothing else can be gained');
  t.equal(one('Restart'), 'on-failure');
  t.ok(one('RestartPreventExitStatus').split(/\s+/).includes(String(EXIT_CONFIG)), `no restart on exit ${EXIT_CONFIG} (bad config)`);
  const reload = svc.get('ExecReload') ?? [];
  t.ok(
    reload.some((c) => /\bkill\s+-(HUP|s\s+HUP|SIGHUP)\s+\$MAINPID\b/.test(c)),
    'ExecReload sends SIGHUP to the main process',
  );
  t.match(one('ExecStart'), `node ${PRODUCTION_NODE_FLAGS.join(' ')} /opt/wegate/${PRODUCTION_ENTRY} serve --config `);
  for (const c of [one('ExecStartPre'), ...reload.filter((c) => c.includes('node'))])
    t.match(c, `/opt/wegate/${PRODUCTION_ENTRY} check --config `, 'checks run the compiled CLI too');
  const unitEnv = (svc.get('Environment') ?? []).join(' ').split(/\s+/);
  for (const [k, v] of Object.entries(PRODUCTION_ENV)) t.ok(unitEnv.includes(`${k}=${v}`), `Environment=${k}=${v}`);
  // The stop timeout must outlast the drain (schema default) plus wegate's own 5 s of grace.
  const example = await loadConfigFile(join(ROOT, 'config/wegate.example.yaml'));
  if (!example.ok) throw new Error('example config invalid');
  const drainS = example.config.shutdown.drain_timeout_ms / 1000;
  t.ok(unitSeconds(one('TimeoutStopSec')) > drainS + 5, `TimeoutStopSec above ${drainS} s drain + 5 s grace`);
  t.equal(unit.get('Install')?.get('WantedBy')?.[0], 'multi-user.target');
});

t.test('Dockerfile: is multi-stage on the official Node 24 image, non-root, with a /healthz HEALTHCHECK when built', async (t) => {
  const ins = parseDockerfile(await read('Dockerfile'));
  const args = new Map<string, string>();
  for (const [k, v] of ins) {
    if (k !== 'ARG') continue;
    const [name, value] = v.split('=', 2);
    if (value !== undefined) args.set(name as string, value);
  }
  const expand = (s: string) => s.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_, n: string) => args.get(n) ?? '');
  const froms = ins.filter(([k]) => k === 'FROM').map(([, v]) => expand(v.split(/\s+/)[0] as string));
  t.ok(froms.length >= 2, `multi-stage (${froms.length} stages)`);
  for (const f of froms) t.match(f, /^(docker\.io\/(library\/)?)?node:24([.-][A-Za-z0-9.-]+)?$/, `${f}: official node:24 image`);
  const lastFrom = ins.findLastIndex(([k]) => k === 'FROM');
  const runtime = ins.slice(lastFrom);
  const user = runtime.filter(([k]) => k === 'USER').at(-1)?.[1];
  t.ok(user !== undefined && !/^(root|0)(:|$)/.test(user), `runtime stage runs as a non-root user (${user})`);
  const env = new Map<string, string>();
  for (const [k, v] of runtime) {
    if (k !== 'ENV') continue;
    for (const m of v.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g)) env.set(m[1] as string, (m[2] as string).replace(/^"|"$/g, ''));
  }
  for (const [k, v] of Object.entries(PRODUCTION_ENV)) t.equal(env.get(k), v, `ENV ${k}=${v}`);
  const health = runtime.find(([k]) => k === 'HEALTHCHECK')?.[1] ?? '';
  t.match(health, /\bCMD\b/, 'HEALTHCHECK runs a command');
  const target = health.includes('/healthz') ? health : (env.get('WEGATE_HEALTHCHECK_URL') ?? '');
  t.ok(health.includes('/healthz') || health.includes('WEGATE_HEALTHCHECK_URL'), 'HEALTHCHECK probes the health URL');
  t.match(target, /\/healthz/, 'against /healthz');
  const example = await loadConfigFile(join(ROOT, 'config/wegate.example.yaml'));
  if (!example.ok) throw new Error('example config invalid');
  t.match(target, `${example.config.admin.listen}/healthz`, 'on the admin listener of the shipped example config');
  t.same(
    JSON.parse(runtime.find(([k]) => k === 'ENTRYPOINT')?.[1] ?? '[]'),
    ['node', ...PRODUCTION_NODE_FLAGS, `/opt/wegate/${PRODUCTION_ENTRY}`],
    'entrypoint is the compiled wegate CLI with the production Node flags',
  );
  t.ok(
    ins.some(([k, v]) => k === 'RUN' && v.includes('tsc -p tsconfig.build.json')),
    'a build stage compiles the TypeScript',
  );
  t.ok(
    runtime.some(([k, v]) => k === 'COPY' && v.includes('/dist ./dist')),
    'the runtime stage gets the compiled dist/',
  );
});

t.test('README: has every section the issue lists in English and 简体中文 when read by an admin', async (t) => {
  const text = await read('README.md');
  const headings = [...text.matchAll(/^##\s+(.+)$/gm)].map((m) => m[1] as string);
  const want: [what: string, re: RegExp][] = [
    ['install with systemd', /systemd/i],
    ['install with Docker', /docker/i],
    ['the vendor-PDF worked example', /vendor|example/i],
    ['configuration reference', /config/i],
    ['error codes', /error/i],
    ['metrics', /metric/i],
    ['how to run the tests', /test/i],
  ];
  for (const [what, re] of want) {
    const h = headings.find((x) => re.test(x));
    t.ok(h !== undefined, `${what}: section present`);
    t.match(h ?? '', /[\u4e00-\u9fff]/, `${what}: heading also in Chinese`);
  }
  const intro = text.slice(0, text.indexOf('\n## '));
  t.match(intro, /reverse-proxy gateway/i, 'what wegate is, in English');
  t.match(intro, /反向代理网关/, 'and in Chinese');
  t.match(text, /api1\.school\.edu\.cn[\s\S]*hub\.17wanxiao\.com:8080/, 'the vendor-PDF mapping is worked through');
  t.match(text, /npm test/, 'the test command');
});

t.test('npm start: runs the compiled CLI with the production Node flags when started', async (t) => {
  const pkg = JSON.parse(await read('package.json')) as { scripts: Record<string, string> };
  t.equal(pkg.scripts.prestart, 'npm run build --silent', 'builds first');
  const env = Object.entries(PRODUCTION_ENV).map(([k, v]) => `${k}=${v}`);
  t.equal(
    pkg.scripts.start,
    `${env.join(' ')} node ${PRODUCTION_NODE_FLAGS.join(' ')} ${PRODUCTION_ENTRY} serve --config config/wegate.example.yaml`,
  );
  t.equal(pkg.scripts.build, 'tsc -p tsconfig.build.json');
});
