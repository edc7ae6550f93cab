/**
 * `cdi-importer datavolume` on the seed's manifests (their URLs pointed at the test nginx) and on
 * a VirtualMachine with two dataVolumeTemplates. Images are checked against qemu-img's
 * conversion; each output is the requested storage in size, the part past the image a hole.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { runCli } from '../support/cli.js';
import { makeDiskLikeImage } from '../support/disk-images.js';
import { startNginx, type NginxServer } from '../support/nginx.js';
import { makeTestCertificates } from '../support/tls-ca.js';
import { allocatedBytes, makeTempDir, run, sh, sha256File, type TempDir } from '../support/tools.js';
import { sha256OfRange } from '../pod/pod-harness.js';
import { moveL2TableToEnd } from '../qcow2/patch.js';
import { mountTmpfs } from '../support/loop-device.js';

const MiB = 1 << 20;
const IMAGE_SIZE = 8 * MiB;
const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
const USER = 'importer';
const PASSWORD = 's3cret pass';

/** The usable size of SPEC §7 with no overhead: the request rounded down to 1 MiB. */
const usable = (bytes: number) => Math.floor(bytes / MiB) * MiB;

describe('cdi-importer datavolume', () => {
  let work: TempDir;
  let nginx: NginxServer;
  let rawSha: string;

  /** Copies a seed fixture with each DataVolume's source.http.url set (by DataVolume name). */
  function manifest(fixture: string, urls: Record<string, string>, edit?: (doc: ReturnType<typeof parseAllDocuments>[number] & object) => void): string {
    const docs = parseAllDocuments(readFileSync(path.join(fixtures, fixture), 'utf8'));
    for (const doc of docs) {
      if (!('setIn' in doc)) continue;
      if (doc.get('kind') === 'DataVolume') {
        doc.setIn(['spec', 'source', 'http', 'url'], urls[String(doc.getIn(['metadata', 'name']))]);
      } else {
        const templates = doc.getIn(['spec', 'dataVolumeTemplates']) as { items: unknown[] };
        templates.items.forEach((_, i) => {
          const name = String(doc.getIn(['spec', 'dataVolumeTemplates', i, 'metadata', 'name']));
          if (urls[name]) doc.setIn(['spec', 'dataVolumeTemplates', i, 'spec', 'source', 'http', 'url'], urls[name]);
        });
      }
      edit?.(doc);
    }
    const file = work.join(`${process.hrtime.bigint()}-${fixture}`);
    writeFileSync(file, docs.map((d) => d.toString()).join('---\n'));
    return file;
  }

  function secretFile(name: string): string {
    const text = readFileSync(path.join(fixtures, 'endpoint-secret.yaml'), 'utf8')
      .replace('<endpoint-secret>', name)
      .replace('accessKeyId: ""', `accessKeyId: "${Buffer.from(USER).toString('base64')}"`)
      .replace('secretKey:   ""', `secretKey:   "${Buffer.from(PASSWORD).toString('base64')}"`);
    const file = work.join(`secret-${name}.yaml`);
    writeFileSync(file, text);
    return file;
  }

  function assertImage(file: string, requested: number): void {
    assert.equal(statSync(file).size, usable(requested), `${file} size`);
    assert.equal(sha256OfRange(file, 0, IMAGE_SIZE), rawSha, `${file} content`);
    // Past the image only holes: the tail reads as zeros without being written.
    assert.ok(allocatedBytes(file) <= IMAGE_SIZE + MiB, `${file}: ${allocatedBytes(file)} bytes allocated`);
  }

  before(async () => {
    work = makeTempDir('cdi-dv-');
    const www = work.join('www');
    run('mkdir', ['-p', www]);
    makeDiskLikeImage(work.join('raw.img'), IMAGE_SIZE);
    rawSha = await sha256File(work.join('raw.img'));
    // The oracle agrees the raw image is its own conversion (and it is what the qcow2 decodes to).
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', work.join('raw.img'), path.join(www, 'Fedora-Cloud-Base-28-1.1.x86_64.qcow2')]);
    sh(`xz -T1 -3 -c ${work.join('raw.img')} > ${path.join(www, 'disk.raw.xz')}`);
    sh(`gzip -1 -c ${work.join('raw.img')} > ${path.join(www, 'disk.raw.gz')}`);
    const certificates = makeTestCertificates(work.path);
    writeFileSync(
      work.join('ca-configmap.yaml'),
      `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: tls-certs\ndata:\n  ca.pem: |\n${readFileSync(certificates.caCert, 'utf8').replace(/^/gm, '    ')}`,
    );
    nginx = await startNginx({ root: www, auth: { username: USER, password: PASSWORD }, certificates });
  });

  after(async () => {
    await nginx?.stop();
    work?.remove();
  });

  test('example-import-dv.yaml (DataVolume v1alpha1): out/<name>.img sized by requests.storage', async () => {
    const out = work.join('out-import-dv');
    const file = manifest('example-import-dv.yaml', { 'example-import-dv': `${nginx.http}disk.raw.xz` });
    const result = await runCli(['datavolume', file, '--out', out]);
    assert.equal(result.code, 0, result.stderr);
    assertImage(path.join(out, 'example-import-dv.img'), 1e9);
    assert.deepEqual(readdirSync(out), ['example-import-dv.img']);
  });

  test('vm-fedora-datavolume (qcow2 over HTTPS + Basic auth): --secret for secretRef, --config-map for certConfigMap', async () => {
    const out = work.join('out-fedora');
    const file = manifest('vm-fedora-datavolume.yaml', { 'fedora-dv': `${nginx.https}auth/Fedora-Cloud-Base-28-1.1.x86_64.qcow2` });
    const result = await runCli(['datavolume', file, '--secret', secretFile('endpoint-secret'), '--config-map', work.join('ca-configmap.yaml'), '--out', out]);
    assert.equal(result.code, 0, result.stderr);
    assertImage(path.join(out, 'fedora-dv.img'), 2 * 1024 * MiB);
  });

  test('vm-fedora-datavolume without its CA: the unknown-CA error, then --insecure (as CDI\'s insecureRegistries) imports it', async () => {
    // Found by a QA pass: the error offered --insecure, which this command did not take.
    const file = manifest('vm-fedora-datavolume.yaml', { 'fedora-dv': `${nginx.https}auth/Fedora-Cloud-Base-28-1.1.x86_64.qcow2` });
    const refused = await runCli(['datavolume', file, '--secret', secretFile('endpoint-secret'), '--out', work.join('out-fedora-noca')]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /signed by an unknown certificate authority; trust its CA with .*certConfigMap.*, or --insecure/);
    const out = work.join('out-fedora-insecure');
    const result = await runCli(['datavolume', file, '--secret', secretFile('endpoint-secret'), '--insecure', '--out', out]);
    assert.equal(result.code, 0, result.stderr);
    assertImage(path.join(out, 'fedora-dv.img'), 2 * 1024 * MiB);
  });

  test('vm-fedora-datavolume without the Secret: the 401 is reported, nothing left behind', async () => {
    const out = work.join('out-fedora-noauth');
    mkdirSync(out); // there before the run: kept, empty
    const file = manifest('vm-fedora-datavolume.yaml', { 'fedora-dv': `${nginx.https}auth/Fedora-Cloud-Base-28-1.1.x86_64.qcow2` });
    const result = await runCli(['datavolume', file, '--config-map', work.join('ca-configmap.yaml'), '--out', out]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /401/);
    assert.deepEqual(readdirSync(out), []);
  });

  test('a storage request smaller than the image: the hint names the storage request, not CLI flags the command lacks', async () => {
    const out = work.join('out-too-small');
    const file = manifest('example-import-dv.yaml', { 'example-import-dv': `${nginx.http}disk.raw.xz` }, (doc) => {
      doc.setIn(['spec', 'pvc', 'resources', 'requests', 'storage'], '4Mi');
    });
    const result = await runCli(['datavolume', file, '--out', out]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /is larger than the reported available storage \d+: raise the DataVolume's storage request/);
    assert.doesNotMatch(result.stderr, /--size|--filesystem-overhead/);
  });

  test('free space under --out, not the request, is the limit: the line says so; a blank disk capped by it says so too', async (t) => {
    const mount = mountTmpfs(t, work.path, '6m');
    if (!mount) return;
    const file = work.join('free-space.yaml');
    const dv = (name: string, source: string, storage: string) =>
      `apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata:\n  name: ${name}\nspec:\n  source:\n${source}\n  storage:\n    resources:\n      requests:\n        storage: ${storage}\n`;
    writeFileSync(file, `${dv('blank', '    blank: {}', '1Ti')}---\n${dv('disk', `    http:\n      url: ${nginx.http}disk.raw.xz`, '16Mi')}`);
    const result = await runCli(['datavolume', file, '--out', mount]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /Imported blank \(6(\.0)? MiB\) to .*blank\.img \(the storage request asked for 1(\.0)? TiB; the free space allows no more\)/);
    assert.match(result.stderr, /is larger than the reported available storage \d+: the free space where --out is was the limit, not the storage request: make room there, or use --out on a file system with more room$/m);
    assert.match(result.stderr, /DataVolume "disk" failed; imported before it: blank$/m);
    assert.deepEqual(readdirSync(mount), ['blank.img']);
  });

  test('an archive volume whose directory cannot be made fails as that volume, with the summary of the others', async () => {
    const out = work.join('out-in-the-way');
    mkdirSync(out);
    writeFileSync(path.join(out, 'files'), 'a file where the directory goes');
    const file = work.join('in-the-way.yaml');
    const storage = '  storage:\n    resources:\n      requests:\n        storage: 4Mi\n';
    writeFileSync(
      file,
      `apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata:\n  name: blank\nspec:\n  source:\n    blank: {}\n${storage}---\n` +
        `apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata:\n  name: files\nspec:\n  contentType: archive\n  source:\n    http:\n      url: ${nginx.http}none.tar\n${storage}`,
    );
    const result = await runCli(['datavolume', file, '--out', out, '--json']);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /cannot create the output directory .*files: a file by that name is in the way$/m);
    assert.match(result.stderr, /DataVolume "files" failed; imported before it: blank$/m);
    const lines = result.stdout.trim().split('\n').map((line) => JSON.parse(line) as { name: string; ok: boolean });
    assert.deepEqual(lines.map((l) => [l.name, l.ok]), [['blank', true], ['files', false]]);
  });

  test('example-dv-vm.yaml (VirtualMachine template)', async () => {
    const out = work.join('out-dv-vm');
    const file = manifest('example-dv-vm.yaml', { 'example-dv': `${nginx.http}disk.raw.gz` });
    const result = await runCli(['datavolume', file, '--out', out, '--json']);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split('\n').map((l) => JSON.parse(l) as { name: string; ok: boolean; destination: string; formats: string[] });
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.name, 'example-dv');
    assert.equal(lines[0]!.ok, true);
    assert.deepEqual(lines[0]!.formats, ['gzip', 'raw']);
    assertImage(path.join(out, 'example-dv.img'), 1e9);
  });

  test('a VirtualMachine with two dataVolumeTemplates (http with a named secretRef, and blank) in v1beta1 storage form', async () => {
    const out = work.join('out-two');
    const vm = `apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: two-disks
spec:
  dataVolumeTemplates:
  - metadata:
      name: root-disk
    spec:
      storage:
        resources:
          requests:
            storage: 64Mi
      source:
        http:
          url: ${nginx.http}auth/disk.raw.xz
          secretRef: my-endpoint
  - metadata:
      name: scratch-disk
    spec:
      storage:
        resources:
          requests:
            storage: 32Mi
      source:
        blank: {}
  running: false
`;
    const file = work.join('two-disks.yaml');
    writeFileSync(file, vm);
    const result = await runCli(['datavolume', file, '--secret', secretFile('other'), '--secret', secretFile('my-endpoint'), '--out', out]);
    assert.equal(result.code, 0, result.stderr);
    assertImage(path.join(out, 'root-disk.img'), 64 * MiB);
    const blank = path.join(out, 'scratch-disk.img');
    assert.equal(statSync(blank).size, 32 * MiB);
    assert.equal(allocatedBytes(blank), 0);
  });

  test('a secretRef that is not among the Secrets given: usage error naming both, nothing imported', async () => {
    const out = work.join('out-missing-secret');
    const file = manifest('example-import-dv.yaml', { 'example-import-dv': `${nginx.http}disk.raw.xz` }, (doc) => {
      doc.setIn(['spec', 'source', 'http', 'secretRef'], 'prod-credentials');
    });
    const result = await runCli(['datavolume', file, '--secret', secretFile('endpoint-secret'), '--out', out]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /secretRef "prod-credentials" is not among the Secrets given with --secret \("endpoint-secret"\)/);
    assert.equal(existsSync(out), false);
    // A pipeline reading --json learns which volume the manifest got wrong.
    const json = await runCli(['datavolume', file, '--secret', secretFile('endpoint-secret'), '--out', out, '--json']);
    assert.equal(json.code, 2);
    const failure = JSON.parse(json.stdout);
    assert.deepEqual([failure.name, failure.ok, failure.category], ['example-import-dv', false, 'usage']);
  });

  for (const [kind, body] of [
    ['s3', '{ url: "https://s3.example/bucket/disk.img" }'],
    ['gcs', '{ url: "gs://bucket/disk.img" }'],
    ['imageio', '{ url: "https://ovirt.example/ovirt-engine/api", diskId: "1" }'],
    ['vddk', '{ url: "https://vcenter.example", uuid: "x", backingFile: "y" }'],
    ['pvc', '{ namespace: default, name: golden }'],
    ['upload', '{}'],
  ] as const) {
    test(`source.${kind}: a clear "not supported yet" error, nothing imported`, async () => {
      const out = work.join(`out-${kind}`);
      const file = work.join(`dv-${kind}.yaml`);
      writeFileSync(
        file,
        `apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata:\n  name: dv-${kind}\nspec:\n  source:\n    ${kind}: ${body}\n  storage:\n    resources:\n      requests:\n        storage: 1Gi\n`,
      );
      const result = await runCli(['datavolume', file, '--out', out]);
      assert.equal(result.code, 1);
      assert.match(result.stderr, new RegExp(`DataVolume "dv-${kind}": source\\.${kind} \\(.+\\) is not supported by cdi-importer yet; supported sources are http, registry and blank`));
      assert.equal(existsSync(out), false);
    });
  }

  test('a manifest with no DataVolume: usage error', async () => {
    const file = work.join('service.yaml');
    writeFileSync(file, 'apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n');
    const result = await runCli(['datavolume', file, '--out', work.join('out-none')]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /holds no DataVolume and no VirtualMachine with dataVolumeTemplates/);
  });

  test('manifest mistakes are usage errors naming the file: no apiVersion, storage 0, a YAML alias bomb', async () => {
    const dv = (apiVersion: string, storage: string) =>
      `${apiVersion}kind: DataVolume\nmetadata:\n  name: dv\nspec:\n  source:\n    blank: {}\n  storage:\n    resources:\n      requests:\n        storage: ${storage}\n`;
    const cases: Array<[string, string, RegExp]> = [
      ['no-api.yaml', dv('', '1Mi'), /no-api\.yaml: DataVolume has no apiVersion \(expected cdi\.kubevirt\.io\/v1beta1 or v1alpha1\)/],
      ['zero.yaml', dv('apiVersion: cdi.kubevirt.io/v1beta1\n', '0'), /DataVolume "dv": spec\.storage\.resources\.requests\.storage is 0/],
      ['bomb.yaml', `a: &a [x, x, x, x, x, x, x, x, x]\n${Array.from({ length: 8 }, (_, i) => `${'bcdefghi'[i]}: &${'bcdefghi'[i]} [${Array(9).fill(`*${'abcdefgh'[i]}`).join(', ')}]`).join('\n')}\n`, /bomb\.yaml is not valid YAML: .*alias/i],
    ];
    for (const [name, text, message] of cases) {
      const file = work.join(name);
      writeFileSync(file, text);
      const result = await runCli(['datavolume', file, '--out', work.join(`out-${name}`)]);
      assert.equal(result.code, 2, `${name}: ${result.stderr}`);
      assert.match(result.stderr, message, name);
      assert.equal(existsSync(work.join(`out-${name}`)), false, name);
    }
  });

  test('a failed archive DataVolume leaves no empty directory behind', async () => {
    const out = work.join('out-archive-fail');
    const file = work.join('archive-fail.yaml');
    writeFileSync(
      file,
      `apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata:\n  name: not-a-tar\nspec:\n  contentType: archive\n  source:\n    http:\n      url: ${nginx.http}disk.raw.xz\n  storage:\n    resources:\n      requests:\n        storage: 64Mi\n`,
    );
    const result = await runCli(['datavolume', file, '--out', out]);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /is not a tar archive/);
    assert.equal(existsSync(out), false, 'the --out the run made is removed again, being empty');
  });

  test('volumes are imported in order and a failure stops the rest: the line says which were and were not imported', async () => {
    const volume = (name: string, source: string) =>
      `  - metadata:\n      name: ${name}\n    spec:\n      storage:\n        resources:\n          requests:\n            storage: 32Mi\n      source:\n${source}\n`;
    const vm = (...volumes: string[]) =>
      `apiVersion: kubevirt.io/v1\nkind: VirtualMachine\nmetadata:\n  name: vm\nspec:\n  dataVolumeTemplates:\n${volumes.join('')}  running: false\n`;
    const blank = '        blank: {}';
    const missing = `        http:\n          url: ${nginx.http}no-such-disk.img`;

    const middle = work.join('fails-in-the-middle.yaml');
    writeFileSync(middle, vm(volume('first', blank), volume('second', missing), volume('third', blank), volume('fourth', blank)));
    const outMiddle = work.join('out-fails-in-the-middle');
    const m = await runCli(['datavolume', middle, '--out', outMiddle]);
    assert.equal(m.code, 1, m.stderr);
    assert.match(m.stderr, /404/);
    assert.match(m.stderr, /failed; imported before it: first; not imported: third, fourth\n$/);
    assert.deepEqual(readdirSync(outMiddle), ['first.img']);

    const last = work.join('fails-last.yaml');
    writeFileSync(last, vm(volume('first', blank), volume('second', missing)));
    const outLast = work.join('out-fails-last');
    const l = await runCli(['datavolume', last, '--out', outLast]);
    assert.equal(l.code, 1, l.stderr);
    assert.match(l.stderr, /failed; imported before it: first\n$/);
    assert.deepEqual(readdirSync(outLast), ['first.img']);
  });

  test('an --out that cannot be made is the destination\'s failure, in words: a file in the way, a read-only file system (not "no such file")', async (t) => {
    const file = work.join('out-blank.yaml');
    writeFileSync(
      file,
      'apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata:\n  name: dv\nspec:\n  source:\n    blank: {}\n  storage:\n    resources:\n      requests:\n        storage: 1Mi\n',
    );
    const inTheWay = work.join('out-is-a-file');
    writeFileSync(inTheWay, 'not a directory');
    for (const [out, problem] of [
      [inTheWay, 'a file by that name is in the way'],
      [path.join(inTheWay, 'sub'), 'a part of the path is not a directory'],
    ]) {
      const result = await runCli(['datavolume', file, '--out', out!, '--json']);
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stderr, `cdi-importer: error: cannot create the output directory ${out}: ${problem}\n`);
      assert.equal(JSON.parse(result.stdout).category, 'target');
    }
    const mount = work.join('out-read-only');
    sh(`mkdir -p ${mount}`);
    try {
      run('mount', ['-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', mount]);
    } catch {
      t.skip('cannot mount a tmpfs here');
      return;
    }
    try {
      const readOnly = await runCli(['datavolume', file, '--out', path.join(mount, 'a', 'b')]);
      assert.equal(readOnly.code, 1, readOnly.stderr);
      assert.equal(readOnly.stderr, `cdi-importer: error: cannot create the output directory ${path.join(mount, 'a', 'b')}: read-only file system\n`);
    } finally {
      run('umount', [mount]);
    }
  });

  test('a DataVolume name that is not a Kubernetes name cannot write outside --out', async () => {
    const file = work.join('escape.yaml');
    writeFileSync(
      file,
      'apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata:\n  name: ../../escape\nspec:\n  source:\n    blank: {}\n  storage:\n    resources:\n      requests:\n        storage: 1Mi\n',
    );
    const result = await runCli(['datavolume', file, '--out', work.join('out-escape')]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, /"\.\.\/\.\.\/escape" is not a valid Kubernetes object name/);
    assert.equal(existsSync(work.join('escape.img')), false);
  });
  test('a qcow2 that needs scratch space in one pass (inside gzip, an L2 table after its data) imports: scratch beside the image by default, or in --scratch', async () => {
    const image = work.join('www', 'resized.qcow2');
    // 4 KiB clusters: one L2 table maps 2 MiB, and moved to the end its 2 MiB of data come before it.
    run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', image, '20M']);
    run('qemu-io', ['-c', 'write -P 0x5a 0 2M', '-c', 'write -P 0x5b 6M 3M', image]);
    moveL2TableToEnd(image, 0);
    run('qemu-img', ['convert', '-O', 'raw', image, work.join('resized.raw')]);
    const expected = await sha256File(work.join('resized.raw'));
    sh(`gzip -c ${image} > ${image}.gz`);
    const file = work.join('scratch-dv.yaml');
    writeFileSync(
      file,
      `apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata:\n  name: resized\nspec:\n  source:\n    http:\n      url: ${nginx.http}resized.qcow2.gz\n  storage:\n    resources:\n      requests:\n        storage: 64Mi\n`,
    );
    const out = work.join('out-scratch-default');
    const byDefault = await runCli(['datavolume', file, '--out', out, '--json']);
    assert.equal(byDefault.code, 0, byDefault.stderr);
    assert.ok(JSON.parse(byDefault.stdout).scratchBytesUsed > 0, byDefault.stdout);
    assert.equal(sha256OfRange(path.join(out, 'resized.img'), 0, 20 * MiB), expected);
    assert.deepEqual(readdirSync(out), ['resized.img'], 'the spill is gone');

    const scratch = work.join('scratch-given');
    mkdirSync(scratch);
    const given = await runCli(['datavolume', file, '--out', work.join('out-scratch-given'), '--scratch', scratch]);
    assert.equal(given.code, 0, given.stderr);
    assert.equal(sha256OfRange(work.join('out-scratch-given', 'resized.img'), 0, 20 * MiB), expected);
    assert.deepEqual(readdirSync(scratch), []);

    const missing = await runCli(['datavolume', file, '--out', work.join('out-scratch-missing'), '--scratch', work.join('no-such-dir')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot use scratch directory .*no-such-dir: /);
    assert.equal(existsSync(work.join('out-scratch-missing')), false);
  });
});
