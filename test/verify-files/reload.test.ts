import { mkdirSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { gauge, sandbox, until } from './helpers.ts';

const text = (b: Buffer | undefined) => b?.toString();

t.test('verify-files: reload picks up added, removed and changed files when called', async (t) => {
  const s = sandbox(t);
  writeFileSync(path.join(s.dir, 'WW_verify_keep.txt'), 'v1');
  writeFileSync(path.join(s.dir, 'WW_verify_gone.txt'), 'gone');
  const vf = await s.open();
  t.equal(vf.size, 2);
  writeFileSync(path.join(s.dir, 'WW_verify_keep.txt'), 'v2');
  unlinkSync(path.join(s.dir, 'WW_verify_gone.txt'));
  writeFileSync(path.join(s.dir, 'MP_verify_new.txt'), 'new');
  t.equal(text(vf.lookup('h', '/WW_verify_keep.txt')), 'v1', 'nothing is read at request time');
  await vf.reload();
  t.equal(text(vf.lookup('h', '/WW_verify_keep.txt')), 'v2', 'changed');
  t.equal(vf.lookup('h', '/WW_verify_gone.txt'), undefined, 'removed');
  t.equal(text(vf.lookup('h', '/MP_verify_new.txt')), 'new', 'added');
  t.equal(vf.size, 2);
  t.equal(await gauge(s.metrics), 2);
});

t.test('verify-files: every reload resolves and the latest state wins when reloads run concurrently', async (t) => {
  const s = sandbox(t);
  const vf = await s.open();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < 20; i++) {
    writeFileSync(path.join(s.dir, `WW_verify_c${i}.txt`), `${i}`);
    pending.push(vf.reload());
  }
  await Promise.all(pending);
  t.equal(vf.size, 20);
});

t.test('verify-files: keeps the previous set when the directory is broken on reload', async (t) => {
  const s = sandbox(t);
  writeFileSync(path.join(s.dir, 'WW_verify_old.txt'), 'old');
  const vf = await s.open();
  renameSync(s.dir, `${s.dir}.moved`);
  await vf.reload();
  t.equal(text(vf.lookup('h', '/WW_verify_old.txt')), 'old', 'kept while missing');
  t.equal(await gauge(s.metrics), 1);
  writeFileSync(s.dir, 'now a file');
  await vf.reload();
  t.equal(text(vf.lookup('h', '/WW_verify_old.txt')), 'old', 'kept while not a directory');
  const warns = s.lines.map((l) => JSON.parse(l)).filter((l) => l.msg?.startsWith('verification directory cannot be read'));
  t.equal(warns.length, 2, 'each failure logged');
  t.equal(warns[0].level, 'warn');
  unlinkSync(s.dir);
  mkdirSync(s.dir);
  writeFileSync(path.join(s.dir, 'WW_verify_fresh.txt'), 'fresh');
  await vf.reload();
  t.equal(vf.lookup('h', '/WW_verify_old.txt'), undefined, 'replaced once readable again');
  t.equal(text(vf.lookup('h', '/WW_verify_fresh.txt')), 'fresh');
});

t.test('verify-files: watch picks up files without a reload when they are added, changed or removed', async (t) => {
  const s = sandbox(t);
  const vf = await s.open({ watch: true });
  const file = path.join(s.dir, 'WW_verify_w1.txt');
  writeFileSync(file, 'one');
  await until(() => text(vf.lookup('h', '/WW_verify_w1.txt')) === 'one', 'added file served');
  writeFileSync(file, 'two');
  await until(() => text(vf.lookup('h', '/WW_verify_w1.txt')) === 'two', 'changed file served');
  unlinkSync(file);
  await until(() => vf.lookup('h', '/WW_verify_w1.txt') === undefined, 'removed file gone');
  await until(() => vf.size === 0, 'size 0');
});

