/**
 * The state store (issue 12 item 7): `createStore(deps)` opens the embedded SQLite store in
 * `state.dir`. Only features that need durable state (the callbacks, 代开发 / third-party suites)
 * create one; node:sqlite is loaded then and not before. The Redis implementation for several
 * instances behind one load balancer will be chosen here from the same config section.
 */
import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import type { StateConfig } from '../config/schema.ts';
import { GatewayError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { StateStore, StoreHealth } from './types.ts';

export type * from './types.ts';
export { StoreOpenError } from './errors.ts';

export interface StoreDeps {
  /** The `state:` section; undefined when the config has none (then a feature needing it cannot start). */
  readonly config: StateConfig | undefined;
  /** What needs the store, for the error when `state:` is missing (e.g. "wecom.apps[0].callback"). */
  readonly neededBy?: string;
  readonly logger: Logger;
  /** Wall clock in ms. */
  readonly clock: () => number;
  readonly randomBytes?: (n: number) => Buffer;
  readonly onHealthChange?: (health: StoreHealth) => void;
  /** Tuning for tests and benchmarks; the defaults suit production. */
  readonly tuning?: {
    readonly maxPayloadBytes?: number;
    readonly purgeIntervalMs?: number;
    readonly purgeBatch?: number;
    readonly probeIntervalMs?: number;
  };
}

/** Open the store. Rejects with a StoreOpenError (WG_STORE_UNAVAILABLE) naming the file when it cannot. */
export async function createStore(deps: StoreDeps): Promise<StateStore> {
  if (deps.config === undefined) {
    throw new GatewayError(
      'WG_STORE_UNAVAILABLE',
      `${deps.neededBy ?? 'this configuration'} needs the state store: set state.dir (e.g. /var/lib/wegate) / ${deps.neededBy ?? '当前配置'}需要状态存储：请设置 state.dir（如 /var/lib/wegate）`,
    );
  }
  let sqlite: typeof import('./sqlite.ts');
  try {
    sqlite = await import('./sqlite.ts');
  } catch (err) {
    // node:sqlite exists from Node 22.13 (unflagged); the Node 24 wegate ships with has it.
    throw new GatewayError(
      'WG_STORE_UNAVAILABLE',
      `the state store needs node:sqlite (Node >= 22.13): ${(err as Error).message} / 状态存储需要 node:sqlite（Node >= 22.13）`,
      { cause: err },
    );
  }
  const { openSqliteStore } = sqlite;
  return openSqliteStore({
    dir: deps.config.dir,
    ...(deps.config.key_file === undefined ? {} : { keyFile: deps.config.key_file }),
    logger: deps.logger,
    clock: deps.clock,
    randomBytes: deps.randomBytes ?? cryptoRandomBytes,
    ...(deps.onHealthChange ? { onHealthChange: deps.onHealthChange } : {}),
    ...deps.tuning,
  });
}

/**
 * When each suite's ticket was received (suite id → ms), from the store of a wegate that is not
 * running (`wegate doctor`); undefined when there is no database file yet. Throws when the file
 * cannot be read (in use by a running wegate: it holds the file exclusively).
 */
export async function inspectSuiteTickets(config: StateConfig): Promise<Map<string, number> | undefined> {
  const { readSuiteTicketTimes } = await import('./sqlite.ts');
  return readSuiteTicketTimes(config.dir);
}
