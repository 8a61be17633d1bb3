/**
 * wrk as the benchmark's load generator. A Lua `done` hook prints the summary as one JSON line, so
 * nothing is scraped from wrk's human output; with no `request`/`response` hook wrk keeps its fast
 * static-request path (no Lua per request).
 */
import fs from 'node:fs';
import path from 'node:path';
import { start } from './proc.ts';

const LUA = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`;

export interface WrkErrors {
  connect: number;
  read: number;
  write: number;
  /** Responses with a status other than 2xx/3xx. */
  status: number;
  timeout: number;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  bytes: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  errors: WrkErrors;
  errorTotal: number;
}

/** Write the Lua reporter into `dir`; returns its path. */
export function writeWrkScript(dir: string): string {
  const file = path.join(dir, 'report.lua');
  fs.writeFileSync(file, LUA);
  return file;
}

export interface WrkOptions {
  url: string;
  connections: number;
  seconds: number;
  script: string;
  /** Host header instead of the URL's (wegate routes chosen by host). */
  host?: string | undefined;
  core?: number | undefined;
  /** Where wrk's stdout/stderr go (kept for error messages). */
  logFile: string;
  /** Extra request headers ("Name: value"), sent with every request (-H). */
  headers?: readonly string[];
}

/** Run one wrk load (one thread) and parse its JSON summary. */
export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  fs.writeFileSync(o.logFile, '');
  const args = [
    '-t1',
    `-c${o.connections}`,
    `-d${o.seconds}s`,
    '--timeout',
    '5s',
    ...(o.host !== undefined ? ['-H', `Host: ${o.host}`] : []),
    '-s',
    o.script,
    ...(o.headers ?? []).flatMap((h) => ['-H', h]),
    o.url,
  ];
  const p = start('wrk', 'wrk', args, { core: o.core, stdout: o.logFile, stderr: o.logFile });
  const code = await p.exited;
  const out = fs.readFileSync(o.logFile, 'utf8');
  const line = out.split('\n').find((l) => l.startsWith('WRKJSON '));
  if (code !== '0' || !line) throw new Error(`wrk failed (exit ${code}): ${out.trim().slice(-500)}`);
  const j = JSON.parse(line.slice(8)) as Record<string, number>;
  const n = (k: string): number => j[k] ?? 0;
  const errors: WrkErrors = { connect: n('connect'), read: n('read'), write: n('write'), status: n('status'), timeout: n('timeout') };
  const seconds = n('duration_us') / 1e6;
  return {
    requests: n('requests'),
    seconds,
    rps: seconds > 0 ? n('requests') / seconds : 0,
    bytes: n('bytes'),
    p50Ms: n('p50_us') / 1000,
    p99Ms: n('p99_us') / 1000,
    maxMs: n('max_us') / 1000,
    errors,
    errorTotal: errors.connect + errors.read + errors.write + errors.status + errors.timeout,
  };
}
