/** EarlyFlush: when a synced target starts flushing, one flush at a time, and no lost errors. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EarlyFlush } from '../../src/targets/early-flush.js';

/** A flush whose completion the test controls. */
function controlledFlush() {
  const pending: { resolve: () => void; reject: (err: Error) => void }[] = [];
  const flush = () => new Promise<void>((resolve, reject) => pending.push({ resolve, reject }));
  return { flush, pending };
}

describe('EarlyFlush', () => {
  it('starts a flush once enough bytes are written, and only one at a time', async () => {
    const { flush, pending } = controlledFlush();
    const early = new EarlyFlush(flush, 100);
    early.wrote(60);
    assert.equal(pending.length, 0);
    early.wrote(60);
    assert.equal(pending.length, 1, 'started after 120 bytes');
    early.wrote(500);
    assert.equal(pending.length, 1, 'none while one runs');
    pending[0]!.resolve();
    await early.settle();
    early.wrote(100);
    assert.equal(pending.length, 2, 'the next one after the first finished');
    pending[1]!.resolve();
    await early.settle();
  });

  it('keeps an early flush error for settle(), which the final fsync would not report again', async () => {
    const { flush, pending } = controlledFlush();
    const early = new EarlyFlush(flush, 10);
    early.wrote(10);
    pending[0]!.reject(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    await assert.rejects(early.settle(), /EIO/);
    early.wrote(1000);
    assert.equal(pending.length, 1, 'no more flushes after a failure');
    await assert.rejects(early.settle(), /EIO/);
  });

  it('settles at once when nothing was flushed', async () => {
    const early = new EarlyFlush(() => Promise.reject(new Error('never called')), 1 << 20);
    early.wrote(5);
    await early.settle();
  });
});
