/** Waiting for the network with a stall timeout: no byte within `stallMs` counts as a dropped connection. */
import { StallError } from './http-errors.js';

export function withStallTimeout<T>(pending: Promise<T>, stallMs: number, onStall: (err: StallError) => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new StallError(stallMs / 1000);
      onStall(err);
      reject(err);
    }, stallMs);
  });
  return Promise.race([pending, stalled]).finally(() => clearTimeout(timer));
}

/** Reads a whole (small, Range-limited) body, watching for stalls and refusing more than `limit` bytes. */
export async function readBodyFully(
  body: AsyncIterable<Buffer> & { destroy(err?: Error): unknown },
  stallMs: number,
  limit: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  const iterator = body[Symbol.asyncIterator]();
  for (;;) {
    const next = await withStallTimeout(iterator.next(), stallMs, (err) => body.destroy(err));
    if (next.done) break;
    total += next.value.length;
    if (total > limit) {
      body.destroy();
      throw new Error(`the server sent more than the ${limit} bytes asked for`);
    }
    chunks.push(next.value);
  }
  return Buffer.concat(chunks, total);
}
