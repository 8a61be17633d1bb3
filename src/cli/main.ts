#!/usr/bin/env node
/**
 * The only module that touches `process`: argv, env, signals, exit codes, stdout/stderr.
 * serve | check | doctor | schema. Exit 78 (EX_CONFIG) for an invalid configuration so systemd's
 * RestartPreventExitStatus=78 stops a restart loop on a bad file.
 */
import { createHash } from 'node:crypto';
import { type FSWatcher, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { getCACertificates } from 'node:tls';
import { Registry } from 'prom-client';
import pkg from '../../package.json' with { type: 'json' };
import { createGateway, type Gateway } from '../app.ts';
import { editorJsonSchema, formatProblems, loadConfigFile } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { EXIT_CONFIG } from '../core/errors.ts';
import { createLogDestination, createLogger, type Logger, redactText } from '../core/logger.ts';
import { CertificateError } from '../server/tls.ts';
import { type CertFileToCheck, checkCertificateFiles } from '../server/tls-check.ts';
import { formatDoctorReport, invalidConfigReport, runDoctor } from '../diagnostics/doctor/index.ts';
import { checkEgressHost, EgressError } from '../egress/index.ts';
import { parseCommand, USAGE } from './args.ts';
import { runWecomDecrypt } from './wecom-decrypt.ts';
import { runWecomQueue } from './wecom-queue.ts';

const EXIT_OK = 0;
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;
/** Extra time after the drain deadline before the process gives up on a clean close. */
const HARD_EXIT_GRACE_MS = 5_000;
const CONFIG_WATCH_DEBOUNCE_MS = 300;
/** Config checks against this host (a local address that is not on it) join the file's own problems. */
const LOAD_OPTIONS = { hostCheck: checkEgressHost };

async function main(): Promise<number | undefined> {
  const cmd = parseCommand(process.argv.slice(2), process.env);
  switch (cmd.kind) {
    case 'help':
      process.stdout.write(USAGE);
      return EXIT_OK;
    case 'version':
      process.stdout.write(`wegate ${pkg.version} (node ${process.version})\n`);
      return EXIT_OK;
    case 'usage-error':
      process.stderr.write(`wegate: ${cmd.message}\n\n${USAGE}`);
      return EXIT_USAGE;
    case 'schema':
      process.stdout.write(`${JSON.stringify(editorJsonSchema(), null, 2)}\n`);
      return EXIT_OK;
    case 'check': {
      const file = resolve(cmd.configFile);
      const r = await loadConfigFile(file, LOAD_OPTIONS);
      if (!r.ok) {
        process.stderr.write(`${formatProblems(file, r.problems)}\n`);
        return EXIT_CONFIG;
      }
      const warnings = await certificateWarnings(r.config);
      for (const w of warnings) process.stderr.write(`warning (警告): ${w}\n`);
      const counted = warnings.length === 0 ? '' : `, ${warnings.length} warning(s) (警告)`;
      process.stdout.write(`${file}: configuration is valid (配置有效): ${r.config.routes.length} route(s)${counted}\n`);
      return EXIT_OK;
    }
    case 'doctor': {
      const file = resolve(cmd.configFile);
      // Without the host check: an egress address missing here is the doctor's ✗ (exit 1), with the rest still checked.
      const r = await loadConfigFile(file);
      const report = r.ok
        ? await runDoctor(file, r.config, { env: process.env, roots: () => getCACertificates('default') })
        : invalidConfigReport(file, r.problems);
      process.stdout.write(cmd.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctorReport(report));
      return report.exitCode;
    }
    case 'serve':
      return serve(resolve(cmd.configFile));
    case 'wecom-queue':
      return runWecomQueue(cmd.argv, { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s) });
    case 'wecom-decrypt':
      return runWecomDecrypt(cmd.argv, {
        env: process.env,
        out: (s) => process.stdout.write(s),
        err: (s) => process.stderr.write(s),
        readStdin: async () => {
          const chunks: Buffer[] = [];
          for await (const c of process.stdin) chunks.push(c as Buffer);
          return Buffer.concat(chunks).toString('utf8');
        },
      });
  }
}

