/**
 * The target directory as the extraction sees it: creating parents without ever following a
 * symlink, deciding what an entry may replace, and holding symlinks back until the end.
 *
 * Symlinks are created only after every other entry, because a symlink on disk is what lets a
 * later entry write outside the target ("a -> /etc", then "a/passwd"), and because whether a
 * relative link escapes can depend on links that come later ("t -> s/../x", then "s -> .").
 * Until then they live in `pendingSymlinks`, which path checks consult like the disk, and count
 * toward the extraction's memory bounds.
 */
import { lstatSync, mkdirSync, readlinkSync, rmdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { badInput } from '../../errors.js';
import { quoteEntry } from './entry-path.js';
import { heldChars, type ExtractionJournal } from './extraction-journal.js';

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
  private readonly pending = new Map<string, PendingSymlink>();
  /**
   * Characters the pending symlinks hold (path, entry name, target), counted as the journal counts
   * paths: they are bounded with them (100 000 links with 4 KB targets, a 290 KB .tar.zst, held
   * 590 MB when they were not).
   */
  pendingChars = 0;
  /** Parent directories made because an entry needed them (not archive members themselves). */
  implicitDirectories = 0;

  constructor(
    readonly root: string,
    private readonly journal: ExtractionJournal,
    private readonly fsStep: <T>(entry: string, what: string, fn: () => Promise<T> | T) => Promise<T>,
  ) {}

  get pendingSymlinks(): ReadonlyMap<string, PendingSymlink> {
    return this.pending;
  }

  addPendingSymlink(rel: string, symlink: PendingSymlink): void {
    this.dropPendingSymlink(rel);
    this.pending.set(rel, symlink);
    this.pendingChars += heldChars(rel) + heldChars(symlink.entry) + heldChars(symlink.target);
  }

  /** Forgets the pending symlinks (once created, the journal counts them). */
  clearPendingSymlinks(): void {
    this.pending.clear();
    this.pendingChars = 0;
  }

  private dropPendingSymlink(rel: string): boolean {
    const symlink = this.pending.get(rel);
    if (!symlink) return false;
    this.pending.delete(rel);
    this.pendingChars -= heldChars(rel) + heldChars(symlink.entry) + heldChars(symlink.target);
    return true;
  }

  absolute(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel);
  }

  /**
   * Makes every parent of `parts` a real directory, refusing to pass through a symlink or a
   * file. With `create` false (a hard link's target) nothing is made: returns false when a
   * parent is missing.
   */
  async prepareParents(parts: string[], entry: string, create = true): Promise<boolean> {
    // A known directory's ancestors are all known (directories are added from the top down, and
    // removed only when empty, replaced by a later entry): most entries are settled by their parent alone, without building every
    // prefix of a path that may be thousands of levels deep (2 000 entries 1 900 levels deep
    // took 80 s when each checked all of its prefixes).
    if (parts.length < 2 || this.directories.has(parts.slice(0, -1).join('/'))) return true;
    let rel = '';
    let known = true;
    for (let depth = 1; depth < parts.length; depth++) {
      rel = depth === 1 ? parts[0]! : `${rel}/${parts[depth - 1]!}`;
      // Below the first unknown one, none is known.
      if (known && this.directories.has(rel)) continue;
      known = false;
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
    if (this.dropPendingSymlink(rel)) return 'free';
    const abs = this.absolute(rel);
    const stat = await this.fsStep(entry, 'look at the path', () => lstatSync(abs, { throwIfNoEntry: false }) ?? null);
    if (stat === null) return 'free';
    if (stat.isDirectory()) {
      this.journal.rememberDirectoryTimes(abs, stat);
      if (isDirectory) {
        this.directories.add(rel);
        return 'exists';
      }
      // An empty directory this extraction made gives way, as with tar -x (an archive appended
      // to by tar -r that turns a directory into a file); anything else stays.
      if (this.journal.has(abs) && !this.hasPendingSymlinkUnder(rel) && (await this.fsStep(entry, 'replace', () => removedIfEmpty(abs)))) {
        this.directories.delete(rel);
        return 'free';
      }
      throw badInput(`archive entry ${quoteEntry(entry)}: a directory of that name already exists${this.journal.has(abs) ? ' and is not empty' : ''}; refusing to replace it`);
    }
    if (!this.journal.has(abs)) {
      throw badInput(`archive entry ${quoteEntry(entry)}: ${quoteEntry(rel)} already exists in the target directory; refusing to overwrite it: extract into an empty directory (remove an earlier extraction first)`);
    }
    await this.fsStep(entry, 'replace', () => unlinkSync(abs));
    return 'free';
  }

  private hasPendingSymlinkUnder(rel: string): boolean {
    const prefix = `${rel}/`;
    for (const key of this.pending.keys()) if (key.startsWith(prefix)) return true;
    return false;
  }

  noteDirectory(rel: string): void {
    this.directories.add(rel);
  }

  /**
   * What is at `rel`, for following a path: a symlink (pending or on disk) and its target, a
   * directory, or nothing to go on ('dead': missing, or not a directory, so nothing below it
   * exists either).
   */
  private async lookAt(rel: string): Promise<{ symlink: string } | 'directory' | 'dead'> {
    const pending = this.pendingSymlinks.get(rel);
    if (pending) return { symlink: pending.target };
    if (this.directories.has(rel)) return 'directory';
    try {
      const stat = lstatSync(this.absolute(rel));
      if (stat.isSymbolicLink()) return { symlink: readlinkSync(this.absolute(rel)) };
      return stat.isDirectory() ? 'directory' : 'dead';
    } catch {
      return 'dead';
    }
  }

  /**
   * Follows `target` from the directory `fromParts` the way the kernel would, through pending
   * and existing symlinks, and says whether it ever steps outside the root. Missing components
   * are taken literally (a dangling link is fine as long as it points inside).
   *
   * Linear in the path's length: below a missing component nothing is looked up (no pending
   * symlink lives there: a pending symlink's parents exist), and each level's path is its
   * parent's plus one name. 300 links to a 1 900-level path under a missing directory took
   * 90 s when every level joined and looked up the whole path.
   */
  async escapes(fromParts: string[], target: string): Promise<string | null> {
    if (target.startsWith('/')) return 'is absolute';
    // Per level of the walk: its path, and whether anything below it can exist.
    const paths: string[] = [];
    const alive: boolean[] = [];
    for (const part of fromParts) {
      paths.push(paths.length === 0 ? part : `${paths[paths.length - 1]!}/${part}`);
      alive.push(true); // the entry's own parents were prepared: real directories
    }
    let queue = target.split('/');
    let at = 0;
    let hops = 0;
    while (at < queue.length) {
      const part = queue[at++]!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (paths.length === 0) return 'points outside the target directory';
        paths.pop();
        alive.pop();
        continue;
      }
      const rel = paths.length === 0 ? part : `${paths[paths.length - 1]!}/${part}`;
      const parentAlive = alive.length === 0 || alive[alive.length - 1]!;
      const found = parentAlive ? await this.lookAt(rel) : 'dead';
      if (typeof found === 'object') {
        if (++hops > MAX_SYMLINK_HOPS) return null; // the kernel gives up here too (ELOOP): a loop leads nowhere
        if (found.symlink.startsWith('/')) return `goes through ${quoteEntry(rel)}, which is absolute`;
        queue = [...found.symlink.split('/'), ...queue.slice(at)];
        at = 0;
        continue;
      }
      paths.push(rel);
      alive.push(found === 'directory');
    }
    return null;
  }
}

/** Removes an empty directory; false when it holds something. */
function removedIfEmpty(abs: string): boolean {
  try {
    rmdirSync(abs);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTEMPTY' || (err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

function throughSymlink(entry: string, rel: string) {
  return badInput(`archive entry ${quoteEntry(entry)}: would be written through the symlink ${quoteEntry(rel)}; refusing to follow symlinks while extracting`);
}
