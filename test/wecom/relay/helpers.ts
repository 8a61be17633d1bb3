/**
 * Test wiring for the relay: the real fake WeCom over TLS (test/helpers/fake-wecom.ts), a real
 * gateway (test/helpers/gateway.ts) whose WeCom egress is an undici Agent pinned to a loopback alias
 * with the test CA, and a loopback upstream that must never see a relay request.
 */
import { createHash } from 'node:crypto';
import type { Test } from 'tap';
import { Agent } from 'undici';
import type { WecomEgress } from '../../../src/wecom/api/index.ts';
import { FakeWecom } from '../../helpers/fake-wecom.ts';
import { ADMIN, CA, LOOPBACK, makeConfig, type Running, startGateway, startUpstream, type Upstream } from '../../helpers/gateway.ts';

export const CORP = 'wwfakecorp0001';
export const SECRET = 'ecard-app-secret-0123456789abcdefghijklmnop';
/** The vendor's bearer token (the config holds only its SHA-256). */
export const TOKEN = 'vendor-relay-token-Zq4w7Yb2Kx9Lm3Pn';
/** The vendor's CONNECT password (the config holds only its SHA-256). */
export const PASSWORD = 'vendor-tunnel-password-Hj6Tr8Vc1';
export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
export const bearer = (token = TOKEN) => ({ authorization: `Bearer ${token}` });
export const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

export interface RelaySetup {
  readonly fake: FakeWecom;
  readonly gw: Running;
  readonly upstream: Upstream;
}

export interface RelaySetupOptions {
  /** relay.clients (default: one client "vendor" for app ecard with user/get and message/send). */
  readonly clients?: Record<string, unknown>[];
  readonly relay?: Record<string, unknown>;
  /** Local address of the WeCom egress (default 127.0.0.2, the whitelisted one). */
  readonly localAddress?: string;
  readonly expectedIp?: string;
  readonly gateway?: Record<string, unknown>;
  /** Extra keys of the `wecom:` section (timeouts, max_response_bytes …). */
  readonly wecom?: Record<string, unknown>;
  /** The gateway's clock (GatewayDeps.now; the relay's buckets follow it). */
  readonly now?: () => number;
}

export const VENDOR = {
  name: 'vendor',
  app: 'ecard',
  token_sha256: sha256(TOKEN),
  apis: ['/cgi-bin/user/get', '/cgi-bin/message/send'],
};

export async function relaySetup(t: Test, opts: RelaySetupOptions = {}): Promise<RelaySetup> {
  const fake = await FakeWecom.start(t);
  fake.addApp({ name: 'ecard', corpId: CORP, secret: SECRET, trustedIps: ['127.0.0.2'] });
  const upstream = await startUpstream(t, 'vendor-site');
  const localAddress = opts.localAddress ?? '127.0.0.2';
  const dispatcher = new Agent({ connect: { ca: CA, timeout: 2000 }, localAddress });
  t.teardown(() => dispatcher.destroy());
  const egress: WecomEgress = {
    name: 'pinned',
    dispatcher,
    localAddress,
    family: 4,
    viaProxy: false,
    ...(opts.expectedIp !== undefined ? { expectedIp: opts.expectedIp } : {}),
  };
  const config = makeConfig({
    listen: LOOPBACK,
    admin: ADMIN,
    routes: [{ upstream: upstream.url }],
    // No readiness probe: these tests count every call WeCom sees.
    wecom: {
      api_base: fake.url,
      corp_id: CORP,
      apps: [{ name: 'ecard', secret: { env: 'ECARD_SECRET' } }],
      probe: { enabled: false },
      ...opts.wecom,
    },
    relay: { clients: opts.clients ?? [VENDOR], ...opts.relay },
    ...(opts.gateway ? { gateway: opts.gateway } : {}),
  });
  const gw = await startGateway(t, config, { wecomEgress: egress, env: { ECARD_SECRET: SECRET }, ...(opts.now ? { now: opts.now } : {}) });
  return { fake, gw, upstream };
}
