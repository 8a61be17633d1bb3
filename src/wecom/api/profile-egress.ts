/**
 * The WeCom client's egress when `wecom.egress` names a profile: the profile's pin (local address,
 * family, expected_ip, proxy) and a dispatcher the profile makes with the `wecom.ca_file` CA and the
 * WeCom connect timeout. `current()` is asked on every use, so a reload that replaces the egress
 * profiles (and closes the old ones with their dispatchers) hands the client the new profile; one
 * dispatcher is made per profile object, and the egress that owns the profile closes it.
 */
import { readFileSync } from 'node:fs';
import type { Dispatcher } from 'undici';
import type { WecomConfig } from '../../config/schema.ts';
import type { WecomEgress } from './types.ts';

/** What the client needs of an egress profile (src/egress/ EgressProfile has it). */
export interface WecomEgressSource {
  readonly name: string;
  readonly localAddress?: string;
  readonly family?: 4 | 6;
  readonly expectedIp?: string;
  readonly viaProxy: boolean;
  createDispatcher(tls: { readonly ca?: Buffer; readonly connectTimeoutMs: number }): Dispatcher;
}

/** A WecomEgress that follows `current()` (the profile named by wecom.egress in the running config). */
export function createProfileWecomEgress(current: () => WecomEgressSource, config: WecomConfig): WecomEgress {
  const tls = {
    ...(config.ca_file !== undefined ? { ca: readFileSync(config.ca_file) } : {}),
    connectTimeoutMs: config.timeouts.connect_ms,
  };
  const dispatchers = new WeakMap<WecomEgressSource, Dispatcher>();
  // Getters: an unset pin reads as undefined, which every reader of WecomEgress tests for (the
  // interface's optional keys cannot say "present but undefined" under exactOptionalPropertyTypes).
  const egress = {
    get name() {
      return current().name;
    },
    get dispatcher() {
      const p = current();
      let d = dispatchers.get(p);
      if (d === undefined) {
        d = p.createDispatcher(tls);
        dispatchers.set(p, d);
      }
      return d;
    },
    get localAddress() {
      return current().localAddress;
    },
    get family() {
      return current().family;
    },
    get expectedIp() {
      return current().expectedIp;
    },
    get viaProxy() {
      return current().viaProxy;
    },
  };
  return egress as WecomEgress;
}
