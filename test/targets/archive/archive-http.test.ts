/** A tar.gz imported with --content-type archive from nginx over HTTP, HTTPS (custom CA) and Basic auth. */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../../support/cli.js';
import { startFaultServer, type FaultServer } from '../../support/fault-server.js';
import { startNginx, type NginxServer } from '../../support/nginx.js';
import { buildSampleTree, diffTrees, gnuTar, treeListing } from '../../support/tar-fixtures.js';
import { makeTestCertificates } from '../../support/tls-ca.js';
import { makeTempDir, run, sh, type TempDir } from '../../support/tools.js';

describe('archive import over HTTP', () => {
  let tmp: TempDir;
  let nginx: NginxServer;
  let faults: FaultServer;
  let caCert: string;
  let reference: string;
  let n = 0;
  const auth = { username: 'alice', password: 'tar-s3cret' };

  before(async () => {
    tmp = makeTempDir('cdi-archive-http-');
    const src = tmp.join('src');
    const served = tmp.join('served');
    mkdirSync(src);
    mkdirSync(served);
    buildSampleTree(src, { longFileName: true });
    gnuTar(src, `${served}/tree.tar`, 'pax', ['--sparse']);
    sh(`gzip '${served}/tree.tar'`);
    reference = tmp.join('reference');
    mkdirSync(reference);
    run('tar', ['-xzf', `${served}/tree.tar.gz`, '-C', reference]);
    const certificates = makeTestCertificates(tmp.path);
    caCert = certificates.caCert;
    nginx = await startNginx({ root: served, auth, certificates });
    faults = await startFaultServer(readFileSync(`${served}/tree.tar.gz`));
  });
  after(async () => {
    await nginx?.stop();
    await faults?.stop();
    tmp.remove();
  });

  const cases: Array<[string, () => string[]]> = [
    ['HTTP', () => [`${nginx.http}tree.tar.gz`]],
    ['HTTPS with a custom CA', () => [`${nginx.https}tree.tar.gz`, '--ca-cert', caCert]],
    ['Basic auth', () => [`${nginx.http}auth/tree.tar.gz`, '--user', auth.username, '--password', auth.password]],
  ];
  for (const [label, args] of cases) {
    it(label, async () => {
      const out = tmp.join(`out-${n++}`);
      mkdirSync(out);
      const result = await runCli(['import', '--content-type', 'archive', ...args(), '-o', out, '--json']);
      assert.equal(result.code, 0, result.stderr);
      const json = JSON.parse(result.stdout) as { formats: string[]; archive: { files: number; skipped: string[] } };
      assert.deepEqual(json.formats, ['gzip', 'tar']);
      assert.equal(json.archive.files, 8);
      assert.equal(diffTrees(out, reference), '');
      assert.deepEqual(treeListing(out), treeListing(reference));
    });
  }

  it('a connection dropped mid-archive resumes with Range; the extraction never notices', async () => {
    const out = tmp.join(`out-${n++}`);
    mkdirSync(out);
    const result = await runCli(['import', '--content-type', 'archive', `${faults.url}drop?after=100000&times=1`, '-o', out, '--json']);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(faults.requests.some((r) => r.path.startsWith('/drop') && r.range?.startsWith('bytes=100000-')), 'resumed with a Range request');
    assert.equal(diffTrees(out, reference), '');
  });

  it('a source replaced mid-archive: what was extracted is undone and the import starts again on the new file (here not a tar)', async () => {
    const out = tmp.join(`out-${n++}`);
    mkdirSync(out);
    const result = await runCli(['import', '--content-type', 'archive', `${faults.url}changes?after=100000`, '-o', out]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^cdi-importer: the server's answers do not make one file; starting again with one download of the whole file$/m);
    assert.match(result.stderr, /^cdi-importer: error: \S+ is not a tar archive \(found raw\)/m);
    assert.deepEqual(treeListing(out), []);
  });

  it('Basic auth with a wrong password fails with one line and extracts nothing', async () => {
    const out = tmp.join(`out-${n++}`);
    mkdirSync(out);
    const result = await runCli(['import', '--content-type', 'archive', `${nginx.http}auth/tree.tar.gz`, '--user', auth.username, '--password', 'wrong', '-o', out]);
    assert.equal(result.code, 1);
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.doesNotMatch(result.stderr, /wrong/);
    assert.deepEqual(treeListing(out), []);
  });
});
