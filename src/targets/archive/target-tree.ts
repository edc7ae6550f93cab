/**
 * The target directory as the extraction sees it: creating parents without ever following a
 * symlink, deciding what an entry may replace, and holding symlinks back until the end.
 *
 * Symlinks are created only after every other entry, because a symlink on disk is what lets a
 * later entry write outside the target ("a -> /etc", then "a/passwd"), and because whether a
 * relative link escapes can depend on links that come later ("t -> s/../x", then "s -> .").
 * Until then they live in `pendingSymlinks`, which path checks consult like the disk.
 */
import { lstatSync, mkdirSync, readlinkSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { badInput } from '../../errors.js';
import { quoteEntry } from './entry-path.js';
import type { ExtractionJournal } from './extraction-journal.js';

/** Kernel limit on symlinks followed in one lookup; deeper chains fail with ELOOP there too. */
const MAX_SYMLINK_HOPS = 40;

export interface PendingSymlink {
  entry: string;
  target: string;
  mtime: number;
}

export class TargetTree {
  /** Relative paths known to be real directories (ours or pre-existing), never symlinks. */
  private readonly directories = new Set<string>(['']);
  readonly pendingSymlinks = new Map<string, PendingSymlink>();
  /** Parent directories made because an entry needed them (not archive members themselves). */
  implicitDirectories = 0;

  constructor(
    readonly root: string,
    private readonly journal: ExtractionJournal,
    private readonly fsStep: <T>(entry: string, what: string, fn: () => Promise<T> | T) => Promise<T>,
  ) {}

  absolute(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel);
  }

  /**
   * Makes every parent of `parts` a real directory, refusing to pass through a symlink or a
   * file. With `create` false (a hard link's target) nothing is made: returns false when a
   * parent is missing.
   */
  async prepareParents(parts: string[], entry: string, create = true): Promise<boolean> {
    for (let depth = 1; depth < parts.length; depth++) {
      const rel = parts.slice(0, depth).join('/');
      if (this.directories.has(rel)) continue;
      if (this.pendingSymlinks.has(rel)) throw throughSymlink(entry, rel);
      const abs = this.absolute(rel);
      const stat = await this.fsStep(entry, 'look at the path', () => lstatSync(abs, { throwIfNoEntry: false }) ?? null);
      if (stat === null) {
        if (!create) return false;
        // Implicit parents get tar's default mode (0777 less the umask).
        await this.fsStep(entry, 'create directory', () => mkdirSync(abs, 0o777));
        this.journal.record(abs, 'directory');
        this.implicitDirectories++;
      } else if (stat.isSymbolicLink()) throw throughSymlink(entry, rel);
      else if (!stat.isDirectory()) {
        throw badInput(`archive entry ${quoteEntry(entry)}: its parent ${quoteEntry(rel)} is not a directory`);
      } else this.journal.rememberDirectoryTimes(abs, stat);
      this.directories.add(rel);
    }
    return true;
  }

  /**
   * Clears the way for an entry at `rel`. Something this extraction made earlier is replaced
   * (a later member of the same name wins, as with tar -x); something that was in the target
   * before is never overwritten, so a failed extraction can leave the directory as it was.
   * Returns 'exists' when a directory entry finds a directory already there.
   */
  async prepareLeaf(rel: string, entry: string, isDirectory: boolean): Promise<'free' | 'exists'> {
    if (this.pendingSymlinks.delete(rel)) return 'free';
    const abs = this.absolute(rel);
    const stat = await this.fsStep(entry, 'look at the path', () => lstatSync(abs, { throwIfNoEntry: false }) ?? null);
    if (stat === null) return 'free';
    if (stat.isDirectory()) {
      this.journal.rememberDirectoryTimes(abs, stat);
      if (isDirectory) {
        this.directories.add(rel);
        return 'exists';
      }
      throw badInput(`archive entry ${quoteEntry(entry)}: a directory of that name already exists; refusing to replace it`);
    }
    if (!this.journal.has(abs)) {
      throw badInput(`archive entry ${quoteEntry(entry)}: ${quoteEntry(rel)} already exists in the target directory; refusing to overwrite it: extract into an empty directory (remove an earlier extraction first)`);
    }
    await this.fsStep(entry, 'replace', () => unlinkSync(abs));
    return 'free';
  }

  noteDirectory(rel: string): void {
    this.directories.add(rel);
  }

  /** The symlink at `rel` (pending or on disk), or undefined. */
  private async symlinkAt(rel: string): Promise<string | undefined> {
    const pending = this.pendingSymlinks.get(rel);
    if (pending) return pending.target;
    if (this.directories.has(rel)) return undefined;
    // Missing, or under something that is not a directory: nothing to follow.
    try {
      if (!lstatSync(this.absolute(rel)).isSymbolicLink()) return undefined;
      return readlinkSync(this.absolute(rel));
    } catch {
      return undefined;
    }
  }

  /**
   * Follows `target` from the directory `fromParts` the way the kernel would, through pending
   * and existing symlinks, and says whether it ever steps outside the root. Missing components
   * are taken literally (a dangling link is fine as long as it points inside).
   */
  async escapes(fromParts: string[], target: string): Promise<string | null> {
    if (target.startsWith('/')) return 'is absolute';
    const stack = [...fromParts];
    const queue = target.split('/');
    let hops = 0;
    while (queue.length > 0) {
      const part = queue.shift()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (stack.length === 0) return 'points outside the target directory';
        stack.pop();
        continue;
      }
      stack.push(part);
      const next = await this.symlinkAt(stack.join('/'));
      if (next === undefined) continue;
      if (++hops > MAX_SYMLINK_HOPS) return null; // the kernel gives up here too (ELOOP): a loop leads nowhere
      if (next.startsWith('/')) return `goes through ${quoteEntry(stack.join('/'))}, which is absolute`;
      stack.pop();
      queue.unshift(...next.split('/'));
    }
    return null;
  }
}

function throughSymlink(entry: string, rel: string) {
  return badInput(`archive entry ${quoteEntry(entry)}: would be written through the symlink ${quoteEntry(rel)}; refusing to follow symlinks while extracting`);
}
