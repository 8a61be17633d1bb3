/**
 * Test wiring for the WeCom API client: a real fake WeCom (test/helpers/fake-wecom.ts), an undici
 * Agent pinned to a loopback alias with the test CA (what src/egress/ will hand over), captured logs,
 * a real registry and the real incident list.
 */
import { Registry } from 'prom-client';
import type { Test } from 'tap';
import { Agent } from 'undici';
import type { WecomConfig } from '../../../src/config/schema.ts';
import { createIncidents, type Incidents } from '../../../src/diagnostics/index.ts';
import { createMetrics, type Metrics } from '../../../src/metrics/metrics.ts';
import { createWecomApi, type PermanentCodes, type SuiteTickets, type WecomApi, type WecomApiDeps } from '../../../src/wecom/api/index.ts';
import { FakeWecom } from '../../helpers/fake-wecom.ts';
import { CA, captureLogger, type LogCapture, makeConfig } from '../../helpers/gateway.ts';

export const CORP = 'wwfakecorp0001';
export const SECRET = 'ecard-app-secret-0123456789abcdefghijklmnop';

export interface Setup {
  readonly fake: FakeWecom;
  readonly api: WecomApi;
  readonly logs: LogCapture;
  readonly registry: Registry;
  readonly metrics: Metrics;
  readonly incidents: Incidents;
  /** The secrets handed in through env (for "never leaks" assertions). */
  readonly env: Record<string, string>;
}

export interface SetupOptions {
  /** The `wecom:` section (api_base is filled with the fake's URL). */
  readonly wecom: Record<string, unknown>;
  readonly env?: Record<string, string>;
  readonly localAddress?: string;
  readonly expectedIp?: string;
  readonly family?: 4 | 6;
  readonly fake?: FakeWecom;
  readonly suiteTickets?: SuiteTickets;
  readonly permanentCodes?: PermanentCodes;
  readonly extra?: Partial<WecomApiDeps>;
}

/** A validated wecom section (defaults filled by the real loader). */
export function wecomConfig(section: Record<string, unknown>): WecomConfig {
  const c = makeConfig({ listen: { http: '127.0.0.1:0' }, routes: [{ upstream: 'http://127.0.0.1:1' }], wecom: section });
  if (!c.wecom) throw new Error('no wecom section');
  return c.wecom;
}

export async function setup(t: Test, opts: SetupOptions): Promise<Setup> {
  const fake = opts.fake ?? (await FakeWecom.start(t));
  const { logger, logs } = captureLogger();
  const registry = new Registry();
  const metrics = createMetrics({ registry, processMetrics: false });
  const incidents = createIncidents({ clock: Date.now, logger, metrics });
  // localAddress is an Agent option: undici's Client passes its own (null) over connect.localAddress.
  const dispatcher = new Agent({ connect: { ca: CA, timeout: 2000 }, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
  t.teardown(() => dispatcher.destroy());
  const env = opts.env ?? { ECARD_SECRET: SECRET };
  const api = createWecomApi({
    config: wecomConfig({ api_base: fake.url, retry: { base_delay_ms: 1 }, ...opts.wecom }),
    egress: {
      name: 'test',
      dispatcher,
      viaProxy: false,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      ...(opts.expectedIp ? { expectedIp: opts.expectedIp } : {}),
      ...(opts.family ? { family: opts.family } : {}),
    },
    logger,
    metrics,
    incidents,
    env,
    ...(opts.suiteTickets ? { suiteTickets: opts.suiteTickets } : {}),
    ...(opts.permanentCodes ? { permanentCodes: opts.permanentCodes } : {}),
    ...opts.extra,
  });
  t.teardown(() => api.close());
  return { fake, api, logs, registry, metrics, incidents, env };
}

/** One self-built app "ecard" whose secret comes from env ECARD_SECRET. */
export const ECARD = { corp_id: CORP, apps: [{ name: 'ecard', agent_id: 1000002, secret: { env: 'ECARD_SECRET' } }] };

/** The error a promise rejects with (fails the test when it resolves). */
export async function rejection(t: Test, p: Promise<unknown>): Promise<Record<string, unknown>> {
  try {
    await p;
  } catch (e) {
    return e as Record<string, unknown>;
  }
  t.fail('expected a rejection');
  return {};
}
