/**
 * Safe, streaming extraction of a tar into a directory (SPEC §6). The archive is read once,
 * entry by entry; nothing is staged. Every entry is checked before it touches the disk, and a
 * failure of any kind removes what this extraction created.
 */
// File system steps are synchronous: entries are extracted one at a time, and for the small files
// most archives hold, a thread-pool round trip per step cost more than the step (see sparse-file-writer.ts).
import { closeSync, constants, fchmodSync, futimesSync, linkSync, lstatSync, lutimesSync, mkdirSync, openSync, symlinkSync } from 'node:fs';
import { chmod, stat, utimes } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, type ExtractEvents, type Header as TarStreamHeader } from 'tar-stream';
import { ImportError, badInput, fileProblem, isImportError, isOutOfSpace, targetError } from '../../errors.js';
import { archivePathComponents, quoteEntry } from './entry-path.js';
import { ExtractionJournal } from './extraction-journal.js';
import { SparsePlacer, fileLayout, type FileLayout } from '../../formats/tar/sparse-layout.js';
import { SparseFileWriter } from './sparse-file-writer.js';
import { TarPrepass, type EntryFacts } from '../../formats/tar/tar-prepass.js';
import { TargetTree } from './target-tree.js';
import { cleanUpOnForcedExit } from '../../util/forced-exit.js';

export interface ArchiveExtractOptions {
  signal?: AbortSignal;
  /** Bytes free for the extraction; fail as soon as exceeded. */
  availableBytes?: number;
  /**
   * Called once the whole archive is read and written, before the extraction is made final
   * (symlinks, directory modes). Throwing rolls everything back: e.g. a checksum of the source
   * that can only be known at the end.
   */
  beforeCommit?: () => void | Promise<void>;
  /** The archive's name for messages about its format (a path or URL); "archive" by default. */
  where?: string;
  /** Paths this extraction may create, entries and the parent directories they need (MAX_ARCHIVE_PATHS by default). */
  maxPaths?: number;
  /** ...and the characters of those paths (MAX_ARCHIVE_PATH_CHARS by default). */
  maxPathChars?: number;
}

/**
 * What an extraction may create, counted in paths (entries and the directories made for them):
 * each created path is remembered for the rollback (about 150 bytes with the rest of the
 * per-entry state), and a few MB of tar.gz can hold millions of empty entries. Two million keeps
 * a pod's memory near 350 MB; GNU tar, which keeps no rollback, has no limit.
 */
const MAX_ARCHIVE_PATHS = 2_000_000;
/**
 * ...and in the characters of those paths: a path may be 4096 bytes long, so two million of them
 * could take 8 GB. 128 Mi characters is 2 000 000 paths of 67 characters.
 */
const MAX_ARCHIVE_PATH_CHARS = 128 << 20;

export interface ArchiveResult {
  files: number;
  /** Directories created (archive members and the parents they needed). */
  directories: number;
  /** Symbolic and hard links. */
  links: number;
  /** Bytes of regular-file content extracted (logical sizes; holes count). */
  bytes: number;
  /** Of those, the bytes written: all-zero 4 KiB blocks and sparse files' holes are left as holes. */
  dataBytes: number;
  /** Entries deliberately not extracted, each "name: why". */
  skipped: string[];
}

/** An entry's data stream, with its header and the header's offset in the stream. */
type Entry = ExtractEvents['entry'][1];
/** What tar-stream's header really carries: unknown typeflags come out as null, PAX records as strings. */
type Header = Omit<TarStreamHeader, 'type' | 'pax'> & { type: TarStreamHeader['type'] | null; pax?: Record<string, string> | null };

const CREATE_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
/**
 * Permissions are kept (SPEC §6), the sticky bit included (a tree's tmp/ directories need it), but
 * not ownership, and so not setuid and setgid either: every file belongs to the importer, so the
 * bits would not mean what the archive meant, and run as root they would turn an untrusted
 * archive's programs into root's.
 */
const PERMISSION_BITS = 0o1777;

