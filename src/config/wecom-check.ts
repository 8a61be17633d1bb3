/**
 * Checks of the `wecom:` section a schema cannot express: api_base by the one URL rule
 * (core/addresses: no "127.1", "010.0.0.9", port 0 or root dot), unique app/suite names, each app's token
 * chain complete (corp id, secret or suite of the right kind), `secret` set exactly one way, and the
 * egress profile it names present in the top-level `egress:` section (when that section exists).
 */
import { parseUpstream, type UrlRules } from '../core/addresses.ts';
import { familyOf, pinnedFamily } from '../egress/family.ts';
import type { CheckContext, Segment } from './validate.ts';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** wecom.api_base is an origin only: every API path is appended to it. */
const API_BASE_RULES: UrlRules = { example: 'such as "https://qyapi.weixin.qq.com"', path: 'none', noRootDot: true };

export function checkWecom(data: Obj, ctx: CheckContext): void {
  const wecom = data['wecom'];
  if (!isObj(wecom)) return;
  const apiBase = str(wecom['api_base']);
  if (apiBase !== undefined && !ctx.failed(['wecom', 'api_base'])) {
    const u = parseUpstream(apiBase, API_BASE_RULES);
    if (!u.ok) ctx.report(['wecom', 'api_base'], `${u.reason}, got ${ctx.show(['wecom', 'api_base'], apiBase, Number.POSITIVE_INFINITY)}`);
  }
  const apps = Array.isArray(wecom['apps']) ? (wecom['apps'] as unknown[]) : [];
  const suites = Array.isArray(wecom['suites']) ? (wecom['suites'] as unknown[]) : [];

  const suiteKinds = new Map<string, string>();
  const unique = (list: unknown[], section: string, names: Map<string, number>) =>
    list.forEach((entry, i) => {
      if (!isObj(entry)) return;
      const name = str(entry['name']);
      if (name === undefined || ctx.failed(['wecom', section, i, 'name'])) return;
      const first = names.get(name);
      if (first !== undefined) ctx.report(['wecom', section, i, 'name'], `must be unique, got ${JSON.stringify(name)} which wecom.${section}[${first}] also uses`);
      else names.set(name, i);
    });
  const suiteNames = new Map<string, number>();
  unique(suites, 'suites', suiteNames);
  unique(apps, 'apps', new Map());

  const checkSecret = (at: Segment[], ref: unknown) => {
    if (!isObj(ref) || ctx.failed(at)) return;
    const n = (ref['file'] !== undefined ? 1 : 0) + (ref['env'] !== undefined ? 1 : 0);
    if (n !== 1) ctx.report(at, `must set exactly one of \`file\` or \`env\`, got ${n === 0 ? 'neither' : 'both'}`);
  };

  suites.forEach((s, i) => {
    if (!isObj(s)) return;
    checkSecret(['wecom', 'suites', i, 'secret'], s['secret']);
    const name = str(s['name']);
    if (name !== undefined) suiteKinds.set(name, str(s['kind']) ?? 'third_party');
  });

  apps.forEach((a, i) => {
    if (!isObj(a)) return;
    const at = (k: string): Segment[] => ['wecom', 'apps', i, k];
    checkSecret(at('secret'), a['secret']);
    const kind = str(a['kind']) ?? 'self_built';
    const suite = str(a['suite']);
    if (a['corp_id'] === undefined && wecom['corp_id'] === undefined) {
      ctx.report(at('corp_id'), 'must be set here or as wecom.corp_id (我的企业 › 企业信息 › 企业ID; for 代开发 / third-party apps: the authorising corp)');
    }
    if (kind === 'self_built' && a['secret'] === undefined) ctx.report(at('secret'), 'must be set for a self_built app (应用管理 › <应用> › Secret), as { file: … } or { env: … }');
    if (kind === 'self_built' && suite !== undefined) ctx.report(at('suite'), 'must not be set for a self_built app');
    if (kind === 'third_party' && suite === undefined) ctx.report(at('suite'), 'must name the wecom.suites entry of a third_party app');
    if (kind === 'authorized' && suite === undefined && a['secret'] === undefined) {
      ctx.report(at('secret'), 'must be set for an authorized (代开发) app (its permanent code), unless `suite` names its 代开发 template');
    }
    if (suite !== undefined && kind !== 'self_built' && !ctx.failed(at('suite'))) {
      const sk = suiteKinds.get(suite);
      if (sk === undefined) {
        ctx.report(at('suite'), `must name an entry of wecom.suites, got ${JSON.stringify(suite)} (defined: ${[...suiteKinds.keys()].join(', ') || 'none'})`);
      } else if (kind === 'authorized' && sk !== 'template') {
        ctx.report(at('suite'), `must name a suite of kind template (代开发模板) for an authorized app, got ${JSON.stringify(suite)} of kind ${sk}`);
      } else if (kind === 'third_party' && sk !== 'third_party') {
        ctx.report(at('suite'), `must name a suite of kind third_party for a third_party app, got ${JSON.stringify(suite)} of kind ${sk}`);
      }
    }
  });

  // The egress profile, when the top-level `egress:` section (named profiles) is there to check against.
  const egressName = str(wecom['egress']);
  const egress = data['egress'];
  if (egressName !== undefined && egress !== undefined && !ctx.failed(['wecom', 'egress'])) {
    const names = isObj(egress)
      ? Object.keys(isObj(egress['profiles']) ? egress['profiles'] : egress)
      : Array.isArray(egress)
        ? egress.flatMap((p: unknown) => (isObj(p) && typeof p['name'] === 'string' ? [p['name']] : []))
        : [];
    if (!names.includes(egressName)) {
      ctx.report(['wecom', 'egress'], `must name an egress profile, got ${JSON.stringify(egressName)} (defined: ${names.join(', ') || 'none'})`);
    } else if (apiBase !== undefined && isObj(egress) && !ctx.failed(['wecom', 'api_base'])) {
      checkApiBaseFamily(apiBase, egressName, egress[egressName], ctx);
    }
  }
}

