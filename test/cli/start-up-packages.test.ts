/**
 * What a run loads before it does anything: the packages a command does not use stay unloaded.
 * The YAML parser alone took ~45 ms of every run's start when the datavolume command's error
 * class pulled it in (a 2 GiB qcow2 converts in ~0.45 s). Runs the real launcher over a bundle.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../support/cli.js';
import { buildLauncher } from '../support/launcher.js';
import { makeTempDir, run, type TempDir } from '../support/tools.js';

/** Packages only some commands need: HTTP and registries, pod logging, archives, manifests. */
const ON_DEMAND = ['undici', 'pino', 'tar-stream', 'yaml'];

let dir: TempDir;
let launcher: string;
before(async () => {
  dir = makeTempDir('cdi-start-up-');
  launcher = await buildLauncher(dir.path);
  run('qemu-img', ['create', '-q', '-f', 'qcow2', dir.join('small.qcow2'), '4M']);
});
after(() => dir?.remove());

/** Runs the launcher with `args`; returns the packages it loaded. */
function packagesLoadedBy(args: string[]): string[] {
  const record = dir.join('packages.json');
  const result = spawnSync(process.execPath, ['-r', path.join(repoRoot, 'test', 'cli', 'fixtures', 'record-packages.cjs'), launcher, ...args], {
    cwd: dir.path,
    env: { ...process.env, RECORD_PACKAGES_FILE: record },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(result.status, 0, result.stderr);
  return JSON.parse(readFileSync(record, 'utf8')) as string[];
}

for (const args of [['--help'], ['convert', 'small.qcow2', 'out.raw', '-q'], ['info', 'small.qcow2']]) {
  test(`cdi-importer ${args.join(' ')} loads none of ${ON_DEMAND.join(', ')}`, () => {
    const loaded = packagesLoadedBy(args);
    assert.deepEqual(loaded.filter((name) => ON_DEMAND.includes(name)), []);
  });
}

test('the datavolume command loads the YAML parser (the recording sees packages)', () => {
  writeFileSync(
    dir.join('dv.yaml'),
    'apiVersion: cdi.kubevirt.io/v1beta1\nkind: DataVolume\nmetadata: {name: empty}\nspec:\n  source: {blank: {}}\n  storage: {resources: {requests: {storage: 1Mi}}}\n',
  );
  assert.ok(packagesLoadedBy(['datavolume', 'dv.yaml', '--out', dir.join('volumes'), '-q']).includes('yaml'));
});
