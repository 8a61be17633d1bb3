/**
 * The composition root: builds every feature from the config and the injected logger/registry,
 * owns the listeners, swaps configuration generations atomically on reload and shuts down
 * gracefully. The CLI is the only caller; it owns signals and process exit.
 */
import type { Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Registry } from 'prom-client';
import type { Config } from './config/schema.ts';
import { LiveList } from './core/live-list.ts';
import type { Logger } from './core/logger.ts';
import {
  createIncidents,
  createReadiness,
  createWecomErrorScan,
  type DiagnosticsSnapshot,
  diagnosticsSnapshot,
  type Incidents,
  type Readiness,
} from './diagnostics/index.ts';
import { createEgress, type Egress, type EgressProfile } from './egress/index.ts';
import { createMetrics, type Metrics } from './metrics/metrics.ts';
import { createProxy } from './proxy/index.ts';
import { createAdminServer } from './server/admin.ts';
import { type ConnectionLimits, createConnectionLimiter } from './server/connection-limit.ts';
import { createGatewayPaths } from './server/gateway-paths.ts';
import { applyTimeouts, createPublicServer, type ListenerTimeouts, listenOn } from './server/listeners.ts';
import { createPipeline, type Site } from './server/pipeline.ts';
import { type CertStore, createCertStore } from './server/tls.ts';
import { createVerifyFiles } from './verify-files/index.ts';
import { createDirectWecomEgress } from './wecom/api/direct-egress.ts';
import { createWecomApi, type WecomApi, type WecomEgress } from './wecom/api/index.ts';
import { createProfileWecomEgress } from './wecom/api/profile-egress.ts';
import { createRelay, createRelayLimiter, createRelayTunnel, type RelayClients, type RelayTunnel } from './wecom/relay/index.ts';
import { type Callbacks, createCallbacks } from './wecom/callback/index.ts';
import { createStore, type StateStore } from './store/index.ts';
import { createProviderEvents, type ProviderEvents } from './wecom/callback/provider-events.ts';

export interface GatewayDeps {
  readonly logger: Logger;
  /** prom-client registry the metrics are registered on (never the global one). */
  readonly registry: Registry;
  /** Collect default process metrics on the registry (default true). */
  readonly processMetrics?: boolean;
  /** Wall clock in ms (certificate expiry). */
  readonly now?: () => number;
  /** Quiet time after a certificate file event before reloading (default 250 ms). */
  readonly certWatchDebounceMs?: number;
  /** The egress WeCom calls leave through; default the profile named by `wecom.egress`, else a direct undici Agent. */
  readonly wecomEgress?: WecomEgress;
  /** Environment for `secret: { env: … }` (cli/ passes process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Version and pid shown in /diagnostics (cli/ passes them; doctor recognises a running wegate by them). */
  readonly about?: { readonly version: string; readonly pid: number };
}

export interface ListenAddresses {
  http?: AddressInfo;
  https?: AddressInfo;
  admin: AddressInfo;
  /** The relay's CONNECT tunnel listener (relay.connect_listen). */
  relayConnect?: AddressInfo;
}

export interface Gateway {
  /** Bind the listeners from the config (port 0 allowed); rejects, with nothing left open, when one fails. */
  listen(): Promise<ListenAddresses>;
  /** Swap routes, verification files and certificates atomically; on failure throws and keeps the old config. */
  reload(config: Config): Promise<void>;
  /** Count a reload refused before it reached the gateway (the new file did not validate). */
  recordReloadFailure(reason: 'invalid' | 'error'): void;
  /** Re-read the certificate files; a broken new certificate keeps the old one (logged and counted, never rejects). */
  reloadCertificates(): Promise<void>;
  readonly metrics: Metrics;
  /** The WeCom API client, when the config has a `wecom:` section (built once; a reload keeps it). */
  readonly wecom: WecomApi | undefined;
  /** Recent incidents (60020 …) for /diagnostics. */
  readonly incidents: Incidents;
  /** The WeCom readiness probe (get_api_domain_ip per app, on a timer once listening); undefined without `wecom:`. */
  readonly readiness: Readiness | undefined;
  /** What the admin listener's /diagnostics shows. */
  diagnostics(): DiagnosticsSnapshot;
  /**
   * The egress profiles in use. A reload that changes the `egress` section replaces them and closes
   * the old ones (their dispatchers too): hold the Gateway, not a profile, across reloads.
   */
  readonly egress: Egress;
  /** Graceful: readyz 503, stop accepting, drain until the deadline, then close everything. Idempotent. */
  close(opts?: { drainTimeoutMs?: number }): Promise<void>;
}

