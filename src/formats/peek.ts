import { Readable } from 'node:stream';

/**
 * Reads up to `count` bytes from the start of `stream` without losing them: returns those bytes
 * and a stream that yields them followed by the rest. Short streams give a shorter head.
 */
export async function peekStream(stream: Readable, count: number): Promise<{ head: Buffer; stream: Readable }> {
  const chunks: Buffer[] = [];
  let have = 0;
  const iterator = stream[Symbol.asyncIterator]();
  let done = false;
  while (have < count) {
    const next = await iterator.next();
    if (next.done) {
      done = true;
      break;
    }
    const chunk = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value);
    chunks.push(chunk);
    have += chunk.length;
  }
  const buffered = Buffer.concat(chunks);
  const head = buffered.subarray(0, count);
  async function* replay(): AsyncGenerator<Buffer> {
    if (buffered.length > 0) yield buffered;
    if (done) return;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value as Buffer;
    }
  }
  const rest = Readable.from(replay(), { objectMode: false, highWaterMark: 1 << 20 });
  // Its reader may start later (a target is opened first): an error before then (the import
  // cancelled, the source failing) must not go unheard and crash the process. Reading a stream that
  // has failed throws its error, so the reader still learns of it.
  rest.on('error', () => {});
  // Destroying the replayed stream must release the original (file handles, sockets).
  rest.once('close', () => {
    if (!stream.destroyed && !stream.readableEnded) stream.destroy();
  });
  return { head, stream: rest };
}
