/**
 * Local sources whose data needs no decoding (a qcow2's uncompressed clusters, a sparse raw's data
 * ranges) are copied to a file target by the native copy, their bytes never in JavaScript. The
 * output must be what qemu-img convert makes, byte for byte and hole for hole, and the same as
 * without the native copy (CDI_IMPORTER_NATIVE_COPY=0, also what a machine without it gets).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../support/cli.js';
import { dataBytes, makeTempDir, qemuRawSha256, run, sha256File, type TempDir } from '../support/tools.js';

const MiB = 1 << 20;
let dir: TempDir;
before(() => {
  dir = makeTempDir('cdi-native-copy-');
});
after(() => dir?.remove());

const qemuIo = (image: string, command: string) => run('qemu-io', ['-f', 'qcow2', '-c', command, image], { stdio: 'pipe' });

/**
 * Converts `image` with and without the native copy: both must give qemu-img's bytes and the same
 * holes (never more data than qemu-img's output; qemu-img sometimes writes a zero block beside
 * data). Returns the natively copied byte count.
 */
async function convertBothWays(image: string): Promise<number> {
  const name = image.split('/').pop()!;
  const reference = dir.join(`${name}.qemu.raw`);
  run('qemu-img', ['convert', '-O', 'raw', image, reference]);
  const outputs: Record<string, { copied: number; dataBytes: number }> = {};
  for (const native of ['1', '0']) {
    const out = dir.join(`${name}.${native}.raw`);
    const result = await runCli(['convert', image, out], { env: { NODE_DEBUG: 'cdi-importer', CDI_IMPORTER_NATIVE_COPY: native } });
    assert.equal(result.code, 0, result.stderr);
    const copied = Number(/(\d+) bytes copied from the source file by the native copy/.exec(result.stderr)?.[1]);
    assert.equal(await sha256File(out), await sha256File(reference), `native copy ${native === '1' ? 'on' : 'off'}: bytes differ from qemu-img's`);
    outputs[native] = { copied, dataBytes: dataBytes(out) };
  }
  assert.equal(outputs['0']!.copied, 0, 'CDI_IMPORTER_NATIVE_COPY=0 turns the native copy off');
  assert.equal(outputs['1']!.dataBytes, outputs['0']!.dataBytes, 'the native copy leaves other holes than writes from memory');
  assert.ok(outputs['1']!.dataBytes <= dataBytes(reference), `${outputs['1']!.dataBytes} bytes of data, qemu-img's output has ${dataBytes(reference)}`);
  return outputs['1']!.copied;
}

test('a qcow2 with data, all-zero data clusters, zeros inside data and compressed clusters: as qemu-img, holes included', async () => {
  const image = dir.join('mixed.qcow2');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', image, '64M']);
  qemuIo(image, 'write -P 0x5a 0 3M'); // the first MiB is held back and written last, from memory
  qemuIo(image, 'write -P 0 4M 2M'); // allocated clusters full of zeros: holes in the output
  qemuIo(image, 'write -P 0x11 8M 4k'); // one block of data, the rest of its cluster zeros
  qemuIo(image, 'write -P 0x22 9M 1k'); // less than a block
  qemuIo(image, 'write -P 0x33 20M 7M'); // runs longer than a read
  qemuIo(image, 'write -z 22M 1M'); // zero clusters inside them
  const compressed = dir.join('mixed-c.qcow2');
  run('qemu-img', ['convert', '-c', '-O', 'qcow2', image, compressed]);
  qemuIo(compressed, 'write -P 0x44 40M 2M'); // uncompressed clusters among compressed ones
  const copied = await convertBothWays(image);
  assert.ok(copied >= 8 * MiB, `only ${copied} bytes went through the native copy`);
  assert.ok((await convertBothWays(compressed)) >= 2 * MiB);
});

test('a sparse raw file: its data ranges are copied natively, its holes stay holes', async () => {
  const image = dir.join('sparse.raw');
  run('truncate', ['-s', '40M', image]);
  run('dd', ['if=/dev/urandom', `of=${image}`, 'bs=1M', 'seek=3', 'count=5', 'conv=notrunc', 'status=none']);
  run('dd', ['if=/dev/zero', `of=${image}`, 'bs=1M', 'seek=30', 'count=2', 'conv=notrunc', 'status=none']); // written zeros
  run('dd', ['if=/dev/urandom', `of=${image}`, 'bs=4k', 'seek=8000', 'count=3', 'conv=notrunc', 'status=none']);
  const copied = await convertBothWays(image);
  assert.ok(copied >= 5 * MiB, `only ${copied} bytes went through the native copy`);
});

test('an import to a file reports progress and the source bytes of natively copied data', async () => {
  const image = dir.join('progress.qcow2');
  run('qemu-img', ['create', '-q', '-f', 'qcow2', image, '32M']);
  qemuIo(image, 'write -P 0x5a 2M 16M');
  const result = await runCli(['import', image, '-o', dir.join('progress.img'), '--json']);
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as { sourceBytes: number };
  assert.ok(report.sourceBytes >= 16 * MiB, `sourceBytes ${report.sourceBytes} leaves out the copied data`);
  assert.equal(await sha256File(dir.join('progress.img')), await qemuRawSha256(image, dir.path));
});
