import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseSecretCredentials, readSecretCredentials } from '../../src/sources/k8s-secret.js';
import { makeTempDir } from '../support/tools.js';

const b64 = (text: string) => Buffer.from(text).toString('base64');

describe('Kubernetes Secret credentials', () => {
  it('reads base64 accessKeyId and secretKey (the seed endpoint-secret.yaml shape)', () => {
    const dir = makeTempDir();
    try {
      const file = dir.join('endpoint-secret.yaml');
      writeFileSync(
        file,
        [
          'apiVersion: v1',
          'kind: Secret',
          'metadata:',
          '  name: endpoint-secret',
          '  labels:',
          '    app: containerized-data-importer',
          'type: Opaque',
          'data:',
          `  accessKeyId: "${b64('alice')}"`,
          `  secretKey: "${b64('pa:ss word')}"`,
          '',
        ].join('\n'),
      );
      assert.deepEqual(readSecretCredentials(file), { username: 'alice', password: 'pa:ss word' });
    } finally {
      dir.remove();
    }
  });

  it('accepts stringData and picks the Secret out of a multi-document file', () => {
    const text = `kind: DataVolume\nmetadata: {name: dv}\n---\nkind: Secret\nstringData:\n  accessKeyId: bob\n  secretKey: s3\n`;
    assert.deepEqual(parseSecretCredentials(text, 'x.yaml'), { username: 'bob', password: 's3' });
  });

  it('explains missing keys, bad base64, bad YAML and unreadable files in one line', () => {
    assert.throws(() => parseSecretCredentials(`kind: Secret\ndata:\n  accessKeyId: ${b64('a')}\n`, 's.yaml'), /s\.yaml must have data\.accessKeyId and data\.secretKey/);
    assert.throws(() => parseSecretCredentials(`kind: Secret\ndata:\n  accessKeyId: "!!!"\n  secretKey: x\n`, 's.yaml'), /data\.accessKeyId is not base64/);
    assert.throws(() => parseSecretCredentials('kind: [unclosed', 's.yaml'), /s\.yaml is not valid YAML/);
    assert.throws(() => readSecretCredentials('/nonexistent/secret.yaml'), /cannot read secret \/nonexistent\/secret\.yaml: no such file or directory/);
  });
});
