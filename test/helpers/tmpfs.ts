/**
 * A real full disk for the tests: a small tmpfs the test mounts itself (the machines and CI run as
 * root), unmounted in teardown, and a filler that writes until ENOSPC.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';

/**
 * Mount a 4 MiB tmpfs; the returned directory is unmounted and removed in teardown. Call it before
 * starting what writes there: teardowns run last-registered first, so the unmount comes after the
 * writer has closed.
 */
export async function mountSmallTmpfs(t: Test, prefix: string): Promise<string> {
  const base = await mkdtemp(join(tmpdir(), prefix));
  const mnt = join(base, 'mnt');
  await mkdir(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mnt]);
  t.teardown(async () => {
    execFileSync('umount', [mnt]);
    await rm(base, { recursive: true, force: true });
  });
  return mnt;
}

/** Write `file` until the filesystem is full (ENOSPC); bounded at 64 MiB. */
export async function fillDisk(file: string): Promise<void> {
  const fh = await open(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (let i = 0; i < 1024; i++) await fh.write(chunk);
    throw new Error('the tmpfs never filled up');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh.close();
  }
}
