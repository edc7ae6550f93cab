/** Loop devices (losetup) stand in for block volumes; root only. */
import { run } from './tools.js';

/** Attaches `backingFile` to a free loop device and returns its path, or undefined when not permitted. */
export function attachLoop(backingFile: string): string | undefined {
  try {
    return run('losetup', ['-f', '--show', backingFile]).trim();
  } catch {
    return undefined;
  }
}

export function detachLoop(device: string): void {
  run('losetup', ['-d', device]);
}
