/**
 * `npm run bench`: wegate against the upstream direct, nginx (when installed) and a minimal undici
 * proxy, all in front of the same loopback upstream, measured in one run with wrk.
 *
 * Placement (same for every contender): the proxy alone on core 1; wrk, the upstream and this script
 * on core 0. All contenders run at once and take turns (interleaved rounds, so other work on a
 * shared machine hits them alike); each turn is a warm-up, then a fixed measured run, with every
 * other contender frozen (SIGSTOP) meanwhile so the measured proxy really is alone on its core. For the proxy we
 * read its own user+sys CPU from /proc before/after (→ µs CPU per request) and its peak RSS (VmHWM)
 * after all runs. Prints a table, then one JSON line.
 *
 * The WeCom error scan (routes[].wecom_errors, src/diagnostics/vendor-errors.ts) is measured in the
 * same wegate process: two routes that differ only in `scan`, chosen by Host, take turns on the small
 * response at 64 connections (ABBA order, --scan-pairs pairs of --scan-duration S runs). The small
 * body is text/plain and under the scan's cap, so every response of the "on" route is really scanned
 * (the worst case for a response without an error). `scan_cpu_overhead_pct` is the median of the
 * pairs' on/off CPU-per-request differences: each pair's two runs are back to back, so a burst of
 * other work on a shared machine spoils one pair, not the figure. The scan's own cost is also timed
 * in this process (`scan.in_process_ns_per_response`), which no neighbour's load can blur much.
 * The main `wegate` route runs with the defaults (scan on).
 * The API relay case (test/bench/relay.ts), after every proxy case and the scan pairs: the relay in
 * front of the fake WeCom vs the fake direct, at 64 connections, and the relay's CPU per request ÷ the
 * plain proxy route's (small c64, measured again in the relay's rounds). It runs last because it is another workload in the same process:
 * its TLS connections (the relay's and the proxied-wecom route's, 80 in all) leave the glibc heap
 * grown and fragmented, and 100 KiB responses after it then peaked 18-23 MB higher (the peak came in
 * large c64, not in the relay case). `rss_mb` is wegate's peak before the relay case (the proxy
 * cases, what the target was set for), `rss_mb_with_relay` the peak at the end.
 * Options: --duration S, --warmup S, --rounds N, --scan-pairs N, --scan-duration S, --only a,b, --no-access-log,
 * --upstream raw|http|nginx, --no-pin, --no-relay, --relay-wecom https|http (the fake WeCom without TLS:
 * what the TLS leg costs), --keep (keep the temp dir with configs and logs).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StringDecoder } from 'node:string_decoder';
import { parseArgs } from 'node:util';
import type { RouteConfig } from '../../src/config/schema.ts';
import type { RequestContext } from '../../src/core/http.ts';
import { createWecomErrorScan } from '../../src/diagnostics/vendor-errors.ts';
import type { Metrics } from '../../src/metrics/metrics.ts';
import { nginxConfig, nginxUpstreamConfig } from './nginx.ts';
import { PRODUCTION_ENTRY, PRODUCTION_ENV, PRODUCTION_NODE_FLAGS } from './production.ts';
import {
  canConnect,
  cpuTimes,
  freePort,
  groupCpuSeconds,
  groupPeakRssMb,
  groupRssSplitMb,
  killAllSync,
  pause,
  resume,
  type Started,
  start,
  stop,
  tail,
  waitFor,
  which,
} from './proc.ts';
import {
  checkRelay,
  directUrl,
  PROXIED_PREFIX,
  proxiedRouteLines,
  RELAY_HEADERS,
  RELAY_PATH,
  relayConfigLines,
  startFakeWecom,
} from './relay.ts';
import { LARGE_BODY, SMALL_BODY } from './upstream.ts';
import { runWrk, type WrkResult, writeWrkScript } from './wrk.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const NODE = process.execPath;
// Read before this script pins itself to one core.
const CPUS = os.availableParallelism();
const CONTENDERS = ['direct', 'nginx', 'minimal-undici', 'wegate'] as const;
type ContenderName = (typeof CONTENDERS)[number];
const CASES = [
  { key: 'small_c64', size: 'small', conns: 64 },
  { key: 'small_c1', size: 'small', conns: 1 },
  { key: 'large_c64', size: 'large', conns: 64 },
  { key: 'large_c1', size: 'large', conns: 1 },
] as const;
type CaseKey = (typeof CASES)[number]['key'];
const BODY: Record<'small' | 'large', Buffer> = { small: SMALL_BODY, large: LARGE_BODY };
const TARGETS = {
  small_c64_vs_nginx_min: 0.33,
  cpu_per_req_vs_nginx_max: 3.5,
  p99_c1_added_ms_max: 1,
  rss_mb_max: 150,
  scan_cpu_overhead_pct_max: 3,
  relay_cpu_vs_proxy_max: 1.5,
};
/** Host names of the two wegate routes the scan is compared on (same upstream, only wecom_errors.scan differs). */
const SCAN_HOSTS = { on: 'scan-on.bench', off: 'scan-off.bench' } as const;
type ScanSide = keyof typeof SCAN_HOSTS;
const RELAY_CONNS = 64;

interface CaseResult {
  rps: number;
  /** req/s of each round (their spread shows how noisy the machine was). */
  rps_rounds: number[];
  seconds: number;
  wall_s: number;
  /** The proxy's user+sys CPU seconds during the measured runs (null for direct). */
  cpu_s: number | null;
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  requests: number;
  /** The proxy's own user+sys CPU per completed request (null for direct). */
  cpu_us_per_req: number | null;
  /** The proxy's CPU use during the run, % of one core (null for direct). */
  proxy_cpu_pct: number | null;
  /** Busy % of the load-generator core (wrk + upstream) during the run. */
  load_core_pct: number | null;
  /** Busy % of the proxy's core during the run (above proxy_cpu_pct: softirq or someone else's work). */
  proxy_core_pct: number | null;
  /** The upstream's CPU during the run, % of one core. */
  upstream_cpu_pct: number | null;
  errors: WrkResult['errors'];
  error_total: number;
  bytes_per_response: number;
  problems: string[];
}

interface ContenderResult {
  name: ContenderName;
  status: 'ok' | 'skipped' | 'failed';
  reason?: string;
  cases: Partial<Record<CaseKey, CaseResult>>;
  rss_mb: number | null;
  /** wegate: peak RSS at the end, the relay case included (rss_mb is the peak before it). */
  rss_mb_with_relay?: number;
  /** Problems not tied to one case (error log lines, stderr output). */
  problems: string[];
  notes: string[];
}

interface Running {
  url: string;
  /** Process group to measure (null: nothing to measure, e.g. direct). */
  proc: Started | null;
  notes: string[];
  /** Extra checks after the runs (logs), appended to notes / problems. */
  finish?: (requests: number) => { notes: string[]; problems: string[] };
}

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '2' },
    'scan-pairs': { type: 'string', default: '8' },
    'scan-duration': { type: 'string', default: '2' },
    only: { type: 'string' },
    'no-access-log': { type: 'boolean', default: false },
    upstream: { type: 'string', default: 'raw' },
    'no-pin': { type: 'boolean', default: false },
    'no-relay': { type: 'boolean', default: false },
    'relay-wecom': { type: 'string', default: 'https' },
    keep: { type: 'boolean', default: false },
  },
});
const DURATION = Math.max(1, Math.round(Number(args.duration) || 4));
const ROUNDS = Math.max(1, Math.round(Number(args.rounds) || 2));
const WARMUP = Math.max(0, Math.round(Number(args.warmup) || 0));
const SCAN_PAIRS = Math.max(0, Math.round(Number(args['scan-pairs']) || 0));
const SCAN_DURATION = Math.max(1, Math.round(Number(args['scan-duration']) || 2));
const ACCESS_LOG = !args['no-access-log'];
type UpstreamChoice = 'raw' | 'http' | 'nginx';
const UPSTREAM_ARG: UpstreamChoice = args.upstream === 'http' || args.upstream === 'nginx' ? args.upstream : 'raw';
const UPSTREAM_LABEL: Record<UpstreamChoice, string> = {
  raw: 'fixed-cost node:net responder (test/bench/upstream.ts)',
  http: 'node:http server (test/bench/upstream.ts http)',
  nginx: 'nginx, 1 worker, static files',
};
const ONLY = new Set((args.only ?? CONTENDERS.join(',')).split(',').map((s) => s.trim()));

