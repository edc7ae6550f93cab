/**
 * util-linux's `fallocate` program: Node has no fallocate(2). Rejects with its stderr on failure.
 * node:child_process is loaded on the first call (block devices, preallocation), not at every start.
 */
export async function fallocate(args: string[]): Promise<void> {
  const { execFile } = process.getBuiltinModule('node:child_process');
  await new Promise<void>((resolve, reject) => execFile('fallocate', args, (err, _stdout, stderr) => (err ? reject(Object.assign(err, { stderr })) : resolve())));
}
