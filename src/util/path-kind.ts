import { statSync } from 'node:fs';

export type PathKind = 'file' | 'directory' | 'block-device' | 'other';

/** What is at `file` (following symlinks, as mounts and Kubernetes volumes need), or undefined. */
export function pathKind(file: string): PathKind | undefined {
  try {
    const info = statSync(file);
    if (info.isFile()) return 'file';
    if (info.isDirectory()) return 'directory';
    if (info.isBlockDevice()) return 'block-device';
    return 'other';
  } catch {
    return undefined;
  }
}
