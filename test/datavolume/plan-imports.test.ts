import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { dataVolumesFromManifest } from '../../src/datavolume/manifest.js';
import { planImports } from '../../src/datavolume/plan-imports.js';
import { ConfigMapResolver, SecretResolver } from '../../src/datavolume/references.js';
import type { ImportError } from '../../src/errors.js';
import { makeTempDir } from '../support/tools.js';

const dv = (name: string, spec: string, api = 'cdi.kubevirt.io/v1beta1') =>
  `apiVersion: ${api}\nkind: DataVolume\nmetadata:\n  name: ${name}\nspec:\n${spec.replace(/^/gm, '  ')}\n`;

describe('DataVolume manifests', () => {
  const dir = makeTempDir('cdi-dv-unit-');
  after(() => dir.remove());
  const plan = (text: string, secrets: string[] = [], configMaps: string[] = [], filesystemOverhead = 0) => {
    const resolver = new ConfigMapResolver(configMaps);
    try {
      return planImports(dataVolumesFromManifest(text, 'm.yaml'), {
        outDir: '/out',
        secrets: new SecretResolver(secrets),
        configMaps: resolver,
        filesystemOverhead,
        preallocation: false,
        scratchDir: '/out',
      });
    } finally {
      resolver.cleanup();
    }
  };

  test('several documents, a List, spec.pvc and spec.storage, archive content, extra headers', () => {
    const text = [
      dv('a', 'source:\n  http:\n    url: http://h/a.img\n    extraHeaders: ["X-A: 1"]\npvc:\n  resources:\n    requests:\n      storage: 1Gi', 'cdi.kubevirt.io/v1alpha1'),
      'apiVersion: v1\nkind: List\nitems:\n- apiVersion: cdi.kubevirt.io/v1beta1\n  kind: DataVolume\n  metadata: {name: b}\n  spec:\n    contentType: archive\n    source: {http: {url: "https://h/b.tar"}}\n    storage: {resources: {requests: {storage: 500M}}}\n',
      'apiVersion: v1\nkind: Service\nmetadata:\n  name: ignored\n',
      '',
    ].join('---\n');
    const plans = plan(text);
    assert.deepEqual(
      plans.map((p) => [p.name, p.request.contentType, p.request.target, p.request.requestedSize, p.request.source]),
      [
        ['a', 'kubevirt', { kind: 'file', path: '/out/a.img', atomic: true, localMode: true }, 2 ** 30, { kind: 'http', url: 'http://h/a.img', transport: { headers: ['X-A: 1'] } }],
        ['b', 'archive', { kind: 'directory', path: '/out/b' }, 500e6, { kind: 'http', url: 'https://h/b.tar', transport: {} }],
      ],
    );
  });

  test('registry and blank sources', () => {
    const plans = plan(
      dv('r', 'source:\n  registry:\n    url: docker://quay.io/containerdisks/fedora:40\nstorage:\n  resources:\n    requests:\n      storage: 5Gi') +
        '---\n' +
        dv('z', 'source:\n  blank: {}\npvc:\n  resources:\n    requests:\n      storage: 1Mi'),
    );
    assert.deepEqual(plans[0]!.request.source, { kind: 'registry', url: 'docker://quay.io/containerdisks/fedora:40', transport: {} });
    assert.deepEqual(plans[1]!.request.source, { kind: 'blank' });
  });

  test('source.registry.platform.architecture picks the platform', () => {
    const plans = plan(dv('p', 'source:\n  registry:\n    url: docker://r/img:1\n    platform:\n      architecture: arm64\nstorage:\n  resources:\n    requests:\n      storage: 1Gi'));
    assert.deepEqual(plans[0]!.request.source, { kind: 'registry', url: 'docker://r/img:1', transport: { architecture: 'arm64' } });
  });

  test('secretRef by name among several Secrets; certConfigMap from a ConfigMap file', () => {
    const secrets = dir.join('secrets.yaml');
    writeFileSync(
      secrets,
      'apiVersion: v1\nkind: Secret\nmetadata:\n  name: one\ndata:\n  accessKeyId: dTE=\n  secretKey: cDE=\n---\n' +
        'apiVersion: v1\nkind: Secret\nmetadata:\n  name: two\nstringData:\n  accessKeyId: u2\n  secretKey: p2\n',
    );
    const configMap = dir.join('cm.yaml');
    writeFileSync(configMap, 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: certs\ndata:\n  ca.pem: |\n    -----BEGIN CERTIFICATE-----\n    AAAA\n    -----END CERTIFICATE-----\n');
    const [p] = plan(dv('s', 'source:\n  http:\n    url: https://h/x\n    secretRef: two\n    certConfigMap: certs\npvc:\n  resources:\n    requests:\n      storage: 1Gi'), [secrets], [configMap]);
    const source = p!.request.source as { transport: { auth: unknown; caPaths: string[] } };
    assert.deepEqual(source.transport.auth, { username: 'u2', password: 'p2' });
    assert.equal(source.transport.caPaths.length, 1);
  });

  test('a lone --secret fills an empty secretRef, but never replaces credentials the URL carries', () => {
    const secret = dir.join('lone.yaml');
    writeFileSync(secret, 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: lone\nstringData:\n  accessKeyId: reguser\n  secretKey: regpass\n');
    const storage = 'pvc:\n  resources:\n    requests:\n      storage: 1Gi';
    const plans = plan(
      dv('empty-ref', `source:\n  http:\n    url: https://h/x\n    secretRef: ""\n${storage}`) +
        '---\n' +
        dv('url-creds', `source:\n  http:\n    url: http://qauser:qapass@other/x.img\n${storage}`),
      [secret],
    );
    const auth = (i: number) => (plans[i]!.request.source as { transport: { auth?: unknown } }).transport.auth;
    assert.deepEqual(auth(0), { username: 'reguser', password: 'regpass' });
    assert.equal(auth(1), undefined, "the URL's own credentials are used, not the Secret's");
  });

  test('an empty secretRef among several Secrets: no credentials and a warning; the same Secret file twice is one Secret', () => {
    const one = dir.join('one.yaml');
    const two = dir.join('two.yaml');
    writeFileSync(one, 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: one\nstringData:\n  accessKeyId: u1\n  secretKey: p1\n');
    writeFileSync(two, 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: two\nstringData:\n  accessKeyId: u2\n  secretKey: p2\n');
    const text = dv('e', 'source:\n  http:\n    url: https://h/x\n    secretRef: ""\npvc:\n  resources:\n    requests:\n      storage: 1Gi');
    const [several] = plan(text, [one, two]);
    assert.equal((several!.request.source as { transport: { auth?: unknown } }).transport.auth, undefined);
    assert.deepEqual(several!.warnings, [
      'DataVolume "e": its secretRef is empty and 2 Secrets were given with --secret: importing without credentials (name one in source.http.secretRef to use it)',
    ]);
    const [twice] = plan(text, [one, `${dir.path}/./one.yaml`]);
    assert.deepEqual((twice!.request.source as { transport: { auth?: unknown } }).transport.auth, { username: 'u1', password: 'p1' });
    assert.deepEqual(twice!.warnings, []);
  });

  test('a Block volume keeps no filesystem overhead: its image is the whole request', () => {
    const block = (mode: string) => dv('b', `source:\n  blank: {}\npvc:\n  volumeMode: ${mode}\n  resources:\n    requests:\n      storage: 1Gi`);
    assert.equal(plan(block('Block'), [], [], 0.06)[0]!.request.filesystemOverhead, 0);
    assert.equal(plan(block('Filesystem'), [], [], 0.06)[0]!.request.filesystemOverhead, 0.06);
  });

  test('two volumes written to one path (an archive named x.img, an image named x) are refused before either is imported', () => {
    const storage = 'storage:\n  resources:\n    requests:\n      storage: 10Mi';
    assert.throws(
      () => plan(`${dv('x.img', `contentType: archive\nsource:\n  http:\n    url: http://h/t.tar\n${storage}`)}---\n${dv('x', `source:\n  blank: {}\n${storage}`)}`),
      (err: ImportError) => err.category === 'usage' && err.message === 'DataVolume "x" and DataVolume "x.img" would both be written to /out/x.img: rename one of them',
    );
  });

  test('--config-map DIR is a mounted ConfigMap: its directory is the CA path, whatever the name', () => {
    const certs = dir.join('certs');
    mkdirSync(certs);
    writeFileSync(dir.join('certs', 'ca.pem'), '-----BEGIN CERTIFICATE-----\n');
    const [p] = plan(dv('d', 'source:\n  http:\n    url: https://h/x\n    certConfigMap: anything\npvc:\n  resources:\n    requests:\n      storage: 1Gi'), [], [certs]);
    assert.deepEqual((p!.request.source as { transport: { caPaths: string[] } }).transport.caPaths, [certs]);
  });

  test('a Secret or ConfigMap file that is not there is said in words', () => {
    assert.throws(() => new SecretResolver([dir.join('nope.yaml')]), /cannot read Secret .*nope\.yaml: no such file or directory$/);
    assert.throws(() => new ConfigMapResolver([dir.join('nope-cm')]), /cannot read ConfigMap .*nope-cm: no such file or directory$/);
  });

  test('clear errors', () => {
    assert.throws(() => plan('a: [unclosed\n'), /m\.yaml:\d+ is not valid YAML/);
    assert.throws(() => plan(dv('x', 'source:\n  http:\n    url: http://h/x', 'cdi.kubevirt.io/v2')), /apiVersion "cdi.kubevirt.io\/v2" is not cdi.kubevirt.io\/v1alpha1 or v1beta1/);
    assert.throws(() => plan(dv('x', 'source:\n  http:\n    url: http://h/x')), /DataVolume "x": needs spec.pvc or spec.storage/);
    assert.throws(() => plan(dv('x', 'source:\n  http:\n    url: http://h/x\npvc:\n  accessModes: [ReadWriteOnce]')), /spec.pvc.resources.requests.storage is missing/);
    assert.throws(() => plan(dv('x', 'source:\n  http:\n    url: ""\npvc:\n  resources:\n    requests:\n      storage: 1Gi')), /DataVolume "x": source.http.url is empty: set it to the image's http:\/\/ or https:\/\/ URL/);
    assert.throws(() => plan(dv('x', 'source:\n  http:\n    url: h/x\npvc:\n  resources:\n    requests:\n      storage: 1Gi')), /source.http.url "h\/x" is not an http/);
    assert.throws(() => plan(dv('x', 'source:\n  registry:\n    url: ""\npvc:\n  resources:\n    requests:\n      storage: 1Gi')), /source.registry.url is empty: set it to the image's docker:\/\/ reference/);
    // CDI's webhook refuses these; a dry run here should too.
    for (const claim of ['pvc', 'storage']) {
      assert.throws(
        () => plan(dv('x', `contentType: archive\nsource:\n  http:\n    url: http://h/a.tar\n${claim}:\n  volumeMode: Block\n  resources:\n    requests:\n      storage: 1Gi`)),
        (err: ImportError) => err.category === 'usage' && new RegExp(`ContentType Archive cannot have block volumeMode \\(spec.${claim}.volumeMode: Block\\)`).test(err.message),
      );
    }
    assert.throws(() => plan(dv('x', 'source:\n  foo: {}\npvc:\n  resources:\n    requests:\n      storage: 1Gi')), (err: ImportError) => err.category === 'usage' && /unknown source "foo"/.test(err.message));
    assert.throws(() => plan(dv('x', 'source:\n  s3:\n    url: s3://b/k\npvc:\n  resources:\n    requests:\n      storage: 1Gi')), (err: ImportError) => err.category === 'bad-input' && /source.s3 \(S3 buckets\) is not supported by cdi-importer yet/.test(err.message));
    assert.throws(() => plan(dv('x', 'source:\n  http:\n    url: http://h\n  blank: {}\npvc:\n  resources:\n    requests:\n      storage: 1Gi')), /must name exactly one source, found http, blank/);
    assert.throws(() => plan(dv('x', 'contentType: archive\nsource:\n  blank: {}\npvc:\n  resources:\n    requests:\n      storage: 1Gi')), /Cannot create empty disk with content type archive/);
    assert.throws(() => plan(dv('x', 'sourceRef:\n  kind: DataSource\n  name: fedora\nstorage:\n  resources:\n    requests:\n      storage: 1Gi')), /spec.sourceRef \(a DataSource\) is not supported yet/);
    assert.throws(() => plan(dv('x', 'source:\n  http:\n    url: http://h\n    secretRef: creds\npvc:\n  resources:\n    requests:\n      storage: 1Gi')), /secretRef "creds" needs the Secret: give it with --secret FILE/);
    assert.throws(() => plan(dv('x', 'source:\n  blank: {}\npvc:\n  resources:\n    requests:\n      storage: lots')), /requests.storage: invalid quantity "lots"/);
    // Not stringified into something that parses ("1Gi" from a list) or into "null" / "[object Object]".
    assert.throws(() => plan(dv('x', 'source:\n  blank: {}\npvc:\n  resources:\n    requests:\n      storage: [1Gi]')), /spec.pvc.resources.requests.storage must be a quantity such as 10Gi, not a list$/);
    assert.throws(() => plan(dv('x', 'source:\n  blank: {}\npvc:\n  resources:\n    requests:\n      storage: {a: 1}')), /requests.storage must be a quantity such as 10Gi, not a map$/);
    assert.throws(() => plan(dv('x', 'source:\n  blank: {}\npvc:\n  resources:\n    requests:\n      storage: ~')), /spec.pvc.resources.requests.storage is missing$/);
    assert.throws(() => plan(dv('x', 'source:\n  blank: {}\npvc:\n  resources:\n    requests:\n      storage: "1e6"')), /spec.pvc.resources.requests.storage 1e6 is less than 1 MiB, and the usable space is rounded down to whole MiB \(as CDI does\): request 1Mi or more/);
    assert.equal(plan(dv('x', 'source:\n  blank: {}\npvc:\n  resources:\n    requests:\n      storage: 1Mi'))[0]!.request.requestedSize, 1 << 20);
    assert.throws(
      () => plan(dv('x', 'source:\n  blank: {}\npvc:\n  resources:\n    requests:\n      storage: 1Mi'), [], [], 0.5),
      /spec.pvc.resources.requests.storage leaves no whole MiB once --filesystem-overhead 0.5 is kept free: request more, or lower the overhead/,
    );
    assert.equal(plan(dv('x', 'source:\n  blank: {}\npvc:\n  resources:\n    requests:\n      storage: 2Mi'), [], [], 0.5)[0]!.request.requestedSize, 2 << 20);
    assert.throws(() => plan(dv('x', 'source: {blank: {}}\npvc: {resources: {requests: {storage: 1Mi}}}') + '---\n' + dv('x', 'source: {blank: {}}\npvc: {resources: {requests: {storage: 1Mi}}}')), /two DataVolumes are named "x"/);
  });
});
