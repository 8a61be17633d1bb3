/**
 * Server certificates: loaded from PEM files, chosen by SNI from each certificate's names,
 * reloaded on demand and when the files change. A reload builds every new SecureContext first and
 * swaps only when all of them are good, so a half-written or mismatched certificate never replaces
 * a working one. Open TLS connections keep the context they were made with.
 */

import { X509Certificate } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { normaliseHost } from '../core/addresses.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';

export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

/** Options shared by every server context (and by the listener's default context). */
export const SERVER_CONTEXT_OPTIONS: SecureContextOptions = { minVersion: 'TLSv1.2' };

/** A certificate or key file TLS cannot use: a configuration error (`serve` exits 78), not a crash. */
export class CertificateError extends Error {
  override readonly name = 'CertificateError';
}

interface LoadedCert {
  readonly files: CertFiles;
  readonly names: readonly string[];
  readonly notAfter: number;
  readonly serial: string;
  readonly context: SecureContext;
  readonly pem: { readonly cert: Buffer; readonly key: Buffer };
}

interface Table {
  readonly certs: readonly LoadedCert[];
  readonly exact: ReadonlyMap<string, SecureContext>;
  /** "*.example.edu.cn" stored as "example.edu.cn". */
  readonly wildcard: ReadonlyMap<string, SecureContext>;
}

export interface CertStoreDeps {
  readonly certs: readonly CertFiles[];
  readonly watch: boolean;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Wall clock in ms, for the expiry metric. */
  readonly now?: () => number;
  /** Quiet time after the last file event before reloading. */
  readonly watchDebounceMs?: number;
  /** Called after a successful reload, e.g. to give the listener its new default context. */
  readonly onReload?: (store: CertStore) => void;
}

export interface CertStore {
  /** For tls/https servers: never throws; unknown or missing names get the default (first) certificate. */
  readonly SNICallback: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;
  /** The context chosen for `servername` (the default certificate when none matches). */
  select(servername: string): SecureContext;
  /** cert/key PEM of the default certificate, for `https.createServer` / `server.setSecureContext`. */
  defaultOptions(): SecureContextOptions;
  /** Re-read every file; on any failure keep all current certificates. Resolves true when swapped. */
  reload(): Promise<boolean>;
  /** Set the expiry gauge from the loaded certificates (called at start, reload and scrape). */
  refreshExpiry(): void;
  /** Names and serials served, for logs and tests. */
  describe(): { names: readonly string[]; serial: string }[];
  close(): void;
}

/** DNS names a certificate is valid for: its DNS SANs, or the subject CN when it has none. */
export function certificateNames(x509: X509Certificate): string[] {
  const names: string[] = [];
  for (const entry of (x509.subjectAltName ?? '').split(', ')) {
    if (entry.startsWith('DNS:')) names.push(entry.slice(4).replace(/^"|"$/g, '').toLowerCase());
  }
  if (names.length === 0) {
    const cn = /^CN=(.+)$/m.exec(x509.subject)?.[1];
    if (cn) names.push(cn.toLowerCase());
  }
  return names;
}

async function loadOne(files: CertFiles): Promise<LoadedCert> {
  const [cert, key] = await Promise.all([readFile(files.cert), readFile(files.key)]);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    throw new CertificateError(`${files.cert}: not a PEM certificate (${(e as Error).message})`, { cause: e });
  }
  let context: SecureContext;
  try {
    // Throws on a bad key or a key that does not belong to the certificate.
    context = createSecureContext({ ...SERVER_CONTEXT_OPTIONS, cert, key });
  } catch (e) {
    throw new CertificateError(`${files.cert} / ${files.key}: ${(e as Error).message}`, { cause: e });
  }
  return {
    files,
    names: certificateNames(x509),
    notAfter: Date.parse(x509.validTo),
    serial: x509.serialNumber,
    context,
    pem: { cert, key },
  };
}

function buildTable(certs: readonly LoadedCert[]): Table {
  const exact = new Map<string, SecureContext>();
  const wildcard = new Map<string, SecureContext>();
  for (const c of certs) {
    for (const name of c.names) {
      // First certificate listed wins for a name served by several.
      if (name.startsWith('*.')) {
        if (!wildcard.has(name.slice(2))) wildcard.set(name.slice(2), c.context);
      } else if (!exact.has(name)) exact.set(name, c.context);
    }
  }
  return { certs, exact, wildcard };
}

