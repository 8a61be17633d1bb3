/**
 * Domain-verification files (WeCom `WW_verify_*.txt`, WeChat `MP_verify_*.txt`, configured exact names)
 * served from memory.
 *
 * Security model: the directory is read at start, on reload() and (watch) when it changes; nothing is
 * read at request time. A request matches by a Map lookup of its raw path ("/" + file name, byte for
 * byte): no decoding and no normalisation, so every traversal or encoding trick simply misses.
 *
 * What is loaded: entries directly in the directory (never subdirectories) whose names match the
 * patterns, that are regular files of at most MAX_FILE_BYTES. A symlink is followed only when its
 * fully resolved target is a regular file inside the directory's own real path: that is how
 * Kubernetes ConfigMap/Secret volumes lay files out (`name -> ..data/name`); a symlink pointing
 * anywhere else is ignored with a warning. Files are opened with O_NOFOLLOW|O_NONBLOCK and checked
 * with fstat on the open descriptor, so a swap between check and read cannot smuggle in a FIFO,
 * device or outside symlink. Hard links are ordinary regular files (making one needs write access to
 * the directory, which is trusted).
 */
import { constants, type FSWatcher, watch } from 'node:fs';
import { type FileHandle, lstat, open, readdir, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { normaliseHost } from '../core/addresses.ts';
import type { Logger } from '../core/logger.ts';
import type { Metrics } from '../metrics/metrics.ts';

/** Largest file served; verification files are a few dozen bytes. */
export const MAX_FILE_BYTES = 64 * 1024;
/** Most files loaded from the directory (sorted by name, the rest ignored with a warning). */
export const MAX_FILES = 256;

/** Coalesce a burst of watch events (editor save = several events) into one reload. */
const DEBOUNCE_MS = 100;
/** How often the directory's identity is re-checked, to re-attach the watcher after it was replaced or came back. */
const RECHECK_MS = 2_000;

const BUILTIN_NAME = /^(?:WW|MP)_verify_[A-Za-z0-9]{1,64}\.txt$/;
const EXTRA_NAME = /^[A-Za-z0-9_.-]{1,128}$/;
// O_NOFOLLOW / O_NONBLOCK are POSIX; 0 keeps the code loadable elsewhere.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

export interface VerifyFilesDeps {
  /** Directory holding the files (absolute, or relative to the process cwd). */
  readonly dir: string;
  /** Extra exact file names served besides WW_verify_<alnum>.txt / MP_verify_<alnum>.txt. */
  readonly names: readonly string[];
  /** Hosts the files are served on: exact or "*.example.edu.cn" (one label); empty = every host. */
  readonly hosts: readonly string[];
  /** Reload when the directory changes (fs.watch, debounced). */
  readonly watch: boolean;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

export interface VerifyFiles {
  /**
   * Exact raw-path match: rawPath must be "/" + a loaded file name, byte for byte; host (no port,
   * lower-case) must be allowed. The returned Buffer is shared: send it, never modify it.
   */
  lookup(host: string, rawPath: string): Buffer | undefined;
  /**
   * Does a request target (any encoding, any case) name a verification file (`WW_verify_`,
   * `MP_verify_` or a configured name)? The server answers such targets 404 when they fail path
   * validation, as for any other missing file, instead of 400.
   */
  aimsAt(target: string): boolean;
  /** Re-read the directory; on failure keep the previous set and log. Never rejects. */
  reload(): Promise<void>;
  readonly size: number;
  close(): void;
}

/** Thrown by createVerifyFiles when the directory cannot be read at start (a configuration problem). */
export class VerifyFilesError extends Error {
  readonly code: string | undefined;
  constructor(message: string, options: { cause: unknown }) {
    super(message, options);
    this.name = 'VerifyFilesError';
    const code = (options.cause as { code?: unknown } | undefined)?.code;
    this.code = typeof code === 'string' ? code : undefined;
  }
}

type FileMap = ReadonlyMap<string, Buffer>;

/** Load the directory, then keep it current (watch) until close(). Rejects with VerifyFilesError if the directory cannot be read. */
export async function createVerifyFiles(deps: VerifyFilesDeps): Promise<VerifyFiles> {
  const { dir, metrics } = deps;
  const log = deps.logger.child({ component: 'verify-files' });
  const extra = new Set<string>();
  for (const n of deps.names) {
    // readdir never yields "." or ".." and "/" cannot be in a name; refuse them anyway so intent is explicit.
    if (EXTRA_NAME.test(n) && n !== '.' && n !== '..') extra.add(n);
    else log.warn({ name: n }, 'verify_files.names entry is not a plain file name; ignored');
  }
  const extraLower = [...extra].map((n) => n.toLowerCase());
  const wanted = (name: string) => BUILTIN_NAME.test(name) || extra.has(name);
  const hostAllowed = hostMatcher(deps.hosts);

  let files: FileMap = new Map();
  let closed = false;

  function apply(next: FileMap, trigger: string): void {
    const changed = !sameFiles(files, next);
    files = next;
    metrics.verifyFiles.set(next.size);
    const names = [...next.keys()].map((k) => k.slice(1));
    if (changed || trigger === 'start') log.info({ dir, trigger, count: names.length, files: names }, 'verification files loaded');
    else log.debug({ dir, trigger, count: names.length }, 'verification files unchanged');
  }

  // Loads run one at a time; requests made while one is queued share it.
  let tail: Promise<void> = Promise.resolve();
  let queued: Promise<void> | undefined;
  function requestLoad(trigger: string): Promise<void> {
    if (queued) return queued;
    const p = tail.then(async () => {
      queued = undefined;
      if (closed) return;
      let next: FileMap;
      try {
        next = await loadDir(dir, wanted, log);
      } catch (err) {
        log.warn({ err, dir, trigger, kept: files.size }, 'verification directory cannot be read; keeping the previously loaded files');
        return;
      }
      if (!closed) apply(next, trigger);
    });
    queued = p;
    tail = p;
    return p;
  }

  // --- watching -----------------------------------------------------------------------------------
  let watcher: FSWatcher | undefined;
  let watchedId: string | undefined;
  let debounce: NodeJS.Timeout | undefined;
  let recheck: NodeJS.Timeout | undefined;
  let missingLogged = false;
  let watchFailLogged = false;

  function stopWatcher(): void {
    const w = watcher;
    watcher = undefined;
    watchedId = undefined;
    if (w) {
      try {
        w.close();
      } catch {
        // closing a dead inotify watch can throw; nothing to do
      }
    }
  }

  function startWatcher(id: string): void {
    try {
      // persistent: false — the watcher alone never keeps the process alive.
      const w = watch(dir, { persistent: false }, onEvent);
      w.on('error', (err) => {
        if (watcher !== w) return;
        log.warn({ err, dir }, 'verification directory watcher failed; retrying');
        stopWatcher();
      });
      watcher = w;
      watchedId = id;
      watchFailLogged = false;
    } catch (err) {
      // ENOSPC (inotify limit) and friends: keep serving; check() re-reads and retries every RECHECK_MS.
      if (!watchFailLogged) log.warn({ err, dir, poll_ms: RECHECK_MS }, 'cannot watch the verification directory; polling it instead');
      watchFailLogged = true;
    }
  }

  function onEvent(): void {
    if (closed || debounce) return;
    debounce = setTimeout(() => {
      debounce = undefined;
      check('watch').catch((err: unknown) => log.error({ err }, 'verification directory check failed'));
    }, DEBOUNCE_MS);
    debounce.unref();
  }

  /** Re-attach the watcher when the directory was replaced, removed or came back; reload on a watch event. */
  async function check(trigger: 'watch' | 'recheck'): Promise<void> {
    if (closed) return;
    const id = await dirIdentity(dir);
    if (closed) return;
    if (id === undefined) {
      stopWatcher();
      if (!missingLogged) log.warn({ dir, kept: files.size }, 'verification directory is gone; keeping the loaded files until it is back');
      missingLogged = true;
      return;
    }
    if (missingLogged) log.info({ dir }, 'verification directory is back');
    missingLogged = false;
    if (id !== watchedId || !watcher) {
      // Replaced, back after being gone, or the watcher died: re-attach, then read what is there now.
      // While watching keeps failing this runs every RECHECK_MS, i.e. it degrades to polling.
      stopWatcher();
      startWatcher(id);
      await requestLoad(watcher ? 'dir-changed' : 'poll');
      return;
    }
    if (trigger === 'watch') await requestLoad('watch');
  }

  // --- start --------------------------------------------------------------------------------------
  if (deps.watch) {
    // Watch before the first load so a change made during it is not missed.
    const id = await dirIdentity(dir);
    if (id !== undefined) startWatcher(id);
  }
  try {
    apply(await loadDir(dir, wanted, log), 'start');
  } catch (err) {
    stopWatcher();
    throw new VerifyFilesError(`verification directory ${JSON.stringify(dir)} cannot be read: ${errorCode(err)}`, { cause: err });
  }
  if (deps.watch) {
    recheck = setInterval(() => {
      check('recheck').catch((err: unknown) => log.error({ err }, 'verification directory check failed'));
    }, RECHECK_MS);
    recheck.unref();
  }

  return {
    lookup(host: string, rawPath: string): Buffer | undefined {
      // The path test comes first: it is the whole cost for every proxied request.
      const buf = files.get(rawPath);
      if (buf === undefined || !hostAllowed(host)) return undefined;
      return buf;
    },
    aimsAt(target: string): boolean {
      const t = target.toLowerCase();
      if (t.includes('_verify_')) return true;
      for (const n of extraLower) if (t.includes(n)) return true;
      return false;
    },
    reload: () => requestLoad('reload'),
    get size() {
      return files.size;
    },
    close(): void {
      closed = true;
      stopWatcher();
      if (debounce) clearTimeout(debounce);
      if (recheck) clearInterval(recheck);
      debounce = undefined;
      recheck = undefined;
    },
  };
}

/** Read every wanted entry of `dir`; throws only when the directory itself cannot be read. */
async function loadDir(dir: string, wanted: (name: string) => boolean, log: Logger): Promise<FileMap> {
  const realDir = await realpath(dir);
  const entries = await readdir(realDir);
  const names = entries.filter(wanted).sort();
  if (names.length > MAX_FILES) {
    log.warn(
      { dir, found: names.length, max: MAX_FILES, ignored: names.slice(MAX_FILES) },
      'too many verification files; extra ones ignored',
    );
    names.length = MAX_FILES;
  }
  const out = new Map<string, Buffer>();
  const skipped: { name: string; reason: string }[] = [];
  const scratch = Buffer.allocUnsafe(MAX_FILE_BYTES + 1);
  for (const name of names) {
    const r = await readOne(realDir, name, scratch);
    if (typeof r === 'string') skipped.push({ name, reason: r });
    else out.set(`/${name}`, r);
  }
  if (skipped.length > 0) log.warn({ dir, skipped }, 'some verification files were not loaded');
  const ignored = entries.length - names.length;
  if (ignored > 0) log.debug({ dir, ignored }, 'directory entries not matching a verification file name ignored');
  return out;
}

/** One file as an exact-size Buffer, or the reason it is not served. */
async function readOne(realDir: string, name: string, scratch: Buffer): Promise<Buffer | string> {
  const p = path.join(realDir, name);
  let target = p;
  let fh: FileHandle | undefined;
  try {
    const l = await lstat(p);
    if (l.isSymbolicLink()) {
      const real = await realpath(p);
      if (!isInside(realDir, real)) return 'symlink points outside the directory';
      target = real;
    } else if (!l.isFile()) {
      return 'not a regular file';
    }
    fh = await open(target, OPEN_FLAGS);
    const st = await fh.stat();
    if (!st.isFile()) return 'not a regular file';
    if (st.size > MAX_FILE_BYTES) return `larger than ${MAX_FILE_BYTES} bytes`;
    // Read up to one byte past the cap: a file growing between fstat and read is caught too.
    let n = 0;
    while (n < scratch.length) {
      const { bytesRead } = await fh.read(scratch, n, scratch.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > MAX_FILE_BYTES) return `larger than ${MAX_FILE_BYTES} bytes`;
    return Buffer.from(scratch.subarray(0, n));
  } catch (err) {
    return `cannot be read: ${errorCode(err)}`;
  } finally {
    await fh?.close().catch(() => {});
  }
}

function isInside(realDir: string, real: string): boolean {
  const prefix = realDir.endsWith(path.sep) ? realDir : realDir + path.sep;
  return real.startsWith(prefix) && real.length > prefix.length;
}

/** dev:ino of the directory (following a symlinked dir), or undefined when it is not a readable directory. */
async function dirIdentity(dir: string): Promise<string | undefined> {
  try {
    const s = await stat(dir);
    return s.isDirectory() ? `${s.dev}:${s.ino}` : undefined;
  } catch {
    return undefined;
  }
}

function sameFiles(a: FileMap, b: FileMap): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) {
    const w = b.get(k);
    if (w === undefined || !w.equals(v)) return false;
  }
  return true;
}

/** Host filter: empty list = every host; "*.x" matches exactly one extra label (a.x, not x or a.b.x). */
function hostMatcher(hosts: readonly string[]): (host: string) => boolean {
  if (hosts.length === 0) return () => true;
  const exact = new Set<string>();
  const suffixes: string[] = [];
  for (const h of hosts) {
    const n = normaliseHost(h);
    if (n.startsWith('*.')) suffixes.push(n.slice(1));
    else exact.add(n);
  }
  return (host) => {
    const h = normaliseHost(host);
    if (exact.has(h)) return true;
    for (const s of suffixes) {
      if (h.length > s.length && h.endsWith(s) && !h.slice(0, h.length - s.length).includes('.')) return true;
    }
    return false;
  };
}

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
}
