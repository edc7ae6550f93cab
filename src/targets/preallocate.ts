import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { targetError } from '../errors.js';

const run = promisify(execFile);

/**
 * Allocates every block of [0, size) without changing its contents. Node has no fallocate(2),
 * so this uses util-linux's `fallocate` (mode 0 keeps data and fills holes with allocated zeros).
 */
export async function preallocate(file: string, size: number): Promise<void> {
  if (size === 0) return;
  try {
    await run('fallocate', ['--offset', '0', '--length', String(size), file]);
  } catch (err) {
    const detail = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
    throw targetError(`cannot preallocate ${file}: ${detail}`, err);
  }
}
