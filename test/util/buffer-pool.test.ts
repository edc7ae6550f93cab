import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool } from '../../src/util/buffer-pool.js';

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
