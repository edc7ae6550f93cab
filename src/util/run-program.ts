/**
 * Runs a system program (util-linux's fallocate and blockdev: Node has no fallocate(2) and no
 * BLKGETSIZE64) and resolves to its stdout; rejects with its stderr on the error. node:child_process
 * is loaded on the first call, not at every start.
 */
export async function runProgram(file: string, args: string[]): Promise<string> {
  const { execFile } = process.getBuiltinModule('node:child_process');
  const { promisify } = process.getBuiltinModule('node:util');
  const { stdout } = await promisify(execFile)(file, args);
  return stdout;
}
