import { createRequire } from 'node:module';
import { getSystemErrorName } from 'node:util';

const require = createRequire(import.meta.url);

type NativeCallback = (err: { errno: number; syscall: 'read' | 'write' } | null, written: number) => void;
interface FileCopyModule {
  copyData(source: number, target: number, sourcePosition: number, targetPosition: number, length: number, callback: NativeCallback): void;
}

let loaded: FileCopyModule | null | undefined;

/**
 * native/file-copy, an optional module of ours (built by npm ci with fs-ext): copies data between
 * two local files on a pool thread, all-zero 4 KiB blocks left as holes. Undefined when it did not
 * build, or with CDI_IMPORTER_NATIVE_COPY=0: the bytes then go through JavaScript, with the same
 * output.
 */
function fileCopyModule(): FileCopyModule | undefined {
  if (loaded === undefined) {
    try {
      loaded = process.env.CDI_IMPORTER_NATIVE_COPY === '0' ? null : (require('cdi-importer-file-copy') as FileCopyModule);
    } catch {
      loaded = null;
    }
  }
  return loaded ?? undefined;
}

export function canCopyBetweenFiles(): boolean {
  return fileCopyModule() !== undefined;
}

/** A failed copy: which side failed (the source's read or the target's write) and the system error. */
export class FileCopyError extends Error {
  constructor(
    readonly side: 'read' | 'write',
    /** The system error, as Node's fs reports one (code, errno, syscall); for a source that ended early, code 'EOF'. */
    override readonly cause: NodeJS.ErrnoException,
  ) {
    super(cause.message);
  }
}

/**
 * Copies [sourcePosition, +length) of `source` to `targetPosition` in `target`, leaving out all-zero
 * 4 KiB blocks (aligned to the target's offsets), as zero-runs.ts leaves them out of writes from
 * memory. Resolves to the bytes written. Only when canCopyBetweenFiles().
 */
export function copyBetweenFiles(source: number, target: number, sourcePosition: number, targetPosition: number, length: number): Promise<number> {
  const module = fileCopyModule()!;
  return new Promise((resolve, reject) => {
    module.copyData(source, target, sourcePosition, targetPosition, length, (err, written) => {
      if (!err) return resolve(written);
      reject(new FileCopyError(err.syscall, systemError(err.errno, err.syscall)));
    });
  });
}

/** The error for a source file that ends before bytes it should hold (it shrank while being read). */
export function sourceEndedEarly(): NodeJS.ErrnoException {
  return Object.assign(new Error('it ended before the data it should hold (did it shrink while being read?)'), { code: 'EOF', syscall: 'read' });
}

function systemError(errno: number, syscall: string): NodeJS.ErrnoException {
  if (errno === 0) return sourceEndedEarly();
  const code = getSystemErrorName(-errno);
  return Object.assign(new Error(`${code}, ${syscall}`), { code, errno: -errno, syscall });
}
