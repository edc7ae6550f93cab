/**
 * Out-of-order images through the one-pass driver: clusters that arrive before the L2 table
 * mapping them go to scratch (and only those), and without a scratch directory the driver fails
 * with the typed "scratch space required" error.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createReadStream, mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { cliCommand, runCli } from '../support/cli.js';
import { createHash } from 'node:crypto';
import { makeTempDir, qemuRawSha256, sha256File, type TempDir } from '../support/tools.js';
import { ImportError, ScratchSpaceRequiredError } from '../../src/errors.js';
import { openQcow2RandomAccess, openQcow2Stream } from '../../src/qcow2/index.js';
import { fileReader, writeExtents } from './helpers.js';
import { qemuImg, qemuIo, xzCompress, xzDecompressStream } from './images.js';
import { moveL2TableToEnd } from './patch.js';

describe('qcow2 one pass over out-of-order images', () => {
  let tmp: TempDir;
  let image: string;
  let expected: string;
  before(async () => {
    tmp = makeTempDir('qcow2-spill-');
    image = tmp.join('moved-l2.qcow2');
    // 4 KiB clusters: one L2 table maps 2 MiB, so the first table's 2 MiB of data come before it.
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', image, '12M');
    qemuIo(image, 'write -P 0x5a 0 2M', 'write -P 0x5b 6M 3M', 'write -z 512k 64k');
    moveL2TableToEnd(image, 0);
    expected = await qemuRawSha256(image, tmp.path);
  });
  after(() => tmp.remove());

  it('spills the clusters that precede their L2 table and still matches qemu-img', async () => {
    const scratch = tmp.join('scratch');
    mkdirSync(scratch);
    const disk = await openQcow2Stream(xzDecompressStream(xzCompress(image)), { scratchDir: scratch });
    const out = tmp.join('one-pass.raw');
    const written = await writeExtents(disk, out);
    assert.equal(written.covered, disk.virtualSize);
    assert.equal(await sha256File(out), expected);
    const spilled = disk.scratchBytesUsed!();
    // Only what the moved table maps (2 MiB less its zero run) and the stale old table can be spilled,
    // less what was still in the driver's memory window when the table arrived; never the in-order 3 MiB.
    assert.ok(spilled > 0 && spilled <= 2 * 1024 * 1024 - 64 * 1024 + 4096, `spilled ${spilled} bytes`);
    assert.deepEqual(readdirSync(scratch), [], 'the spill file is removed at the end');
  });

  it('fails with ScratchSpaceRequiredError without a scratch directory', async () => {
    const disk = await openQcow2Stream(createReadStream(image));
    await assert.rejects(writeExtents(disk, tmp.join('no-scratch.raw')), (err: unknown) => {
      assert.ok(err instanceof ScratchSpaceRequiredError);
      assert.ok(err instanceof ImportError && err.category === 'scratch-required');
      assert.match(err.message, /scratch/);
      return true;
    });
  });

  it('random access reads the same image without scratch', async () => {
    const reader = await fileReader(image);
    try {
      const out = tmp.join('random-access.raw');
      await writeExtents(await openQcow2RandomAccess(reader), out);
      assert.equal(await sha256File(out), expected);
    } finally {
      await reader.close();
    }
  });

  it('a checksum on a local (seekable) image that needs scratch: the line says the checksum is why, and what helps', async () => {
    const sha = createHash('sha256').update(readFileSync(image)).digest('hex');
    const result = await runCli(['import', image, '-o', tmp.join('checked.raw'), '--checksum', `sha256:${sha}`]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /scratch space required: the checksum makes this seekable qcow2 be read in one pass.*--scratch DIR.*without the checksum/);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    const withScratch = await runCli(['import', image, '-o', tmp.join('checked.raw'), '--checksum', `sha256:${sha}`, '--scratch', tmp.path, '-q']);
    assert.equal(withScratch.code, 0, withScratch.stderr);
    assert.equal(await sha256File(tmp.join('checked.raw')), expected);
  });

  it('a killed import leaves no spill file in the scratch directory (it is unlinked while in use)', async () => {
    const scratch = tmp.join('scratch-killed');
    mkdirSync(scratch);
    const child = spawn(process.execPath, [...cliCommand, 'import', '-', '-o', tmp.join('killed.raw'), '--scratch', scratch, '-q'], {
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    const exited = new Promise((resolve) => child.on('close', resolve));
    // The kill below can come while part of the image is still queued for the pipe: EPIPE then is expected.
    child.stdin.on('error', () => {});
    try {
      // Everything but the moved L2 table at the end: the clusters it maps are set aside, and the
      // import waits for the rest with its spill file open.
      const bytes = readFileSync(image);
      child.stdin.write(bytes.subarray(0, bytes.length - 8192));
      // Open, and (a moment after its creation) without a name: the code before never unlinked it.
      const spill = await waitFor(() => {
        const target = openFileUnder(child.pid!, scratch);
        return target?.endsWith(' (deleted)') ? target : undefined;
      }, 60_000);
      assert.match(spill, /qcow2-spill-.* \(deleted\)$/, 'the spill file is open but has no name');
      assert.deepEqual(readdirSync(scratch), [], 'nothing in the scratch directory while the import runs');
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    assert.deepEqual(readdirSync(scratch), []);
  });
});

describe('qcow2 one pass: spilled clusters are written as their tables come, not gathered in memory', () => {
  let tmp: TempDir;
  after(() => tmp?.remove());

  for (const [layout, build] of [
    // qemu-img resize writes a larger L1 table at the end of the file: every cluster comes before its mapping.
    ['grown by qemu-img resize', (image: string) => qemuImg('resize', '-q', image, '+2G')],
    // After a snapshot, writes copy the L2 tables to the end (copy on write).
    ['written after an internal snapshot', (image: string) => {
      qemuImg('snapshot', '-c', 'before', image);
      qemuIo(image, 'write -P 0x71 0 64k', 'write -P 0x72 200M 64k');
    }],
  ] as const) {
    it(`a qcow2 ${layout}: byte-exact, and the memory held stays far below the 256 MiB set aside`, async () => {
      tmp ??= makeTempDir('qcow2-spill-memory-');
      const name = layout.replace(/\W+/g, '-');
      const image = tmp.join(`${name}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', image, '256M');
      qemuIo(image, ...Array.from({ length: 16 }, (_, i) => `write -P ${i + 1} ${i * 16}M 16M`));
      build(image);
      const expected = await qemuRawSha256(image, tmp.path);
      const scratch = tmp.join(`scratch-${name}`);
      mkdirSync(scratch);

      const before = process.memoryUsage().arrayBuffers;
      let peak = before;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().arrayBuffers)), 10);
      const disk = await openQcow2Stream(createReadStream(image), { scratchDir: scratch });
      const out = tmp.join(`${name}.raw`);
      try {
        await writeExtents(disk, out);
      } finally {
        clearInterval(sampler);
      }
      assert.equal(await sha256File(out), expected);
      assert.ok(disk.scratchBytesUsed!() >= 128 * MiB, `spilled only ${disk.scratchBytesUsed!()} bytes: the layout did not make it spill`);
      const held = peak - before;
      assert.ok(held < 96 * MiB, `${Math.round(held / MiB)} MiB of buffers held at once`);
    });
  }
});

const MiB = 1 << 20;

/** The target of an open file descriptor of process `pid` under `dir` (from /proc), if any. */
function openFileUnder(pid: number, dir: string): string | undefined {
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    const target = (() => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return undefined; // closed meanwhile
      }
    })();
    if (target?.startsWith(`${dir}/`)) return target;
  }
  return undefined;
}

async function waitFor<T>(probe: () => T | undefined, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
