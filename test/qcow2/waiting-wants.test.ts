/** The one-pass driver's waiting wants: whole data clusters kept as numbers come back as the wants they were. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WaitingWants } from '../../src/qcow2/waiting-wants.js';
import type { Want } from '../../src/qcow2/want.js';

const CS = 65536;
const data = (index: number, guestOffset: number, length = CS): Want => ({ start: index * CS, end: index * CS + length, kind: 'data', guestOffset, length });

test('wants come back per host cluster, in the order they were added, whatever their kind', () => {
  const waiting = new WaitingWants(CS);
  const whole = data(7, 5 * 2 ** 40); // a guest offset past 2^31, as on a large disk
  const part = data(9, 3 * CS, 4096); // a subcluster run: kept as it is
  const compressed: Want = { start: 9 * CS + 4096, end: 9 * CS + 5000, kind: 'compressed', guestOffset: 0, length: CS, mayBeShort: true };
  const metadata: Want = { start: 7 * CS, end: 8 * CS, kind: 'metadata', what: 'L2 table', optional: true };
  waiting.add(7, whole);
  waiting.add(9, part);
  waiting.add(9, compressed);
  waiting.add(7, metadata);
  assert.equal(waiting.count, 4);
  assert.deepEqual(waiting.at(7), [whole, metadata]);
  const active: Want[] = [];
  waiting.takeInto(9, active);
  assert.deepEqual(active, [part, compressed]);
  assert.equal(active[1], compressed, 'records are handed back themselves');
  assert.equal(waiting.count, 2);
  waiting.takeInto(9, active); // nothing left there
  assert.equal(active.length, 2);
  assert.deepEqual(waiting.takeAll(), [whole, metadata]);
  assert.equal(waiting.count, 0);
  assert.deepEqual(waiting.at(7), []);
});

test('a whole data cluster alone comes back equal to what was added', () => {
  const waiting = new WaitingWants(CS);
  for (let i = 0; i < 1000; i++) waiting.add(i, data(i, (999 - i) * CS));
  const active: Want[] = [];
  for (let i = 0; i < 1000; i++) waiting.takeInto(i, active);
  assert.deepEqual(active, Array.from({ length: 1000 }, (_, i) => data(i, (999 - i) * CS)));
  assert.equal(waiting.count, 0);
});
