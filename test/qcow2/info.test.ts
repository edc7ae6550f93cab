/** `cdi-importer info` on qcow2 images, compared with `qemu-img info --output=json` and the one-pass driver. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { startNginx } from '../support/nginx.js';
import { makeTempDir, qemuRawSha256, run, sha256File, type TempDir } from '../support/tools.js';
import { runCli } from '../support/cli.js';
import { openQcow2Stream } from '../../src/qcow2/index.js';
import { writeExtents } from './helpers.js';
import { qemuImg, qemuIo, xzCompress, xzDecompressStream } from './images.js';
import { moveL2TableToEnd, readAt, u64, writeAt } from './patch.js';
import { spawnSync } from 'node:child_process';

describe('cdi-importer info on qcow2', () => {
  let tmp: TempDir;
  let image: string;
  before(() => {
    tmp = makeTempDir('qcow2-info-');
    image = tmp.join('disk.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compression_type=zstd,extended_l2=on,lazy_refcounts=on', image, '10M');
    qemuIo(image, 'write -P 0x42 0 1M');
    qemuImg('snapshot', '-c', 'one', image);
  });
  after(() => tmp.remove());

  it('reports the header facts qemu-img reports, named alike', async () => {
    const result = await runCli(['info', image, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const ours = JSON.parse(result.stdout);
    const qemu = JSON.parse(run('qemu-img', ['info', '--output=json', image]));
    assert.deepEqual(ours['format-chain'], ['qcow2']);
    assert.equal(ours['virtual-size'], qemu['virtual-size']);
    assert.equal(ours.qcow2['cluster-size'], qemu['cluster-size']);
    assert.equal(ours.qcow2['dirty-flag'], qemu['dirty-flag']);
    assert.equal(ours.qcow2['snapshot-count'], qemu.snapshots.length);
    for (const key of ['compat', 'compression-type', 'lazy-refcounts', 'refcount-bits', 'corrupt', 'extended-l2']) {
      assert.deepEqual(ours.qcow2['format-specific'].data[key], qemu['format-specific'].data[key], key);
    }
    // The same facts where qemu-img puts them, for a script written against its JSON.
    for (const key of ['virtual-size', 'filename', 'format', 'cluster-size', 'actual-size', 'dirty-flag']) {
      assert.deepEqual(ours[key], qemu[key], key);
    }
    assert.equal(ours['format-specific'].type, qemu['format-specific'].type);
    for (const key of Object.keys(ours['format-specific'].data)) {
      assert.deepEqual(ours['format-specific'].data[key], qemu['format-specific'].data[key], key);
    }
    // A seekable qcow2 is imported by random access: no scratch, and no need to read every byte to say so.
    assert.equal(ours['import-reads'], 'random-access');
    assert.equal(ours.qcow2['one-pass-scratch-bytes'], undefined);
    const scanned = JSON.parse((await runCli(['info', image, '--json', '--scan'])).stdout);
    assert.equal(scanned.qcow2['one-pass-scratch-bytes'], 0);
  });

  it("lists the internal snapshots as qemu-img info does (compat 1.1 and 0.10, names in UTF-8)", async () => {
    for (const compat of ['1.1', '0.10']) {
      const file = tmp.join(`snapshots-${compat}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', '-o', `compat=${compat}`, file, '8M');
      qemuIo(file, 'write -P 0x42 0 64k');
      qemuImg('snapshot', '-c', 'before update', file);
      qemuIo(file, 'write -P 0x43 1M 64k');
      qemuImg('snapshot', '-c', 'après la mise à jour ✓', file);
      qemuImg('snapshot', '-c', 'x'.repeat(1000), file);
      const result = await runCli(['info', file, '--json']);
      assert.equal(result.code, 0, result.stderr);
      const ours = JSON.parse(result.stdout);
      const qemu = JSON.parse(run('qemu-img', ['info', '--output=json', file]));
      assert.equal(qemu.snapshots.length, 3);
      assert.deepEqual(ours.snapshots, qemu.snapshots, compat);
      assert.equal(Object.keys(ours)[0], 'snapshots', 'first, as qemu-img puts them');
    }
  });

  it('lists persistent dirty bitmaps as qemu-img info does, in its key order; none where qemu would call them stale', async () => {
    // Found by a QA pass: qemu-img info showed the bitmaps, ours left the key out.
    const file = tmp.join('bitmaps.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', file, '8M');
    qemuIo(file, 'write -P 0x42 0 64k');
    qemuImg('bitmap', '--add', file, 'nightly');
    qemuImg('bitmap', '--add', '-g', '1M', file, 'sauvegarde ✓');
    qemuImg('bitmap', '--add', '--disable', file, 'off');
    const info = async () => {
      const result = await runCli(['info', file, '--json']);
      assert.equal(result.code, 0, result.stderr);
      return { ours: JSON.parse(result.stdout), qemu: JSON.parse(run('qemu-img', ['info', '--output=json', file])) };
    };
    const { ours, qemu } = await info();
    assert.equal(qemu['format-specific'].data.bitmaps.length, 3);
    assert.deepEqual(ours['format-specific'], qemu['format-specific']);
    assert.deepEqual(Object.keys(ours['format-specific'].data), Object.keys(qemu['format-specific'].data));
    const text = await runCli(['info', file]);
    assert.match(text.stdout, /dirty bitmaps:\s+"nightly", "sauvegarde ✓", "off" \(not imported, as with qemu-img convert\)/);
    // Bitmaps are no part of the disk: the import equals qemu-img's conversion.
    const out = tmp.join('bitmaps.raw');
    assert.equal((await runCli(['convert', file, out, '-q'])).code, 0);
    assert.equal(await sha256File(out), await qemuRawSha256(file, tmp.path));
    // Autoclear bit 0 cleared, as a program without bitmap support leaves it: qemu lists none.
    const autoclear = readAt(file, 88, 8);
    autoclear[7] &= ~1;
    writeAt(file, 88, autoclear);
    const stale = await info();
    assert.equal(stale.qemu['format-specific'].data.bitmaps, undefined);
    assert.deepEqual(stale.ours['format-specific'], stale.qemu['format-specific']);
    // A directory past the end of the file (qemu-img refuses the image): info still answers, without the list.
    autoclear[7] |= 1;
    writeAt(file, 88, autoclear);
    const magic = readAt(file, 0, 64 << 10).indexOf(Buffer.from([0x23, 0x85, 0x28, 0x75]));
    assert.ok(magic > 0);
    writeAt(file, magic + 8 + 16, u64(1n << 40n));
    const broken = await runCli(['info', file, '--json']);
    assert.equal(broken.code, 0, broken.stderr);
    assert.equal(JSON.parse(broken.stdout)['format-specific'].data.bitmaps, undefined);
    assert.notEqual(spawnSync('qemu-img', ['info', file]).status, 0, 'qemu-img refuses this directory');
  });

  it('a snapshot table qemu would not read (extra data past its 1 KiB limit): info still answers, without the list', async () => {
    const file = tmp.join('bad-snapshot-table.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', file, '8M');
    qemuIo(file, 'write -P 0x42 0 64k');
    qemuImg('snapshot', '-c', 'one', file);
    const snapshotsOffset = Number(readAt(file, 64, 8).readBigUInt64BE(0));
    const extra = Buffer.alloc(4);
    extra.writeUInt32BE(4096);
    writeAt(file, snapshotsOffset + 36, extra);
    const result = await runCli(['info', file, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const ours = JSON.parse(result.stdout);
    assert.equal(ours.snapshots, undefined);
    assert.equal(ours.qcow2['snapshot-count'], 1);
    assert.notEqual(spawnSync('qemu-img', ['info', file]).status, 0, 'qemu-img refuses this table too');
  });

  it('a compat 0.10 qcow2 and a raw file: the keys qemu-img prints, with its values, nothing it leaves out', async () => {
    const v2 = tmp.join('v2.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', v2, '3M');
    const raw = tmp.join('plain.raw');
    qemuImg('create', '-q', '-f', 'raw', raw, '3M');
    run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x17 1M 64k', raw]);
    for (const file of [v2, raw]) {
      const result = await runCli(['info', file, '--json']);
      assert.equal(result.code, 0, result.stderr);
      const ours = JSON.parse(result.stdout);
      const qemu = JSON.parse(run('qemu-img', ['info', '--output=json', file]));
      // qemu-img's keys, each with qemu-img's value (format-specific whole: no extra fields for version 2).
      for (const key of Object.keys(qemu)) assert.deepEqual(ours[key], qemu[key], `${file}: ${key}`);
    }
  });

  it('shows the format chain of a compressed image and its scratch needs in text', async () => {
    const result = await runCli(['info', xzCompress(image)]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /format chain:\s+xz → qcow2/);
    assert.match(result.stdout, /virtual size:\s+10(\.0)? MiB \(10485760 bytes\)/);
    assert.match(result.stdout, /compression type:\s+zstd/);
    assert.match(result.stdout, /extended L2:\s+yes/);
    assert.match(result.stdout, /snapshots:\s+1/);
    assert.match(result.stdout, /one-pass scratch:/);
  });

  /**
   * `info --json` of IMAGE.xz (the default scan) against a one-pass import of it: the scratch it
   * measured is what the import used (and more than none), and the import matches qemu-img.
   */
  async function assertMeasuredAsImported(image: string): Promise<void> {
    const result = await runCli(['info', xzCompress(image), '--json']);
    assert.equal(result.code, 0, result.stderr);
    const measured = JSON.parse(result.stdout).qcow2['one-pass-scratch-bytes'];
    const scratch = `${image}.scratch`;
    mkdirSync(scratch);
    const disk = await openQcow2Stream(xzDecompressStream(`${image}.xz`), { scratchDir: scratch });
    await writeExtents(disk, `${image}.raw`);
    assert.equal(await sha256File(`${image}.raw`), await qemuRawSha256(image, tmp.path));
    assert.ok(measured > 0);
    assert.equal(measured, disk.scratchBytesUsed!());
  }

  it('measures the same scratch bytes the one-pass import uses', async () => {
    const moved = tmp.join('moved.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', moved, '12M');
    qemuIo(moved, 'write -P 0x5a 0 2M', 'write -P 0x5b 6M 3M');
    moveL2TableToEnd(moved, 0);
    await assertMeasuredAsImported(moved);
  });

  it('compressed clusters written over time, one sharing a sector with the next whose table comes 8 MiB later: measured, not called corrupt', async () => {
    const late = tmp.join('late-compressed.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', late, '4G');
    // qemu packs the second compressed cluster into the last sector of the first; its new L2
    // table is written after 8 MiB of data, far past what the one-pass driver keeps in memory.
    qemuIo(late, 'write -c -P 1 0 64k', 'write -P 8 8M 8M', 'write -c -P 2 1G 64k');
    await assertMeasuredAsImported(late);
  });

  it('over HTTP with Range support reads only the metadata unless --scan is given', async () => {
    const big = tmp.join('web', 'big.qcow2');
    mkdirSync(tmp.join('web'));
    qemuImg('create', '-q', '-f', 'qcow2', big, '64M');
    qemuIo(big, 'write -P 0x11 0 24M');
    const nginx = await startNginx({ root: tmp.join('web') });
    try {
      const url = `${nginx.http}big.qcow2`;
      const quick = await runCli(['info', url, '--json']);
      assert.equal(quick.code, 0, quick.stderr);
      const info = JSON.parse(quick.stdout);
      assert.equal(info['virtual-size'], 64 * 2 ** 20);
      assert.equal(info['import-reads'], 'random-access');
      assert.equal(info.qcow2['one-pass-scratch-bytes'], undefined);
      const fetched = nginx.requests().filter((r) => r.uri === '/big.qcow2').reduce((sum, r) => sum + r.bytes, 0);
      assert.ok(fetched < 2 ** 20, `info fetched ${fetched} bytes of a ${statSync(big).size}-byte image`);
      const text = await runCli(['info', url]);
      assert.match(text.stdout, /one-pass scratch:\s+not measured; an import reads this image at random offsets and needs none/);

      const scanned = await runCli(['info', url, '--scan', '--json']);
      assert.equal(scanned.code, 0, scanned.stderr);
      assert.equal(JSON.parse(scanned.stdout).qcow2['one-pass-scratch-bytes'], 0);
    } finally {
      await nginx.stop();
    }
  });

  it('names the chain of other formats too, and reads stdin', async () => {
    const raw = tmp.join('plain.raw');
    run('truncate', ['-s', '1000', raw]);
    const json = JSON.parse((await runCli(['info', raw, '--json'])).stdout);
    assert.deepEqual(json['format-chain'], ['raw']);
    assert.equal(json['virtual-size'], 1024, 'whole sectors, as qemu-img info says');
    const xz = xzCompress(raw);
    const fromStdin = await runCli(['info', '-'], { input: (await import('node:fs')).readFileSync(xz) });
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.match(fromStdin.stdout, /format chain:\s+xz → raw/);
    assert.match(fromStdin.stdout, /virtual size:\s+unknown/);
  });

  it('rejects a corrupt image with one line and exit 1, as qemu-img info fails on it', async () => {
    const bad = tmp.join('bad.qcow2');
    copyFileSync(image, bad);
    writeAt(bad, 72, u64(1n << 10n));
    assert.throws(() => run('qemu-img', ['info', bad]));
    const result = await runCli(['info', bad]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^cdi-importer: error: \S*bad\.qcow2: qcow2 image uses unknown incompatible features \(bit 10\).*\n$/);
  });
});

