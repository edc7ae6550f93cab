/**
 * The one module of typed errors. Every failure a user can see is an ImportError whose
 * `message` is the single line they read; `category` is what front doors map to their
 * dialect (exit code, termination message, HTTP status).
 */
export type ErrorCategory =
  | 'bad-input' // the image or archive is unusable (corrupt, hostile, unsupported format)
  | 'cannot-connect' // the source could not be reached or refused us
  | 'too-small' // the image does not fit the target
  | 'checksum' // downloaded bytes do not match the expected checksum
  | 'scratch-required' // the data needs scratch space and none was given
  | 'target' // the destination cannot be written (missing directory, full disk, permissions)
  | 'usage' // the request itself is wrong (bad flag values, unknown source kind)
  | 'cancelled'; // stopped by a signal or an abort

export class ImportError extends Error {
  readonly category: ErrorCategory;
  /**
   * The source the failure came from, as the user named it (a path, a URL without credentials,
   * "standard input"): set by the pipeline on the way out (fromSource), since the format readers
   * know bytes, not names. The CLI starts a bad-input line with it when the line does not name it.
   */
  source?: string;
  constructor(category: ErrorCategory, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ImportError';
    this.category = category;
  }
}

/**
 * A source's answers that do not make one file: the file behind the URL was replaced during the
 * import, replicas behind a load balancer disagree on ETag or Last-Modified, or the server stopped
 * honouring Range. Its parts would not make one image; importImage starts again once, reading the
 * whole file in one download (what CDI always does, and what this message asks of the user).
 */
export class SourceChangedError extends ImportError {
  constructor(message: string) {
    super('cannot-connect', message);
  }
}

/** What a SourceChangedError says happened, without its advice to start again (for the line of the try that does). */
export function sourceChangeReason(err: unknown): string {
  return (err as Error).message.replace(/; start the import again$/, '');
}

/** Whether `err`, or an error it wraps (a qcow2 read that failed, say), is a SourceChangedError. */
export function causedBySourceChange(err: unknown): boolean {
  let at: unknown = err;
  for (let depth = 0; at instanceof Error && depth < 10; depth++) {
    if (at instanceof SourceChangedError) return true;
    at = at.cause;
  }
  return false;
}

export const badInput = (message: string, cause?: unknown) => new ImportError('bad-input', message, { cause });
export const cannotConnect = (message: string, cause?: unknown) => new ImportError('cannot-connect', message, { cause });
export const targetError = (message: string, cause?: unknown) => new ImportError('target', message, { cause });
export const usageError = (message: string) => new ImportError('usage', message);

/** How CDI's too-small message ends: the pod's words; the CLI says which flags help instead. */
export const LARGER_PVC_REQUIRED = '. A larger PVC is required';

/** How a too-small line says the size was found while the image was being written. */
const MEASURED_WHILE_READ = '(measured as the stream is read)';

/**
 * CDI's controller matches this phrase to report "DataVolume too small to contain image".
 * `streaming`: the size is not known yet (a compressed raw image), only that it passes `virtualSize`.
 */
export function tooSmall(virtualSize: number, available: number, streaming = false, spaceBeforeOverhead?: number): TooSmallError {
  return new TooSmallError(virtualSize, available, streaming, spaceBeforeOverhead);
}

/** The sizes travel with the error, so the CLI's hint can reason about them (report-failure.ts). */
export class TooSmallError extends ImportError {
  constructor(
    readonly virtualSize: number,
    readonly available: number,
    readonly streaming: boolean,
    /** A file system's free space (or --size) before the overhead kept free, when that was the limit. */
    readonly spaceBeforeOverhead?: number,
  ) {
    const size = streaming ? `of more than ${virtualSize} bytes ${MEASURED_WHILE_READ}` : `${virtualSize}`;
    super('too-small', `virtual image size ${size} is larger than the reported available storage ${available}${LARGER_PVC_REQUIRED}`);
  }
}

