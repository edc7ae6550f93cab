/**
 * A loop device as the block target: the image lands byte-exact at the start of the device, zero
 * runs overwrite old data, and an image larger than the device is refused before writing.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { cliCommand, runCli } from '../support/cli.js';
import { allocatedBytes, makeTempDir, run, sh, sha256OfRange, type TempDir } from '../support/tools.js';
import { attachLoop, detachLoop } from '../support/loop-device.js';
import { makeDiskLikeImage } from '../support/disk-images.js';

const MiB = 1 << 20;
let dir: TempDir;
let device: string | undefined;
let raw: string;

before(() => {
  dir = makeTempDir();
  raw = dir.join('disk.raw');
  makeDiskLikeImage(raw, 10 * MiB);
  sh(`xz -T1 -kf ${raw} && zstd -qf ${raw}`);
  // The device starts full of 0xff so that a skipped zero run would show.
  sh(`head -c ${16 * MiB} /dev/zero | tr '\\0' '\\377' > ${dir.join('backing.img')}`);
  device = attachLoop(dir.join('backing.img'));
});

after(() => {
  if (device) detachLoop(device);
  dir.remove();
});

/** sha256 of the first `length` bytes of a file or device. */
function headSha256(file: string, length: number): string {
  return sha256OfRange(file, 0, length);
}

for (const name of ['disk.raw', 'disk.raw.xz', 'disk.raw.zst']) {
  test(`${name} onto a loop device equals qemu-img's conversion`, async (t) => {
    if (!device) return t.skip('losetup is not permitted here');
    const oracle = dir.join('oracle.raw');
    run('qemu-img', ['convert', '-O', 'raw', raw, oracle]);
    const result = await runCli(['import', dir.join(name), '-o', device, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const json = JSON.parse(result.stdout);
    assert.equal(json.targetSize, 16 * MiB, 'block devices are not resized');
    assert.equal(headSha256(device, 10 * MiB), headSha256(oracle, 10 * MiB));
  });
}

test('the summary names the device size, never "grown" (a device is not resized)', async (t) => {
  if (!device) return t.skip('losetup is not permitted here');
  const result = await runCli(['import', raw, '-o', device]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /^Imported raw \(10\.0 MiB\) to \/dev\/loop\d+ \(a 16\.0 MiB device\) in /m);
  assert.doesNotMatch(result.stderr, /grown/);
  // --size and --filesystem-overhead do nothing to a device: said rather than ignored quietly.
  const sized = await runCli(['import', raw, '-o', device, '--size', '1Gi', '--filesystem-overhead', '0.5']);
  assert.equal(sized.code, 0, sized.stderr);
  assert.match(sized.stderr, /\(a 16\.0 MiB device; --size does not apply: block devices are not resized\)/);
  assert.match(sized.stderr, /^cdi-importer: note: --filesystem-overhead does not apply to a block device/m);
});

test('an image larger than the device is refused before writing', async (t) => {
  if (!device) return t.skip('losetup is not permitted here');
  const big = dir.join('big.raw');
  makeDiskLikeImage(big, 20 * MiB);
  const before = headSha256(device, 16 * MiB);
  const result = await runCli(['import', big, '-o', device]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /virtual image size 20971520 is larger than the reported available storage 16777216: use a larger device \(block devices are not resized\)$/m);
  // convert says the same; neither names --size or --filesystem-overhead, which a device ignores.
  const converted = await runCli(['convert', big, device]);
  assert.equal(converted.code, 1);
  assert.match(converted.stderr, /: use a larger device \(block devices are not resized\)$/m);
  assert.equal(headSha256(device, 16 * MiB), before, 'the device was not touched');
});

test('a compressed image larger than the device stops at the device end', async (t) => {
  if (!device) return t.skip('losetup is not permitted here');
  const big = dir.join('big2.raw');
  writeFileSync(big, Buffer.alloc(0));
  makeDiskLikeImage(big, 20 * MiB);
  sh(`zstd -qf ${big}`);
  const result = await runCli(['import', `${big}.zst`, '-o', device]);
  assert.equal(result.code, 1);
  assert.match(result.stderr, /is larger than the reported available storage 16777216: use a larger device \(block devices are not resized\); the start of the device was overwritten before the size was known$/m);
});

for (const source of ['qcow2 (random access)', 'qcow2.xz (one pass)']) {
  test(`${source} with unallocated clusters onto a device full of old data: the holes read as zeros`, async (t) => {
    if (!device) return t.skip('losetup is not permitted here');
    const qcow2 = dir.join('sparse.qcow2');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '12M']);
    run('qemu-io', ['-c', 'write -P 0x41 1M 64k', '-c', 'write -P 0x42 7M 1M', '-c', 'write -z 9M 1M', qcow2]);
    const input = source.startsWith('qcow2.xz') ? `${qcow2}.xz` : qcow2;
    if (input.endsWith('.xz')) sh(`xz -T1 -kf ${qcow2}`);
    sh(`head -c ${16 * MiB} /dev/zero | tr '\\0' '\\377' | dd of=${device} bs=1M status=none`);
    const result = await runCli(['import', input, '-o', device]);
    assert.equal(result.code, 0, result.stderr);
    const oracle = dir.join('sparse-oracle.raw');
    run('qemu-img', ['convert', '-O', 'raw', qcow2, oracle]);
    assert.equal(headSha256(device, 12 * MiB), headSha256(oracle, 12 * MiB));
  });
}

