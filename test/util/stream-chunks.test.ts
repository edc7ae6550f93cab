/**
 * streamChunks: a reader that stops early must leave the stream still, not flowing with nobody
 * listening: a synchronous decoder (zstd) would then decode everything left before it is destroyed
 * (a 300 KB .zst of 10 GB of zeros, refused at 64 MiB by --size, took 6 s to say so).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { setImmediate as nextLoop } from 'node:timers/promises';
import { streamChunks } from '../../src/util/stream-chunks.js';

describe('streamChunks', () => {
  it('leaves a synchronous stream paused when the reader stops early', async () => {
    let reads = 0;
    const chunk = Buffer.alloc(1 << 20);
    const endless = new Readable({
      highWaterMark: 1 << 20,
      read() {
        reads++;
        if (reads < 10_000) this.push(chunk);
        else this.push(null);
      },
    });
    let taken = 0;
    for await (const _ of streamChunks(endless)) if (++taken === 8) break;
    for (let i = 0; i < 5; i++) await nextLoop();
    assert.ok(reads < 32, `read ${reads} times after the reader stopped at 8`);
    endless.destroy();
  });

  it('a failing reader leaves it paused too', async () => {
    let reads = 0;
    // Long, not endless: a stream left flowing reads to its end, which must come for the test to.
    const long = Buffer.alloc(65536);
    const endless = new Readable({ read() { this.push(++reads < 100_000 ? long : null); } });
    await assert.rejects(async () => {
      for await (const _ of streamChunks(endless)) throw new Error('the reader failed');
    }, /the reader failed/);
    for (let i = 0; i < 5; i++) await nextLoop();
    assert.ok(reads < 32, `read ${reads} times`);
    endless.destroy();
  });
});
