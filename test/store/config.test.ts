/**
 * The `state:` section as the config loader reads it: paths resolved against the config file and
 * checked, unknown keys refused with their YAML line; a loaded section opens a store.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { loadConfigText } from '../../src/config/load.ts';
import { createStore } from '../../src/store/index.ts';
import { captureLogger, tempDir } from './helpers.ts';

const yaml = (state: string[]) =>
  ['listen: { http: "127.0.0.1:0" }', 'routes: [{ upstream: "http://127.0.0.1:1" }]', 'state:', ...state, ''].join('\n');

t.test('config state: a missing directory, a missing key file and an unknown key are problems with their line when loaded', async (t) => {
  const base = await tempDir(t);
  const r = loadConfigText(yaml(['  dir: ./no-such-dir', '  key_file: ./no-such.key', '  dri: x']), join(base, 'wegate.yaml'));
  t.equal(r.ok, false);
  if (r.ok) return;
  t.same(
    r.problems.map((p) => [p.path, p.line]).sort(),
    [
      ['state.dri', 6],
      ['state.dir', 4],
      ['state.key_file', 5],
    ].sort(),
    'every problem at once',
  );
  t.match(
    r.problems.find((p) => p.path === 'state.dir')?.message,
    `must be a readable directory, got "./no-such-dir" (${join(base, 'no-such-dir')}): not found`,
  );
});

t.test('config state: a relative dir is resolved against the config file and opens a store when it exists', async (t) => {
  const base = await tempDir(t);
  await mkdir(join(base, 'state'), { mode: 0o700 });
  await writeFile(join(base, 'state.key'), `${'0f'.repeat(32)}\n`, { mode: 0o600 });
  const r = loadConfigText(yaml(['  dir: ./state', '  key_file: state.key']), join(base, 'wegate.yaml'));
  if (!r.ok) throw new Error(JSON.stringify(r.problems));
  t.same(r.config.state, { dir: join(base, 'state'), key_file: join(base, 'state.key') });
  const { logger } = captureLogger();
  const store = await createStore({ config: r.config.state, logger, clock: Date.now });
  t.teardown(() => store.close());
  t.equal(store.location, join(base, 'state', 'state.db'));
  t.equal(await store.dedup.claim('k', 1000), true);
});
