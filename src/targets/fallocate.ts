import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** util-linux's `fallocate` program: Node has no fallocate(2). Rejects with its stderr on failure. */
export async function fallocate(args: string[]): Promise<void> {
  await run('fallocate', args);
}