const log = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`);
};

let tmpDir: string | null = null;
const LOCK = path.join(os.tmpdir(), 'wegate-bench.lock');
let haveLock = false;
function cleanup(): void {
  killAllSync();
  if (haveLock) fs.rmSync(LOCK, { force: true });
  haveLock = false;
  if (tmpDir && args.keep) log(`kept ${tmpDir} (--keep)`);
  else if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  tmpDir = null;
}
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping everything`);
    cleanup();
    process.exit(130);
  });
}

/** GET `url` with a fresh connection (and another Host when given); resolves status and body. */
function fetchOnce(url: string, host?: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 5000, ...(host !== undefined ? { headers: { host } } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Status 200 and exact bytes for both responses through the contender. */
async function checkResponses(base: string, host?: string): Promise<void> {
  for (const size of ['small', 'large'] as const) {
    const { status, body } = await fetchOnce(`${base}/${size}`, host);
    if (status !== 200) throw new Error(`GET /${size} answered ${status}`);
    if (!body.equals(BODY[size])) throw new Error(`GET /${size} body differs (${body.length} bytes, expected ${BODY[size].length})`);
  }
}

function pinCores(): { proxy: number | undefined; load: number | undefined; note: string } {
  if (args['no-pin']) return { proxy: undefined, load: undefined, note: 'not pinned (--no-pin)' };
  if (!which('taskset')) return { proxy: undefined, load: undefined, note: 'not pinned (taskset missing: apt-get install util-linux)' };
  if (CPUS < 2) return { proxy: undefined, load: undefined, note: 'not pinned (fewer than 2 CPUs)' };
  return {
    proxy: 1,
    load: 0,
    note: 'proxy alone on core 1 (the other contenders frozen meanwhile); wrk + upstream + this script on core 0',
  };
}

async function main(): Promise<number> {
  if (!which('wrk')) {
    console.log('wrk is not installed, so the benchmark cannot run. Install it with: sudo apt-get install -y wrk');
    return 0;
  }
  const nginxBin = which('nginx') ?? (fs.existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : null);
  const upstreamKind: UpstreamChoice = UPSTREAM_ARG === 'nginx' && !nginxBin ? 'raw' : UPSTREAM_ARG;
  // wegate runs as in production: the compiled dist/ (built now, so it matches the sources).
  const build = spawnSync(NODE, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.build.json')], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (build.status !== 0) {
    console.error(`npm run build failed:\n${build.stdout}${build.stderr}`);
    return 1;
  }
  await takeLock();
  const pin = pinCores();
  const idle = await boxIdlePct();
  if (pin.load !== undefined) {
    // Keep this script off the proxy's core too.
    const self = start('taskset-self', 'taskset', ['-pc', String(pin.load), String(process.pid)]);
    await self.exited;
  }
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wegate-bench-'));
  // nginx workers drop to "nobody" when started as root: they must be able to enter the temp dir.
  fs.chmodSync(tmpDir, 0o755);
  const tmp = tmpDir;
  const script = writeWrkScript(tmp);

  const nginxVersion = nginxBin ? versionOf(nginxBin, ['-v']) : null;
  const wrkVersion = versionOf('wrk', ['--version']);
  const header = [
    `wegate bench: Node ${process.version}, ${nginxVersion ?? 'nginx not installed'}, ${wrkVersion ?? 'wrk'}, ${CPUS} CPUs (${os.cpus()[0]?.model ?? '?'})`,
    `placement: ${pin.note}`,
    `upstream: ${UPSTREAM_LABEL[upstreamKind]}${upstreamKind !== UPSTREAM_ARG ? ' (nginx missing)' : ''}, bodies ${SMALL_BODY.length} B and ${LARGE_BODY.length} B`,
    `access log: ${ACCESS_LOG ? 'ON for wegate (JSON lines to a file) and nginx (combined, to a file)' : 'OFF for wegate and nginx'}; minimal-undici logs nothing`,
    `each case: ${ROUNDS} interleaved round(s) per contender of ${WARMUP} s warm-up + ${DURATION} s measured, wrk -t1 (one thread), loopback only`,
  ];
  if (idle < 85)
    header.push(`WARNING: the machine was only ${idle.toFixed(0)}% idle before the run: req/s will be noisy, CPU µs/req less so`);
  for (const l of header) log(l);

  const upPort = await freePort();
  const upstream = startUpstream(upstreamKind, upPort, tmp, pin.load, nginxBin);
  await waitFor(upstream, 'listening', 10_000, () => canConnect(upPort));
  const upstreamUrl = `http://127.0.0.1:${upPort}`;
  await checkResponses(upstreamUrl);
  // The fake WeCom for the relay case, on the load core like the upstream.
  let fake: { proc: Started; url: string } | null = null;
  if (!args['no-relay'] && ONLY.has('wegate')) {
    const fakePort = await freePort();
    const tls = args['relay-wecom'] !== 'http';
    const proc = startFakeWecom(NODE, fakePort, pin.load, path.join(tmp, 'fake-wecom.err'), tls);
    await waitFor(proc, 'listening', 10_000, () => canConnect(fakePort));
    fake = { proc, url: `${tls ? 'https' : 'http'}://127.0.0.1:${fakePort}` };
  }

  const results: ContenderResult[] = CONTENDERS.map((name) => ({ name, status: 'ok', cases: {}, rss_mb: null, notes: [], problems: [] }));
  const active: Active[] = [];
  for (const r of results) {
    if (!ONLY.has(r.name)) {
      r.status = 'skipped';
      r.reason = 'not selected (--only)';
    } else if (r.name === 'nginx' && !nginxBin) {
      r.status = 'skipped';
      r.reason = 'nginx is not installed (sudo apt-get install -y nginx)';
      log(`nginx: skipped, ${r.reason}`);
    } else {
      try {
        log(`${r.name}: starting`);
        const running = await startContender(r.name, { tmp, upPort, upstreamUrl, pin, nginxBin, fakeUrl: fake?.url ?? null });
        r.notes.push(...running.notes);
        active.push({ r, running, sent: 0, rounds: new Map() });
        await checkResponses(running.url);
        if (r.name === 'wegate') for (const side of ['on', 'off'] as const) await checkResponses(running.url, SCAN_HOSTS[side]);
      } catch (e) {
        await fail(
          r,
          active.find((a) => a.r === r),
          e,
        );
      }
    }
  }

  const relayCase = fake ? await createRelayCase(active, fake, upstream, { script, pin, tmp }) : null;
  // Every contender stays up (idle ones cost nothing) and the runs are interleaved round by round, so
  // a burst of other work on a shared machine spreads over all contenders instead of hitting one.
  for (const [ci, c] of CASES.entries()) {
    for (let round = 0; round < ROUNDS; round++) {
      const ok = active.filter((a) => a.r.status === 'ok');
      const shift = (ci + round) % Math.max(1, ok.length);
      for (const a of [...ok.slice(shift), ...ok.slice(0, shift)]) {
        try {
          // The measured proxy alone on its core: every other contender is frozen meanwhile.
          for (const o of active) if (o !== a && o.running.proc) pause(o.running.proc);
          if (a.running.proc) resume(a.running.proc);
          const url = `${a.running.url}/${c.size}`;
          let warm: WrkResult | null = null;
          if (WARMUP > 0)
            warm = await runWrk({ url, connections: c.conns, seconds: WARMUP, script, core: pin.load, logFile: path.join(tmp, 'wrk.log') });
          const res = await measure(a.running.proc, upstream, url, c.conns, BODY[c.size].length, { script, pin, tmp });
          if (warm?.errorTotal) res.problems.push(`warm-up: wrk errors ${JSON.stringify(warm.errors)}`);
          a.sent += (warm?.requests ?? 0) + res.requests;
          const list = a.rounds.get(c.key) ?? [];
          list.push(res);
          a.rounds.set(c.key, list);
          log(
            `${a.r.name} ${c.key} round ${round + 1}/${ROUNDS}: ${fmt(res.rps, 0)} req/s, p50 ${fmt(res.p50_ms, 2)} ms, p99 ${fmt(res.p99_ms, 2)} ms` +
              (res.cpu_us_per_req === null ? '' : `, ${fmt(res.cpu_us_per_req, 1)} µs CPU/req`) +
              (res.error_total ? `, ${res.error_total} errors` : ''),
          );
          const exit = a.running.proc?.exitCode;
          if (exit !== null && exit !== undefined) throw new Error(`${a.r.name} exited (${exit}) during the run`);
        } catch (e) {
          await fail(a.r, a, e);
        }
      }
    }
  }

  // The scan on vs off: the same wegate process, two routes, alternating ABBA so drift hits both alike.
  const scanRuns: Record<ScanSide, CaseResult[]> = { on: [], off: [] };
  const w = active.find((a) => a.r.name === 'wegate' && a.r.status === 'ok');
  for (let pair = 0; w && w.r.status === 'ok' && pair < SCAN_PAIRS; pair++) {
    for (const side of pair % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
      try {
        for (const o of active) if (o !== w && o.running.proc) pause(o.running.proc);
        if (w.running.proc) resume(w.running.proc);
        const url = `${w.running.url}/small`;
        const host = SCAN_HOSTS[side];
        let warm: WrkResult | null = null;
        if (WARMUP > 0)
          warm = await runWrk({ url, host, connections: 64, seconds: WARMUP, script, core: pin.load, logFile: path.join(tmp, 'wrk.log') });
        const res = await measure(w.running.proc, upstream, url, 64, SMALL_BODY.length, { script, pin, tmp, host, seconds: SCAN_DURATION });
        if (warm?.errorTotal) res.problems.push(`warm-up: wrk errors ${JSON.stringify(warm.errors)}`);
        w.sent += (warm?.requests ?? 0) + res.requests;
        scanRuns[side].push(res);
        log(
          `wegate scan ${side} small_c64 pair ${pair + 1}/${SCAN_PAIRS}: ${fmt(res.rps, 0)} req/s, ${fmt(res.cpu_us_per_req, 2)} µs CPU/req` +
            (res.error_total ? `, ${res.error_total} errors` : ''),
        );
      } catch (e) {
        await fail(w.r, w, e);
      }
    }
  }
  const scan: ScanResult | null =
    scanRuns.on.length && scanRuns.off.length
      ? {
          on: combine(scanRuns.on),
          off: combine(scanRuns.off),
          runs: scanRuns,
          pairs: Math.min(scanRuns.on.length, scanRuns.off.length),
          inProcessNs: scanNsPerResponse(),
        }
      : null;
  // The relay case last (see the top of this file): wegate's peak so far is the proxy cases'.
  const proxyPeakMb = w?.running.proc && relayCase ? groupPeakRssMb(w.running.proc.pid) : null;
  if (relayCase) for (let round = 0; round < ROUNDS; round++) await relayCase.round(round);
  const relay = relayCase ? await relayCase.result() : null;

  for (const a of active) if (a.running.proc) resume(a.running.proc);
  for (const a of active) {
    if (a.r.status !== 'ok') continue;
    try {
      for (const c of CASES) {
        const list = a.rounds.get(c.key);
        if (list?.length) a.r.cases[c.key] = combine(list);
      }
      await checkResponses(a.running.url);
      if (a.running.proc) {
        a.r.rss_mb = groupPeakRssMb(a.running.proc.pid);
        if (a === w && proxyPeakMb !== null) {
          a.r.rss_mb_with_relay = a.r.rss_mb;
          a.r.rss_mb = proxyPeakMb;
        }
        const split = groupRssSplitMb(a.running.proc.pid);
        a.r.notes.push(
          `RSS at the end ${fmt(split.anon + split.file, 1)} MB = ${fmt(split.anon, 1)} anonymous + ${fmt(split.file, 1)} file-backed (executable pages)`,
        );
      }
      if (a.running.finish) {
        // The checks before and after the runs (2 + 2 requests), and for wegate the scan routes' (4).
        const f = a.running.finish(a.sent + 4 + (a.r.name === 'wegate' ? 4 : 0));
        a.r.notes.push(...f.notes);
        a.r.problems.push(...f.problems);
      }
    } catch (e) {
      await fail(a.r, a, e);
    }
    if (a.running.proc) await stop(a.running.proc);
  }
  await stop(upstream);
  if (fake) await stop(fake.proc);

  report(header, results, upstreamKind, idle, scan, relay);
  const wegate = results.find((r) => r.name === 'wegate');
  return wegate && wegate.status === 'failed' ? 1 : 0;
}

function startUpstream(kind: UpstreamChoice, port: number, tmp: string, core: number | undefined, nginxBin: string | null): Started {
  if (kind !== 'nginx' || !nginxBin) {
    return start('upstream', NODE, [path.join(ROOT, 'test/bench/upstream.ts'), String(port), kind], {
      core,
      stderr: path.join(tmp, 'upstream.err'),
    });
  }
  const dir = path.join(tmp, 'upstream');
  fs.mkdirSync(path.join(dir, 'www'), { recursive: true, mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'www', 'small'), SMALL_BODY);
  fs.writeFileSync(path.join(dir, 'www', 'large'), LARGE_BODY);
  const conf = path.join(dir, 'nginx.conf');
  fs.writeFileSync(conf, nginxUpstreamConfig({ dir, port }));
  return start('upstream', nginxBin, ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf], {
    core,
    stderr: path.join(dir, 'stderr.log'),
  });
}

function tryRead(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Two benches at once would measure each other: wait (bounded) for another run to finish. */
async function takeLock(): Promise<void> {
  const deadline = Date.now() + 10 * 60_000;
  for (let said = false; ;) {
    try {
      fs.writeFileSync(LOCK, String(process.pid), { flag: 'wx' });
      haveLock = true;
      return;
    } catch {
      const other = Number(tryRead(LOCK).trim());
      if (!pidAlive(other)) {
        fs.rmSync(LOCK, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`another bench (pid ${other}) still holds ${LOCK} after 10 minutes`);
      if (!said) log(`another bench is running (pid ${other}); waiting for it so the runs do not measure each other`);
      said = true;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

/** % idle of the whole machine over one second (other work on the box makes req/s noisy). */
async function boxIdlePct(): Promise<number> {
  const sum = (m: ReturnType<typeof cpuTimes>) =>
    [...m.values()].reduce((a, v) => ({ busy: a.busy + v.busy, total: a.total + v.total }), { busy: 0, total: 0 });
  const a = sum(cpuTimes());
  await new Promise((r) => setTimeout(r, 1000));
  const b = sum(cpuTimes());
  return b.total > a.total ? 100 - (100 * (b.busy - a.busy)) / (b.total - a.total) : 100;
}

interface Active {
  r: ContenderResult;
  running: Running;
  /** Requests sent through it (warm-ups included), to compare with its access-log lines. */
  sent: number;
  rounds: Map<CaseKey, CaseResult[]>;
}

async function fail(r: ContenderResult, a: Active | undefined, e: unknown): Promise<void> {
  r.status = 'failed';
  r.reason = (e as Error).message;
  log(`${r.name}: FAILED: ${r.reason}`);
  if (a?.running.proc) await stop(a.running.proc);
}

/** One figure per case from its rounds: totals for throughput and CPU, the median round for latency. */
function combine(list: CaseResult[]): CaseResult {
  const sum = (f: (x: CaseResult) => number): number => list.reduce((acc, x) => acc + f(x), 0);
  const median = (f: (x: CaseResult) => number): number => {
    const v = list.map(f).sort((a, b) => a - b);
    const m = v.length >> 1;
    return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
  };
  const wall = sum((x) => x.wall_s);
  const requests = sum((x) => x.requests);
  const hasProxy = list[0]!.cpu_s !== null;
  const cpu = sum((x) => x.cpu_s ?? 0);
  const weighted = (f: (x: CaseResult) => number | null): number | null =>
    list.some((x) => f(x) === null) ? null : sum((x) => (f(x) ?? 0) * x.wall_s) / wall;
  const errors = { connect: 0, read: 0, write: 0, status: 0, timeout: 0 };
  for (const x of list) for (const k of Object.keys(errors) as (keyof typeof errors)[]) errors[k] += x.errors[k];
  return {
    rps: requests / sum((x) => x.seconds),
    rps_rounds: list.map((x) => x.rps),
    p50_ms: median((x) => x.p50_ms),
    p99_ms: median((x) => x.p99_ms),
    max_ms: Math.max(...list.map((x) => x.max_ms)),
    requests,
    seconds: sum((x) => x.seconds),
    wall_s: wall,
    cpu_s: hasProxy ? cpu : null,
    cpu_us_per_req: hasProxy && requests ? (cpu * 1e6) / requests : null,
    proxy_cpu_pct: hasProxy ? (100 * cpu) / wall : null,
    load_core_pct: weighted((x) => x.load_core_pct),
    proxy_core_pct: weighted((x) => x.proxy_core_pct),
    upstream_cpu_pct: weighted((x) => x.upstream_cpu_pct),
    errors,
    error_total: sum((x) => x.error_total),
    bytes_per_response: requests ? sum((x) => x.bytes_per_response * x.requests) / requests : 0,
    problems: list.flatMap((x) => x.problems),
  };
}

interface StartContext {
  tmp: string;
  upPort: number;
  upstreamUrl: string;
  pin: { proxy: number | undefined; load: number | undefined };
  nginxBin: string | null;
  /** The fake WeCom of the relay case (wegate's config gains the relay), or null. */
  fakeUrl: string | null;
}

/** The relay case: wegate's API relay and the fake WeCom direct, each combined over its rounds. */
interface RelayResult {
  relay: CaseResult | null;
  /** The same call through a plain proxy route to the fake over TLS (the vendor's own token). */
  proxied: CaseResult | null;
  direct: CaseResult | null;
  /** wegate's plain proxy route (small c64) measured in the same rounds: what relay_cpu_vs_proxy divides by. */
  plain: CaseResult | null;
  problems: string[];
}

/**
 * The relay case, measured after the proxy cases and the scan pairs (see the top of this file): wrk
 * at 64 connections through wegate's plain proxy route (small, the reference of relay_cpu_vs_proxy:
 * measured next to the relay so both see the same machine), its relay, a proxy route to the fake,
 * then straight to the fake WeCom (order reversed every other round); wegate alone on its core
 * (every other contender frozen), nothing on it for the direct runs.
 */
interface RelayCase {
  round(round: number): Promise<void>;
  result(): Promise<RelayResult>;
}

async function createRelayCase(
  active: Active[],
  fake: { proc: Started; url: string },
  upstream: Started,
  o: { script: string; pin: { proxy: number | undefined; load: number | undefined }; tmp: string },
): Promise<RelayCase> {
  const problems: string[] = [];
  const lists: { relay: CaseResult[]; proxied: CaseResult[]; direct: CaseResult[]; plain: CaseResult[] } = {
    relay: [],
    proxied: [],
    direct: [],
    plain: [],
  };
  const w = active.find((a) => a.r.name === 'wegate' && a.r.status === 'ok');
  let ready: { relayUrl: string; proxiedUrl: string; direct: string; bodyLen: number } | null = null;
  const failed = (e: unknown) => {
    problems.push(`relay case failed: ${(e as Error).message}`);
    log(`relay case FAILED: ${(e as Error).message}`);
    ready = null;
  };
  if (!w?.running.proc) problems.push('wegate is not running: no relay case');
  else {
    try {
      const relayUrl = `${w.running.url}${RELAY_PATH}`;
      const direct = await directUrl(fake.url);
      const proxiedUrl = `${w.running.url}${PROXIED_PREFIX}${direct.slice(fake.url.length)}`;
      const bodyLen = await checkRelay(relayUrl, direct);
      if ((await checkRelay(relayUrl, proxiedUrl)) !== bodyLen) throw new Error('the proxied call answered another body');
      ready = { relayUrl, proxiedUrl, direct, bodyLen };
    } catch (e) {
      failed(e);
    }
  }
  const logFile = path.join(o.tmp, 'wrk.log');
  return {
    async round(round) {
      if (!ready || !w?.running.proc || w.r.status !== 'ok') return;
      const order =
        round % 2 === 0 ? (['plain', 'relay', 'proxied', 'direct'] as const) : (['direct', 'proxied', 'relay', 'plain'] as const);
      try {
        for (const which of order) {
          for (const a of active) if (a.running.proc) pause(a.running.proc);
          if (which !== 'direct') resume(w.running.proc);
          const url =
            which === 'plain'
              ? `${w.running.url}/small`
              : which === 'relay'
                ? ready.relayUrl
                : which === 'proxied'
                  ? ready.proxiedUrl
                  : ready.direct;
          const headers = which === 'relay' ? RELAY_HEADERS : [];
          const warm =
            WARMUP > 0
              ? await runWrk({ url, connections: RELAY_CONNS, seconds: WARMUP, script: o.script, core: o.pin.load, logFile, headers })
              : null;
          // The fake WeCom is the "upstream" whose CPU is reported; wegate's CPU is measured when it is in the path.
          const res =
            which === 'plain'
              ? await measure(w.running.proc, upstream, url, RELAY_CONNS, SMALL_BODY.length, o)
              : await measure(which === 'direct' ? null : w.running.proc, fake.proc, url, RELAY_CONNS, ready.bodyLen, { ...o, headers });
          lists[which].push(res);
          // Requests through wegate, warm-ups included (compared with its access-log lines at the end).
          w.sent += which === 'direct' ? 0 : (warm?.requests ?? 0) + res.requests;
          log(
            `${which === 'plain' ? 'wegate small (relay reference)' : which === 'relay' ? 'wegate relay' : which === 'proxied' ? 'wegate proxied-wecom' : 'direct-wecom'} c64 round ${round + 1}/${ROUNDS}: ${fmt(res.rps, 0)} req/s, p50 ${fmt(res.p50_ms, 2)} ms, p99 ${fmt(res.p99_ms, 2)} ms` +
              (res.cpu_us_per_req === null ? '' : `, ${fmt(res.cpu_us_per_req, 1)} µs CPU/req`) +
              (res.error_total ? `, ${res.error_total} errors` : ''),
          );
        }
      } catch (e) {
        failed(e);
      }
    },
    async result() {
      if (ready) {
        try {
          await checkRelay(ready.relayUrl, ready.direct);
        } catch (e) {
          failed(e);
        }
      }
      return {
        relay: lists.relay.length ? combine(lists.relay) : null,
        proxied: lists.proxied.length ? combine(lists.proxied) : null,
        direct: lists.direct.length ? combine(lists.direct) : null,
        plain: lists.plain.length ? combine(lists.plain) : null,
        problems,
      };
    },
  };
}

/** waitFor, but stop the process and add its log tail when it never gets ready. */
async function ready(p: Started, what: string, timeoutMs: number, check: () => Promise<boolean>, logs: () => string): Promise<void> {
  try {
    await waitFor(p, what, timeoutMs, check);
  } catch (e) {
    await stop(p);
    throw new Error(`${(e as Error).message}\n${logs()}`, { cause: e });
  }
}

async function startContender(name: ContenderName, ctx: StartContext): Promise<Running> {
  if (name === 'direct') return { url: ctx.upstreamUrl, proc: null, notes: ['no proxy: wrk straight to the upstream'] };
  const port = await freePort();
  const dir = path.join(ctx.tmp, name);
  fs.mkdirSync(dir, { mode: 0o755 });
  const out = path.join(dir, 'stdout.log');
  const err = path.join(dir, 'stderr.log');
  const url = `http://127.0.0.1:${port}`;
  if (name === 'nginx') {
    const conf = path.join(dir, 'nginx.conf');
    fs.writeFileSync(conf, nginxConfig({ dir, port, upstreamPort: ctx.upPort, accessLog: ACCESS_LOG }));
    const p = start('nginx', ctx.nginxBin!, ['-p', dir, '-e', path.join(dir, 'error.log'), '-c', conf], {
      core: ctx.pin.proxy,
      stdout: out,
      stderr: err,
    });
    await ready(
      p,
      'listening',
      10_000,
      () => canConnect(port),
      () => `${tail(err, 10)}\n${tail(path.join(dir, 'error.log'), 10)}`,
    );
    const accessLog = path.join(dir, 'access.log');
    return {
      url,
      proc: p,
      notes: [`1 worker, upstream keepalive 64, HTTP/1.1, access_log ${ACCESS_LOG ? 'on' : 'off'}, proxy_max_temp_file_size 0`],
      finish: (requests) => ({
        notes: ACCESS_LOG ? [`access log: ${countLines(accessLog)} lines for ${requests} requests`] : [],
        problems: errorLogProblems(path.join(dir, 'error.log')),
      }),
    };
  }
  if (name === 'minimal-undici') {
    const p = start('minimal-undici', NODE, [path.join(ROOT, 'test/bench/minimal-undici-proxy.ts'), String(port), ctx.upstreamUrl], {
      core: ctx.pin.proxy,
      stdout: out,
      stderr: err,
    });
    await ready(
      p,
      'listening',
      10_000,
      () => canConnect(port),
      () => tail(err, 10),
    );
    return { url, proc: p, notes: ['test/bench/minimal-undici-proxy.ts: Agent.stream, no header policy, no logging'] };
  }
  // wegate: the real CLI with a generated config.
  const adminPort = await freePort();
  const conf = path.join(dir, 'wegate.yaml');
  fs.writeFileSync(
    conf,
    [
      '# generated by test/bench/run.ts',
      'listen:',
      `  http: "127.0.0.1:${port}"`,
      'admin:',
      `  listen: "127.0.0.1:${adminPort}"`,
      'log:',
      '  level: info',
      `  access_log: ${ACCESS_LOG}`,
      'reload:',
      '  watch_config: false',
      'routes:',
      '  - name: bench',
      `    upstream: "${ctx.upstreamUrl}"`,
      // The scan pair: the same upstream, only wecom_errors.scan differs (see the top of this file).
      '  - name: bench-scan-on',
      `    host: ${SCAN_HOSTS.on}`,
      `    upstream: "${ctx.upstreamUrl}"`,
      '    wecom_errors: { scan: true }',
      '  - name: bench-scan-off',
      `    host: ${SCAN_HOSTS.off}`,
      `    upstream: "${ctx.upstreamUrl}"`,
      '    wecom_errors: { scan: false }',
      ...(ctx.fakeUrl ? proxiedRouteLines(ctx.fakeUrl) : []),
      ...(ctx.fakeUrl ? relayConfigLines(ctx.fakeUrl, dir) : []),
      '',
    ].join('\n'),
  );
  const p = start('wegate', NODE, [...PRODUCTION_NODE_FLAGS, path.join(ROOT, PRODUCTION_ENTRY), 'serve', '--config', conf], {
    env: PRODUCTION_ENV,
    core: ctx.pin.proxy,
    stdout: out,
    stderr: err,
    cwd: ROOT,
  });
  const readyz = async () => (await fetchOnce(`http://127.0.0.1:${adminPort}/readyz`)).status === 200;
  await ready(
    p,
    'ready (/readyz 200 on the admin listener)',
    20_000,
    readyz,
    () => `--- stderr ---\n${tail(err, 15)}\n--- stdout ---\n${tail(out, 15)}`,
  );
  return {
    url,
    proc: p,
    notes: [
      `${Object.entries(PRODUCTION_ENV)
        .map(([k, v]) => `${k}=${v} `)
        .join(
          '',
        )}node ${PRODUCTION_NODE_FLAGS.join(' ')} ${PRODUCTION_ENTRY} serve (as systemd and Docker run it), log level info, access_log ${ACCESS_LOG ? 'on' : 'off'} (stdout to a file)`,
    ],
    finish: (requests) => {
      let count = 0;
      let warn = 0;
      let bad = 0;
      let firstBad = '';
      for (const l of fileLines(out)) {
        if (l) count++;
        // pino writes the level as a number or, with a formatter, as its label.
        if (/"level":(50|60|"error"|"fatal")[,}]/.test(l)) {
          if (bad++ === 0) firstBad = l;
        } else if (/"level":(40|"warn")[,}]/.test(l)) warn++;
      }
      const notes = [`log: ${count} lines for ${requests} requests${warn ? `, ${warn} warnings` : ''}`];
      const problems = bad ? [`${bad} error/fatal log lines, first: ${firstBad.slice(0, 300)}`] : [];
      const stderr = tail(err, 5);
      if (stderr) problems.push(`stderr: ${stderr.slice(0, 300)}`);
      return { notes, problems };
    },
  };
}

async function measure(
  proc: Started | null,
  upstream: Started,
  url: string,
  conns: number,
  bodyLen: number,
  o: {
    script: string;
    pin: { proxy: number | undefined; load: number | undefined };
    tmp: string;
    host?: string;
    seconds?: number;
    headers?: readonly string[];
  },
): Promise<CaseResult> {
  const cpu0 = proc ? groupCpuSeconds(proc.pid) : 0;
  const up0 = groupCpuSeconds(upstream.pid);
  const cores0 = cpuTimes();
  const t0 = process.hrtime.bigint();
  const logFile = path.join(o.tmp, 'wrk.log');
  const w = await runWrk({
    url,
    host: o.host,
    connections: conns,
    seconds: o.seconds ?? DURATION,
    script: o.script,
    core: o.pin.load,
    logFile,
    ...(o.headers ? { headers: o.headers } : {}),
  });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cores1 = cpuTimes();
  const cpu = proc ? groupCpuSeconds(proc.pid) - cpu0 : 0;
  const up = groupCpuSeconds(upstream.pid) - up0;
  const busyPct = (core: number | undefined): number | null => {
    const a = core === undefined ? undefined : cores0.get(core);
    const b = core === undefined ? undefined : cores1.get(core);
    return a && b && b.total > a.total ? (100 * (b.busy - a.busy)) / (b.total - a.total) : null;
  };
  const problems: string[] = [];
  if (w.errorTotal) problems.push(`wrk errors ${JSON.stringify(w.errors)}`);
  if (w.requests === 0) problems.push('no request completed');
  const perResp = w.requests ? w.bytes / w.requests : 0;
  // Headers differ per proxy; the body must be there in full, plus a sane amount of header bytes.
  if (w.requests && (perResp < bodyLen || perResp > bodyLen + 2048))
    problems.push(`${perResp.toFixed(0)} bytes per response, body is ${bodyLen}`);
  if (upstream.exitCode !== null) problems.push(`upstream exited (${upstream.exitCode})`);
  return {
    rps: w.rps,
    rps_rounds: [w.rps],
    seconds: w.seconds,
    wall_s: wall,
    cpu_s: proc ? cpu : null,
    p50_ms: w.p50Ms,
    p99_ms: w.p99Ms,
    max_ms: w.maxMs,
    requests: w.requests,
    cpu_us_per_req: proc && w.requests ? (cpu * 1e6) / w.requests : null,
    proxy_cpu_pct: proc ? (100 * cpu) / wall : null,
    load_core_pct: busyPct(o.pin.load),
    proxy_core_pct: proc ? busyPct(o.pin.proxy) : null,
    upstream_cpu_pct: (100 * up) / wall,
    errors: w.errors,
    error_total: w.errorTotal,
    bytes_per_response: perResp,
    problems,
  };
}

function versionOf(cmd: string, argv: string[]): string | null {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 5000 });
  const first = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0];
  // "nginx version: nginx/1.22.1", "wrk debian/4.1.0-3+b2 [epoll] Copyright ..."
  return first ? first.replace(/^nginx version: /, '').replace(/ \[.*$/, '') : null;
}

function countLines(file: string): number {
  let n = 0;
  try {
    for (const l of fileLines(file)) if (l) n++;
  } catch {
    return 0;
  }
  return n;
}

/**
 * The lines of a log file, read 16 MiB at a time: an access log of a whole run can pass V8's
 * longest string (512 MiB), which readFileSync(…, 'utf8') cannot return.
 */
function* fileLines(file: string): Generator<string> {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(16 * 1024 * 1024);
  const decoder = new StringDecoder('utf8');
  let rest = '';
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      const lines = (rest + decoder.write(buf.subarray(0, n))).split('\n');
      rest = lines.pop() ?? '';
      yield* lines;
    }
    rest += decoder.end();
    if (rest) yield rest;
  } finally {
    fs.closeSync(fd);
  }
}

