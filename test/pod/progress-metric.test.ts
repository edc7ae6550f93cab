import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ImportProgressMetric } from '../../src/pod/progress-metric.js';

const value = async (metric: ImportProgressMetric) => {
  const match = /kubevirt_cdi_import_progress_total\{ownerUID="u-1"\} (\d{1,3}\.?\d*)\n/.exec(await metric.metrics());
  assert.ok(match, await metric.metrics());
  return Number(match[1]);
};

test('the percentage starts at 0, only rises, stays in plain digits, and reaches 100 only when complete', async () => {
  const metric = new ImportProgressMetric('u-1');
  assert.equal(await value(metric), 0);
  metric.update({ bytes: 1, total: 3 * 10 ** 9 }); // 3.3e-8 %: must not print as 3.3e-8
  assert.equal(await value(metric), 0);
  metric.update({ bytes: 1, total: 3 });
  assert.equal(await value(metric), 33.33);
  metric.update({ bytes: 0, total: 3 }); // a restarted transfer does not move the counter back
  assert.equal(await value(metric), 33.33);
  metric.update({ bytes: 3, total: 3 });
  assert.equal(await value(metric), 99.99);
  metric.update({ bytes: 5 }); // unknown total: bytes only
  assert.equal(await value(metric), 99.99);
  assert.match(await metric.metrics(), /kubevirt_cdi_import_progress_bytes\{ownerUID="u-1"\} 5\n/);
  assert.match(await metric.metrics(), /kubevirt_cdi_import_source_size_bytes\{ownerUID="u-1"\} 3\n/);
  metric.complete();
  assert.equal(await value(metric), 100);
  assert.match(await metric.metrics(), /# TYPE kubevirt_cdi_import_progress_total counter/);
});

test('the exposition: HELP and TYPE for each metric, the size only once known, label values escaped as the format says', async () => {
  const metric = new ImportProgressMetric('a"b\\c\nd');
  const text = await metric.metrics();
  for (const [name, type] of [
    ['kubevirt_cdi_import_progress_total', 'counter'],
    ['kubevirt_cdi_import_progress_bytes', 'gauge'],
    ['kubevirt_cdi_import_source_size_bytes', 'gauge'],
  ]) {
    assert.match(text, new RegExp(`^# HELP ${name} \\S.*\\n# TYPE ${name} ${type}\\n`, 'm'));
  }
  // Backslash, double quote and line feed in a label value are written \\, \" and \n.
  assert.match(text, /^kubevirt_cdi_import_progress_total\{ownerUID="a\\"b\\\\c\\nd"\} 0$/m);
  assert.doesNotMatch(text, /^kubevirt_cdi_import_source_size_bytes\{/m, 'no size sample before the size is known');
  metric.update({ bytes: 2 ** 40, total: 2 ** 41 });
  assert.match(await metric.metrics(), /^kubevirt_cdi_import_source_size_bytes\{ownerUID="a\\"b\\\\c\\nd"\} 2199023255552$/m);
  // Every line is a comment, a sample, or the blank line between metrics.
  for (const line of (await metric.metrics()).split('\n')) {
    assert.match(line, /^(|# (HELP|TYPE) \S+ .+|[a-z_]+\{ownerUID="(?:[^"\\\n]|\\["\\n])*"\} \d+(\.\d+)?)$/, line);
  }
});
