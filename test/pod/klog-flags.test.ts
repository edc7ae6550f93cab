import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseKlogFlags } from '../../src/pod/klog-flags.js';
import { levelFromVerbosity } from '../../src/util/logger.js';

test('klog flags in Go forms: one or two dashes, =value or a separate value', () => {
  assert.deepEqual(parseKlogFlags([]), { verbosity: 0 });
  assert.deepEqual(parseKlogFlags(['-v=1']), { verbosity: 1 });
  assert.deepEqual(parseKlogFlags(['--v=3', '-alsologtostderr']), { verbosity: 3 });
  assert.deepEqual(parseKlogFlags(['-v', '2', '--logtostderr=false', '-stderrthreshold', 'INFO', '-vmodule=x=2']), { verbosity: 2 });
});

test('anything else is refused, naming the argument', () => {
  assert.throws(() => parseKlogFlags(['-v=high']), /invalid value "high" for flag -v/);
  assert.throws(() => parseKlogFlags(['--port=8443']), /unknown flag "--port=8443"/);
  assert.throws(() => parseKlogFlags(['import']), /unexpected argument "import"/);
  assert.throws(() => parseKlogFlags(['-alsologtostderr=maybe']), /invalid value "maybe"/);
  assert.throws(() => parseKlogFlags(['-v']), /needs a value/);
});

test('verbosity maps to pino levels', () => {
  assert.equal(levelFromVerbosity(0), 'info');
  assert.equal(levelFromVerbosity(1), 'debug');
  assert.equal(levelFromVerbosity(5), 'trace');
});
