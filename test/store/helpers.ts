/**
 * Helpers of the store tests: a real store in a fresh temporary directory (removed in teardown), a
 * hand-driven clock and captured log lines.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { createLogger, type Logger } from '../../src/core/logger.ts';
import { createStore, type StateStore, type StoreDeps } from '../../src/store/index.ts';

export interface Logs {
  readonly lines: Record<string, unknown>[];
  readonly text: () => string;
}

export function captureLogger(): { logger: Logger; logs: Logs } {
  const raw: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: {
      write(s: string) {
        raw.push(s);
        for (const l of s.split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      },
    },
  });
  return { logger, logs: { lines, text: () => raw.join('') } };
}

/** A temporary directory removed in teardown. */
export async function tempDir(t: Test, prefix = 'wegate-store-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A clock the test moves by hand. */
export interface ManualClock {
  (): number;
  advance(ms: number): void;
}
export function manualClock(start = 1_800_000_000_000): ManualClock {
  let now = start;
  const clock = (() => now) as ManualClock;
  clock.advance = (ms) => {
    now += ms;
  };
  return clock;
}

export interface Opened {
  readonly store: StateStore;
  readonly dir: string;
  readonly clock: ManualClock;
  readonly logs: Logs;
}

/** A store in `dir` (default: a fresh temporary directory), closed in teardown. */
export async function openStore(
  t: Test,
  opts: { dir?: string; clock?: ManualClock } & Partial<Omit<StoreDeps, 'clock'>> = {},
): Promise<Opened> {
  const dir = opts.dir ?? join(await tempDir(t), 'state');
  const clock = opts.clock ?? manualClock();
  const { logger, logs } = captureLogger();
  const store = await createStore({ logger, ...opts, config: opts.config ?? { dir }, clock });
  t.teardown(() => store.close());
  return { store, dir, clock, logs };
}
