import { open, stat } from 'node:fs/promises';
import type { DataMap, OpenedSource, RandomAccessReader, Source } from './source.js';
import type { LocalFile } from '../extents.js';
import { FileDataMap } from './file-data-map.js';
import { badInput, fileProblem, type ImportError } from '../errors.js';
import { blockDeviceSize } from '../util/block-device-info.js';
import { readPool } from '../util/buffer-pool.js';
import { PooledFileStream } from './pooled-file-stream.js';
import { refuseEndlessDevice } from './endless-device.js';

const POOLED_READ_MIN = 1 << 20;

/** A local file (or block device) read sequentially in 1 MiB chunks, with random access for qcow2. */
export class FileSource implements Source {
  constructor(readonly path: string) {}

  get description(): string {
    return this.path;
  }

  async open(signal: AbortSignal): Promise<OpenedSource> {
    const unreadable = (err: NodeJS.ErrnoException): never => {
      if (err.code === 'ENOENT') throw badInput(`source file ${this.path} does not exist`);
      if (err.code === 'EACCES') throw badInput(`source file ${this.path} is not readable (permission denied)`);
      throw sourceReadFailure(this.path, err);
    };
    const info = await stat(this.path).catch(unreadable);
    if (info.isDirectory()) throw badInput(`source ${this.path} is a directory, not a disk image`);
    if (info.isCharacterDevice()) refuseEndlessDevice(`source ${this.path}`, info.rdev);
    if (info.isFIFO() || info.isCharacterDevice() || info.isSocket()) {
      // A named pipe or a device streams: one sequential open (a second open of a FIFO would wait
      // for another writer), no size, no random access; read like stdin.
      return { stream: new PooledFileStream(this.path, signal, (err) => sourceReadFailure(this.path, err)) };
    }
    const size = info.isBlockDevice() ? await blockDeviceSize(this.path, info.rdev) : info.size;
    // Opened here, not only by the stream: a file that can be listed but not read fails now, in words.
    const handle = await open(this.path, 'r').catch(unreadable);
    const failure = (err: unknown) => sourceReadFailure(this.path, err);
    // Read as it was when opened: a file that shrinks fails, what it grows by is not the image seen.
    const stream = new PooledFileStream(this.path, signal, failure, size);
    // Block devices have no holes to ask about (lseek refuses SEEK_DATA on them).
    const dataMap = info.isFile() ? FileDataMap.of(handle.fd, size, failure) : undefined;
    return { stream, size, randomAccess: new FileRandomAccessReader(this.path, handle, size, dataMap) };
  }
}

/**
 * A source file that could not be opened or read once it was there: one line naming it (an EIO
 * mid-import was a bare "EIO: i/o error, read", reported as an internal failure).
 */
function sourceReadFailure(path: string, err: unknown): ImportError {
  const code = (err as NodeJS.ErrnoException).code;
  const hint = code === 'EIO' ? ': the disk or network file system holding it may be failing' : '';
  return badInput(`cannot read source file ${path}: ${fileProblem(err)}${hint}`, err);
}

class FileRandomAccessReader implements RandomAccessReader {
  readonly localFile: LocalFile;

  constructor(
    private readonly path: string,
    private readonly handle: import('node:fs/promises').FileHandle,
    readonly size: number,
    readonly dataMap: DataMap | undefined,
  ) {
    this.localFile = { fd: handle.fd, read: (position, length) => this.read(position, length), readFailure: (err) => sourceReadFailure(path, err) };
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const wanted = Math.max(0, Math.min(length, this.size - offset));
    // Large reads use recycled buffers: the consumer may give them back to readPool once done.
    const buffer = wanted >= POOLED_READ_MIN && wanted <= readPool.size ? readPool.take().subarray(0, wanted) : Buffer.allocUnsafe(wanted);
    let filled = 0;
    while (filled < wanted) {
      const { bytesRead } = await this.handle.read(buffer, filled, wanted - filled, offset + filled).catch((err: unknown) => {
        throw sourceReadFailure(this.path, err);
      });
      if (bytesRead === 0) break; // the file shrank under us: return what exists
      filled += bytesRead;
    }
    return filled === wanted ? buffer : buffer.subarray(0, filled);
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => {});
  }
}
