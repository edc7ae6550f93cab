/** Running the real tools (qemu-img, xz, gzip, zstd...) that make test images and serve as oracles. */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, mkdtempSync, openSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Runs a command, throwing with its stderr when it fails. Returns stdout. */
export function run(cmd: string, args: string[], options: SpawnSyncOptions = {}): string {
  const result = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  if (result.error) throw result.error;
  if (result.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${result.status}: ${String(result.stderr).trim()}`);
  }
  return String(result.stdout);
}

/** Runs a shell line (pipes, redirects). */
export function sh(line: string, options: SpawnSyncOptions = {}): string {
  return run('bash', ['-o', 'pipefail', '-c', line], options);
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The oracle: qemu-img's own conversion of `input` to raw, optionally grown to `size` bytes. */
export async function qemuRawSha256(input: string, workDir: string, size?: number): Promise<string> {
  const out = path.join(workDir, `oracle-${process.hrtime.bigint()}.raw`);
  run('qemu-img', ['convert', '-O', 'raw', input, out]);
  if (size !== undefined) run('truncate', ['-s', String(size), out]);
  try {
    return await sha256File(out);
  } finally {
    rmSync(out, { force: true });
  }
}

/**
 * Bytes inside the data ranges of a file (SEEK_DATA/SEEK_HOLE), which unlike `du` leaves out the
 * file system's own extent-tree blocks: the fair measure for "no more allocated than qemu-img".
 */
export function dataBytes(file: string): number {
  const script = `import os,sys
fd=os.open(sys.argv[1],os.O_RDONLY); size=os.fstat(fd).st_size; pos=0; total=0
while pos<size:
    try: d=os.lseek(fd,pos,os.SEEK_DATA)
    except OSError: break
    h=os.lseek(fd,d,os.SEEK_HOLE); total+=h-d; pos=h
print(total)`;
  return Number(run('python3', ['-c', script, file]).trim());
}

/** Allocated bytes of a file (what `du` counts). */
export function allocatedBytes(file: string): number {
  return statSync(file).blocks * 512;
}

export interface TempDir {
  path: string;
  join(...parts: string[]): string;
  remove(): void;
}

export function makeTempDir(prefix = 'cdi-test-'): TempDir {
  const dir = mkdtempSync(path.join(process.env.CDI_TEST_TMPDIR ?? tmpdir(), prefix));
  return {
    path: dir,
    join: (...parts) => path.join(dir, ...parts),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** sha256 of `length` bytes at `offset` of a file or device. */
export function sha256OfRange(file: string, offset: number, length: number): string {
  const hash = createHash('sha256');
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(1 << 20);
    for (let done = 0; done < length; ) {
      const n = readSync(fd, buffer, 0, Math.min(buffer.length, length - done), offset + done);
      if (n === 0) throw new Error(`${file} ends at ${offset + done}`);
      hash.update(buffer.subarray(0, n));
      done += n;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** `text` as a regular expression that matches it literally (file names and URLs in expected lines). */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
