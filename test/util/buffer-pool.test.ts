import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool, PoolLeases } from '../../src/util/buffer-pool.js';

test('a pool hands back only its own buffers, whole, and keeps at most maxFree', () => {
  const pool = new BufferPool(1024, 2);
  const a = pool.take();
  const b = pool.take();
  const c = pool.take();
  assert.equal(a.length, 1024);
  pool.give(Buffer.alloc(1024)); // not from the pool: ignored
  pool.give(a.subarray(0, 10)); // a view of a pooled buffer returns the whole buffer
  pool.give(b);
  pool.give(c); // over maxFree: dropped
  const again = [pool.take(), pool.take(), pool.take()];
  assert.ok(again.some((x) => x.buffer === a.buffer));
  assert.ok(again.some((x) => x.buffer === b.buffer));
  assert.ok(!again.some((x) => x.buffer === c.buffer));
  assert.ok(again.every((x) => x.length === 1024));
  pool.give(a);
  pool.give(a); // given twice: the second is ignored, so one buffer is never handed out twice
  const first = pool.take();
  const second = pool.take();
  assert.notEqual(first.buffer, second.buffer);
});

test('a leased buffer goes back to its pool only when the last holder lets go', () => {
  const pool = new BufferPool(1024, 4);
  const leases = new PoolLeases(pool);
  const chunk = pool.take();
  const first = chunk.subarray(0, 512);
  const second = chunk.subarray(512);
  leases.hold(first);
  leases.hold(second);
  leases.hold(Buffer.alloc(16)); // not pooled: ignored
  leases.release(first);
  assert.notEqual(pool.take().buffer, chunk.buffer, 'still held by the second view');
  leases.release(second);
  assert.equal(pool.take().buffer, chunk.buffer);
  leases.release(second); // released too often: ignored, the buffer is not given twice
  assert.notEqual(pool.take().buffer, chunk.buffer);
});

test('buffers of another size (the xz decoder takes 2 MiB ones) come back to their own size, within the same byte budget', () => {
  const pool = new BufferPool(1024, 4); // 4 KiB of free buffers at most
  const large = pool.take(2048);
  const small = pool.take();
  assert.equal(large.length, 2048);
  pool.give(large.subarray(100, 200));
  pool.give(small);
  const again = pool.take(2048);
  assert.equal(again.buffer, large.buffer, 'the large buffer is reused for a large request');
  assert.equal(again.length, 2048);
  assert.equal(pool.take().buffer, small.buffer, 'and the small one for a small request');
  const bigOnes = [pool.take(2048), pool.take(2048), pool.take(2048)];
  for (const big of bigOnes) pool.give(big); // 6 KiB: the third is over the 4 KiB budget
  const reused = [pool.take(2048), pool.take(2048), pool.take(2048)].filter((b) => bigOnes.some((o) => o.buffer === b.buffer));
  assert.equal(reused.length, 2);
});
