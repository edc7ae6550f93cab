import { createReadStream, fstatSync } from 'node:fs';
import { addAbortSignal } from 'node:stream';
import type { OpenedSource, Source } from './source.js';
import { refuseEndlessDevice } from './endless-device.js';
import { fsExt, lseek, SEEK_CUR } from '../util/fs-ext.js';
import { blockDeviceSize } from '../util/block-device-info.js';

/** The file offset of `fd`, or undefined when fs-ext is not there or lseek fails. */
async function currentPosition(fd: number): Promise<number | undefined> {
  return fsExt() ? lseek(fd, 0, SEEK_CUR).catch(() => undefined) : undefined;
}

/** Standard input: sequential only; its size is known when it is a redirected file. */
export class StdinSource implements Source {
  readonly description = 'standard input';

  async open(signal: AbortSignal): Promise<OpenedSource> {
    const info = fstatSync(0);
    if (info.isCharacterDevice()) refuseEndlessDevice('standard input', info.rdev);
    if (info.isFile() || info.isBlockDevice()) {
      // `< disk.img`: process.stdin would read it 64 KiB at a time (and a block device not at all:
      // it read as empty, found by a QA pass); read it like any file, from wherever the caller left
      // the offset.
      const stream = createReadStream('', { fd: 0, autoClose: false, highWaterMark: 1 << 20, signal });
      // The bytes left are the file's less what the caller read (`(head -c 4096 >/dev/null; cdi-importer
      // convert - out) < disk.raw`); unknown without lseek, and then counted as they come.
      const [position, size] = await Promise.all([currentPosition(0), info.isBlockDevice() ? blockDeviceSize('/dev/stdin', info.rdev).catch(() => undefined) : info.size]);
      return { stream, size: position === undefined || size === undefined ? undefined : Math.max(0, size - position) };
    }
    // A pipe may stall (`curl … | cdi-importer import -`): a cancel must end the read at once,
    // not when the next chunk comes.
    return { stream: addAbortSignal(signal, process.stdin) };
  }
}
