/**
 * The native copy between local files (native/file-copy, src/util/file-copy.ts) and the file
 * target's copyFrom(): the bytes arrive unchanged at any offset, all-zero 4 KiB blocks stay holes
 * exactly as writes from memory leave them (zero-runs.ts), runs asked for together are copied in
 * one batch, and failures say which side failed. Writes from memory (writeDataNatively) leave the
 * same holes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { canCopyBetweenFiles, FileCopier, FileCopyError, writeDataNatively } from '../../src/util/file-copy.js';
import { SparseFileTarget } from '../../src/targets/sparse-file-target.js';
import { dataRuns } from '../../src/targets/zero-runs.js';
import { dataBytes, makeTempDir, type TempDir } from '../support/tools.js';

const KiB = 1024;
let dir: TempDir;
before(() => {
  dir = makeTempDir('cdi-file-copy-');
});
after(() => dir?.remove());

/** 3 MiB + 1 KiB: random data with zero runs of every alignment, a whole zero MiB, a zero tail. */
function patterned(): Buffer {
  const data = randomBytes(3 * 1024 * KiB + KiB);
  data.fill(0, 4 * KiB, 12 * KiB); // two aligned zero blocks
  data.fill(0, 20 * KiB + 512, 30 * KiB); // zeros that cover only some blocks
  data.fill(0, 1024 * KiB, 2048 * KiB); // a whole zero MiB (one native chunk)
  data.fill(0, data.length - 6 * KiB); // zero tail, not block-sized
  return data;
}

test('the native copy is built here (npm ci builds it; without it imports fall back to JavaScript)', () => {
  assert.equal(canCopyBetweenFiles(), true);
});

for (const targetPosition of [0, 512, 4 * KiB + 100]) {
  test(`copies bytes unchanged to offset ${targetPosition} and leaves the same holes as writes from memory`, async () => {
    const data = patterned();
    const source = dir.join(`source-${targetPosition}`);
    writeFileSync(source, Buffer.concat([randomBytes(777), data]));
    const copied = dir.join(`copied-${targetPosition}`);
    const sourceFd = openSync(source, 'r');
    const copiedFd = openSync(copied, 'w');
    try {
      const bytes = await new FileCopier(copiedFd).copy(sourceFd, 777, targetPosition, data.length);
      // What a write from memory writes (sparse-file-target's write()): the runs of dataRuns().
      assert.equal(bytes, dataRuns(data, targetPosition).reduce((sum, run) => sum + run.end - run.start, 0));
    } finally {
      closeSync(sourceFd);
      closeSync(copiedFd);
    }
    // A zero tail is a hole: the file ends where the last data does until the target sets its size.
    truncateSync(copied, targetPosition + data.length);
    assert.ok(readFileSync(copied).subarray(targetPosition).equals(data), 'the copy differs from the source');
    assert.equal(dataBytes(copied), referenceDataBytes(data, targetPosition, dir.join(`reference-${targetPosition}`)));
  });
}

