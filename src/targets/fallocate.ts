import { runProgram } from '../util/run-program.js';

/** util-linux's `fallocate` program: Node has no fallocate(2). Rejects with its stderr on failure. */
export async function fallocate(args: string[]): Promise<void> {
  await runProgram('fallocate', args);
}