/**
 * Runs `body` with a thin device of `size` bytes (skipped where the test directory's file system
 * cannot punch holes: a loop device passes punch-hole on to its backing file only where it can).
 */
async function withThinDevice(t: TestContext, name: string, size: number, body: (thin: { backing: string; device: string }) => Promise<void>): Promise<void> {
  const probe = dir.join('punch-probe');
  const canPunch = sh(`head -c 65536 /dev/zero > ${probe} && (fallocate -p -o 0 -l 65536 ${probe} && echo yes || echo no); rm -f ${probe}`).trim().endsWith('yes');
  if (!canPunch) return t.skip('the test directory\'s file system cannot punch holes');
  const thin = thinDevice(name, size);
  if (!thin) return t.skip('losetup is not permitted here');
  try {
    await body(thin);
  } finally {
    detachLoop(thin.device);
  }
}

/** A fresh loop device (read-only with `readOnly`) on a backing file full of allocated 0xff bytes; detached by the caller. */
function thinDevice(name: string, size: number, options: { readOnly?: boolean } = {}): { backing: string; device: string } | undefined {
  const backing = dir.join(name);
  sh(`head -c ${size} /dev/zero | tr '\\0' '\\377' > ${backing}`);
  const loop = attachLoop(backing, options);
  return loop ? { backing, device: loop } : undefined;
}

