/**
 * How an import's result or error becomes the pod's exit code and termination message, in the
 * dialect CDI's controller reads (SPEC §4.3).
 */
import { isImportError, oneLine } from '../errors.js';
import type { ImportResult } from '../request.js';
import type { PodSourceKind } from './pod-environment.js';
import { fitTerminationJson, formatFailureLine, formatTerminationJson } from './termination-message.js';

export interface PodOutcome {
  exitCode: number;
  terminationMessage: string;
  /** Labels left out to keep the message within Kubernetes' 4096 bytes (the log names them). */
  droppedLabels?: string[];
}

const IMPORT_COMPLETE = 'Import Complete';

export function successOutcome(result: Pick<ImportResult, 'preallocationApplied' | 'labels'>): PodOutcome {
  const { json, droppedLabels } = fitTerminationJson({
    message: IMPORT_COMPLETE,
    preallocationApplied: result.preallocationApplied,
    labels: result.labels,
  });
  return { exitCode: 0, terminationMessage: json, ...(droppedLabels.length > 0 ? { droppedLabels } : {}) };
}

export interface FailureContext {
  sourceKind?: PodSourceKind;
  /** Whether a scratch volume was mounted for this run. */
  scratchMounted: boolean;
}

export function failureOutcome(err: unknown, context: FailureContext): PodOutcome {
  const category = isImportError(err) ? err.category : undefined;
  const detail = oneLine(err);
  switch (category) {
    case 'scratch-required':
      // CDI's controller answers this by re-running the pod with a scratch volume.
      if (!context.scratchMounted) {
        return { exitCode: 0, terminationMessage: formatTerminationJson({ scratchSpaceRequired: true, message: IMPORT_COMPLETE }) };
      }
      break;
    case 'checksum':
      // Exit 0 so the pod is not restarted to download the same wrong bytes again; the
      // message tells the controller and the user what happened.
      return { exitCode: 0, terminationMessage: formatTerminationJson({ message: `Unable to process data: ${detail}` }) };
    case 'usage':
      // Our own words about the environment ("Unknown data source: s3", a bad PREALLOCATION).
      return failure(detail);
    case 'cannot-connect':
      // CDI's registry source cannot fail to connect before processing starts, so its registry
      // failures all read "Unable to process data: failed to pull image: ..." (below).
      if (context.sourceKind === 'http') return failure(`Unable to connect to http data source: ${detail}`);
      break;
  }
  if (context.sourceKind === 'none') return failure(`Unable to create blank image: ${detail}`);
  return failure(`Unable to process data: ${detail}`);
}

function failure(line: string): PodOutcome {
  return { exitCode: 1, terminationMessage: formatFailureLine(line) };
}
