/**
 * The CLI as a real process: the entry point, a bounded run that collects its output, and a temp
 * directory removed in teardown.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

export const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run `wegate <args>` to its end; bounded: a process that wrongly keeps running is killed after 15 s. */
export function runCli(args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 15_000, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A fresh temp directory, removed in teardown. */
export async function cliTempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'wegate-cli-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