async function serve(file: string): Promise<number | undefined> {
  const first = await loadConfigFile(file, LOAD_OPTIONS);
  if (!first.ok) {
    process.stderr.write(`${formatProblems(file, first.problems)}\n`);
    return EXIT_CONFIG;
  }
  let config: Config = first.config;
  // Batched asynchronous stdout: a write per access-log line (sync, or pino.destination's async one)
  // cost more than the rest of the line; flushSync() on exit writes what is still buffered.
  const destination = createLogDestination({ fd: 1 });
  process.on('exit', () => destination.flushSync());
  const logger = createLogger({ level: config.log.level, destination });
  let gateway: Gateway;
  try {
    gateway = await createGateway(config, {
      logger,
      registry: new Registry(),
      env: process.env,
      about: { version: pkg.version, pid: process.pid },
    });
  } catch (e) {
    logger.fatal({ err: e }, 'wegate could not start');
    await flush(logger);
    // The host changed between the check above and now (an address removed, a certificate replaced by a
    // broken one): still a config error, so systemd's RestartPreventExitStatus=78 stops the loop.
    if (e instanceof EgressError || e instanceof CertificateError) {
      process.stderr.write(`${e.message}\n`);
      return EXIT_CONFIG;
    }
    return EXIT_FAILURE;
  }

  let lastConfigHash = await hashFile(file);
  let reloading: Promise<void> | undefined;
  let reloadQueued = false;
  const reload = async (reason: string): Promise<void> => {
    if (reloading) {
      reloadQueued = true;
      return reloading;
    }
    reloading = (async () => {
      const r = await loadConfigFile(file, LOAD_OPTIONS);
      if (!r.ok) {
        logger.error(
          { reason, problems: r.problems.map((p) => `${p.path}${p.line ? ` (line ${p.line})` : ''}: ${p.message}`) },
          'new configuration is invalid; keeping the running configuration (新配置无效，继续使用当前配置)',
        );
        gateway.recordReloadFailure('invalid');
        // Certificates renewed on disk (certbot hook sends SIGHUP) are still picked up.
        await gateway.reloadCertificates().catch((err: unknown) => logger.error({ err }, 'certificate reload failed'));
        return;
      }
      try {
        await gateway.reload(r.config);
        config = r.config;
        logger.level = config.log.level;
        logger.info({ reason, routes: config.routes.length }, 'configuration reloaded');
        await logCertificateWarnings(logger, config);
      } catch (err) {
        logger.error({ err, reason }, 'configuration reload failed; keeping the running configuration');
      }
    })().finally(() => {
      reloading = undefined;
      if (reloadQueued) {
        reloadQueued = false;
        void reload('queued');
      }
    });
    return reloading;
  };

  // Config-file watch: editors and config management replace the file (rename), so watch the directory.
  let watcher: FSWatcher | undefined;
  let debounce: NodeJS.Timeout | undefined;
  const startWatch = () => {
    if (!config.reload.watch_config) return;
    try {
      watcher = watch(dirname(file), { persistent: false }, (_event, name) => {
        if (name !== null && name !== basename(file)) return;
        clearTimeout(debounce);
        debounce = setTimeout(async () => {
          const h = await hashFile(file);
          if (h === undefined || h === lastConfigHash) return;
          lastConfigHash = h;
          void reload('config file changed');
        }, CONFIG_WATCH_DEBOUNCE_MS);
        debounce.unref();
      });
      watcher.on('error', (err) => logger.warn({ err }, 'config file watch failed; SIGHUP still reloads'));
    } catch (err) {
      logger.warn({ err }, 'cannot watch the config file; SIGHUP still reloads');
    }
  };
  startWatch();

  process.on('SIGHUP', () => {
    logger.info('SIGHUP received: reloading configuration, certificates and verification files');
    void hashFile(file).then((h) => {
      if (h !== undefined) lastConfigHash = h;
      return reload('SIGHUP');
    });
  });

  // Signal handlers are installed before listening: a SIGHUP/SIGTERM that arrives right after
  // start-up must never hit Node's default action (terminate).
  return new Promise<number>((resolveExit) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second stop signal: closing now');
        void gateway.close({ drainTimeoutMs: 0 });
        return;
      }
      stopping = true;
      const drainTimeoutMs = config.shutdown.drain_timeout_ms;
      logger.info({ signal, drainTimeoutMs }, 'stopping: draining in-flight requests and WebSockets');
      watcher?.close();
      clearTimeout(debounce);
      setTimeout(() => {
        logger.error('drain did not finish in time; exiting');
        resolveExit(EXIT_FAILURE);
      }, drainTimeoutMs + HARD_EXIT_GRACE_MS).unref();
      gateway.close({ drainTimeoutMs }).then(
        () => {
          logger.info('wegate stopped');
          resolveExit(EXIT_OK);
        },
        (err: unknown) => {
          logger.error({ err }, 'error while stopping');
          resolveExit(EXIT_FAILURE);
        },
      );
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);

    gateway.listen().then(
      async (addrs) => {
        logger.info({ config: file, version: pkg.version, node: process.version, listen: addrs }, 'wegate started');
        await logCertificateWarnings(logger, config);
      },
      (err: unknown) => {
        logger.fatal({ err }, 'wegate could not start');
        void gateway.close({ drainTimeoutMs: 0 }).finally(() => resolveExit(EXIT_FAILURE));
      },
    );
  }).then(async (code) => {
    await flush(logger);
    return code;
  });
}

/** The `check` warnings in the log, one warn line each, at start-up and after each reload. */
async function logCertificateWarnings(logger: Logger, config: Config): Promise<void> {
  try {
    for (const warning of await certificateWarnings(config)) logger.warn({ warning }, 'certificate warning (证书警告)');
  } catch (err) {
    logger.warn({ err }, 'certificate warnings could not be computed');
  }
}

/** Certificate problems that do not make the config invalid (expiry, hosts, missing intermediate, no SAN). */
async function certificateWarnings(config: Config): Promise<string[]> {
  const files: CertFileToCheck[] = [];
  for (const [i, c] of (config.tls?.certs ?? []).entries()) {
    try {
      files.push({ at: `tls.certs[${i}].cert`, file: c.cert, pem: await readFile(c.cert) });
    } catch {
      // Checked readable a moment ago by the config load; gone meanwhile: nothing to warn about.
    }
  }
  const hosts = [...new Set(config.routes.flatMap((r) => (r.host === undefined ? [] : [r.host])))];
  return checkCertificateFiles(files, { hosts, now: Date.now(), roots: () => getCACertificates('default') });
}

async function hashFile(file: string): Promise<string | undefined> {
  try {
    return createHash('sha256')
      .update(await readFile(file))
      .digest('hex');
  } catch {
    return undefined;
  }
}

function flush(logger: Logger): Promise<void> {
  return new Promise((r) => {
    try {
      logger.flush(() => r());
    } catch {
      r();
    }
  });
}

process.on('uncaughtException', (err) => {
  // Last resort: every stage handles its own errors; reaching here is a bug worth a restart.
  process.stderr.write(`wegate: fatal: ${redactText(err.stack ?? String(err))}\n`);
  process.exit(EXIT_FAILURE);
});

main().then(
  (code) => {
    if (code !== undefined) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`wegate: fatal: ${redactText((err as Error).stack ?? String(err))}\n`);
    process.exit(EXIT_FAILURE);
  },
);
