import type { Readable } from 'node:stream';

/**
 * Iterates a byte stream chunk by chunk as they were pushed. `for await (… of stream)` calls
 * read(), which concatenates (copies) every buffered chunk into one; this does not. Up to
 * `maxQueued` chunks are held before the stream is paused.
 */
export async function* streamChunks(stream: Readable, maxQueued = 4): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let ended = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  const onData = (chunk: Buffer) => {
    queue.push(chunk);
    if (queue.length >= maxQueued) stream.pause();
    notify();
  };
  const onEnd = () => {
    ended = true;
    notify();
  };
  const onError = (err: unknown) => {
    failure = err;
    notify();
  };
  const onClose = () => {
    // Closed without 'end' (destroyed): treat as an error unless one was already reported.
    if (!ended && failure === undefined) failure = new Error('the stream was closed before its end');
    notify();
  };
  stream.on('data', onData);
  stream.once('end', onEnd);
  stream.once('error', onError);
  stream.once('close', onClose);
  try {
    for (;;) {
      if (queue.length > 0) {
        const chunk = queue.shift()!;
        if (queue.length < maxQueued && stream.isPaused()) stream.resume();
        yield chunk;
        continue;
      }
      if (failure !== undefined) throw failure;
      if (ended) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    // A reader that stops early (a failure, a break) leaves the stream paused: flowing with no
    // listener, a synchronous decoder (zstd) would decode all that is left, gigabytes of zeros
    // from a few KiB, before whoever stopped reading gets to destroy it.
    stream.pause();
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('error', onError);
    stream.off('close', onClose);
  }
}