const timeoutsOf = (config: Config): ListenerTimeouts => ({
  headerTimeoutMs: config.listen.header_timeout_ms,
  requestTimeoutMs: config.listen.request_timeout_ms,
  keepAliveTimeoutMs: config.listen.keep_alive_timeout_ms,
});

const limitsOf = (config: Config): ConnectionLimits => ({
  maxConnections: config.listen.max_connections,
  maxPerIp: config.listen.max_connections_per_ip,
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Build the gateway from a validated config. Nothing listens until `listen()`. */
export async function createGateway(initial: Config, deps: GatewayDeps): Promise<Gateway> {
  const { logger, registry } = deps;
  const metrics = createMetrics({ registry, processMetrics: deps.processMetrics ?? true });
  let config = initial;
  const clock = deps.now ?? Date.now;
  const incidents = createIncidents({ clock, logger, metrics });
  // WeCom errors in vendor responses (routes[].wecom_errors), recorded with the other incidents.
  const wecomErrorScan = createWecomErrorScan({ incidents, metrics });
  // Relay state that outlives a generation: the rate-limit buckets and the CONNECT listener.
  const relayLimiter = createRelayLimiter(deps.now);
  let relayTunnel: RelayTunnel | undefined;
  // The callback endpoints outlive generations (de-dup keys, deliveries in flight), like the client.
  let callbacks: Callbacks | undefined;
  // The durable state (suite tickets, permanent codes, AuthCodes): opened once, closed last; suites need it.
  let store: StateStore | undefined;
  let provider: ProviderEvents | undefined;

  const httpsServers = new Set<Server>();
  const makeCertStore = (c: Config): Promise<CertStore> | undefined => {
    if (!c.tls) return undefined;
    return createCertStore({
      certs: c.tls.certs,
      watch: c.tls.watch,
      logger,
      metrics,
      ...(deps.now ? { now: deps.now } : {}),
      ...(deps.certWatchDebounceMs !== undefined ? { watchDebounceMs: deps.certWatchDebounceMs } : {}),
      // Connections without SNI (by IP) use the listener's own context: keep it in step.
      onReload: (store) => {
        for (const s of httpsServers) (s as unknown as { setSecureContext(o: object): void }).setSecureContext(store.defaultOptions());
      },
    });
  };

  const makeEgress = (c: Config) => createEgress({ profiles: c.egress, logger, metrics, ...(deps.now ? { now: deps.now } : {}) });

  const buildSite = async (c: Config, eg: Egress): Promise<Site & { relayClients: RelayClients | undefined }> => {
    if (c.relay && (!wecom || !initial.wecom))
      throw new Error('relay is configured but the wecom section is missing (it needs the WeCom API client)');
    const relay =
      c.relay && wecom && initial.wecom
        ? createRelay({ config: c.relay, wecom, wecomConfig: initial.wecom, limiter: relayLimiter, logger, metrics, incidents })
        : undefined;
    const proxy = createProxy({
      routes: c.routes,
      logger,
      metrics,
      egress: (name) => eg.profile(name),
      observer: wecomErrorScan,
      sendTimeoutMs: c.listen.send_timeout_ms,
    });
    let verifyFiles: Site['verifyFiles'];
    try {
      verifyFiles = c.verify_files
        ? await createVerifyFiles({
            dir: c.verify_files.dir,
            names: c.verify_files.names,
            hosts: c.verify_files.hosts,
            watch: c.verify_files.watch,
            logger,
            metrics,
          })
        : undefined;
    } catch (e) {
      await proxy.close();
      throw e;
    }
    return {
      proxy,
      verifyFiles,
      gateway: createGatewayPaths(c.gateway.prefix, { relay: relay?.handle }),
      relayClients: relay?.clients,
      redirectHttp: c.listen.redirect_http,
      publicHttpsPort: c.listen.public_https_port,
      accessLog: c.log.access_log,
      inflight: 0,
    };
  };

  if (config.listen.https && !config.tls) throw new Error('listen.https is set but tls.certs is missing');
  // The profile WeCom calls leave through; the client asks for it on each call, so a reload's new profiles take over.
  const wecomProfile = initial.wecom?.egress;
  const missingWecomProfile = (c: Config) =>
    wecomProfile !== undefined && c.egress?.[wecomProfile] === undefined
      ? new Error(
          `wecom.egress names the egress profile "${wecomProfile}", which the egress section does not define (defined: ${Object.keys(c.egress ?? {}).join(', ') || 'none'})`,
        )
      : undefined;
  const noProfile = missingWecomProfile(config);
  if (noProfile) throw noProfile;
  let egress = await makeEgress(config);
  const wecomDirect = initial.wecom && !deps.wecomEgress && wecomProfile === undefined ? createDirectWecomEgress(initial.wecom) : undefined;
  let wecom: WecomApi | undefined;
  let readiness: Readiness | undefined;
  /**
   * Close the WeCom side and the state in dependency order: the delivery worker (callbacks) and the
   * provider exchanges stop first, so their last acks are written before the store closes.
   */
  const closeWecomAndState = async () => {
    await callbacks?.close();
    await provider?.close();
    await wecom?.close();
    await store?.close();
    await wecomDirect?.close();
    await egress.close();
  };
  try {
    if (initial.state !== undefined || (initial.wecom?.suites.length ?? 0) > 0)
      store = await createStore({ config: initial.state, neededBy: 'wecom.suites', logger, clock });
    const wecomEgress =
      deps.wecomEgress ??
      wecomDirect?.egress ??
      (initial.wecom && wecomProfile !== undefined
        ? createProfileWecomEgress(() => egress.profile(wecomProfile) as EgressProfile, initial.wecom)
        : undefined);
    if (initial.wecom && wecomEgress) {
      wecom = createWecomApi({
        config: initial.wecom,
        egress: wecomEgress,
        logger,
        metrics,
        incidents,
        env: deps.env ?? {},
        ...(store ? { suiteTickets: store.suiteTickets, permanentCodes: store.permanentCodes } : {}),
      });
      if (store && initial.wecom.suites.length > 0)
        provider = createProviderEvents({ config: initial.wecom, store, wecom, logger, metrics, clock });
      if (initial.wecom.probe.enabled)
        readiness = createReadiness({ wecom, metrics, logger, clock, intervalMs: initial.wecom.probe.interval_ms });
    }
    if (initial.wecom && initial.wecom.callbacks.length > 0) {
      callbacks = createCallbacks({
        config: initial.wecom,
        logger,
        metrics,
        env: deps.env ?? {},
        ...(deps.now ? { now: deps.now } : {}),
        ...(provider ? { provider } : {}),
        ...(store ? { store } : {}),
      });
    }
    await provider?.start();
  } catch (e) {
    await closeWecomAndState();
    throw e;
  }
  let certStore: CertStore | undefined;
  let site: Awaited<ReturnType<typeof buildSite>>;
  try {
    certStore = await makeCertStore(config);
    site = await buildSite(config, egress);
    if (config.relay?.connect_listen !== undefined && wecom && initial.wecom) {
      relayTunnel = createRelayTunnel({
        clients: () => site.relayClients,
        apiBase: initial.wecom.api_base,
        egress: wecom.egress,
        connectTimeoutMs: initial.wecom.timeouts.connect_ms,
        idleMs: config.relay.connect_idle_ms,
        headerTimeoutMs: config.listen.header_timeout_ms,
        logger,
        metrics,
      });
    }
  } catch (e) {
    certStore?.close();
    await closeWecomAndState();
    throw e;
  }

  /** Generations replaced by a reload that still have requests or WebSockets in flight. */
  const retired = new Set<Site>();
  const closeSite = (s: Site) => {
    retired.delete(s);
    s.proxy.close().catch((e: unknown) => logger.warn({ err: e }, 'closing a retired proxy failed'));
  };

  let listening = false;
  let closing = false;
  // Every accepted socket until it closes; a LiveList, not a Set: see core/live-list.ts.
  const sockets = new LiveList<Socket>();
  const limiter = createConnectionLimiter({ ...limitsOf(config), logger });
  let httpServer: Server | undefined;
  let httpsServer: Server | undefined;
  let adminServer: Server | undefined;

  const pipeline = createPipeline({
    logger,
    metrics,
    site: () => site,
    release(s) {
      s.inflight--;
      if (s.inflight === 0 && retired.has(s)) closeSite(s);
    },
    httpsPort: () => (httpsServer?.address() as AddressInfo | null)?.port,
    closing: () => closing,
    ...(callbacks ? { callbacks } : {}),
  });

  const publicServers = () => [httpServer, httpsServer].filter((s): s is Server => s !== undefined);

  const closeServer = (s: Server) =>
    new Promise<void>((resolve) => {
      if (!s.listening) return resolve();
      s.close(() => resolve());
      s.closeAllConnections();
    });

  const listen = async (): Promise<ListenAddresses> => {
    if (listening || closing) throw new Error('gateway already listening or closed');
    listening = true;
    const timeouts = timeoutsOf(config);
    try {
      const out: Partial<ListenAddresses> = {};
      if (config.listen.http) {
        httpServer = createPublicServer({ secure: false, timeouts, pipeline, sockets, limiter });
        out.http = await listenOn(httpServer, config.listen.http, 'HTTP');
      }
      if (config.listen.https) {
        const store = certStore as CertStore;
        httpsServer = createPublicServer({
          secure: true,
          timeouts,
          pipeline,
          sockets,
          limiter,
          // Delegate to whichever store is current: a config reload may replace it.
          tls: { defaultOptions: store.defaultOptions(), SNICallback: (name, cb) => (certStore ?? store).SNICallback(name, cb) },
        });
        httpsServers.add(httpsServer);
        out.https = await listenOn(httpsServer, config.listen.https, 'HTTPS');
      }
      adminServer = createAdminServer({
        registry,
        logger,
        ready: () => listening && !closing,
        beforeScrape: async () => {
          certStore?.refreshExpiry();
          // The queue gauges (depth, oldest age, dead letters per callback) are read from the store now.
          await callbacks?.queue?.refreshStats().catch(() => undefined);
        },
        ...(callbacks?.queue ? { callbackQueue: callbacks.queue } : {}),
        diagnostics,
      });
      out.admin = await listenOn(adminServer, config.admin.listen, 'the admin listener');
      listenPorts = {
        ...(out.http ? { http: out.http.port } : {}),
        ...(out.https ? { https: out.https.port } : {}),
        admin: out.admin.port,
      };
      readiness?.start();
      if (relayTunnel && config.relay?.connect_listen !== undefined) {
        out.relayConnect = await listenOn(relayTunnel.server, config.relay.connect_listen, 'the relay CONNECT listener');
      }
      return out as ListenAddresses;
    } catch (e) {
      await Promise.all([httpServer, httpsServer, adminServer, relayTunnel?.server].filter((s) => s !== undefined).map(closeServer));
      httpServer = httpsServer = adminServer = undefined;
      httpsServers.clear();
      listening = false;
      throw e;
    }
  };

  let listenPorts: Record<string, number> = {};
  const diagnostics = () =>
    diagnosticsSnapshot({
      clock,
      incidents,
      egress: () => egress.snapshot(),
      ...(wecom ? { wecom: { egress: () => wecom.egress.name, tokens: () => wecom.tokenStatus() } } : {}),
      ...(readiness ? { readiness } : {}),
      ...(provider ? { provider: provider.snapshot } : {}),
      ...(callbacks?.queue ? { callbackQueue: callbacks.queue.lastStats } : {}),
      about: () => ({ ...deps.about, listen: listenPorts }),
    });

  let reloadChain: Promise<unknown> = Promise.resolve();
  const reloadNow = async (next: Config) => {
    if (closing) throw new Error('gateway is shutting down');
    let nextCerts: CertStore | undefined;
    let nextSite: Awaited<ReturnType<typeof buildSite>>;
    const egressChanged = JSON.stringify(next.egress) !== JSON.stringify(config.egress);
    let nextEgress = egress;
    const tlsChanged = JSON.stringify(next.tls?.certs) !== JSON.stringify(config.tls?.certs) || next.tls?.watch !== config.tls?.watch;
    try {
      if (next.listen.https && !next.tls && !certStore) throw new Error('listen.https is set but tls.certs is missing');
      const noWecomProfile = missingWecomProfile(next);
      if (noWecomProfile) throw noWecomProfile;
      if (egressChanged) nextEgress = await makeEgress(next);
      try {
        if (tlsChanged && next.tls) nextCerts = await makeCertStore(next);
        nextSite = await buildSite(next, nextEgress);
      } catch (e) {
        nextCerts?.close();
        if (nextEgress !== egress) await nextEgress.close();
        throw e;
      }
    } catch (e) {
      // The caller (CLI) logs the failure.
      metrics.configReloads.inc({ result: 'error' });
      throw e;
    }
    if (listening) {
      for (const key of ['http', 'https'] as const) {
        if (next.listen[key] !== config.listen[key]) {
          logger.warn(
            { listener: key, running: config.listen[key], configured: next.listen[key] },
            'listen address changed: restart wegate to apply it',
          );
        }
      }
      if (next.admin.listen !== config.admin.listen) {
        logger.warn(
          { listener: 'admin', running: config.admin.listen, configured: next.admin.listen },
          'listen address changed: restart wegate to apply it',
        );
      }
      if (next.wecom?.egress !== wecomProfile) {
        logger.warn({ running: wecomProfile, configured: next.wecom?.egress }, 'wecom.egress changed: restart wegate to apply it');
      }
      if (next.relay?.connect_listen !== config.relay?.connect_listen) {
        logger.warn(
          { listener: 'relay_connect', running: config.relay?.connect_listen, configured: next.relay?.connect_listen },
          'listen address changed: restart wegate to apply it',
        );
      }
      if (httpsServer && !next.tls) logger.warn('tls removed from the configuration: keeping the certificates in use until restart');
      // The WeCom client (token caches, secrets read at start-up) outlives generations.
      if (JSON.stringify(next.wecom) !== JSON.stringify(initial.wecom))
        logger.warn('the wecom section changed: restart wegate to apply it');
    }
    // Swap: new requests use the new generation from here on; the old one closes when its last exchange ends.
    const old = site;
    site = nextSite;
    config = next;
    for (const s of publicServers()) applyTimeouts(s, timeoutsOf(next));
    if (nextEgress !== egress) {
      // The retired proxies own their pools and agents; the old profiles' timers and dispatchers go.
      const oldEgress = egress;
      egress = nextEgress;
      oldEgress.close().catch((e: unknown) => logger.warn({ err: e }, 'closing the previous egress profiles failed'));
    }
    limiter.configure(limitsOf(next));
    old.verifyFiles?.close();
    if (old.inflight === 0) closeSite(old);
    else retired.add(old);
    if (nextCerts) {
      certStore?.close();
      certStore = nextCerts;
      certStore.refreshExpiry();
      for (const s of httpsServers) (s as unknown as { setSecureContext(o: object): void }).setSecureContext(nextCerts.defaultOptions());
    }
    metrics.configReloads.inc({ result: 'success' });
    // Same certificate files: re-read them anyway (SIGHUP from a certbot deploy hook). A broken
    // renewal keeps the old certificates without failing the configuration reload.
    if (!nextCerts && certStore) await certStore.reload();
  };

  let closePromise: Promise<void> | undefined;
  const closeNow = async (drainTimeoutMs: number) => {
    closing = true;
    const deadline = performance.now() + drainTimeoutMs;
    pipeline.closeInFlight();
    const servers = publicServers();
    for (const s of servers) {
      s.close();
      s.closeIdleConnections();
    }
    // In-flight requests finish (their responses carry Connection: close); keep-alive sockets that
    // become idle are closed as they do; WebSockets stay until the deadline.
    while (sockets.size > 0 && performance.now() < deadline) {
      await sleep(Math.min(50, Math.max(1, deadline - performance.now())));
      for (const s of servers) s.closeIdleConnections();
    }
    if (sockets.size > 0) {
      logger.warn({ open: sockets.size }, 'drain deadline reached: closing the remaining connections');
      for (const s of [site, ...retired]) s.proxy.closeWebSockets();
      // A moment for the close frames, then cut everything.
      for (let i = 0; i < 10 && sockets.size > 0; i++) await sleep(20);
      for (const sock of sockets) sock.destroy();
    }
    await Promise.all(servers.map(closeServer));
    site.verifyFiles?.close();
    await Promise.allSettled([site, ...retired].map((s) => s.proxy.close()));
    retired.clear();
    certStore?.close();
    readiness?.close();
    await relayTunnel?.close();
    await closeWecomAndState();
    if (adminServer) await closeServer(adminServer);
    // The last requests' lines, if their turn has not ended yet.
    pipeline.flushAccessLog();
    listening = false;
  };

  return {
    listen,
    reload(next) {
      const p = reloadChain.then(() => reloadNow(next));
      reloadChain = p.catch(() => undefined);
      return p;
    },
    recordReloadFailure(reason) {
      metrics.configReloads.inc({ result: reason });
    },
    async reloadCertificates() {
      if (certStore && !closing) await certStore.reload();
    },
    metrics,
    wecom,
    incidents,
    readiness,
    diagnostics,
    get egress() {
      return egress;
    },
    close(opts) {
      closePromise ??= closeNow(opts?.drainTimeoutMs ?? config.shutdown.drain_timeout_ms);
      return closePromise;
    },
  };
}