export async function extractArchive(tarStream: Readable, directory: string, options: ArchiveExtractOptions = {}): Promise<ArchiveResult> {
  const extraction = new Extraction(directory, options);
  const forget = cleanUpOnForcedExit(() => extraction.journal.rollBack());
  try {
    return await extraction.run(tarStream);
  } catch (err) {
    tarStream.destroy();
    const left = extraction.journal.rollBack();
    const failure = asImportError(err, directory, options);
    if (left.length > 0) {
      throw new ImportError(failure.category, `${failure.message} (could not remove ${left.length} created path(s), e.g. ${quoteEntry(left[0]!)})`, { cause: failure });
    }
    throw failure;
  } finally {
    forget();
  }
}

function asImportError(err: unknown, directory: string, { signal, where = 'archive' }: ArchiveExtractOptions): ImportError {
  if (signal?.aborted) return new ImportError('cancelled', 'archive extraction cancelled');
  if (isImportError(err)) return err;
  const errno = err as NodeJS.ErrnoException;
  if (isOutOfSpace(err)) return targetError(`no space left in ${directory} while extracting the archive`, err);
  if (typeof errno?.code === 'string' && /^E[A-Z0-9]+$/.test(errno.code)) return targetError(`cannot extract into ${directory}: ${fileProblem(err)}`, err);
  // tar-stream's own complaints: "Invalid tar header. Maybe the tar is corrupted or it needs to be
  // gunzipped?" (compression is already removed here, so that advice never applies), "Unexpected end of data".
  const reason = ((err as Error)?.message ?? String(err)).replace(/^Invalid tar header\. Maybe .*$/, 'a header block is not a valid tar header (its checksum does not add up)');
  return badInput(`${where} is not a valid tar: ${reason}`, err);
}

class Extraction {
  readonly journal: ExtractionJournal;
  private readonly tree: TargetTree;
  private readonly result: ArchiveResult = { files: 0, directories: 0, links: 0, bytes: 0, dataBytes: 0, skipped: [] };
  /** Sum of regular-file data sizes declared so far (and what sparse files allocate beyond theirs), checked against availableBytes at each header and sparse write. */
  private declaredBytes = 0;
  /** Directories this extraction made for archive entries: their mode and mtime are applied last. */
  private readonly directoryMeta = new Map<string, { mode: number; mtime: number }>();

  constructor(
    private readonly directory: string,
    private readonly options: ArchiveExtractOptions,
  ) {
    this.journal = new ExtractionJournal(directory);
    this.tree = new TargetTree(directory, this.journal, (entry, what, fn) => this.fsStep(entry, what, fn));
  }

  async run(tarStream: Readable): Promise<ArchiveResult> {
    const { signal } = this.options;
    // The feed is attached before the first await: a failure upstream (say a corrupt gzip
    // layer) may be emitted at any moment and must find a listener.
    const prepass = new TarPrepass();
    // v7 headers (no ustar magic) are tars too, as GNU tar reads them. (tar-stream's own typings
    // omit the option its extract.js reads.)
    const extract = tarExtract({ allowUnknownFormat: true } as Parameters<typeof tarExtract>[0]);
    let feedError: unknown;
    const feeding = pipeline(tarStream, prepass, extract as unknown as NodeJS.WritableStream, { signal }).catch((err) => {
      feedError ??= err;
      extract.destroy(err);
    });
    // Taken now too, so the iterator sees a failure that happens while we set up.
    const entries = extract[Symbol.asyncIterator]();
    try {
      signal?.throwIfAborted();
      // The target itself is trusted (it may be a symlink, e.g. a mount path); only what is inside is checked.
      const root = await stat(this.directory).catch((err: Error) => {
        throw targetError(`cannot extract into ${this.directory}: ${err.message}`, err);
      });
      if (!root.isDirectory()) throw targetError(`cannot extract into ${this.directory}: not a directory`);
      this.journal.rememberDirectoryTimes(this.directory, root);
    } catch (err) {
      extract.destroy();
      await feeding;
      throw err;
    }
    let entryError: unknown;
    let parseError: unknown;
    try {
      for await (const entry of { [Symbol.asyncIterator]: () => entries }) {
        signal?.throwIfAborted();
        const facts = prepass.facts.get(entry.offset);
        prepass.facts.delete(entry.offset);
        try {
          await this.entry(entry, entry.header as Header, facts);
        } catch (err) {
          entryError = err; // leaving the loop destroys the parser, which fails the feed with "premature close"
          break;
        }
      }
    } catch (err) {
      parseError = err;
    }
    await feeding;
    // Our own refusal (or a full disk) is the story; otherwise a source failure explains the
    // parser's or the entry stream's complaint, not the other way round.
    if (isImportError(entryError)) throw entryError;
    const failure = feedError ?? entryError ?? parseError;
    if (failure !== undefined) throw failure;
    await this.options.beforeCommit?.();
    await this.finish();
    this.result.directories += this.tree.implicitDirectories;
    return this.result;
  }

