/** Shared set-up for the verify-files tests: a temp directory, a capturing logger, fresh metrics. */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { createLogger } from '../../src/core/logger.ts';
import { createMetrics, type Metrics } from '../../src/metrics/metrics.ts';
import { createVerifyFiles, type VerifyFiles, type VerifyFilesDeps } from '../../src/verify-files/index.ts';

interface Teardown {
  teardown(fn: () => void | Promise<void>): void;
}

export interface Sandbox {
  /** Temp root; `dir` lives inside it, so `base` is "outside the directory". */
  readonly base: string;
  readonly dir: string;
  readonly lines: string[];
  readonly metrics: Metrics;
  open(opts?: Partial<Pick<VerifyFilesDeps, 'names' | 'hosts' | 'watch' | 'dir'>>): Promise<VerifyFiles>;
}

/** A temp directory (removed in teardown) and a factory that closes what it opens. */
export function sandbox(t: Teardown): Sandbox {
  const base = mkdtempSync(path.join(os.tmpdir(), 'wegate-vf-'));
  const dir = path.join(base, 'verify');
  mkdirSync(dir);
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const logger = createLogger({ level: 'debug', destination: stream });
  const metrics = createMetrics({ registry: new Registry(), processMetrics: false });
  return {
    base,
    dir,
    lines,
    metrics,
    async open(opts = {}) {
      const vf = await createVerifyFiles({ dir, names: [], hosts: [], watch: false, logger, metrics, ...opts });
      t.teardown(() => vf.close());
      return vf;
    },
  };
}

/** Poll `cond` every 20 ms until it holds; fail after `timeoutMs` (a bound, not a timing assertion). */
export async function until(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Current value of the wegate_verify_files_loaded gauge. */
export async function gauge(metrics: Metrics): Promise<number | undefined> {
  return (await metrics.verifyFiles.get()).values[0]?.value;
}
