import { createReadStream, fstatSync } from 'node:fs';
import { addAbortSignal } from 'node:stream';
import type { OpenedSource, Source } from './source.js';
import { refuseEndlessDevice } from './endless-device.js';

/** Standard input: sequential only; its size is known when it is a redirected file. */
export class StdinSource implements Source {
  readonly description = 'standard input';

  async open(signal: AbortSignal): Promise<OpenedSource> {
    const info = fstatSync(0);
    if (info.isCharacterDevice()) refuseEndlessDevice('standard input', info.rdev);
    if (info.isFile()) {
      // `< disk.img`: process.stdin would read it 64 KiB at a time; read it like any file, from
      // wherever the caller left the offset.
      const stream = createReadStream('', { fd: 0, autoClose: false, highWaterMark: 1 << 20, signal });
      return { stream, size: info.size };
    }
    // A pipe may stall (`curl … | cdi-importer import -`): a cancel must end the read at once,
    // not when the next chunk comes.
    return { stream: addAbortSignal(signal, process.stdin) };
  }
}
