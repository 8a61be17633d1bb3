/**
 * The address family a profile's connections are pinned to, one rule for the egress and for config
 * checks: the explicit `family`, else the family of `local_address`, else — for a profile without a
 * forward proxy — the family of `expected_ip` (WeCom sees the address the traffic leaves with, so an
 * IPv4 expected_ip means an IPv4 connection: a dual-stack api_base would otherwise leave over IPv6
 * and get 60020). Through a proxy, expected_ip is the proxy's address and says nothing about ours.
 */
import { isIP } from 'node:net';

export interface FamilySource {
  readonly family?: 4 | 6 | undefined;
  readonly local_address?: string | undefined;
  readonly expected_ip?: string | undefined;
  readonly proxy?: unknown;
}

export const familyOf = (ip: string | undefined): 4 | 6 | undefined => {
  const f = ip === undefined ? 0 : isIP(ip);
  return f === 4 ? 4 : f === 6 ? 6 : undefined;
};

export function pinnedFamily(profile: FamilySource): 4 | 6 | undefined {
  return profile.family ?? familyOf(profile.local_address) ?? (profile.proxy === undefined ? familyOf(profile.expected_ip) : undefined);
}