describe('cdi-importer info on raw', () => {
  it('a compressed raw image: its size from an .xz index, or measured with --scan for gzip (as qemu-img info says of the raw)', async () => {
    const tmp = makeTempDir('raw-info-');
    try {
      const raw = tmp.join('disk.raw');
      run('sh', ['-c', `head -c 3000000 /dev/urandom > ${raw} && gzip -k ${raw}`]);
      const compressed = xzCompress(raw);
      const qemu = JSON.parse(run('qemu-img', ['info', '--output=json', '-f', 'raw', raw]))['virtual-size'];
      const fromIndex = JSON.parse((await runCli(['info', compressed, '--json'])).stdout);
      assert.deepEqual([fromIndex['format-chain'], fromIndex['virtual-size']], [['xz', 'raw'], qemu]);
      const quick = JSON.parse((await runCli(['info', `${raw}.gz`, '--json'])).stdout);
      assert.deepEqual([quick['format-chain'], quick['virtual-size']], [['gzip', 'raw'], undefined]);
      const scanned = await runCli(['info', `${raw}.gz`, '--json', '--scan']);
      assert.equal(scanned.code, 0, scanned.stderr);
      assert.equal(JSON.parse(scanned.stdout)['virtual-size'], qemu);
    } finally {
      tmp.remove();
    }
  });

  it('a fixed-size VHD (raw from its start, a footer at its end): info describes it and gives import\'s refusal in the same words', async () => {
    const tmp = makeTempDir('vhd-info-');
    try {
      const raw = tmp.join('disk.raw');
      const vhd = tmp.join('fixed.vhd');
      run('sh', ['-c', `head -c 2097152 /dev/urandom > ${raw}`]);
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=fixed', raw, vhd]);
      const info = await runCli(['info', vhd]);
      const imported = await runCli(['import', vhd, '-o', tmp.join('out.img')]);
      // As for a dynamic VHD or a qcow2 an import refuses: described (exit 0), the refusal in import's words.
      assert.equal(info.code, 0, info.stderr);
      assert.equal(imported.code, 1, imported.stderr);
      assert.match(imported.stderr, /^cdi-importer: error: \S*fixed\.vhd is a fixed-size VHD image \(its footer is at the end\), which is not supported/);
      assert.match(info.stdout, /^format chain: +vhd$/m);
      const refusal = imported.stderr.slice('cdi-importer: error: '.length).trim();
      assert.ok(info.stdout.split('\n').some((line) => /^import: +refused: /.test(line) && line.endsWith(`refused: ${refusal}`)), info.stdout);
      assert.ok(!existsSync(tmp.join('out.img')));
    } finally {
      tmp.remove();
    }
  });
});
