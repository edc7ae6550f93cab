import { existsSync, statfsSync } from 'node:fs';
import path from 'node:path';
import { errorCode, fileProblem, ImportError, targetError } from '../errors.js';

/** Turns a file-system error while writing `where` into one line that says what to do. */
export function targetFailure(err: unknown, where: string): ImportError {
  if (err instanceof ImportError) return err;
  const code = errorCode(err);
  switch (code) {
    case 'ENOSPC':
      // Space, but no inode for the new (temporary) file: "free some space" would not help.
      if (outOfInodes(path.dirname(where))) return targetError(`no free inodes left on the file system of ${where} (see df -i): remove some files there, or write it elsewhere`, err);
      return targetError(`no space left on the device while writing ${where}: free some space or use a larger volume`, err);
    case 'EDQUOT':
      return targetError(`disk quota exceeded while writing ${where}`, err);
    case 'ENOENT':
      // The directory is there (the create failed anyway): a file system that takes no new files, as /proc.
      if (existsSync(path.dirname(where))) return targetError(`cannot create ${where}: ${path.dirname(where)} does not take new files (a special file system?): write it elsewhere`, err);
      return targetError(`destination directory of ${where} does not exist: create it first`, err);
    case 'EACCES':
    case 'EPERM':
      return targetError(`permission denied writing ${where}`, err);
    case 'EROFS':
      return targetError(`${where} is on a read-only file system: write it to another, or remount this one read-write`, err);
    case 'EISDIR':
      return targetError(`${where} is a directory: give a file name for the disk image`, err);
    default:
      return targetError(`cannot write ${where}: ${fileProblem(err)}`, err);
  }
}

/** Whether the file system holding `dir` has blocks free but no inodes (file systems without inode counts report 0 files). */
function outOfInodes(dir: string): boolean {
  try {
    const stats = statfsSync(dir);
    return stats.files > 0 && stats.ffree === 0 && stats.bavail > 0;
  } catch {
    return false;
  }
}
