import { getSystemErrorName } from 'node:util';
import { nativeModule } from './native-module.js';

/**
 * Whether copies between two local files can run in native/file-copy (util/native-module.ts), all-zero
 * 4 KiB blocks left as holes. Without the module the bytes go through JavaScript, with the same output.
 */
export function canCopyBetweenFiles(): boolean {
  return nativeModule() !== undefined;
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
 * A batch stops taking runs at this many bytes: its callers hear of their runs only when the whole
 * batch is done, and the next batch starts only then, its threads started afresh. The 2 GiB qcow2
 * benchmark (820 MB of data runs), medians of 9: batches of 32 MiB 0.422 s, 128 MiB 0.391 s, 512
 * MiB no better (qemu-img 0.36 s).
 */
const MAX_BATCH_BYTES = 128 << 20;

interface Batch {
  source: number;
  /** (sourcePosition, targetPosition, length) triples. */
  runs: number[];
  bytes: number;
  callers: { resolve: (written: number) => void; reject: (err: Error) => void }[];
}

/**
 * Copies runs of local files into one target file, leaving out all-zero 4 KiB blocks (aligned to
 * the target's offsets), as zero-runs.ts leaves them out of writes from memory. One batch runs at
 * a time, natively, on two threads that each read and write a MiB at a time, so a read and a
 * write are always going; the runs asked for while it runs make the next batch. Only when
 * canCopyBetweenFiles().
 */
export class FileCopier {
  private readonly queue: Batch[] = [];
  private running = false;
  /** Batches started so far (the tests check that runs asked for together are copied together). */
  batchesStarted = 0;

  constructor(private readonly target: number) {}

  /** Copies [sourcePosition, +length) of `source` to `targetPosition`; resolves to the bytes written (holes left out). */
  copy(source: number, sourcePosition: number, targetPosition: number, length: number): Promise<number> {
    let batch = this.queue.at(-1);
    if (!batch || batch.source !== source || batch.bytes >= MAX_BATCH_BYTES) {
      batch = { source, runs: [], bytes: 0, callers: [] };
      this.queue.push(batch);
    }
    batch.runs.push(sourcePosition, targetPosition, length);
    batch.bytes += length;
    const copied = new Promise<number>((resolve, reject) => batch.callers.push({ resolve, reject }));
    if (!this.running) this.startNext();
    return copied;
  }

  /** Drops the batches not started yet (an import that stops): their runs fail with `reason`. */
  dropQueued(reason: Error): void {
    for (const batch of this.queue.splice(0)) for (const caller of batch.callers) caller.reject(reason);
  }

  private startNext(): void {
    const batch = this.queue.shift();
    this.running = batch !== undefined;
    if (!batch) return;
    this.batchesStarted++;
    const written = new Float64Array(batch.callers.length);
    nativeModule()!.copyRuns(batch.source, this.target, Float64Array.from(batch.runs), written, (err) => {
      const failure = err && new FileCopyError(err.syscall, systemError(err.errno, err.syscall));
      batch.callers.forEach((caller, i) => (failure ? caller.reject(failure) : caller.resolve(written[i]!)));
      this.startNext();
    });
  }
}

/**
 * Writes `data` at `position` of the file `target`, leaving out its all-zero 4 KiB blocks (aligned
 * to the file's offsets) as zero-runs.ts does, natively on the pool; resolves to the bytes
 * written. Undefined without the native module. The caller keeps the descriptor open until it settles.
 */
export function writeDataNatively(target: number, data: Buffer, position: number): Promise<number> | undefined {
  const native = nativeModule();
  if (!native) return undefined;
  return new Promise((resolve, reject) => {
    native.writeData(target, data, position, (err, written) => (err ? reject(systemError(err.errno, err.syscall)) : resolve(written)));
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
