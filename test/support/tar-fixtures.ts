/**
 * Archives for the archive content type: a sample tree packed by GNU tar (the reference for
 * what `tar -x` produces), hostile archives crafted with Python's tarfile, and a listing that
 * compares two extracted trees entry by entry (type, mode, link target, size, link count, mtime).
 */
import { readdirSync } from 'node:fs';
import { run, sh } from './tools.js';

export type TarFormat = 'ustar' | 'gnu' | 'pax';

/**
 * A tree with what the issue lists: nested and empty directories, a long path, a file name
 * over 100 characters (not for ustar), a sparse file, a fully allocated file with zero runs,
 * hard links, symlinks inside the tree (one dangling), permission bits, a setuid file, a
 * read-only directory with a file in it, and fixed mtimes.
 */
export function buildSampleTree(dir: string, options: { longFileName: boolean }): void {
  const longDir = `${'d'.repeat(60)}/${'e'.repeat(60)}`;
  const longFile = 'f'.repeat(120);
  sh(`
    set -e; cd '${dir}'
    mkdir -p sub/deeper empty ro '${longDir}'
    printf 'hello\\n' > sub/hello.txt; chmod 640 sub/hello.txt
    head -c 300000 /dev/urandom > rand.bin; chmod 755 rand.bin
    printf 'deep' > '${longDir}/file-in-a-long-path.txt'
    ${options.longFileName ? `printf 'long name' > '${longFile}'` : ''}
    truncate -s 6M sparse.img
    printf 'one' | dd of=sparse.img bs=1 seek=1048576 conv=notrunc status=none
    printf 'two' | dd of=sparse.img bs=1 seek=5242880 conv=notrunc status=none
    { head -c 5000 /dev/urandom; head -c 65536 /dev/zero; printf tail; } > zero-runs.bin
    ln sub/hello.txt hard-link.txt
    ln -s sub/hello.txt link-to-file
    ln -s sub link-to-dir
    ln -s ../hello.txt sub/deeper/up-link
    ln -s missing-but-inside dangling
    touch setuid-tool; chmod 4755 setuid-tool
    printf 'ro' > ro/inside.txt; chmod 444 ro/inside.txt; chmod 555 ro
    chmod 700 empty
    mkdir shared-tmp; chmod 1777 shared-tmp
    find . -exec touch -h -d '2021-03-04 05:06:07' {} +
    touch -d '2019-01-01 00:00:00' sub/hello.txt
  `);
}

/** Packs `dir`'s contents with GNU tar. */
export function gnuTar(dir: string, out: string, format: TarFormat, extra: string[] = []): void {
  run('tar', [`--format=${format}`, ...extra, '-cf', out, '-C', dir, '.']);
}

/**
 * One line per entry: path, type, permission bits and sticky (setuid/setgid masked: we drop them
 * on purpose), symlink target, size for files, link count, whole-second mtime. Sorted.
 */
export function treeListing(dir: string): string[] {
  const raw = run('find', [dir, '-mindepth', '1', '-printf', '%P\\t%y\\t%m\\t%l\\t%s\\t%n\\t%T@\\n']);
  return raw
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [p, type, mode, target, size, links, mtime] = line.split('\t');
      const bits = (parseInt(mode!, 8) & 0o1777).toString(8);
      return [p, type, bits, target, type === 'f' ? size : '-', type === 'd' ? '-' : links, Math.floor(Number(mtime))].join(' ');
    })
    .sort();
}

/** `diff -r` without following symlinks; returns its output ('' when the trees match). */
export function diffTrees(a: string, b: string): string {
  try {
    return run('diff', ['-r', '--no-dereference', a, b]);
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * A tar built by Python's tarfile from a small program: `add(name, type, **fields)` appends
 * one member; `type` is a tarfile type constant name (REGTYPE, DIRTYPE, SYMTYPE, LNKTYPE,
 * CHRTYPE, FIFOTYPE). Regular files take `data` (bytes).
 */
export function pythonTar(out: string, members: string, format = 'GNU_FORMAT'): void {
  const program = `
import io, tarfile
t = tarfile.open(${JSON.stringify(out)}, 'w', format=tarfile.${format})
def add(name, type='REGTYPE', data=b'', **fields):
    info = tarfile.TarInfo(name)
    info.type = getattr(tarfile, type)
    for k, v in fields.items(): setattr(info, k, v)
    if info.type == tarfile.REGTYPE:
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    else:
        t.addfile(info)
${members}
t.close()
`;
  run('python3', ['-c', program]);
}

/** Sorted names directly in `dir`, for "left as it was" checks. */
export const entriesOf = (dir: string) => readdirSync(dir).sort();
