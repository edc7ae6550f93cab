import { createReadStream, fstatSync } from 'node:fs';
import type { OpenedSource, Source } from './source.js';

/** Standard input: sequential only; its size is known when it is a redirected file. */
export class StdinSource implements Source {
  readonly description = 'standard input';

  async open(signal: AbortSignal): Promise<OpenedSource> {
    const info = fstatSync(0);
    if (info.isFile()) {
      // `< disk.img`: process.stdin would read it 64 KiB at a time; read it like any file, from
      // wherever the caller left the offset.
      const stream = createReadStream('', { fd: 0, autoClose: false, highWaterMark: 1 << 20, signal });
      return { stream, size: info.size };
    }
    return { stream: process.stdin };
  }
}