test('many runs from two files, asked for at once and in no order: copied in a batch per file, each byte in its place', async () => {
  // 300 runs of 1-40 KiB (a qcow2's clusters are runs like these), half from each of two files, asked
  // for in shuffled order, first those of one file, then those of the other.
  const sources = [patterned(), patterned()];
  const paths = sources.map((data, i) => dir.join(`many-source-${i}`));
  sources.forEach((data, i) => writeFileSync(paths[i]!, data));
  const runs: { file: number; from: number; to: number; length: number }[] = [];
  let at = 0;
  for (let i = 0; i < 300; i++) {
    const length = (1 + ((i * 7919) % 40)) * KiB - (i % 3) * 100;
    runs.push({ file: i % 2, from: (i * 104729) % (sources[0]!.length - length), to: at, length });
    at += length + (i % 5 === 0 ? 8 * KiB : 0);
  }
  const order = runs.map((_, i) => i).sort((a, b) => (a % 2) - (b % 2) || ((a * 31) % 300) - ((b * 31) % 300));
  const expected = Buffer.alloc(at);
  for (const run of runs) sources[run.file]!.copy(expected, run.to, run.from, run.from + run.length);
  const fds = paths.map((file) => openSync(file, 'r'));
  const out = dir.join('many-out');
  const outFd = openSync(out, 'w');
  const copier = new FileCopier(outFd);
  try {
    const written = await Promise.all(order.map((i) => copier.copy(fds[runs[i]!.file]!, runs[i]!.from, runs[i]!.to, runs[i]!.length)));
    order.forEach((i, k) => {
      const run = runs[i]!;
      const bytes = sources[run.file]!.subarray(run.from, run.from + run.length);
      assert.equal(written[k], dataRuns(bytes, run.to).reduce((sum, r) => sum + r.end - r.start, 0), `run ${i}: bytes written`);
    });
    // The first run starts alone; the rest wait for it and go together, a batch per file.
    assert.equal(copier.batchesStarted, 3);
  } finally {
    fds.forEach((fd) => closeSync(fd));
    closeSync(outFd);
  }
  truncateSync(out, at);
  assert.ok(readFileSync(out).equals(expected), 'the copies differ from their sources');
});

test('a failed batch fails every run in it, and the runs asked for after it are still copied', async () => {
  const source = dir.join('batch-source');
  const data = randomBytes(64 * KiB);
  writeFileSync(source, data);
  const sourceFd = openSync(source, 'r');
  const out = dir.join('batch-out');
  const outFd = openSync(out, 'w');
  const copier = new FileCopier(outFd);
  try {
    const first = copier.copy(sourceFd, 0, 0, 4 * KiB); // runs alone, and holds the next ones together
    const bad = [copier.copy(sourceFd, 60 * KiB, 4 * KiB, 8 * KiB), copier.copy(sourceFd, 0, 12 * KiB, 4 * KiB)]; // the first reads past the end
    await first;
    for (const result of await Promise.allSettled(bad)) {
      assert.equal(result.status, 'rejected');
      assert.equal((result as PromiseRejectedResult).reason.cause.code, 'EOF');
    }
    assert.equal(await copier.copy(sourceFd, 16 * KiB, 16 * KiB, 16 * KiB), 16 * KiB);
  } finally {
    closeSync(sourceFd);
    closeSync(outFd);
  }
  assert.ok(readFileSync(out).subarray(16 * KiB, 32 * KiB).equals(data.subarray(16 * KiB, 32 * KiB)));
});

test('an import that stops drops the batches not started yet; the one being copied finishes', async () => {
  const source = dir.join('drop-source');
  writeFileSync(source, randomBytes(256 * KiB));
  const sourceFd = openSync(source, 'r');
  const out = dir.join('drop-out');
  const outFd = openSync(out, 'w');
  const copier = new FileCopier(outFd);
  try {
    const running = copier.copy(sourceFd, 0, 0, 128 * KiB);
    const queued = Promise.allSettled([copier.copy(sourceFd, 128 * KiB, 128 * KiB, 64 * KiB), copier.copy(sourceFd, 192 * KiB, 192 * KiB, 64 * KiB)]);
    copier.dropQueued(new Error('stopped'));
    assert.equal(await running, 128 * KiB);
    for (const result of await queued) assert.equal(result.status === 'rejected' && result.reason.message, 'stopped');
    assert.equal(copier.batchesStarted, 1);
  } finally {
    closeSync(sourceFd);
    closeSync(outFd);
  }
  assert.equal(readFileSync(out).length, 128 * KiB, 'nothing of the dropped runs was written');
});

/** Data bytes of a file made by positional writes of dataRuns(data, position) at `position`. */
function referenceDataBytes(data: Buffer, position: number, file: string): number {
  const fd = openSync(file, 'w');
  try {
    ftruncateSync(fd, position + data.length);
    for (const run of dataRuns(data, position)) {
      const part = data.subarray(run.start, run.end);
      let done = 0;
      while (done < part.length) done += writeSync(fd, part, done, part.length - done, position + run.start + done);
    }
  } finally {
    closeSync(fd);
  }
  return dataBytes(file);
}

