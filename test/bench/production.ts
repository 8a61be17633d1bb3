/**
 * How wegate runs in production (systemd/wegate.service, the Dockerfile, `npm start`): compiled
 * JavaScript from `npm run build` and these Node flags. The benchmark starts wegate exactly so, and
 * test/packaging.test.ts checks that every launcher agrees with this file.
 */

/** The compiled CLI, relative to the repository root. */
export const PRODUCTION_ENTRY = 'dist/src/cli/main.js';

/**
 * - `--max-semi-space-size=4`: a 4 MB young generation (Node's default is 16 MB per semi-space on a
 *   large machine): peak RSS under load ~150-165 MB instead of ~240 MB, and faster large responses,
 *   at the same CPU per small request.
 * - `--scavenger-max-new-space-capacity-mb=2`: V8 collects the young generation early once the
 *   array buffers allocated in it reach twice this capacity (2 MB, doubled without pointer
 *   compression: 8 MB). Node's default of 32 puts that at 128 MB, so the 64 KiB socket reads of
 *   large upstream responses waited for an ordinary collection: 20-35 MB of dead buffers. Peak RSS
 *   in `npm run bench` 154-160 → 139-143 MB, CPU per request unchanged. The flag also caps the
 *   semi-space at 4 MB, the same as the flag above. Node 22 and 24 have it; an unknown flag stops
 *   Node at start ("bad option"), it is never ignored silently.
 * - `--no-allocation-site-pretenuring`: V8 watches which allocation sites make objects that survive
 *   young collections and may switch a site to allocate straight in the old generation. For a
 *   proxy's per-request objects that guess is wrong: the "tenured" garbage lives until a full
 *   collection and keeps the young objects it points at alive, so they are promoted too. In
 *   `npm run bench` runs traced with `--trace-gc-nvp`, 6 of 20 fell into that state for the whole
 *   100 KiB phase: young allocation per response fell (16 → 14 KB) while ~300 MB were promoted
 *   instead of ~35; a full collection every ~0.1 s, 140-155 µs CPU per 100 KiB response instead of
 *   ~100, peak RSS 166-170 MB instead of ~135. With the flag: 0 of 18, and the same CPU per
 *   request in 5 interleaved untraced pairs. (V8's --trace-pretenuring prints nothing in Node's
 *   release build, so the decision itself was not seen; the flag is what removes the state.)
 * - `--no-parallel-scavenge`: young collections on the main thread alone. A 4 MB young generation
 *   takes ~0.3 ms to collect, less than handing the work to helper threads and waiting for them
 *   costs, above all when they share the core (the bench pins the proxy to one; a school's 2-core
 *   server has little to spare). Interleaved pairs: CPU per small request median 34.9 → 33.6 µs
 *   (9 of 10 pairs won), per 100 KiB response 90.2 → 87.3 µs (6 pairs), same peak RSS.
 * - `--max-inlined-bytecode-size=920 --max-inlined-bytecode-size-cumulative=1840` (twice V8's
 *   defaults): the optimising compiler may inline larger functions into the request path (Node's
 *   http, undici, ours). V8's defaults weigh compile time and code size for short-lived pages; a
 *   gateway runs for months. Interleaved pairs: CPU per small request median 35.45 → 33.65 and
 *   34.55 → 32.95 µs (2 × 8 pairs, 10 won); per 100 KiB response no clear change (5 pairs: 4
 *   within 1.5 µs, one +11 µs). `npm run bench`: small c64 0.340-0.351 × nginx in 4 runs, against
 *   0.321-0.355 (2 of 8 below 0.33) without; peak RSS 125-139 MB.
 */
export const PRODUCTION_NODE_FLAGS: readonly string[] = [
  '--max-semi-space-size=4',
  '--scavenger-max-new-space-capacity-mb=2',
  '--no-allocation-site-pretenuring',
  '--no-parallel-scavenge',
  '--max-inlined-bytecode-size=920',
  '--max-inlined-bytecode-size-cumulative=1840',
];

/**
 * Environment for the process: one glibc malloc arena for all threads. By default each of Node's
 * threads (libuv pool, V8 workers) gets an arena of its own, and freed socket buffers spread over
 * them: two arenas had ~15 MB less peak RSS under large responses than the default. One arena
 * against two, five interleaved `npm run bench` runs each: peak RSS 132-142 (mean 137) against
 * 139-147 MB (mean 143), CPU per small request the same, per 100 KiB response ~5 % more (the
 * threads that free buffers share the arena's lock with the main thread).
 */
export const PRODUCTION_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '1' };