t.test('verify-files: watch follows the directory when it is replaced by a new one', async (t) => {
  const s = sandbox(t);
  writeFileSync(path.join(s.dir, 'WW_verify_gen1.txt'), 'gen1');
  const vf = await s.open({ watch: true });
  const next = `${s.dir}.next`;
  mkdirSync(next);
  writeFileSync(path.join(next, 'WW_verify_gen2.txt'), 'gen2');
  renameSync(s.dir, `${s.dir}.old`);
  renameSync(next, s.dir);
  await until(() => text(vf.lookup('h', '/WW_verify_gen2.txt')) === 'gen2', 'new directory loaded');
  t.equal(vf.lookup('h', '/WW_verify_gen1.txt'), undefined, 'old generation dropped');
  // The watcher must now be on the new directory.
  writeFileSync(path.join(s.dir, 'WW_verify_gen3.txt'), 'gen3');
  await until(() => text(vf.lookup('h', '/WW_verify_gen3.txt')) === 'gen3', 'change in the new directory seen');
  // And the old one is no longer watched.
  writeFileSync(path.join(`${s.dir}.old`, 'WW_verify_stale.txt'), 'stale');
  writeFileSync(path.join(s.dir, 'WW_verify_gen4.txt'), 'gen4');
  await until(() => vf.lookup('h', '/WW_verify_gen4.txt') !== undefined, 'gen4 seen');
  t.equal(vf.lookup('h', '/WW_verify_stale.txt'), undefined, 'old directory ignored');
});

t.test('verify-files: watch keeps the set while the directory is deleted and reloads when it is recreated', async (t) => {
  const s = sandbox(t);
  writeFileSync(path.join(s.dir, 'WW_verify_before.txt'), 'before');
  const vf = await s.open({ watch: true });
  rmSync(s.dir, { recursive: true });
  await until(() => s.lines.some((l) => l.includes('verification directory is gone')), 'gone logged');
  t.equal(text(vf.lookup('h', '/WW_verify_before.txt')), 'before', 'kept while gone');
  mkdirSync(s.dir);
  writeFileSync(path.join(s.dir, 'WW_verify_after.txt'), 'after');
  await until(() => text(vf.lookup('h', '/WW_verify_after.txt')) === 'after', 'recreated directory loaded');
  t.equal(vf.lookup('h', '/WW_verify_before.txt'), undefined);
  writeFileSync(path.join(s.dir, 'WW_verify_later.txt'), 'later');
  await until(() => vf.lookup('h', '/WW_verify_later.txt') !== undefined, 'watching the recreated directory');
});

t.test('verify-files: watch picks up the new files when the directory is swapped by a Kubernetes-style symlink', async (t) => {
  const s = sandbox(t);
  const gen = (name: string, body: string) => {
    mkdirSync(path.join(s.dir, name));
    writeFileSync(path.join(s.dir, name, 'WW_verify_cm.txt'), body);
  };
  gen('..v1', 'v1');
  symlinkSync('..v1', path.join(s.dir, '..data'));
  symlinkSync('..data/WW_verify_cm.txt', path.join(s.dir, 'WW_verify_cm.txt'));
  const vf = await s.open({ watch: true });
  t.equal(text(vf.lookup('h', '/WW_verify_cm.txt')), 'v1');
  gen('..v2', 'v2');
  symlinkSync('..v2', path.join(s.dir, '..data_tmp'));
  renameSync(path.join(s.dir, '..data_tmp'), path.join(s.dir, '..data'));
  await until(() => text(vf.lookup('h', '/WW_verify_cm.txt')) === 'v2', 'swapped content served');
});

t.test('verify-files: stops watching when closed', async (t) => {
  const s = sandbox(t);
  const vf = await s.open({ watch: true });
  vf.close();
  writeFileSync(path.join(s.dir, 'WW_verify_after_close.txt'), 'x');
  await vf.reload();
  t.equal(vf.size, 0, 'no load after close');
});
