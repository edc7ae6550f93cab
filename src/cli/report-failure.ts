import { isImportError, oneLine } from '../errors.js';

const TOO_SMALL_HINT =
  'write it where there is more room, or give --size / --filesystem-overhead (a file on a file system keeps 6 % of the space free unless told otherwise)';

/** Exit codes of SPEC §8. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/**
 * Prints one clear line for a failure (a stack trace only with CDI_IMPORTER_DEBUG=1) and returns the
 * exit code: 2 for usage errors, 1 for everything else.
 */
export function reportFailure(err: unknown, json: boolean): number {
  const category = isImportError(err) ? err.category : 'internal';
  // The pod's words end by asking for a larger PVC (CDI's controller reads them); at a terminal,
  // say what can be done about it instead.
  const message = category === 'too-small' ? oneLine(err).replace(/\. A larger PVC is required$/, `: ${TOO_SMALL_HINT}`) : oneLine(err);
  if (json) process.stdout.write(`${JSON.stringify({ ok: false, category, error: message })}\n`);
  process.stderr.write(`cdi-importer: error: ${message}\n`);
  if (process.env.CDI_IMPORTER_DEBUG === '1' && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  return category === 'usage' ? EXIT_USAGE : EXIT_FAILED;
}
