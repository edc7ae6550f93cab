import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ChecksumMismatchError, ImportError, ScratchSpaceRequiredError, tooSmall } from '../../src/errors.js';
import { failureOutcome, successOutcome } from '../../src/pod/pod-outcome.js';
import { formatFailureLine, formatTerminationJson, TERMINATION_MESSAGE_LIMIT, truncateUtf8 } from '../../src/pod/termination-message.js';

describe('termination message', () => {
  test('empty fields are omitted; field order is fixed', () => {
    assert.equal(formatTerminationJson({ message: 'Import Complete', preallocationApplied: false }), '{"message":"Import Complete","preallocationApplied":false}');
    assert.equal(formatTerminationJson({ scratchSpaceRequired: true, message: 'Import Complete' }), '{"scratchSpaceRequired":true,"message":"Import Complete"}');
    assert.equal(formatTerminationJson({ message: 'x', labels: {} }), '{"message":"x"}');
    assert.equal(
      formatTerminationJson({ message: 'Import Complete', preallocationApplied: true, labels: { 'instancetype.kubevirt.io/default-instancetype': 'u1.small' } }),
      '{"message":"Import Complete","preallocationApplied":true,"labels":{"instancetype.kubevirt.io/default-instancetype":"u1.small"}}',
    );
  });

  test('labels that do not fit are dropped, largest first; the JSON stays valid and within 4096 bytes', () => {
    const labels: Record<string, string> = { small: 'v' };
    for (let i = 0; i < 40; i++) labels[`label-${i}.kubevirt.io/x`] = 'é'.repeat(100);
    const json = formatTerminationJson({ message: 'Import Complete', preallocationApplied: false, labels });
    assert.ok(Buffer.byteLength(json) <= TERMINATION_MESSAGE_LIMIT, `${Buffer.byteLength(json)} bytes`);
    const parsed = JSON.parse(json) as { message: string; labels: Record<string, string> };
    assert.equal(parsed.message, 'Import Complete');
    assert.equal(parsed.labels.small, 'v');
    assert.ok(Object.keys(parsed.labels).length < 41);
    // The pod's log names the ones left out (found by a QA pass: they went missing without a word).
    const outcome = successOutcome({ preallocationApplied: false, labels });
    assert.equal(outcome.terminationMessage, json);
    const kept = Object.keys(parsed.labels);
    assert.deepEqual([...outcome.droppedLabels!].sort(), Object.keys(labels).filter((name) => !kept.includes(name)).sort());
    assert.equal(successOutcome({ preallocationApplied: false, labels: { small: 'v' } }).droppedLabels, undefined);
  });

  test('a huge message in JSON is shortened, still valid JSON', () => {
    const json = formatTerminationJson({ message: `Unable to process data: ${'"quoted" '.repeat(1000)}` });
    assert.ok(Buffer.byteLength(json) <= TERMINATION_MESSAGE_LIMIT);
    assert.match((JSON.parse(json) as { message: string }).message, /^Unable to process data: "quoted"/);
  });

  test('failure lines: one line, at most 4096 bytes, never a split character', () => {
    assert.equal(formatFailureLine('Unable to process data: a\nb\r\n  c'), 'Unable to process data: a b c');
    const line = formatFailureLine(`x${'€'.repeat(3000)}`);
    assert.ok(Buffer.byteLength(line) <= TERMINATION_MESSAGE_LIMIT);
    assert.ok(!line.includes('\uFFFD'));
    assert.equal(truncateUtf8('aé', 2), 'a');
  });
});

describe('pod outcome', () => {
  const ctx = { sourceKind: 'http' as const, scratchMounted: false };

  test('success carries preallocation and labels', () => {
    assert.deepEqual(successOutcome({ preallocationApplied: true, labels: { a: 'b' } }), {
      exitCode: 0,
      terminationMessage: '{"message":"Import Complete","preallocationApplied":true,"labels":{"a":"b"}}',
    });
  });

  test('scratch required without /scratch asks for it (exit 0); with /scratch it is a failure', () => {
    const err = new ScratchSpaceRequiredError('out-of-order clusters');
    assert.deepEqual(failureOutcome(err, ctx), { exitCode: 0, terminationMessage: '{"scratchSpaceRequired":true,"message":"Import Complete"}' });
    const mounted = failureOutcome(err, { ...ctx, scratchMounted: true });
    assert.equal(mounted.exitCode, 1);
    assert.equal(mounted.terminationMessage, 'Unable to process data: scratch space required: out-of-order clusters');
  });

  test('checksum mismatch: exit 0 with the message', () => {
    const outcome = failureOutcome(new ChecksumMismatchError('sha256', 'aa', 'bb'), ctx);
    assert.deepEqual(outcome, { exitCode: 0, terminationMessage: '{"message":"Unable to process data: checksum mismatch: expected sha256:aa, calculated sha256:bb"}' });
  });

  test('too small, cannot connect, blank, anything else', () => {
    assert.equal(failureOutcome(tooSmall(10, 5), ctx).terminationMessage, 'Unable to process data: virtual image size 10 is larger than the reported available storage 5. A larger PVC is required');
    assert.equal(failureOutcome(new ImportError('cannot-connect', 'refused'), ctx).terminationMessage, 'Unable to connect to http data source: refused');
    assert.equal(failureOutcome(new ImportError('cannot-connect', 'x'), { sourceKind: 'registry', scratchMounted: false }).terminationMessage, 'Unable to process data: x', 'as CDI says it');
    assert.equal(failureOutcome(new ImportError('target', 'disk full'), { sourceKind: 'none', scratchMounted: false }).terminationMessage, 'Unable to create blank image: disk full');
    const internal = failureOutcome(new TypeError('boom\nat line'), ctx);
    assert.deepEqual(internal, { exitCode: 1, terminationMessage: 'Unable to process data: boom at line' });
  });
});
