/**
 * The package's `bin` (src/cli/main.ts) is executable in git, so `npm ci` (which chmods bins) leaves
 * the work tree unmodified, and it runs as a program through its shebang.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';

const ROOT = join(import.meta.dirname, '../..');
const run = promisify(execFile);

async function bins(): Promise<[name: string, path: string][]> {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  return Object.entries(pkg.bin);
}

t.test('bin: src/cli/main.ts is committed with mode 100755 when git lists it (npm ci leaves no modified file)', async (t) => {
  const list = await bins();
  t.ok(list.length > 0, 'package.json names a bin');
  for (const [name, path] of list) {
    const { stdout } = await run('git', ['ls-files', '-s', '--', path], { cwd: ROOT });
    t.match(stdout, /^100755 [0-9a-f]{40} 0\t/, `${name} (${path}) is executable in git: ${stdout.trim()}`);
  }
});

t.test('bin: runs through its shebang when executed directly', async (t) => {
  for (const [name, path] of await bins()) {
    t.match((await readFile(join(ROOT, path), 'utf8')).split('\n')[0], /^#!\/usr\/bin\/env node$/, `${name}: shebang`);
    // `env node` finds the Node that runs the tests (the devDependency's, which runs .ts files).
    const env = { ...process.env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` };
    const { stdout } = await run(join(ROOT, path), ['--version'], { cwd: ROOT, env });
    t.match(stdout, /^wegate \d+\.\d+\.\d+ \(node v\d+/, `${name} --version`);
  }
});
