/** Turning an archive member name into path components that cannot leave the target directory. */
import { badInput } from '../../errors.js';
import { quoteEntry } from '../../formats/tar/sparse-layout.js';

export { quoteEntry };

/**
 * The components of an archive path relative to the target: "./a//b/" → ["a", "b"]; the
 * target itself is []. Absolute paths and ".." components are refused, as GNU tar's
 * safe-extraction rules would strip them but SPEC §6 rejects them.
 */
export function archivePathComponents(name: string, entry: string, role = 'path'): string[] {
  // The entry's own path is named once; a link's target after the entry it belongs to.
  const subject = role === 'path' && name === entry ? `archive entry ${quoteEntry(entry)}` : `archive entry ${quoteEntry(entry)}: ${role} ${quoteEntry(name)}`;
  const refuse = (why: string) => badInput(`${subject} ${why}; refusing to extract an archive that reaches outside the target directory`);
  if (name.includes('\0')) throw refuse('contains a NUL byte');
  if (name.startsWith('/')) throw refuse('is absolute');
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw refuse('has a ".." component');
  return parts;
}