  /** Runs a file system step for an entry, turning errno failures into one clear line. */
  async fsStep<T>(entry: string, what: string, fn: () => Promise<T> | T): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // Only file system failures are ours to explain; a failing entry stream (truncated
      // archive, source error) is explained by the feed.
      if (isImportError(err) || typeof code !== 'string' || !/^E[A-Z0-9]+$/.test(code)) throw err; // errno codes, not ERR_* stream codes
      if (isOutOfSpace(err)) {
        throw targetError(`no space left in ${this.directory} while extracting archive entry ${quoteEntry(entry)}: the target is full`, err);
      }
      throw targetError(`cannot ${what} for archive entry ${quoteEntry(entry)} in ${this.directory}: ${fileProblem(err)}`, err);
    }
  }

  private async entry(entry: Entry, header: Header, facts: EntryFacts | undefined): Promise<void> {
    const name = header.name;
    // tar-stream reads names as UTF-8: bytes in another character set (a Latin-1 "café") come out
    // as U+FFFD, and two such names would become one file, the second silently replacing the first.
    for (const [what, text] of [
      ['name', name],
      ['link target', header.linkname],
      ['sparse file name', header.pax?.['GNU.sparse.name']],
    ] as const) {
      if (text?.includes('\uFFFD')) {
        throw badInput(
          `archive entry ${quoteEntry(name)}: its ${what} holds bytes that are not UTF-8 (another character set, such as Latin-1), which cdi-importer does not extract: re-create the archive with UTF-8 names (convmv -f latin1 -t utf8 converts a tree)`,
        );
      }
    }
    // Each created path is remembered to undo a failed extraction: memory bounds both their number and their length.
    const refuse = (what: string, fix: string) =>
      badInput(`archive entry ${quoteEntry(name)}: ${what}, more than cdi-importer extracts (it remembers each one to undo a failed extraction, and memory must stay bounded); ${fix}`);
    // Symlinks are created last; until then they take memory as paths do.
    const paths = this.journal.size + this.tree.pendingSymlinks.size;
    const maxPaths = this.options.maxPaths ?? MAX_ARCHIVE_PATHS;
    if (paths >= maxPaths) {
      throw refuse(`the archive creates more than ${maxPaths} paths (its entries and the directories they need)`, 'split it into several archives');
    }
    const maxChars = this.options.maxPathChars ?? MAX_ARCHIVE_PATH_CHARS;
    if (this.journal.pathChars + this.tree.pendingChars >= maxChars) {
      const limit = maxChars % (1 << 20) === 0 ? `${maxChars / (1 << 20)} Mi` : String(maxChars);
      throw refuse(
        `the paths the archive creates (and its symlinks' targets) add up to more than ${limit} characters (${paths} paths so far; a path with characters beyond Latin-1 counts them twice)`,
        'split it into several archives or shorten its names',
      );
    }
    switch (header.type) {
      case 'file':
      case 'contiguous-file':
        // A name ending in "/" is the old (V7) way of writing a directory; GNU tar, Python and
        // Go (CDI) read it so. No file can have that name anyway.
        if (/\/$/.test(header.pax?.['GNU.sparse.name'] ?? header.name)) {
          await drain(entry);
          return this.directoryEntry(name, header);
        }
        return this.regularFile(entry, header, facts);
      case 'directory':
        // No data: a directory's size field is ignored, as GNU tar and Go's archive/tar ignore it
        // (tar-stream reads the next header right after; its entry stream would never end).
        return this.directoryEntry(name, header);
      case 'symlink':
        await drain(entry);
        return this.symlinkEntry(name, header.linkname ?? '', mtimeOf(header));
      case 'link':
        await drain(entry);
        return this.hardLinkEntry(name, header.linkname ?? '');
      case 'character-device':
      case 'block-device':
        throw badInput(`archive entry ${quoteEntry(name)} is a ${header.type.replace('-', ' ')}; device nodes are not extracted from archives`);
      case 'fifo':
        throw badInput(`archive entry ${quoteEntry(name)} is a FIFO; named pipes are not extracted from archives`);
      default:
        return this.otherEntry(entry, name, facts);
    }
  }

  private async otherEntry(entry: Entry, name: string, facts: EntryFacts | undefined): Promise<void> {
    const flag = facts?.typeflag ?? '?';
    await drain(entry);
    switch (flag) {
      case 'D': // GNU incremental dump directory: a directory plus a listing tar -x does not need
        return this.directoryEntry(name, entry.header as Header);
      case 'S':
        throw badInput(`archive entry ${quoteEntry(name)}: unreadable GNU sparse header`);
      case 'M':
        throw badInput(`archive entry ${quoteEntry(name)} continues a file from a previous volume; multi-volume archives are not supported`);
      case 'V':
        this.result.skipped.push(`${quoteEntry(name)}: volume label`);
        return;
      default:
        this.result.skipped.push(`${quoteEntry(name)}: unsupported entry type ${JSON.stringify(flag)}`); // quoted: archive text on one line
    }
  }

  private checkSpace(entry: string, size: number, how = ''): void {
    this.declaredBytes += size;
    const available = this.options.availableBytes;
    if (available !== undefined && this.declaredBytes > available) {
      throw new ImportError(
        'too-small',
        `archive content size ${this.declaredBytes} (through entry ${quoteEntry(entry)}${how}) is larger than the reported available storage ${available}. A larger PVC is required`,
      );
    }
  }

  private async regularFile(entry: Entry, header: Header, facts: EntryFacts | undefined): Promise<void> {
    const stored = header.size ?? 0;
    const layout = fileLayout(header.name, stored, header.pax ?? null, facts);
    const name = layout.name;
    const parts = archivePathComponents(name, name);
    if (parts.length === 0) throw badInput(`archive entry ${quoteEntry(name)}: a file cannot replace the target directory`);
    this.checkSpace(name, stored);
    await this.tree.prepareParents(parts, name);
    const rel = parts.join('/');
    const abs = this.tree.absolute(rel);

    const fd = await this.fsStep(name, 'create the file', () => this.createFile(rel, name, abs));
    this.journal.record(abs, 'other');
    // A sparse file's data may take more disk than the archive stores (single bytes 4 KiB apart):
    // what its writes allocate beyond its stored size counts toward the space check as well.
    let charged = stored;
    const sparse = layout.segments !== null || layout.mapInData;
    const writer = new SparseFileWriter(
      fd,
      sparse
        ? (allocated) => {
            if (allocated <= charged) return;
            this.checkSpace(name, allocated - charged, ', whose sparse data takes whole 4 KiB blocks on disk');
            charged = allocated;
          }
        : undefined,
    );
    try {
      await this.fsStep(name, 'write', () => this.writeData(entry, name, stored, layout, writer));
      await this.fsStep(name, 'finish', () => {
        writer.finish(layout.realSize);
        fchmodSync(fd, (header.mode ?? 0o644) & PERMISSION_BITS);
        const mtime = mtimeOf(header);
        futimesSync(fd, fileTime(mtime), fileTime(mtime));
      });
    } finally {
      writer.release();
      closeSync(fd);
    }
    this.result.files++;
    this.result.bytes += layout.realSize;
    this.result.dataBytes += writer.bytesWritten;
  }

  /**
   * Creates an entry's file, never through a symlink (O_NOFOLLOW) and never over something that
   * was there (O_EXCL). Only when the create finds a name taken (or a symlink entry of that name
   * is pending) does the tree decide whether it may be replaced: most files cost no lstat.
   */
  private async createFile(rel: string, entry: string, abs: string): Promise<number> {
    if (!this.tree.pendingSymlinks.has(rel)) {
      try {
        return openSync(abs, CREATE_FILE, 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    await this.prepareNonDirectory(rel, entry);
    return openSync(abs, CREATE_FILE, 0o600);
  }

  /** Streams the entry's data into the file, placing each stored byte where the layout says. */
  private async writeData(entry: Entry, name: string, stored: number, layout: FileLayout, writer: SparseFileWriter): Promise<void> {
    const placer = new SparsePlacer(layout, stored, (why) => badInput(`archive entry ${quoteEntry(name)}: invalid GNU sparse file: ${why}`));
    const write = (offset: number, data: Buffer) => writer.writeAt(offset, data);
    for await (const chunk of entry as AsyncIterable<Buffer>) {
      this.options.signal?.throwIfAborted();
      placer.place(chunk, write);
    }
    placer.finish();
  }

  /** Clears the way for a file or link; a directory it replaced (an empty one of ours) gets no mode or time at the end. */
  private async prepareNonDirectory(rel: string, entry: string): Promise<void> {
    await this.tree.prepareLeaf(rel, entry, false);
    this.directoryMeta.delete(this.tree.absolute(rel));
  }

  private async directoryEntry(name: string, header: Header): Promise<void> {
    const parts = archivePathComponents(name, name);
    if (parts.length === 0) return; // "./": the target itself, which we leave as it is
    await this.tree.prepareParents(parts, name);
    const rel = parts.join('/');
    const abs = this.tree.absolute(rel);
    if ((await this.tree.prepareLeaf(rel, name, true)) === 'free') {
      await this.fsStep(name, 'create directory', () => mkdirSync(abs, 0o700));
      this.journal.record(abs, 'directory');
      this.tree.noteDirectory(rel);
      this.result.directories++;
    }
    // Only directories this extraction made get the archive's mode and time: one that was
    // there before is left exactly as it was.
    if (this.journal.has(abs)) this.directoryMeta.set(abs, { mode: (header.mode ?? 0o755) & PERMISSION_BITS, mtime: mtimeOf(header) });
  }

  private async symlinkEntry(name: string, target: string, mtime: number): Promise<void> {
    const parts = archivePathComponents(name, name);
    if (parts.length === 0) throw badInput(`archive entry ${quoteEntry(name)}: a symlink cannot replace the target directory`);
    if (target === '' || target.includes('\0')) throw badInput(`archive entry ${quoteEntry(name)}: symlink with an empty or invalid target`);
    await this.tree.prepareParents(parts, name);
    const rel = parts.join('/');
    // Checked now for an early, clear failure, and again once every entry is in place.
    await this.checkSymlink(name, parts, target);
    await this.prepareNonDirectory(rel, name);
    this.tree.addPendingSymlink(rel, { entry: name, target, mtime });
  }

  private async checkSymlink(entry: string, parts: string[], target: string): Promise<void> {
    const why = await this.tree.escapes(parts.slice(0, -1), target);
    if (why !== null) {
      throw badInput(`archive entry ${quoteEntry(entry)}: symlink target ${quoteEntry(target)} ${why}; links must stay inside the target directory`);
    }
  }

  private async hardLinkEntry(name: string, linkname: string): Promise<void> {
    const parts = archivePathComponents(name, name);
    const targetParts = archivePathComponents(linkname, name, 'hard link target');
    if (parts.length === 0 || targetParts.length === 0) throw badInput(`archive entry ${quoteEntry(name)}: a hard link cannot involve the target directory itself`);
    const rel = parts.join('/');
    const targetRel = targetParts.join('/');
    if (rel === targetRel) {
      this.result.skipped.push(`${quoteEntry(name)}: hard link to itself`);
      return;
    }
    // The link target is reached through the same never-follow rule as any path we create.
    const missing = () => badInput(`archive entry ${quoteEntry(name)}: hard link target ${quoteEntry(linkname)} does not exist in the archive`);
    if (!(await this.tree.prepareParents(targetParts, name, false))) throw missing();
    const pending = this.tree.pendingSymlinks.get(targetRel);
    await this.tree.prepareParents(parts, name);
    if (pending) {
      // A hard link to a symlink is a second symlink with the same text, which must be checked
      // from its own directory.
      await this.symlinkEntry(name, pending.target, pending.mtime); // counted when created
      return;
    }
    const targetAbs = this.tree.absolute(targetRel);
    const targetStat = lstatSync(targetAbs, { throwIfNoEntry: false }) ?? null;
    if (targetStat === null) throw missing();
    if (!targetStat.isFile()) throw badInput(`archive entry ${quoteEntry(name)}: hard link target ${quoteEntry(linkname)} is not a regular file`);
    await this.prepareNonDirectory(rel, name);
    const abs = this.tree.absolute(rel);
    await this.fsStep(name, 'create the hard link', () => linkSync(targetAbs, abs));
    this.journal.record(abs, 'other');
    this.result.links++;
  }

  /** Symlinks last (checked against the final tree), then directory modes and times, deepest first. */
  private async finish(): Promise<void> {
    for (const [rel, { entry, target }] of this.tree.pendingSymlinks) {
      await this.checkSymlink(entry, rel.split('/'), target);
    }
    for (const [rel, { entry, target, mtime }] of this.tree.pendingSymlinks) {
      const abs = this.tree.absolute(rel);
      await this.fsStep(entry, 'create the symlink', () => symlinkSync(target, abs));
      this.journal.record(abs, 'other');
      await this.fsStep(entry, 'set the symlink time', () => lutimesSync(abs, fileTime(mtime), fileTime(mtime)));
      this.result.links++;
    }
    this.tree.clearPendingSymlinks();
    // Each path's depth counted once, not in every comparison (paths may be 4 096 bytes long).
    const deepestFirst = [...this.directoryMeta].map(([abs, meta]) => ({ abs, meta, depth: abs.split('/').length })).sort((a, b) => b.depth - a.depth);
    for (const { abs, meta: { mode, mtime } } of deepestFirst) {
      await this.fsStep(abs, 'set directory mode and time', async () => {
        await chmod(abs, mode);
        await utimes(abs, fileTime(mtime), fileTime(mtime));
      });
    }
  }
}

/** PAX mtime keeps sub-second precision; the ustar field has whole seconds. */
function mtimeOf(header: Header): number {
  const pax = header.pax?.mtime;
  if (pax !== undefined && /^-?\d+(\.\d+)?$/.test(pax)) return Number(pax);
  const seconds = (header.mtime?.getTime() ?? Date.now()) / 1000;
  // A negative header time is base-256 (GNU tar's, before 1970), which tar-stream 3 reads one
  // second late: it takes two's complement for ones' complement (-2 comes back as -1; only
  // 1969-12-31 23:59:59, -1, stays late, as 0). test/targets/archive compares with GNU tar.
  return seconds < 0 ? seconds - 1 : seconds;
}

/**
 * A time for Node's utimes family: seconds (sub-microsecond precision), or a Date before 1970,
 * since Node takes a negative number of seconds for "now" (a 1960 file got the day it was
 * extracted; GNU tar keeps 1960).
 */
function fileTime(seconds: number): number | Date {
  return seconds >= 0 ? seconds : new Date(seconds * 1000);
}

async function drain(entry: Entry): Promise<void> {
  for await (const _ of entry as AsyncIterable<Buffer>) void _;
}