export class ChecksumMismatchError extends ImportError {
  constructor(readonly algorithm: string, readonly expected: string, readonly calculated: string) {
    super('checksum', `checksum mismatch: expected ${algorithm}:${expected}, calculated ${algorithm}:${calculated}`);
  }
}

export class ScratchSpaceRequiredError extends ImportError {
  constructor(reason: string) {
    super('scratch-required', `scratch space required: ${reason}`);
  }
}

export function isImportError(err: unknown): err is ImportError {
  return err instanceof ImportError;
}

/** Records which source a failure came from (ImportError.source), unless an inner step already did; returns `err`. */
export function fromSource(err: unknown, description: string): unknown {
  if (err instanceof ImportError) err.source ??= description;
  return err;
}

/**
 * A failure's line, starting with its source when the image was at fault and the line does not
 * already begin with it (or name it as "source [file] X"). Only there: a short name such as
 * "image" or "disk.qcow2" also occurs in other words of a line, or in a backing file's name.
 */
export function withSourceNamed(err: unknown): string {
  const text = oneLine(err);
  if (!(err instanceof ImportError) || err.category !== 'bad-input' || err.source === undefined) return text;
  const source = flatten(err.source);
  const named = [`${source} `, `${source}:`].some((start) => text.startsWith(start)) || [`source ${source}`, `source file ${source}`].some((words) => text.includes(words));
  return named ? text : `${source}: ${text}`;
}

/** Flattens any thrown value into one line: no newlines, no stack. */
export function oneLine(err: unknown): string {
  return flatten(err instanceof Error ? err.message : String(err));
}

function flatten(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** File-system errors in words rather than errno codes. */
const FILE_PROBLEMS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'it is a directory',
  ENOTDIR: 'a part of the path is not a directory',
  EBUSY: 'it is in use (a mount point?)',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  ELOOP: 'too many levels of symbolic links',
  EIO: 'input/output error (EIO)',
  // Limits of this process or host, not of the file: say which knob.
  EMFILE: 'too many open files in this process (EMFILE): raise the open-files limit (ulimit -n)',
  ENFILE: 'too many open files on this host (ENFILE)',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'larger than the file system or the file-size limit (ulimit -f) allows (EFBIG)',
  ENAMETOOLONG: 'a name longer than the file system allows (255 bytes per path component, 4096 per path)',
};

/**
 * An error's code, with what Node 20's libuv has no name for named: EDQUOT (errno 122 on Linux)
 * comes as "Unknown system error -122", so a full quota would read as that.
 */
export function errorCode(err: unknown): string | undefined {
  const { code, errno } = (err ?? {}) as NodeJS.ErrnoException;
  return errno === -LINUX_EDQUOT || code === `Unknown system error -${LINUX_EDQUOT}` ? 'EDQUOT' : code;
}
const LINUX_EDQUOT = 122;

/** Why a file cannot be read or written, in words rather than an errno code. */
export function fileProblem(err: unknown): string {
  const code = errorCode(err);
  if (code !== undefined && Object.hasOwn(FILE_PROBLEMS, code)) return FILE_PROBLEMS[code]!;
  // Node's own words without the path it appends ("EXDEV: cross-device link not permitted, rename
  // 'a' -> 'b'"): the caller names the file, and a long path would crowd out the reason.
  return oneLine(err).replace(/, \w+ '.*$/s, '');
}

/** A write failed because the file system (or the user's quota) is full. */
export function isOutOfSpace(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * What a failure during an abort is to the user: the abort's own reason when it has one (a
 * deadline), "import cancelled" for a plain one (a signal), the error itself otherwise.
 */
export function abortedError(err: unknown, signal: AbortSignal): unknown {
  if (!signal.aborted) return err;
  if (signal.reason instanceof ImportError) return signal.reason;
  return err instanceof ImportError ? err : new ImportError('cancelled', IMPORT_CANCELLED, { cause: err });
}

/** abortedError's line for a plain abort; the CLI says which signal, and calls a cancelled convert a conversion. */
export const IMPORT_CANCELLED = 'import cancelled';
