import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

type Callback<T> = (err: NodeJS.ErrnoException | null, value: T) => void;
interface FsExt {
  seek(fd: number, offset: number, whence: number, callback: Callback<number>): void;
  flock(fd: number, flags: 'ex' | 'exnb' | 'un', callback: Callback<void>): void;
}

let loaded: FsExt | null | undefined;

/**
 * fs-ext, an optional native module: lseek (SEEK_DATA, SEEK_HOLE) and flock, which Node's fs
 * lacks. Undefined when it did not build: callers then do without (read holes, skip clean-up).
 */
export function fsExt(): FsExt | undefined {
  if (loaded === undefined) {
    try {
      loaded = require('fs-ext') as FsExt;
    } catch {
      loaded = null;
    }
  }
  return loaded ?? undefined;
}

// lseek(2) whence values (Linux).
export const SEEK_CUR = 1;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/**
 * lseek(2) on `fd`: the resulting offset; undefined for ENXIO (SEEK_DATA or SEEK_HOLE past the last
 * data, or an offset past the end). Only when fsExt() is there; other errors reject.
 */
export function lseek(fd: number, offset: number, whence: number): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    fsExt()!.seek(fd, offset, whence, (err, position) => {
      if (err?.code === 'ENXIO') resolve(undefined);
      else if (err) reject(err);
      else resolve(position);
    });
  });
}

/**
 * Takes an exclusive flock on `fd` without waiting: true if taken, false if another process
 * holds it, undefined if flock is not available here. Released when the file is closed or the
 * process ends, however it ends.
 */
export function tryLock(fd: number): Promise<boolean | undefined> {
  const ext = fsExt();
  if (!ext) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    ext.flock(fd, 'exnb', (err) => {
      if (!err) resolve(true);
      else if (err.code === 'EAGAIN' || err.code === 'EWOULDBLOCK') resolve(false);
      else resolve(undefined); // a file system without flock
    });
  });
}
