/**
 * Process helpers for the benchmark: start children in their own process group (optionally pinned to
 * a core with taskset), stop them and every process they forked (nginx workers), and read CPU time
 * and peak RSS from /proc.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const CLK_TCK = readClockTicks();
const live = new Set<Started>();

/** A child started by the benchmark; `pid` is also its process-group id. */
export interface Started {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the exit code (or signal name) when the child exits. */
  readonly exited: Promise<string>;
  exitCode: string | null;
}

export interface StartOptions {
  /** Pin to this CPU with taskset; undefined = not pinned. */
  core?: number | undefined;
  /** Files that receive stdout / stderr; default: ignored. */
  stdout?: string;
  stderr?: string;
  cwd?: string;
  /** Extra environment variables (added to this process's). */
  env?: Readonly<Record<string, string>>;
}

function readClockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

/** Start `cmd args` detached (own process group) so it and its forks can be stopped together. */
export function start(name: string, cmd: string, args: readonly string[], opts: StartOptions = {}): Started {
  const argv = opts.core === undefined ? [cmd, ...args] : ['taskset', '-c', String(opts.core), cmd, ...args];
  const out = opts.stdout ? fs.openSync(opts.stdout, 'a') : 'ignore';
  const err = opts.stderr ? fs.openSync(opts.stderr, 'a') : 'ignore';
  const env = opts.env === undefined ? process.env : { ...process.env, ...opts.env };
  const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', out, err], cwd: opts.cwd, env });
  if (typeof out === 'number') fs.closeSync(out);
  if (typeof err === 'number') fs.closeSync(err);
  if (child.pid === undefined) throw new Error(`${name}: could not start ${argv[0]}`);
  const started: Started = {
    name,
    pid: child.pid,
    child,
    exitCode: null,
    exited: new Promise<string>((resolve) => {
      child.on('exit', (code, signal) => {
        started.exitCode = code === null ? String(signal) : String(code);
        // Forget it once its group is empty, so a reused pid is never signalled later.
        if (!groupAlive(started.pid)) live.delete(started);
        resolve(started.exitCode);
      });
      child.on('error', (e) => {
        started.exitCode = `error ${e.message}`;
        resolve(started.exitCode);
      });
    }),
  };
  live.add(started);
  return started;
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return groupPids(pgid).some((pid) => procState(pid) !== 'Z');
  } catch {
    return false;
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // already gone
  }
}

/**
 * Freeze the child's process group (SIGSTOP) while another contender is measured: an idle process on
 * the proxy core still runs its garbage collector and timers after a load, and that measured as
 * 1–2 µs more CPU per request for whichever contender ran next. `resume` (SIGCONT) undoes it.
 */
export function pause(p: Started): void {
  if (p.exitCode === null) signalGroup(p.pid, 'SIGSTOP');
}

export function resume(p: Started): void {
  if (p.exitCode === null) signalGroup(p.pid, 'SIGCONT');
}

/** SIGTERM the child's process group, then SIGKILL what is left after `graceMs`. */
export async function stop(p: Started, graceMs = 3000): Promise<void> {
  // A paused group would hold SIGTERM until continued.
  signalGroup(p.pid, 'SIGCONT');
  signalGroup(p.pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (groupAlive(p.pid) && Date.now() < deadline) await sleep(50);
  signalGroup(p.pid, 'SIGKILL');
  await Promise.race([p.exited, sleep(1000)]);
  live.delete(p);
}

/** Synchronous last resort for exit/signal handlers: SIGKILL every process group still running. */
export function killAllSync(): void {
  for (const p of live) signalGroup(p.pid, 'SIGKILL');
  live.clear();
}

function readStat(pid: number): string[] | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after "(comm)"; comm may contain spaces. Index 0 is field 3 (state).
    return s.slice(s.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

function procState(pid: number): string | undefined {
  return readStat(pid)?.[0];
}

/** Every pid whose process group is `pgid`. */
export function groupPids(pgid: number): number[] {
  const pids: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const f = readStat(pid);
    if (f && Number(f[2]) === pgid) pids.push(pid);
  }
  return pids;
}

/** User+system CPU seconds consumed so far by the live processes of a group. */
export function groupCpuSeconds(pgid: number): number {
  let ticks = 0;
  for (const pid of groupPids(pgid)) {
    const f = readStat(pid);
    if (f) ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
  }
  return ticks / CLK_TCK;
}

/** Sum of VmHWM (peak resident set) over the group's processes, in MB. */
export function groupPeakRssMb(pgid: number): number {
  let kb = 0;
  for (const pid of groupPids(pgid)) {
    try {
      const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch {
      // exited meanwhile
    }
  }
  return kb / 1024;
}

/**
 * The group's resident set now, split as the kernel reports it (/proc/PID/status, in MB): private
 * anonymous memory (heaps, buffers) and file-backed pages (mostly the executable's own code and
 * data, shared with every other process running it and reclaimable). VmHWM has no such split.
 */
export function groupRssSplitMb(pgid: number): { anon: number; file: number } {
  let anon = 0;
  let file = 0;
  for (const pid of groupPids(pgid)) {
    try {
      const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
      anon += Number(/^RssAnon:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
      file += Number(/^RssFile:\s+(\d+) kB/m.exec(status)?.[1] ?? 0);
    } catch {
      // exited meanwhile
    }
  }
  return { anon: anon / 1024, file: file / 1024 };
}

/** Busy and total jiffies per CPU from /proc/stat (for "was core 0 saturated?"). */
export function cpuTimes(): Map<number, { busy: number; total: number }> {
  const out = new Map<number, { busy: number; total: number }>();
  for (const line of fs.readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const v = m[2]!.split(/\s+/).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
    out.set(Number(m[1]), { busy: total - idle, total });
  }
  return out;
}

/** A port that was free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => srv.once('error', reject).listen(0, '127.0.0.1', resolve));
  const addr = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  if (!addr || typeof addr !== 'object') throw new Error('no port');
  return addr.port;
}

/** Wait until `check()` resolves true, failing early when `p` exits, or after `timeoutMs`. */
export async function waitFor(p: Started, what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (p.exitCode !== null) throw new Error(`${p.name} exited (${p.exitCode}) before ${what}`);
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${p.name}: ${what} not reached within ${timeoutMs} ms`);
}

/** True when a TCP connection to 127.0.0.1:port succeeds. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Last `n` lines of a text file (for error messages). */
export function tail(file: string, n: number): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

/** Is `cmd` on PATH? */
export function which(cmd: string): string | null {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (!dir) continue;
    const f = `${dir}/${cmd}`;
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return f;
    } catch {
      // not here
    }
  }
  return null;
}
