/**
 * What one extraction created, in order, so a failure can put the target directory back as it
 * was: created files, links and directories are removed newest first; anything that existed
 * before is never in the journal and so never touched.
 */
import { rmdir, unlink } from 'node:fs/promises';

type Created = { path: string; kind: 'directory' | 'other' };

export class ExtractionJournal {
  private readonly created: Created[] = [];
  private readonly createdPaths = new Set<string>();

  record(path: string, kind: Created['kind']): void {
    if (this.createdPaths.has(path)) return; // replaced by a later entry of the same name
    this.created.push({ path, kind });
    this.createdPaths.add(path);
  }

  has(path: string): boolean {
    return this.createdPaths.has(path);
  }

  /** Removes everything recorded, newest first. Returns the paths it could not remove. */
  async rollBack(): Promise<string[]> {
    const left: string[] = [];
    for (const { path, kind } of this.created.reverse()) {
      try {
        if (kind === 'directory') await rmdir(path);
        else await unlink(path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue;
        // e.g. a directory we made that now holds something not in the journal (written by
        // someone else meanwhile): leave it rather than delete what is not ours.
        left.push(path);
      }
    }
    this.created.length = 0;
    this.createdPaths.clear();
    return left;
  }
}
