/** Loop devices (losetup) stand in for block volumes, small mounts for full disks; root only. */
import assert from 'node:assert/strict';
import { mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before } from 'node:test';
import { makeTempDir, run, type TempDir } from './tools.js';

/** Attaches `backingFile` to a free loop device (read-only with `readOnly`) and returns its path, or undefined when not permitted. */
export function attachLoop(backingFile: string, options: { readOnly?: boolean } = {}): string | undefined {
  try {
    return run('losetup', ['-f', '--show', ...(options.readOnly ? ['-r'] : []), backingFile]).trim();
  } catch {
    return undefined;
  }
}

export function detachLoop(device: string): void {
  run('losetup', ['-d', device]);
}

/**
 * Makes an ext2 file system image of `size` in `dir` (extra mkfs.ext2 flags in `mkfsArgs`) and
 * mounts it on `dir/mnt`; returns the mount point, or undefined where mounting is not permitted.
 */
export function mountExt2(dir: string, size: string, mkfsArgs: string[] = []): string | undefined {
  const image = path.join(dir, 'ext2.img');
  const mountPoint = path.join(dir, 'mnt');
  run('truncate', ['-s', size, image]);
  run('mkfs.ext2', ['-q', '-F', ...mkfsArgs, image]);
  mkdirSync(mountPoint);
  try {
    run('mount', ['-o', 'loop', image, mountPoint]);
    return mountPoint;
  } catch {
    return undefined;
  }
}

/**
 * For a test file whose tests share one small ext2 file system: a temporary directory and the
 * file system mounted in it (mountExt2) before the tests, unmounted and removed after them.
 * `mountPoint` is undefined where mounting is not permitted (the tests then skip).
 */
export function sharedExt2(size: string, mkfsArgs: string[] = []): { readonly dir: TempDir; readonly mountPoint: string | undefined } {
  let dir: TempDir | undefined;
  let mountPoint: string | undefined;
  before(() => {
    dir = makeTempDir();
    mountPoint = mountExt2(dir.path, size, mkfsArgs);
  });
  after(() => {
    if (mountPoint) run('umount', [mountPoint]);
    dir?.remove();
  });
  return {
    get dir() {
      return dir!;
    },
    get mountPoint() {
      return mountPoint;
    },
  };
}

/** Mounts a tmpfs of `size` in `dir` until the test ends; returns its path, or undefined after skipping. */
export function mountTmpfs(t: { skip(msg: string): void; after(fn: () => void): void }, dir: string, size: string): string | undefined {
  const mount = path.join(dir, `tmpfs-${size}-${process.hrtime.bigint()}`);
  mkdirSync(mount);
  try {
    run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mount]);
  } catch (err) {
    t.skip(`cannot mount a tmpfs here (${(err as Error).message.split('\n')[0]})`);
    return undefined;
  }
  t.after(() => run('umount', [mount]));
  assert.ok(statSync(mount).isDirectory());
  return mount;
}