test('a source that ends before the length asked: a read failure, "ended before the data"', async () => {
  const source = dir.join('short');
  writeFileSync(source, randomBytes(10 * KiB));
  const sourceFd = openSync(source, 'r');
  const targetFd = openSync(dir.join('short-out'), 'w');
  try {
    const err = await new FileCopier(targetFd).copy(sourceFd, 0, 0, 20 * KiB).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof FileCopyError);
    assert.equal(err.side, 'read');
    assert.equal(err.cause.code, 'EOF');
  } finally {
    closeSync(sourceFd);
    closeSync(targetFd);
  }
});

test('a target that refuses writes: a write failure with the system error code', async () => {
  const source = dir.join('readable');
  writeFileSync(source, randomBytes(8 * KiB));
  writeFileSync(dir.join('read-only-out'), '');
  const sourceFd = openSync(source, 'r');
  const targetFd = openSync(dir.join('read-only-out'), 'r');
  try {
    const err = await new FileCopier(targetFd).copy(sourceFd, 0, 0, 8 * KiB).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof FileCopyError);
    assert.equal(err.side, 'write');
    assert.equal(err.cause.code, 'EBADF');
  } finally {
    closeSync(sourceFd);
    closeSync(targetFd);
  }
});

for (const position of [0, 512, 4 * KiB + 100]) {
  test(`writes bytes from memory at offset ${position} natively, leaving the holes zero-runs.ts leaves`, async () => {
    const data = patterned();
    const out = dir.join(`written-${position}`);
    const fd = openSync(out, 'w');
    try {
      const bytes = await writeDataNatively(fd, data, position);
      assert.equal(bytes, dataRuns(data, position).reduce((sum, run) => sum + run.end - run.start, 0));
    } finally {
      closeSync(fd);
    }
    truncateSync(out, position + data.length);
    assert.ok(readFileSync(out).subarray(position).equals(data), 'the written bytes differ');
    assert.equal(dataBytes(out), referenceDataBytes(data, position, dir.join(`written-reference-${position}`)));
  });
}

test('a native write to a descriptor that refuses writes: the system error code', async () => {
  writeFileSync(dir.join('read-only-write'), '');
  const fd = openSync(dir.join('read-only-write'), 'r');
  try {
    await assert.rejects(writeDataNatively(fd, randomBytes(8 * KiB), 0)!, (err: NodeJS.ErrnoException) => err.code === 'EBADF' && err.syscall === 'write');
  } finally {
    closeSync(fd);
  }
});

test('the file target stops while native writes are running: it waits for them, then removes its file', async () => {
  const path = dir.join('stopped-writes.img');
  const target = await SparseFileTarget.create({ path, capacity: 1 << 30, atomic: false, localMode: true, sync: false, preallocation: false });
  const data = randomBytes(1 << 20);
  const writes = Array.from({ length: 32 }, (_, i) => target.write(i << 20, data));
  await target.abort();
  // Every write had finished (or failed) before the descriptor was closed: none fails for a closed one.
  const outcomes = await Promise.allSettled(writes);
  assert.deepEqual(outcomes.filter((outcome) => outcome.status === 'rejected'), []);
  assert.equal(existsSync(path), false);
});

test("the file target's copyFrom: a source read failure is reported as the source's, with the source's words", async () => {
  const source = dir.join('vanishing');
  writeFileSync(source, randomBytes(4 * KiB));
  const fd = openSync(source, 'r');
  const target = await SparseFileTarget.create({ path: dir.join('copy-from.img'), capacity: 1 << 30, atomic: true, localMode: true, sync: false, preallocation: false });
  try {
    const file = { fd, read: async () => Buffer.alloc(0), readFailure: (err: unknown) => new Error(`cannot read source file ${source}: ${(err as Error).message}`) };
    await assert.rejects(target.copyFrom(file, 0, 1 << 20, 64 * KiB), /^Error: cannot read source file .*vanishing: it ended before the data it should hold/);
  } finally {
    await target.abort();
    closeSync(fd);
  }
});