async function loadAll(files: readonly CertFiles[]): Promise<Table> {
  if (files.length === 0) throw new Error('no certificate configured');
  return buildTable(await Promise.all(files.map(loadOne)));
}

/** Load every certificate (rejects when one is unusable) and return the store. */
export async function createCertStore(deps: CertStoreDeps): Promise<CertStore> {
  const { logger, metrics } = deps;
  const now = deps.now ?? Date.now;
  let table = await loadAll(deps.certs);
  let closed = false;
  let reloading: Promise<boolean> | undefined;
  let again = false;

  const select = (servername: string): SecureContext => {
    const name = normaliseHost(servername);
    const hit = table.exact.get(name);
    if (hit) return hit;
    const dot = name.indexOf('.');
    if (dot > 0) {
      const w = table.wildcard.get(name.slice(dot + 1));
      if (w) return w;
    }
    return (table.certs[0] as LoadedCert).context;
  };

  const refreshExpiry = () => {
    metrics.certExpirySeconds.reset();
    const t = now();
    for (const c of table.certs) {
      metrics.certExpirySeconds.set({ cert: c.names[0] ?? c.serial }, Math.round((c.notAfter - t) / 1000));
    }
  };

  const reloadOnce = async (): Promise<boolean> => {
    let next: Table;
    try {
      next = await loadAll(deps.certs);
    } catch (e) {
      // The message names files and OpenSSL's reason, never key material.
      logger.error({ err: e }, 'TLS certificate reload failed; keeping the certificates in use');
      metrics.certReloads.inc({ result: 'error' });
      return false;
    }
    if (closed) return false;
    table = next;
    refreshExpiry();
    metrics.certReloads.inc({ result: 'success' });
    logger.info({ certs: store.describe() }, 'TLS certificates reloaded');
    deps.onReload?.(store);
    return true;
  };

  // Serialise reloads; a request arriving during one runs once more afterwards (files may have changed again).
  const reload = (): Promise<boolean> => {
    if (reloading) {
      again = true;
      return reloading;
    }
    reloading = (async () => {
      let ok = await reloadOnce();
      while (again && !closed) {
        again = false;
        ok = await reloadOnce();
      }
      reloading = undefined;
      return ok;
    })();
    return reloading;
  };

  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  if (deps.watch) {
    // Watch directories, not files: certbot and `ln -sf` replace files by rename, which ends a file watch.
    const byDir = new Map<string, Set<string>>();
    for (const f of deps.certs) {
      for (const p of [f.cert, f.key]) {
        const d = dirname(p);
        if (!byDir.has(d)) byDir.set(d, new Set());
        byDir.get(d)?.add(basename(p));
      }
    }
    const debounce = deps.watchDebounceMs ?? 250;
    const onEvent = (names: ReadonlySet<string>) => (_event: string, filename: string | Buffer | null) => {
      // Kubernetes-style "..data" symlink swaps rename other entries; reload on anything unnamed too.
      if (filename !== null && !names.has(String(filename)) && !String(filename).startsWith('..')) return;
      clearTimeout(timer);
      timer = setTimeout(() => void reload(), debounce);
      timer.unref();
    };
    for (const [d, names] of byDir) {
      try {
        const w = watch(d, { persistent: false }, onEvent(names));
        w.on('error', (e) => logger.warn({ err: e, dir: d }, 'TLS certificate directory watch failed'));
        watchers.push(w);
      } catch (e) {
        logger.warn({ err: e, dir: d }, 'cannot watch TLS certificate directory; reload with SIGHUP');
      }
    }
  }

  const store: CertStore = {
    SNICallback(servername, cb) {
      let ctx: SecureContext | undefined;
      try {
        ctx = select(servername);
      } catch {
        ctx = undefined; // a throw here would end the handshake badly (and crashed older Node versions)
      }
      cb(null, ctx);
    },
    select,
    defaultOptions() {
      const first = table.certs[0] as LoadedCert;
      return { ...SERVER_CONTEXT_OPTIONS, cert: first.pem.cert, key: first.pem.key };
    },
    reload,
    refreshExpiry,
    describe: () => table.certs.map((c) => ({ names: c.names, serial: c.serial })),
    close() {
      closed = true;
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
  refreshExpiry();
  return store;
}