function errorLogProblems(file: string): string[] {
  const lines = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n') : [];
  const bad = lines.filter((l) => /\[(error|crit|alert|emerg)\]/.test(l));
  return bad.length ? [`${bad.length} error lines in nginx error.log, first: ${bad[0]!.slice(0, 300)}`] : [];
}

function fmt(n: number | null | undefined, digits: number): string {
  return n === null || n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(digits);
}

function round(n: number | null | undefined, digits = 3): number | null {
  if (n === null || n === undefined || !Number.isFinite(n)) return null;
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

function scanOverheadPct(on: number | null | undefined, off: number | null | undefined): number | null {
  return on === null || on === undefined || off === null || off === undefined || off === 0 ? null : round((100 * (on - off)) / off, 2);
}

/** Each ABBA pair's own on/off difference, % (pair i = the i-th run of each side, back to back). */
function pairOverheadsPct(scan: ScanResult): number[] {
  const out: number[] = [];
  for (let i = 0; i < scan.pairs; i++) {
    const v = scanOverheadPct(scan.runs.on[i]?.cpu_us_per_req, scan.runs.off[i]?.cpu_us_per_req);
    if (v !== null) out.push(v);
  }
  return out;
}

function median(v: readonly number[]): number | null {
  if (v.length === 0) return null;
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/**
 * The scan's own cost per response, timed in this process on the bench's small response (head
 * check, sink, Buffer.indexOf of the 200 B body): the share of the request it adds, measured without
 * the noise of a whole proxied exchange.
 */
function scanNsPerResponse(): number {
  const incidents = {
    record: () => {
      throw new Error('the bench body holds no WeCom error');
    },
    list: () => [],
  };
  const config = { path: '/', upstream: 'http://127.0.0.1', wecom_errors: { scan: true, explain: false } } as unknown as RouteConfig;
  const metrics = {
    wecomVendorErrorMentions: {
      inc: () => {
        throw new Error('the bench body shows no WeCom error');
      },
    },
  } as unknown as Pick<Metrics, 'wecomVendorErrorMentions'>;
  const observer = createWecomErrorScan({ incidents, metrics })({ name: 'bench', config });
  if (!observer) throw new Error('the scan gave the bench route no observer');
  const req = { method: 'GET', headers: { accept: '*/*' } } as unknown as http.IncomingMessage;
  const ctx = { id: 'bench', path: '/small' } as unknown as RequestContext;
  const headers = { 'content-type': 'text/plain', 'content-length': String(SMALL_BODY.length) };
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 5; round++) {
    const n = 500_000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const sink = observer.open(req, ctx, 200, headers);
      if (sink === undefined || !sink.data(SMALL_BODY) || sink.end(null) !== undefined)
        throw new Error('the scan did not look at the bench body');
    }
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / n);
  }
  return best;
}

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  return a === null || a === undefined || b === null || b === undefined || b === 0 ? null : round(a / b);
}

