/**
 * What one extraction created, in order, so a failure can put the target directory back as it
 * was: created files, links and directories are removed newest first; anything that existed
 * before is never in the journal and so never touched.
 */
import { rmdirSync, unlinkSync, utimesSync } from 'node:fs';
import { join } from 'node:path';

type Kind = 'directory' | 'other';

/**
 * A string's characters as memory sees them: a string with a character beyond Latin-1 counts each
 * of its characters twice, as V8 keeps it at two bytes a character (67 000 deep paths of 'ā' held
 * 427 MB when they counted once).
 */
export function heldChars(text: string): number {
  return /[^\u0000-\u00ff]/.test(text) ? 2 * text.length : text.length;
}

export class ExtractionJournal {
  /** Kept without the target directory's own path in front: that could be 4 KiB per entry. */
  private readonly prefix: string;

  /** `root`: the target directory, as the paths to record are joined onto it (path.join). */
  constructor(root: string) {
    this.prefix = join(root, 'x').slice(0, -1);
  }

  private key(path: string): string {
    return path.startsWith(this.prefix) ? path.slice(this.prefix.length) : path;
  }

  private full(key: string): string {
    return key.startsWith('/') ? key : this.prefix + key;
  }

  // Paths in creation order, and which of them are directories: no object per entry, since a
  // tar of millions of tiny files means millions of entries (about 90 bytes each here).
  private readonly created: string[] = [];
  private readonly createdDirectories = new Set<string>();
  private readonly createdPaths = new Set<string>();
  /** Times of pre-existing directories we add entries to: removing our entries changes them again. */
  private readonly directoryTimes = new Map<string, { atime: number; mtime: number }>();

  /** Characters of the paths recorded (below the target), as heldChars counts them: long names, not only many, take memory. */
  pathChars = 0;

  record(path: string, kind: Kind): void {
    const key = this.key(path);
    if (this.createdPaths.has(key)) {
      // Replaced by a later entry of the same name: it keeps its place (anything inside it comes
      // later), but the rollback must remove what is there now (a file that became a directory).
      if (kind === 'directory') this.createdDirectories.add(key);
      else this.createdDirectories.delete(key);
      return;
    }
    this.pathChars += heldChars(key);
    this.created.push(key);
    this.createdPaths.add(key);
    if (kind === 'directory') this.createdDirectories.add(key);
  }

  /** How many paths this extraction created. */
  get size(): number {
    return this.created.length;
  }

  /**
   * Remembers a pre-existing directory's times (the first time only) so a rollback can restore
   * them. Kept as seconds from the milliseconds, not as the Stats' Date objects: Node rounds those
   * to the millisecond, and x.9995 s came back as the next second (a test's rare failure).
   */
  rememberDirectoryTimes(path: string, times: { atimeMs: number; mtimeMs: number }): void {
    if (!this.directoryTimes.has(path) && !this.createdPaths.has(this.key(path))) this.directoryTimes.set(path, { atime: times.atimeMs / 1000, mtime: times.mtimeMs / 1000 });
  }

  has(path: string): boolean {
    return this.createdPaths.has(this.key(path));
  }

  /**
   * Removes everything recorded, newest first. Returns the paths it could not remove. Synchronous
   * so that a forced exit (util/forced-exit.ts) can run it too; it runs only once an extraction
   * has failed, when nothing else is waiting on the event loop.
   */
  rollBack(): string[] {
    const left: string[] = [];
    for (const key of this.created.reverse()) {
      const path = this.full(key);
      try {
        if (this.createdDirectories.has(key)) rmdirSync(path);
        else unlinkSync(path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue;
        // e.g. a directory we made that now holds something not in the journal (written by
        // someone else meanwhile): leave it rather than delete what is not ours.
        left.push(path);
      }
    }
    for (const [path, { atime, mtime }] of this.directoryTimes) {
      try {
        utimesSync(path, atime, mtime);
      } catch {
        // The directory's times are a courtesy; its contents are what matter.
      }
    }
    this.created.length = 0;
    this.pathChars = 0;
    this.createdPaths.clear();
    this.createdDirectories.clear();
    this.directoryTimes.clear();
    return left;
  }
}
