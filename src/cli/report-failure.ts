import { isImportError, oneLine } from '../errors.js';

/** Exit codes of SPEC §8. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/**
 * Prints one clear line for a failure (a stack trace only with CDI_IMPORTER_DEBUG=1) and returns the
 * exit code: 2 for usage errors, 1 for everything else.
 */
export function reportFailure(err: unknown, json: boolean): number {
  const message = oneLine(err);
  const category = isImportError(err) ? err.category : 'internal';
  if (json) process.stdout.write(`${JSON.stringify({ ok: false, category, error: message })}\n`);
  process.stderr.write(`cdi-importer: error: ${message}\n`);
  if (process.env.CDI_IMPORTER_DEBUG === '1' && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  return category === 'usage' ? EXIT_USAGE : EXIT_FAILED;
}