interface ScanResult {
  on: CaseResult;
  off: CaseResult;
  /** Each measured run, per side. */
  runs: Record<ScanSide, CaseResult[]>;
  pairs: number;
  /** scanNsPerResponse(). */
  inProcessNs: number;
}

function report(
  header: string[],
  results: ContenderResult[],
  upstreamKind: UpstreamChoice,
  idle: number,
  scan: ScanResult | null,
  relay: RelayResult | null,
): void {
  const by = (n: ContenderName): ContenderResult | undefined => results.find((r) => r.name === n && r.status === 'ok');
  const lines: string[] = ['', ...header, ''];
  const cols = [
    'contender',
    'case',
    'req/s',
    'p50 ms',
    'p99 ms',
    'max ms',
    'CPU µs/req',
    'proxy CPU%',
    'core1 %',
    'core0 %',
    'upstream CPU%',
    'errors',
  ];
  const rows: string[][] = [cols];
  for (const r of results) {
    if (r.status !== 'ok') {
      rows.push([r.name, `${r.status}: ${(r.reason ?? '').split('\n')[0]}`]);
      continue;
    }
    for (const c of CASES) {
      const x = r.cases[c.key];
      if (!x) continue;
      rows.push([
        r.name,
        c.key.replace('_', ' '),
        fmt(x.rps, 0),
        fmt(x.p50_ms, 2),
        fmt(x.p99_ms, 2),
        fmt(x.max_ms, 1),
        fmt(x.cpu_us_per_req, 1),
        fmt(x.proxy_cpu_pct, 0),
        fmt(x.proxy_core_pct, 0),
        fmt(x.load_core_pct, 0),
        fmt(x.upstream_cpu_pct, 0),
        x.problems.length ? `${x.error_total} !` : String(x.error_total),
      ]);
    }
  }
  if (scan) {
    for (const side of ['on', 'off'] as const) {
      const x = scan[side];
      rows.push([
        `wegate scan ${side}`,
        'small c64',
        fmt(x.rps, 0),
        fmt(x.p50_ms, 2),
        fmt(x.p99_ms, 2),
        fmt(x.max_ms, 1),
        fmt(x.cpu_us_per_req, 2),
        fmt(x.proxy_cpu_pct, 0),
        fmt(x.proxy_core_pct, 0),
        fmt(x.load_core_pct, 0),
        fmt(x.upstream_cpu_pct, 0),
        x.problems.length ? `${x.error_total} !` : String(x.error_total),
      ]);
    }
  }
  for (const [name, x] of [
    ['wegate relay', relay?.relay],
    ['wegate proxied-wecom', relay?.proxied],
    ['direct-wecom', relay?.direct],
  ] as const) {
    if (!x) continue;
    rows.push([
      name,
      'user/get c64',
      fmt(x.rps, 0),
      fmt(x.p50_ms, 2),
      fmt(x.p99_ms, 2),
      fmt(x.max_ms, 1),
      fmt(x.cpu_us_per_req, 1),
      fmt(x.proxy_cpu_pct, 0),
      fmt(x.proxy_core_pct, 0),
      fmt(x.load_core_pct, 0),
      fmt(x.upstream_cpu_pct, 0),
      x.problems.length ? `${x.error_total} !` : String(x.error_total),
    ]);
  }
  const widths = cols.map((_, i) => Math.max(...rows.filter((r) => r.length === cols.length).map((r) => (r[i] ?? '').length)));
  for (const row of rows) {
    if (row.length !== cols.length) lines.push(row.join('  '));
    else lines.push(row.map((v, i) => (i < 2 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  '));
  }
  lines.push('');
  for (const r of results) {
    if (r.status === 'ok') {
      const peak =
        r.rss_mb === null
          ? null
          : r.rss_mb_with_relay === undefined
            ? `peak RSS ${fmt(r.rss_mb, 1)} MB`
            : `peak RSS ${fmt(r.rss_mb, 1)} MB (proxy cases), ${fmt(r.rss_mb_with_relay, 1)} MB with the relay case after them`;
      lines.push(`${r.name}: ${[peak, ...r.notes].filter(Boolean).join('; ')}`);
      for (const c of CASES) for (const p of r.cases[c.key]?.problems ?? []) lines.push(`  ! ${r.name} ${c.key}: ${p}`);
      for (const p of r.problems) lines.push(`  ! ${r.name}: ${p}`);
      if (r.name === 'wegate')
        for (const side of ['on', 'off'] as const) for (const p of scan?.[side].problems ?? []) lines.push(`  ! wegate scan ${side}: ${p}`);
    } else if (r.status === 'failed') lines.push(`${r.name}: FAILED\n  ${(r.reason ?? '').split('\n').join('\n  ')}`);
  }

  for (const [name, x] of [
    ['wegate relay', relay?.relay],
    ['wegate proxied-wecom', relay?.proxied],
    ['direct-wecom', relay?.direct],
  ] as const)
    for (const p of x?.problems ?? []) lines.push(`  ! ${name}: ${p}`);
  for (const p of relay?.problems ?? []) lines.push(`  ! relay: ${p}`);

  const w = by('wegate');
  const n = by('nginx');
  const m = by('minimal-undici');
  const d = by('direct');
  const cpuN = n?.cases.small_c64?.cpu_us_per_req;
  const cpuW = w?.cases.small_c64?.cpu_us_per_req;
  const json = {
    wegate_vs_nginx_small_c64: ratio(w?.cases.small_c64?.rps, n?.cases.small_c64?.rps),
    wegate_vs_nginx_large_c64: ratio(w?.cases.large_c64?.rps, n?.cases.large_c64?.rps),
    p99_c1_added_ms_vs_nginx: w?.cases.small_c1 && n?.cases.small_c1 ? round(w.cases.small_c1.p99_ms - n.cases.small_c1.p99_ms) : null,
    cpu_per_req_vs_nginx: ratio(cpuW, cpuN),
    rss_mb: round(w?.rss_mb, 1),
    /** wegate's peak RSS with the relay case (run after the proxy cases); null without it. */
    rss_mb_with_relay: round(w?.rss_mb_with_relay, 1),
    wegate_vs_direct_small_c64: ratio(w?.cases.small_c64?.rps, d?.cases.small_c64?.rps),
    wegate_vs_direct_large_c64: ratio(w?.cases.large_c64?.rps, d?.cases.large_c64?.rps),
    wegate_vs_minimal_undici_small_c64: ratio(w?.cases.small_c64?.rps, m?.cases.small_c64?.rps),
    wegate_vs_minimal_undici_large_c64: ratio(w?.cases.large_c64?.rps, m?.cases.large_c64?.rps),
    cpu_per_req_vs_minimal_undici: ratio(cpuW, m?.cases.small_c64?.cpu_us_per_req),
    minimal_undici_vs_nginx_small_c64: ratio(m?.cases.small_c64?.rps, n?.cases.small_c64?.rps),
    nginx_vs_direct_small_c64: ratio(n?.cases.small_c64?.rps, d?.cases.small_c64?.rps),
    /** CPU per small request with the WeCom error scan on, % above the same route with it off: median of the ABBA pairs (same process). */
    scan_cpu_overhead_pct: scan ? round(median(pairOverheadsPct(scan)), 2) : null,
    scan: scan && {
      pairs: scan.pairs,
      pair_overheads_pct: pairOverheadsPct(scan),
      /** From the totals of all runs (sensitive to a burst hitting one side). */
      total_overhead_pct: scanOverheadPct(scan.on.cpu_us_per_req, scan.off.cpu_us_per_req),
      in_process_ns_per_response: round(scan.inProcessNs, 0),
      in_process_pct_of_request: scan.off.cpu_us_per_req ? round(scan.inProcessNs / 10 / scan.off.cpu_us_per_req, 2) : null,
      on_cpu_us_per_req: round(scan.on.cpu_us_per_req, 2),
      off_cpu_us_per_req: round(scan.off.cpu_us_per_req, 2),
      on_rps: round(scan.on.rps, 0),
      off_rps: round(scan.off.rps, 0),
      on_cpu_us_per_req_rounds: scan.runs.on.map((x) => round(x.cpu_us_per_req, 2)),
      off_cpu_us_per_req_rounds: scan.runs.off.map((x) => round(x.cpu_us_per_req, 2)),
      errors: scan.on.error_total + scan.off.error_total,
    },
    relay_cpu_vs_proxy: ratio(relay?.relay?.cpu_us_per_req, relay?.plain?.cpu_us_per_req ?? cpuW),
    relay_cpu_vs_tls_proxy: ratio(relay?.relay?.cpu_us_per_req, relay?.proxied?.cpu_us_per_req),
    relay: relay && {
      wecom_tls: args['relay-wecom'] !== 'http',
      rps_c64: round(relay.relay?.rps, 0),
      p99_ms: round(relay.relay?.p99_ms),
      cpu_us_per_req: round(relay.relay?.cpu_us_per_req, 1),
      proxied_rps_c64: round(relay.proxied?.rps, 0),
      proxied_cpu_us_per_req: round(relay.proxied?.cpu_us_per_req, 1),
      /** The plain route (small c64) in the same rounds: relay_cpu_vs_proxy's divisor. */
      plain_cpu_us_per_req: round(relay.plain?.cpu_us_per_req, 1),
      direct_rps_c64: round(relay.direct?.rps, 0),
      direct_p99_ms: round(relay.direct?.p99_ms),
      vs_direct_c64: ratio(relay.relay?.rps, relay.direct?.rps),
      p99_added_ms: relay.relay && relay.direct ? round(relay.relay.p99_ms - relay.direct.p99_ms) : null,
      fake_wecom_cpu_pct: round(relay.relay?.upstream_cpu_pct, 0),
      errors: (relay.relay?.error_total ?? 0) + (relay.proxied?.error_total ?? 0) + (relay.direct?.error_total ?? 0),
      problems: [...relay.problems, ...[relay.relay, relay.proxied, relay.direct].flatMap((x) => x?.problems ?? [])],
    },
    targets: {} as Record<string, boolean | null>,
    errors: Object.fromEntries(
      results.map((r) => [r.name, r.status === 'ok' ? CASES.reduce((s, c) => s + (r.cases[c.key]?.error_total ?? 0), 0) : null]),
    ),
    problems: Object.fromEntries(
      results.map((r) => [
        r.name,
        r.status === 'failed' ? [r.reason ?? 'failed'] : [...r.problems, ...CASES.flatMap((c) => r.cases[c.key]?.problems ?? [])],
      ]),
    ),
    results: Object.fromEntries(
      results.map((r) => [
        r.name,
        r.status !== 'ok'
          ? { status: r.status, reason: (r.reason ?? '').split('\n')[0] }
          : {
              status: r.status,
              rss_mb: round(r.rss_mb, 1),
              ...Object.fromEntries(
                CASES.map((c) => {
                  const x = r.cases[c.key];
                  return [
                    c.key,
                    x && {
                      rps: round(x.rps, 0),
                      rps_rounds: x.rps_rounds.map((v) => round(v, 0)),
                      p50_ms: round(x.p50_ms),
                      p99_ms: round(x.p99_ms),
                      cpu_us_per_req: round(x.cpu_us_per_req, 1),
                      proxy_cpu_pct: round(x.proxy_cpu_pct, 0),
                      proxy_core_pct: round(x.proxy_core_pct, 0),
                      load_core_pct: round(x.load_core_pct, 0),
                      upstream_cpu_pct: round(x.upstream_cpu_pct, 0),
                      errors: x.error_total,
                    },
                  ];
                }),
              ),
            },
      ]),
    ),
    meta: {
      node: process.version,
      duration_s: DURATION,
      warmup_s: WARMUP,
      rounds: ROUNDS,
      access_log: ACCESS_LOG,
      upstream: upstreamKind,
      pinned: !args['no-pin'] && which('taskset') !== null && CPUS >= 2,
      cpus: CPUS,
      idle_pct_before: round(idle, 0),
      loadavg: os.loadavg().map((x) => round(x, 2)),
    },
  };
  const t = json.targets;
  t['small_c64_vs_nginx_ge_0.33'] =
    json.wegate_vs_nginx_small_c64 === null ? null : json.wegate_vs_nginx_small_c64 >= TARGETS.small_c64_vs_nginx_min;
  t['cpu_per_req_vs_nginx_le_3.5'] =
    json.cpu_per_req_vs_nginx === null ? null : json.cpu_per_req_vs_nginx <= TARGETS.cpu_per_req_vs_nginx_max;
  t['p99_c1_added_ms_le_1'] = json.p99_c1_added_ms_vs_nginx === null ? null : json.p99_c1_added_ms_vs_nginx <= TARGETS.p99_c1_added_ms_max;
  t['rss_mb_lt_150'] = json.rss_mb === null ? null : json.rss_mb < TARGETS.rss_mb_max;
  t['scan_cpu_overhead_pct_le_3'] =
    json.scan_cpu_overhead_pct === null ? null : json.scan_cpu_overhead_pct <= TARGETS.scan_cpu_overhead_pct_max;
  t['relay_cpu_vs_proxy_le_1.5'] = json.relay_cpu_vs_proxy === null ? null : json.relay_cpu_vs_proxy <= TARGETS.relay_cpu_vs_proxy_max;

  lines.push('');
  const show = (v: number | null, suffix = ''): string => (v === null ? 'n/a' : `${v}${suffix}`);
  lines.push(
    `wegate vs nginx (1 worker): small c64 ${show(json.wegate_vs_nginx_small_c64, '×')}, large c64 ${show(json.wegate_vs_nginx_large_c64, '×')}, ` +
      `CPU/request ${show(json.cpu_per_req_vs_nginx, '×')}, p99 c1 added ${show(json.p99_c1_added_ms_vs_nginx, ' ms')}`,
  );
  lines.push(
    `wegate vs minimal-undici: small c64 ${show(json.wegate_vs_minimal_undici_small_c64, '×')}, large c64 ${show(json.wegate_vs_minimal_undici_large_c64, '×')}, CPU/request ${show(json.cpu_per_req_vs_minimal_undici, '×')}`,
  );
  lines.push(
    `wegate vs direct: small c64 ${show(json.wegate_vs_direct_small_c64, '×')}, large c64 ${show(json.wegate_vs_direct_large_c64, '×')}`,
  );
  lines.push(`minimal-undici vs nginx: small c64 ${show(json.minimal_undici_vs_nginx_small_c64, '×')}`);
  if (json.relay) {
    lines.push(
      `API relay (user/get via the fake WeCom over ${args['relay-wecom'] === 'http' ? 'plain HTTP' : 'TLS'}, c64): ${show(json.relay.rps_c64, ' req/s')} vs direct ${show(json.relay.direct_rps_c64, ' req/s')} (${show(json.relay.vs_direct_c64, '×')}), ` +
        `p99 added ${show(json.relay.p99_added_ms, ' ms')}, CPU/request ${show(json.relay.cpu_us_per_req, ' µs')} = ${show(json.relay_cpu_vs_proxy, '×')} the plain proxy route's (small c64 in the same rounds, ${show(json.relay.plain_cpu_us_per_req, ' µs')}), ` +
        `${show(json.relay_cpu_vs_tls_proxy, '×')} a proxy route to the same fake (${show(json.relay.proxied_cpu_us_per_req, ' µs')})`,
    );
  }
  lines.push(
    `WeCom error scan, small c64: ${show(json.scan?.on_cpu_us_per_req ?? null, ' µs')} CPU/request on vs ${show(json.scan?.off_cpu_us_per_req ?? null, ' µs')} off ` +
      `(median of ${json.scan?.pairs ?? 0} ABBA pairs in one wegate process: ${show(json.scan_cpu_overhead_pct, ' %')}; from the totals ${show(json.scan?.total_overhead_pct ?? null, ' %')}); ` +
      `the scan itself, timed in this process: ${show(json.scan?.in_process_ns_per_response ?? null, ' ns')} per response = ${show(json.scan?.in_process_pct_of_request ?? null, ' %')} of a request`,
  );
  lines.push(
    `targets: ${Object.entries(t)
      .map(([k, v]) => `${k} ${v === null ? 'n/a' : v ? 'met' : 'MISSED'}`)
      .join(', ')}`,
  );
  lines.push(
    '(CPU µs/req and proxy CPU%: the proxy process group’s own user+sys CPU; core1 %: busy share of the proxy core; ' +
      'core0 %: busy share of the wrk+upstream core — near 100 means the load side, not the proxy, may be the limit; ! = see problems)',
  );
  console.log(lines.join('\n'));
  console.log(JSON.stringify(json));
}

main().then(
  (code) => {
    cleanup();
    process.exitCode = code;
  },
  (e: unknown) => {
    log(`error: ${(e as Error).stack ?? String(e)}`);
    cleanup();
    process.exitCode = 1;
  },
);
