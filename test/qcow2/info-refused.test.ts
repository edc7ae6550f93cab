/**
 * `cdi-importer info` on well-formed qcow2 images that an import refuses (SPEC §3.1: a backing
 * file, encryption, an external data file, the corrupt bit): described as `qemu-img info` describes
 * them, with the refusal in the import's own words, exit 0; import and convert still refuse them.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { escapeRegExp, makeTempDir, run, type TempDir } from '../support/tools.js';
import { runCli } from '../support/cli.js';
import { createLuks, qemuImg, xzCompress } from './images.js';
import { readAt, u64, writeAt } from './patch.js';

const qemuInfo = (file: string) => JSON.parse(run('qemu-img', ['info', '--output=json', file]));

describe('cdi-importer info on qcow2 images an import refuses', () => {
  let tmp: TempDir;
  let counter = 0;
  const cases: { name: string; file: string; refusal: RegExp }[] = [];

  before(() => {
    tmp = makeTempDir('qcow2-info-refused-');
    const backing = tmp.join('backing.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', '/etc/passwd', '-F', 'raw', backing);
    run('qemu-img', ['create', '-q', '-f', 'raw', tmp.join('base.raw'), '2M']);
    const relative = tmp.join('relative.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', '-b', 'base.raw', '-F', 'raw', relative);
    const luks = tmp.join('luks.qcow2');
    createLuks(luks);
    const aes = tmp.join('aes.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '--object', 'secret,id=sec0,data=password', '-o', 'encrypt.format=aes,encrypt.key-secret=sec0', aes, '1M');
    const dataFile = tmp.join('external.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${tmp.join('external.data')},data_file_raw=on`, dataFile, '1M');
    const corrupt = tmp.join('corrupt.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', corrupt, '1M');
    writeAt(corrupt, 79, Buffer.from([readAt(corrupt, 79, 1)[0]! | 0x02])); // incompatible_features bit 1
    cases.push(
      { name: 'backing file', file: backing, refusal: /^qcow2 image has a backing file \("\/etc\/passwd"\); backing files are not supported/ },
      { name: 'relative backing file, compat 0.10', file: relative, refusal: /^qcow2 image has a backing file \("base\.raw"\)/ },
      { name: 'LUKS', file: luks, refusal: /^qcow2 image is encrypted \(LUKS\)/ },
      { name: 'AES', file: aes, refusal: /^qcow2 image is encrypted \(AES\)/ },
      { name: 'external data file', file: dataFile, refusal: /^qcow2 image keeps its data in an external data file \("\/.*external\.data"\)/ },
      { name: 'corrupt bit', file: corrupt, refusal: /^qcow2 image is marked corrupt/ },
    );
  });
  after(() => tmp.remove());

  it("has qemu-img info's keys and values, and says why import refuses, in import's and convert's words", async () => {
    for (const { name, file, refusal } of cases) {
      const result = await runCli(['info', file, '--json']);
      assert.equal(result.code, 0, `${name}: ${result.stderr}`);
      assert.equal(result.stderr, '', name);
      const ours = JSON.parse(result.stdout);
      const qemu = qemuInfo(file);
      // Of LUKS's header qemu-img shows every detail; only its format is read here.
      const encrypt = qemu['format-specific'].data.encrypt;
      if (encrypt) qemu['format-specific'].data.encrypt = { format: encrypt.format };
      for (const key of Object.keys(qemu)) assert.deepEqual(ours[key], qemu[key], `${name}: ${key}`);
      assert.match(ours['import-refused'], refusal, name);
      assert.equal(ours.qcow2['import-refused'], ours['import-refused'], name);

      const text = await runCli(['info', file]);
      assert.equal(text.code, 0, `${name}: ${text.stderr}`);
      assert.ok(text.stdout.includes(`\nimport:`), `${name}: ${text.stdout}`);
      assert.match(text.stdout, new RegExp(`^import: +refused: ${escapeRegExp(ours['import-refused'])}$`, 'm'), name);
      assert.doesNotMatch(text.stdout, /one-pass scratch/, `${name}: the import stops at the header`);

      for (const command of ['import', 'convert']) {
        const outDir = tmp.join(`out-${counter++}`);
        mkdirSync(outDir);
        const args = command === 'import' ? ['import', file, '-o', `${outDir}/disk.img`, '-q'] : ['convert', file, `${outDir}/disk.img`, '-q'];
        const refused = await runCli(args);
        assert.equal(refused.code, 1, `${name} ${command}: ${refused.stderr}`);
        // The refusal named as info words it, after the file it is about.
        assert.equal(refused.stderr, `cdi-importer: error: ${file}: ${ours['import-refused']}\n`, `${name} ${command}`);
        assert.deepEqual(readdirSync(outDir), [], `${name} ${command}: nothing written`);
      }
    }
  });

  it('the backing file and the data file are named, never opened (a FIFO in their place would hang a reader)', async () => {
    const dir = tmp.join('fifo');
    mkdirSync(dir);
    const backing = `${dir}/backing.qcow2`;
    run('mkfifo', [`${dir}/base.fifo`]);
    qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', 'base.fifo', '-F', 'raw', backing, '1M');
    const dataFile = `${dir}/external.qcow2`;
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${dir}/data.fifo`, dataFile, '1M');
    rmSync(`${dir}/data.fifo`);
    run('mkfifo', [`${dir}/data.fifo`]);
    for (const file of [backing, dataFile]) {
      for (const args of [['info', file, '--json'], ['info', file, '--json', '--scan']]) {
        const result = await runCli(args, { timeoutMs: 30_000 });
        assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
        assert.ok(JSON.parse(result.stdout)['import-refused'], args.join(' '));
      }
    }
    const info = JSON.parse((await runCli(['info', backing, '--json'])).stdout);
    assert.equal(info['backing-filename'], 'base.fifo');
    assert.equal(info['full-backing-filename'], `${dir}/base.fifo`, 'as qemu-img says: beside the image');
  });

  it('read in one pass (inside xz, on stdin): the same description and refusal', async () => {
    for (const { name, file } of cases) {
      const direct = JSON.parse((await runCli(['info', file, '--json'])).stdout);
      const xz = xzCompress(file);
      const compressed = await runCli(['info', xz, '--json']);
      const stdin = await runCli(['info', '-', '--json'], { input: readFileSync(file) });
      for (const [how, result, chain] of [['xz', compressed, ['xz', 'qcow2']], ['stdin', stdin, ['qcow2']]] as const) {
        assert.equal(result.code, 0, `${name} ${how}: ${result.stderr}`);
        const ours = JSON.parse(result.stdout);
        assert.deepEqual(ours['format-chain'], chain, `${name} ${how}`);
        assert.equal(ours['import-reads'], 'one-pass');
        assert.equal(ours.qcow2['one-pass-scratch-bytes'], undefined, `${name} ${how}: a refused image is not scanned`);
        for (const key of ['import-refused', 'backing-filename', 'backing-filename-format', 'encrypted', 'format-specific', 'virtual-size']) {
          assert.deepEqual(ours[key], direct[key], `${name} ${how}: ${key}`);
        }
      }
      const imported = await runCli(['import', xz, '-o', tmp.join(`xz-${counter}.img`), '-q']);
      assert.equal(imported.stderr, `cdi-importer: error: ${xz}: ${direct['import-refused']}\n`, name);
      assert.ok(!existsSync(tmp.join(`xz-${counter++}.img`)));
    }
  });

  it('names from the image are quoted and cut short, and no control character reaches the terminal', async () => {
    const name = `/tmp/a\x1b[31mred\x07\u009b2J${'x'.repeat(300)}`;
    const file = tmp.join('hostile-name.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-u', '-b', name, '-F', 'raw', file, '1M');
    const text = await runCli(['info', file]);
    const json = await runCli(['info', file, '--json']);
    for (const result of [text, json]) {
      assert.equal(result.code, 0, result.stderr);
      assert.doesNotMatch(result.stdout, /[\x00-\x09\x0b-\x1f\x7f-\x9f]/, 'no raw control characters');
    }
    const shown = `${name.slice(0, 200)}…`;
    assert.equal(JSON.parse(json.stdout)['backing-filename'], shown);
    assert.match(text.stdout, /^backing file: +"\/tmp\/a\\u001b\[31mred\\u0007\\u009b2Jx+…"$/m);
  });

  it('structural damage still fails, as qemu-img info fails, and the import still names the backing file first', async () => {
    const file = tmp.join('backing-unknown-bit.qcow2');
    copyFileSync(cases[0]!.file, file);
    writeAt(file, 72, u64(1n << 10n));
    assert.throws(() => run('qemu-img', ['info', file]), /Unsupported|unknown/i);
    const info = await runCli(['info', file]);
    assert.equal(info.code, 1);
    assert.match(info.stderr, new RegExp(`^cdi-importer: error: ${escapeRegExp(file)}: qcow2 image uses unknown incompatible features \\(bit 10\\).*\\n$`));
    const imported = await runCli(['import', file, '-o', tmp.join('unknown-bit.img'), '-q']);
    assert.equal(imported.code, 1);
    assert.match(imported.stderr, new RegExp(`^cdi-importer: error: ${escapeRegExp(file)}: qcow2 image has a backing file \\("/etc/passwd"\\).*\\n$`));
  });
});
