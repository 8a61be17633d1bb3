/**
 * How wegate runs in production (systemd/wegate.service, the Dockerfile, `npm start`): compiled
 * JavaScript from `npm run build` and these Node flags. The benchmark starts wegate exactly so, and
 * test/packaging.test.ts checks that every launcher agrees with this file.
 */

/** The compiled CLI, relative to the repository root. */
export const PRODUCTION_ENTRY = 'dist/src/cli/main.js';

/**
 * A 4 MB young generation (Node's default is 16 MB per semi-space on a large machine): peak RSS under
 * load ~130-160 MB instead of ~240 MB, and faster large responses, at the same CPU per small request.
 */
export const PRODUCTION_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

/**
 * Environment for the process: at most two glibc malloc arenas. Node's threads (libuv pool, V8
 * workers) each got an arena of their own; freed socket buffers spread over them kept ~15 MB more
 * peak RSS under large responses.
 */
export const PRODUCTION_ENV: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2' };