test('a thin device (a loop device on a sparse-capable file) ends up holding only the data, as after qemu-img convert', (t) =>
  withThinDevice(t, 'thin-backing.img', 32 * MiB, async (thin) => {
    const qcow2 = dir.join('mostly-empty.qcow2');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', qcow2, '24M']);
    run('qemu-io', ['-c', 'write -P 0x41 1M 64k', '-c', 'write -P 0x42 7M 1M', '-c', 'write -z 9M 1M', qcow2]);
    const result = await runCli(['import', qcow2, '-o', thin.device, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const oracle = dir.join('mostly-empty.raw');
    run('qemu-img', ['convert', '-O', 'raw', qcow2, oracle]);
    assert.equal(headSha256(thin.device, 24 * MiB), headSha256(oracle, 24 * MiB));
    // The 1.06 MiB of data, plus the 8 MiB past the image that was left as it was.
    assert.ok(allocatedBytes(thin.backing) <= 10 * MiB, `allocated ${allocatedBytes(thin.backing)} bytes of the 32 MiB device`);
    assert.equal(sh(`tail -c ${8 * MiB} ${thin.device} | tr -d '\\377' | wc -c`).trim(), '0', 'past the image: untouched');
    assert.ok(JSON.parse(result.stdout).bytesWritten <= 2 * MiB, 'only the data was written');

    // --preallocation asks for every block: zeros are written and stay allocated.
    const preallocated = await runCli(['import', qcow2, '-o', thin.device, '--preallocation']);
    assert.equal(preallocated.code, 0, preallocated.stderr);
    assert.equal(headSha256(thin.device, 24 * MiB), headSha256(oracle, 24 * MiB));
    assert.ok(allocatedBytes(thin.backing) >= 32 * MiB, `allocated ${allocatedBytes(thin.backing)} bytes`);
  }),
);

test('a thin device stays thin for a raw image of unknown size (gzip): its zeros are not written', (t) =>
  withThinDevice(t, 'thin-stream-backing.img', 128 * MiB, async (thin) => {
    // 100 MiB with 2.06 MiB of data spread over it: past the first 64 MiB window (the second one
    // runs to the device's end, zeroed too).
    const raw = dir.join('mostly-empty-stream.raw');
    sh(`truncate -s ${100 * MiB} ${raw}`);
    for (const [at, count] of [[1, 64 * 1024], [70 * MiB, MiB], [99 * MiB, MiB]]) {
      sh(`head -c ${count} /dev/urandom | dd of=${raw} bs=64K seek=${at} oflag=seek_bytes conv=notrunc status=none`);
    }
    sh(`gzip -kf ${raw}`);
    const result = await runCli(['import', `${raw}.gz`, '-o', thin.device, '--json']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(headSha256(thin.device, 100 * MiB), headSha256(raw, 100 * MiB));
    assert.ok(JSON.parse(result.stdout).bytesWritten <= 3 * MiB, `wrote ${JSON.parse(result.stdout).bytesWritten} bytes`);
    assert.ok(allocatedBytes(thin.backing) <= 4 * MiB, `allocated ${allocatedBytes(thin.backing)} bytes of the 128 MiB device`);
  }),
);

/** Whether the first `length` bytes of a file or device are all zeros. */
function startsWithZeros(file: string, length: number): boolean {
  return headSha256(file, length) === createHash('sha256').update(Buffer.alloc(length)).digest('hex');
}

test('a checksum mismatch leaves the device without the image\'s first MiB (no partition table, nothing that mounts)', async (t) => {
  if (!device) return t.skip('losetup is not permitted here');
  sh(`head -c ${16 * MiB} /dev/zero | tr '\\0' '\\377' | dd of=${device} bs=1M status=none`);
  const wrong = 'sha256:' + '0'.repeat(64);
  const result = await runCli(['import', raw, '-o', device, '--checksum', wrong]);
  assert.equal(result.code, 1, result.stderr);
  assert.match(result.stderr, /checksum mismatch/);
  assert.ok(startsWithZeros(device, MiB), 'the first MiB reads as zeros, not the image\'s nor the old device\'s');
});

test('an import stopped midway leaves the device\'s first MiB zeroed, old or new', async (t) => {
  if (!device) return t.skip('losetup is not permitted here');
  sh(`head -c ${16 * MiB} /dev/zero | tr '\\0' '\\377' | dd of=${device} bs=1M status=none`);
  // stdin: a raw image of unknown length, of which 6 MiB arrive and then nothing.
  const child = spawn(process.execPath, [...cliCommand, 'import', '-', '-o', device, '-q'], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  child.stdin.on('error', () => {}); // EPIPE if the signal lands while the pipe still has bytes queued
  child.stdin.write(readFileSync(raw).subarray(0, 6 * MiB));
  // Written past the first MiB: what arrived is on the device.
  const image = readFileSync(raw);
  const arrived = (): boolean => sha256OfRange(device!, 2 * MiB, 3 * MiB) === createHash('sha256').update(image.subarray(2 * MiB, 5 * MiB)).digest('hex');
  for (let i = 0; i < 600 && !arrived(); i++) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.ok(arrived(), 'the data after the first MiB was written');
  child.kill('SIGTERM');
  assert.equal(await exited, 1, stderr);
  assert.match(stderr, /import cancelled/);
  assert.ok(startsWithZeros(device, MiB), 'the first MiB reads as zeros');
});

test('convert and --no-fsync leave a device to the page cache (no fsync), as qemu-img convert does; import syncs it', async (t) => {
  if (!device) return t.skip('losetup is not permitted here');
  const syncs = async (args: string[]): Promise<number> => {
    const trace = dir.join('sync.strace');
    const result = await runCli(args, { wrap: ['strace', '-f', '-qq', '-o', trace, '-e', 'trace=fsync,fdatasync,execve'] });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(headSha256(device!, 10 * MiB), headSha256(raw, 10 * MiB));
    // Ours only: util-linux's fallocate (the zeroing ahead) syncs in its own process.
    const lines = readFileSync(trace, 'utf8').split('\n');
    const others = new Set(lines.filter((line) => /execve\("[^"]*fallocate"/.test(line)).map((line) => line.split(' ')[0]));
    return lines.filter((line) => /f(data)?sync\(/.test(line) && !others.has(line.split(' ')[0])).length;
  };
  assert.equal(await syncs(['convert', raw, device, '-q']), 0, 'convert');
  assert.equal(await syncs(['import', raw, '-o', device, '-q', '--no-fsync']), 0, 'import --no-fsync');
  assert.ok((await syncs(['import', raw, '-o', device, '-q'])) > 0, 'import');
});

test('a mounted device is refused with one line and left as it was', async (t) => {
  const thin = thinDevice('mounted-backing.img', 16 * MiB);
  if (!thin) return t.skip('losetup is not permitted here');
  const mountPoint = dir.join('mnt');
  try {
    run('mkfs.ext4', ['-q', '-F', thin.device]);
    sh(`mkdir -p ${mountPoint}`);
    try {
      run('mount', [thin.device, mountPoint]);
    } catch {
      return t.skip('mount is not permitted here');
    }
    try {
      const result = await runCli(['import', raw, '-o', thin.device]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, /^cdi-importer: error: \/dev\/loop\d+ is in use \(mounted, or opened by another program such as another import\): unmount it or wait for the other writer$/m);
    } finally {
      run('umount', [mountPoint]);
    }
    run('e2fsck', ['-n', '-f', thin.device]); // throws if the file system was damaged
  } finally {
    detachLoop(thin.device);
  }
});

test('a read-only device (losetup -r) is refused with one line that says so, for every kind of source, and left as it was', async (t) => {
  const attached = thinDevice('read-only-backing.img', 16 * MiB, { readOnly: true });
  if (!attached) return t.skip('losetup is not permitted here');
  const { backing, device: readOnly } = attached;
  const before = sha256OfRange(backing, 0, 16 * MiB);
  try {
    const qcow2 = dir.join('read-only.qcow2');
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
    for (const source of [raw, qcow2, `${raw}.zst`]) {
      const result = await runCli(['import', source, '-o', readOnly]);
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /^cdi-importer: error: \/dev\/loop\d+ is a read-only device: make it writable \(blockdev --setrw; .*\) or import to another device$/m);
      assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    }
  } finally {
    detachLoop(readOnly);
  }
  assert.equal(sha256OfRange(backing, 0, 16 * MiB), before);
});

test('a 0-byte device: a stream is refused without claiming its start was overwritten', async (t) => {
  const backing = dir.join('empty-backing.img');
  writeFileSync(backing, '');
  const empty = attachLoop(backing);
  if (!empty) return t.skip('losetup is not permitted here');
  try {
    const result = await runCli(['import', `${raw}.zst`, '-o', empty]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /is larger than the reported available storage 0: use a larger device \(block devices are not resized\)$/m);
  } finally {
    detachLoop(empty);
  }
});

test('a device that holds the source (itself, its disk, a partition of it, a loop device over the source file) is refused, the source untouched', async (t) => {
  // Found by a QA pass: `convert /dev/loopN /dev/loopN` zeroed most of the disk and exited 0.
  const victim = dir.join('victim.raw');
  makeDiskLikeImage(victim, 8 * MiB);
  // An MBR with one partition (sectors 2048-10239; a Linux type), so that the disk and its
  // partition are two devices that overlap.
  const mbr = Buffer.alloc(512);
  mbr[446 + 4] = 0x83;
  mbr.writeUInt32LE(2048, 446 + 8);
  mbr.writeUInt32LE(8192, 446 + 12);
  mbr.writeUInt16LE(0xaa55, 510);
  const fd = openSync(victim, 'r+');
  writeSync(fd, mbr, 0, 512, 0);
  closeSync(fd);
  const before = sha256OfRange(victim, 0, 8 * MiB);
  const disk = attachLoop(victim);
  if (!disk) return t.skip('losetup is not permitted here');
  let madeNode: string | undefined;
  try {
    // partx adds the partition itself (the kernel here does not scan loop devices' tables).
    run('partx', ['--add', disk]);
    const partition = `${disk}p1`;
    // Without udev (a container), the partition's node is made from what sysfs says of it.
    if (!existsSync(partition)) {
      const [major, minor] = readFileSync(`/sys/block/${path.basename(disk)}/${path.basename(partition)}/dev`, 'utf8').trim().split(':');
      run('mknod', [partition, 'b', major!, minor!]);
      madeNode = partition;
    }
    const cases: [string[], RegExp][] = [
      [['convert', disk, disk], /^cdi-importer: error: \/dev\/loop\d+ is the source device itself: writing it would overwrite the image while it is read; write the output to another device or file$/],
      [['import', disk, '-o', disk], /is the source device itself: /],
      [['import', partition, '-o', disk], /^cdi-importer: error: \/dev\/loop\d+ is the disk that holds the source device: /],
      [['import', disk, '-o', partition], /^cdi-importer: error: \/dev\/loop\d+p1 is a partition of the source device: /],
      [['convert', victim, disk], /^cdi-importer: error: \/dev\/loop\d+ is a loop device over the source file: /],
      [['import', victim, '-o', partition], /p1 is a partition of a loop device over the source file: /],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(args);
      assert.equal(result.code, 1, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr.trim(), message, args.join(' '));
    }
  } finally {
    if (madeNode) rmSync(madeNode);
    spawnSync('partx', ['--delete', disk]);
    detachLoop(disk);
  }
  assert.equal(sha256OfRange(victim, 0, 8 * MiB), before);
});

test('stacked loop devices over the source (two over one file, one over another, overlapping offsets) are refused; disjoint ones are written', async (t) => {
  // Found by a QA pass: `convert /dev/loopA /dev/loopB` with both over one file zeroed most of it, exit 0.
  const victim = dir.join('stacked.raw');
  makeDiskLikeImage(victim, 8 * MiB);
  const before = sha256OfRange(victim, 0, 8 * MiB);
  const attached: string[] = [];
  const attach = (args: string[]) => {
    const device = run('losetup', ['-f', '--show', ...args]).trim();
    attached.push(device);
    return device;
  };
  const first = attachLoop(victim);
  if (!first) return t.skip('losetup is not permitted here');
  attached.push(first);
  try {
    const second = attach([victim]);
    const overLoop = attach([first]);
    const lowHalf = attach(['--sizelimit', String(4 * MiB), victim]);
    const highHalf = attach(['-o', String(4 * MiB), victim]);
    const refused: [string, string][] = [
      [first, second],
      [victim, overLoop],
      [first, overLoop],
      [overLoop, second],
      [lowHalf, first],
    ];
    for (const [source, destination] of refused) {
      const result = await runCli(['convert', source, destination]);
      assert.equal(result.code, 1, `${source} -> ${destination}: ${result.stderr}`);
      assert.match(result.stderr.trim(), /^cdi-importer: error: \/dev\/loop\d+ is a device over the same bytes as the source \(loop devices or partitions stacked on one file or disk\): writing it would overwrite the image while it is read; /, `${source} -> ${destination}`);
    }
    assert.equal(sha256OfRange(victim, 0, 8 * MiB), before);
    // The two halves share no byte: the low half copied onto the high half, as qemu-img would.
    const copied = await runCli(['convert', lowHalf, highHalf]);
    assert.equal(copied.code, 0, copied.stderr);
    assert.equal(sha256OfRange(victim, 4 * MiB, 4 * MiB), sha256OfRange(victim, 0, 4 * MiB));
  } finally {
    for (const device of attached.reverse()) detachLoop(device);
  }
});

test('a block device on standard input is read as the disk it holds (it read as empty; found by a QA pass)', async (t) => {
  const source = dir.join('stdin-device.raw');
  makeDiskLikeImage(source, 6 * MiB);
  const device = attachLoop(source);
  if (!device) return t.skip('losetup is not permitted here');
  try {
    const out = dir.join('from-stdin-device.raw');
    const cli = [process.execPath, ...cliCommand].map((word) => `'${word}'`).join(' ');
    const result = spawnSync('bash', ['-c', `${cli} convert - '${out}' -q < ${device}`], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(sha256OfRange(out, 0, 6 * MiB), sha256OfRange(source, 0, 6 * MiB));
  } finally {
    detachLoop(device);
  }
});
