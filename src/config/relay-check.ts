/**
 * Checks of the `relay:` and `gateway:` sections a schema cannot express: the relay needs the
 * `wecom:` section, client names are unique, each client can authenticate somehow, a relay client
 * names a configured WeCom app and at least one API, source CIDRs parse, the reserved prefix is not
 * a dot-segment and no route lies under it.
 */
import { isIP } from 'node:net';
import type { CheckContext, Segment } from './validate.ts';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** "a.b.c.d", "a.b.c.d/n", "v6", "v6/n". */
function isCidr(text: string): boolean {
  const slash = text.indexOf('/');
  const f = isIP(slash === -1 ? text : text.slice(0, slash));
  if (f === 0) return false;
  if (slash === -1) return true;
  const p = text.slice(slash + 1);
  return /^\d{1,3}$/.test(p) && Number(p) <= (f === 4 ? 32 : 128);
}

export function checkRelay(data: Obj, ctx: CheckContext): void {
  const gateway = data['gateway'];
  if (isObj(gateway) && (gateway['prefix'] === '/./' || gateway['prefix'] === '/../') && !ctx.failed(['gateway', 'prefix'])) {
    ctx.report(['gateway', 'prefix'], `must not be a dot-segment, got ${JSON.stringify(gateway['prefix'])}`);
  }
  // A route under the reserved prefix would never be reached.
  const prefix = isObj(gateway) && typeof gateway['prefix'] === 'string' ? gateway['prefix'] : '/.wegate/';
  const routes = Array.isArray(data['routes']) ? (data['routes'] as unknown[]) : [];
  routes.forEach((r, i) => {
    const path = isObj(r) ? r['path'] : undefined;
    if (typeof path === 'string' && (path.startsWith(prefix) || `${path}/` === prefix) && !ctx.failed(['routes', i, 'path'])) {
      ctx.report(['routes', i, 'path'], `must not be under gateway.prefix ${JSON.stringify(prefix)} (wegate's own paths, never proxied), got ${JSON.stringify(path)}`);
    }
  });
  const relay = data['relay'];
  if (!isObj(relay)) return;
  const wecom = data['wecom'];
  if (!isObj(wecom)) {
    ctx.report(['relay'], 'needs the `wecom:` section (the relay calls WeCom through the WeCom API client and its egress)');
  }
  const apps = new Set(
    isObj(wecom) && Array.isArray(wecom['apps']) ? (wecom['apps'] as unknown[]).flatMap((a) => (isObj(a) && typeof a['name'] === 'string' ? [a['name']] : [])) : [],
  );
  const clients = Array.isArray(relay['clients']) ? (relay['clients'] as unknown[]) : [];
  const names = new Map<string, number>();
  clients.forEach((c, i) => {
    if (!isObj(c)) return;
    const at = (...k: Segment[]): Segment[] => ['relay', 'clients', i, ...k];
    const name = c['name'];
    if (typeof name === 'string' && !ctx.failed(at('name'))) {
      const first = names.get(name);
      if (first !== undefined) ctx.report(at('name'), `must be unique, got ${JSON.stringify(name)} which relay.clients[${first}] also uses`);
      else names.set(name, i);
    }
    const hasToken = c['token_sha256'] !== undefined;
    const hasPassword = c['connect_password_sha256'] !== undefined;
    if (!hasToken && !hasPassword) {
      ctx.report(at('token_sha256'), 'must be set (API relay) unless connect_password_sha256 is (CONNECT tunnel); got neither');
    }
    const apis = Array.isArray(c['apis']) ? c['apis'] : [];
    if (hasToken) {
      if (c['app'] === undefined) ctx.report(at('app'), 'must name the wecom.apps entry whose access token the relay injects for this client');
      else if (typeof c['app'] === 'string' && isObj(wecom) && !apps.has(c['app']) && !ctx.failed(at('app'))) {
        ctx.report(at('app'), `must name an entry of wecom.apps, got ${JSON.stringify(c['app'])} (defined: ${[...apps].join(', ') || 'none'})`);
      }
      if (apis.length === 0 && !ctx.failed(at('apis'))) ctx.report(at('apis'), 'must list at least one WeCom API path, such as "/cgi-bin/message/send"');
    } else if (apis.length > 0 && !ctx.failed(at('apis'))) {
      ctx.report(at('apis'), 'is set but token_sha256 is not: the API relay cannot authenticate this client');
    }
    const cidrs = Array.isArray(c['source_cidrs']) ? c['source_cidrs'] : [];
    cidrs.forEach((v: unknown, j: number) => {
      if (typeof v === 'string' && !ctx.failed(at('source_cidrs', j)) && !isCidr(v)) {
        ctx.report(at('source_cidrs', j), `must be an address or CIDR block such as "203.0.113.0/24", got ${ctx.show(at('source_cidrs', j), v)}`);
      }
    });
  });
}
