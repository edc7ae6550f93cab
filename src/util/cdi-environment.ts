/**
 * Variables that CDI's importer and upload server share (SPEC §4.1, §5.3), parsed the way CDI's Go
 * code reads them.
 */
import { usageError } from '../errors.js';
import type { ChecksumSpec } from '../request.js';
import { parseChecksum } from './checksum-spec.js';
import { parseQuantity } from './quantity.js';

/** CDI's default filesystem overhead when the controller does not pass one. */
const DEFAULT_FILESYSTEM_OVERHEAD = 0.06;

/** Go's strconv.ParseBool, which is what CDI uses for its boolean variables. */
export function parseGoBool(text: string): boolean | undefined {
  if (/^(1|t|T|TRUE|true|True)$/.test(text)) return true;
  if (/^(0|f|F|FALSE|false|False)$/.test(text)) return false;
  return undefined;
}

/** PREALLOCATION: CDI's controller always sets it; missing means no preallocation; anything else fails. */
export function parsePreallocationEnv(value: string | undefined): boolean {
  if (value === undefined || value === '') return false;
  const parsed = parseGoBool(value);
  if (parsed === undefined) {
    throw usageError(`the PREALLOCATION environment variable is with a wrong value "${value}"; should be "true" or "false"`);
  }
  return parsed;
}

/** FILESYSTEM_OVERHEAD: a fraction reserved on filesystem volumes; block volumes have none. */
export function parseFilesystemOverheadEnv(value: string | undefined, blockMode: boolean): number {
  if (blockMode) return 0;
  if (value === undefined || value.trim() === '') return DEFAULT_FILESYSTEM_OVERHEAD;
  const overhead = Number(value);
  if (!Number.isFinite(overhead) || overhead < 0 || overhead >= 1) {
    throw usageError(`invalid FILESYSTEM_OVERHEAD "${value}": expected a fraction from 0 to below 1, such as 0.06`);
  }
  return overhead;
}

/** IMPORTER_CHECKSUM: `algorithm:hex`; a wrong one names the variable. */
export function parseChecksumEnv(value: string): ChecksumSpec {
  try {
    return parseChecksum(value);
  } catch (err) {
    throw usageError(`IMPORTER_CHECKSUM: ${(err as Error).message}`);
  }
}

/** IMPORTER_IMAGE_SIZE / UPLOAD_IMAGE_SIZE: a Kubernetes quantity; unset or blank means none. */
export function parseQuantityEnv(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  try {
    return parseQuantity(value);
  } catch (err) {
    throw usageError(`invalid ${name}: ${(err as Error).message}`);
  }
}