/**
 * An IP-literal api_base of the other family than the WeCom profile pins can never be reached (the
 * pin cannot be honoured for a literal): refuse it at load instead of failing every call. Through a
 * forward proxy the proxy connects to api_base, so only a direct profile is compared.
 */
function checkApiBaseFamily(apiBase: string, profileName: string, profile: unknown, ctx: CheckContext): void {
  if (!isObj(profile) || profile['proxy'] !== undefined) return;
  let host: string;
  try {
    host = new URL(apiBase).hostname.replace(/^\[|\]$/g, '');
  } catch {
    return;
  }
  const literal = familyOf(host);
  const family = profile['family'];
  const pinned = pinnedFamily({
    ...(family === 4 || family === 6 ? { family } : {}),
    ...(typeof profile['local_address'] === 'string' ? { local_address: profile['local_address'] } : {}),
    ...(typeof profile['expected_ip'] === 'string' ? { expected_ip: profile['expected_ip'] } : {}),
  });
  if (literal === undefined || pinned === undefined || literal === pinned) return;
  ctx.report(
    ['wecom', 'api_base'],
    `must be reachable over IPv${pinned}, the family the egress profile "${profileName}" pins (from its ${
      family === 4 || family === 6 ? 'family' : typeof profile['local_address'] === 'string' ? 'local_address' : 'expected_ip'
    }), got the IPv${literal} literal ${ctx.show(['wecom', 'api_base'], apiBase, Number.POSITIVE_INFINITY)}: use a host name or an IPv${pinned} address, or pin the profile to IPv${literal}`,
  );
}

/** routes[].wecom_errors: the explanation page is built from what the scan finds. */
export function checkWecomErrors(data: Obj, ctx: CheckContext): void {
  const routes = data['routes'];
  if (!Array.isArray(routes)) return;
  routes.forEach((route: unknown, i: number) => {
    const w = isObj(route) ? route['wecom_errors'] : undefined;
    if (!isObj(w) || w['explain'] !== true || w['scan'] !== false) return;
    const at: Segment[] = ['routes', i, 'wecom_errors', 'explain'];
    if (!ctx.failed(at)) ctx.report(at, 'must be false when scan is false (the explanation page shows what the scan finds), got true');
  });
}
