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
