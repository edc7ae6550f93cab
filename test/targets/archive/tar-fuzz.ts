/**
 * Mutation fuzzing of archive extraction: header fields, PAX records, GNU sparse maps, bit flips
 * and truncations of archives made by GNU tar and Python's tarfile. Each mutated archive is
 * extracted into an empty directory beside a sentinel one. The only acceptable outcomes are an
 * ImportError (one line) with the target left empty, or success with only files, directories
 * and links inside the target (no symlink pointing out); either way nothing appears beside it.
 * Shared by the CI test (fixed seed, modest count) and bench/fuzz.ts (long runs).
 */
import { lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { isImportError } from '../../../src/errors.js';
import { extractArchive } from '../../../src/targets/archive/index.js';
import { seeded } from '../../qcow2/images.js';
import { gnuTar, pythonTar } from '../../support/tar-fixtures.js';
import { sh } from '../../support/tools.js';
import { pieces, settleWithin } from '../../support/fuzz-case.js';

const BLOCK = 512;
/** A case that takes longer than this is a hang (the seeds extract in milliseconds). */
const CASE_TIMEOUT_MS = 30_000;
/** What a mutated archive may claim to need: a few times the seeds, so size fields can lie. */
const AVAILABLE_BYTES = 64 << 20;

/** Small archives covering what the extractor parses: every GNU tar format, sparse maps, long names, links, PAX records. */
export function buildSeedArchives(dir: string): Buffer[] {
  const tree = path.join(dir, 'seed-tree');
  mkdirSync(tree, { recursive: true });
  sh(`
    set -e; cd '${tree}'
    mkdir -p sub/deeper empty '${'d'.repeat(60)}/${'e'.repeat(60)}'
    printf 'hello\\n' > sub/hello.txt
    head -c 3000 /dev/urandom > rand.bin
    printf 'long' > '${'d'.repeat(60)}/${'e'.repeat(60)}/${'f'.repeat(110)}'
    truncate -s 200k sparse.img
    printf 'one' | dd of=sparse.img bs=1 seek=65536 conv=notrunc status=none
    printf 'two' | dd of=sparse.img bs=1 seek=150000 conv=notrunc status=none
    ln sub/hello.txt hard-link.txt
    ln -s sub/hello.txt link-to-file
    ln -s ../hello.txt sub/deeper/up-link
  `);
  const archives: string[] = [];
  const pack = (name: string, format: 'ustar' | 'gnu' | 'pax', extra: string[] = []) => {
    const file = path.join(dir, `${name}.tar`);
    gnuTar(tree, file, format, extra);
    archives.push(file);
  };
  // ustar cannot hold the 110-character name: it gets a tree without it.
  const ustarTree = path.join(dir, 'ustar-tree');
  sh(`cp -a '${tree}' '${ustarTree}' && rm -rf '${ustarTree}/${'d'.repeat(60)}'`);
  gnuTar(ustarTree, path.join(dir, 'ustar.tar'), 'ustar');
  archives.push(path.join(dir, 'ustar.tar'));
  pack('gnu', 'gnu');
  pack('gnu-sparse', 'gnu', ['--sparse']);
  pack('pax', 'pax');
  pack('pax-sparse-1.0', 'pax', ['--sparse', '--sparse-version=1.0']);
  pack('pax-sparse-0.1', 'pax', ['--sparse', '--sparse-version=0.1']);
  const python = path.join(dir, 'python-pax.tar');
  pythonTar(
    python,
    `add('dir', 'DIRTYPE', mode=0o755)
add('dir/' + 'n' * 150, data=b'named by a pax path record', pax_headers={'comment': 'x' * 300})
add('dir/link', 'SYMTYPE', linkname='../dir/' + 'n' * 150)
add('dir/hard', 'LNKTYPE', linkname='dir/' + 'n' * 150)`,
    'PAX_FORMAT',
  );
  archives.push(python);
  return archives.map((file) => readFileSync(file));
}

/** Offsets of the header blocks in a well-formed archive (each followed by its data blocks). */
function headerOffsets(archive: Buffer): number[] {
  const offsets: number[] = [];
  for (let at = 0; at + BLOCK <= archive.length; ) {
    const header = archive.subarray(at, at + BLOCK);
    if (header.every((b) => b === 0)) break;
    offsets.push(at);
    const size = parseInt(header.toString('latin1', 124, 136).replace(/\0.*$/s, '').trim() || '0', 8);
    at += BLOCK + Math.ceil((Number.isFinite(size) ? size : 0) / BLOCK) * BLOCK;
  }
  return offsets;
}

/** Header fields worth breaking: [offset, width] (name, mode, uid, gid, size, mtime, typeflag, linkname, magic+version, prefix or GNU sparse map). */
const FIELDS: [number, number][] = [
  [0, 100], [100, 8], [108, 8], [116, 8], [124, 12], [136, 12], [156, 1], [157, 100], [257, 8], [345, 155], [386, 96], [482, 1], [483, 12],
];
const TYPEFLAGS = '0123456789LKxgSVMDA\0';
const TEXTS = [
  '..', '../', '../sentinel/evil', '/etc/passwd', '/', '.', './', 'sub/../../x', 'a/./b', 'link-to-file/x', 'sub/deeper/up-link/x', '', 'x'.repeat(99),
];
const NUMBERS = [
  '0', '1', '777', '7777777', '77777777777', '777777777777', '-1', '1e9', ' ', '99999999999', '00000001000', '00000000777',
];

function setText(block: Buffer, offset: number, width: number, text: string): void {
  block.fill(0, offset, offset + width);
  block.write(text.slice(0, width), offset, 'latin1');
}

/** Rewrites a header's checksum, as a crafted archive would (otherwise most mutations stop at the checksum). */
function fixChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i]!;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

/** Replaces one PAX record value (path, linkpath, size, GNU.sparse.*) by a hostile one, keeping record lengths honest or not. */
function mutatePax(data: Buffer, next: () => number, pick: <T>(list: readonly T[]) => T): Buffer {
  const text = data.toString('latin1');
  const records = text.match(/\d+ [^=]+=[^\n]*\n/g);
  if (!records) return data;
  const index = Math.floor(next() * records.length);
  const [, key] = /^\d+ ([^=]+)=/.exec(records[index]!)!;
  const value = pick([...TEXTS, ...NUMBERS, '18446744073709551615', '9007199254740993', '1,2,3', '0,4096,999999999999,1']);
  const body = ` ${pick([key!, 'path', 'linkpath', 'size', 'GNU.sparse.realsize', 'GNU.sparse.map', 'GNU.sparse.numblocks'])}=${value}\n`;
  let length = body.length + String(body.length).length;
  if (String(length).length !== String(body.length).length) length++;
  if (next() < 0.2) length += Math.floor(next() * 20) - 10; // a lying record length
  records[index] = `${length}${body}`;
  return Buffer.from(records.join(''), 'latin1');
}

/** One mutated copy of `archive`, chosen by `next`. */
export function mutate(archive: Buffer, next: () => number): Buffer {
  let out = Buffer.from(archive);
  const pick = <T>(list: readonly T[]) => list[Math.floor(next() * list.length)]!;
  const mutations = 1 + Math.floor(next() * 3);
  for (let i = 0; i < mutations; i++) {
    const headers = headerOffsets(out);
    if (headers.length === 0) break;
    const at = pick(headers);
    const block = out.subarray(at, at + BLOCK);
    const kind = next();
    if (kind < 0.45) {
      const [offset, width] = pick(FIELDS);
      if (width === 1) block[offset] = pick([...TYPEFLAGS].map((c) => c.charCodeAt(0)).concat([Math.floor(next() * 256)]));
      else if (width <= 12) {
        if (next() < 0.15) {
          // Base-256 (GNU's binary numbers): the high bit set, then big-endian bytes.
          block.fill(0, offset, offset + width);
          block[offset] = 0x80;
          for (let b = offset + 1; b < offset + width; b++) block[b] = next() < 0.5 ? 0 : Math.floor(next() * 256);
        } else setText(block, offset, width, pick(NUMBERS));
      } else setText(block, offset, width, pick(TEXTS));
      if (next() < 0.9) fixChecksum(block);
    } else if (kind < 0.6) {
      // A PAX or GNU long-name entry's data: the records that rename, resize or map the next entry.
      const type = String.fromCharCode(block[156]!);
      const size = parseInt(block.toString('latin1', 124, 136).replace(/\0.*$/s, '').trim() || '0', 8);
      if ((type === 'x' || type === 'g') && size > 0 && at + BLOCK + size <= out.length) {
        const data = mutatePax(out.subarray(at + BLOCK, at + BLOCK + size), next, pick);
        const padded = Buffer.alloc(Math.ceil(data.length / BLOCK) * BLOCK);
        data.copy(padded);
        const header = Buffer.from(block);
        setText(header, 124, 12, `${data.length.toString(8).padStart(11, '0')}`);
        fixChecksum(header);
        out = Buffer.concat([out.subarray(0, at), header, padded, out.subarray(at + BLOCK + Math.ceil(size / BLOCK) * BLOCK)]);
      } else if (type === 'L' || type === 'K') {
        setText(out, at + BLOCK, Math.min(BLOCK, out.length - at - BLOCK), pick(TEXTS));
      } else {
        block[Math.floor(next() * BLOCK)] ^= 1 << Math.floor(next() * 8);
      }
    } else if (kind < 0.8) {
      // A bit flip in a header, its checksum fixed or not.
      block[Math.floor(next() * BLOCK)] ^= 1 << Math.floor(next() * 8);
      if (next() < 0.5) fixChecksum(block);
    } else if (kind < 0.9) {
      // One header copied over another: a second entry of the same name, a link before its target.
      const other = pick(headers);
      out.copy(out, at, other, other + BLOCK);
    } else {
      // Truncated, or with garbage after the end.
      const length = Math.floor(next() * out.length);
      out = next() < 0.6 ? out.subarray(0, length) : Buffer.concat([out, Buffer.alloc(BLOCK * (1 + (length % 4)), 0x41)]);
    }
  }
  return out;
}

export interface FuzzOutcome {
  ok: number;
  rejected: number;
}

/** Every path under `dir`, depth first, without following links. */
function walk(dir: string, into: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    into.push(full);
    if (lstatSync(full).isDirectory()) walk(full, into);
  }
  return into;
}

/** Throws unless the extraction left only files, directories and links inside `target`, none pointing out. */
function checkExtracted(target: string): void {
  for (const entry of walk(target)) {
    const info = lstatSync(entry);
    if (info.isSymbolicLink()) {
      const link = readlinkSync(entry);
      const resolved = path.resolve(path.dirname(entry), link);
      if (path.isAbsolute(link) || !(resolved === target || resolved.startsWith(`${target}/`))) {
        throw new Error(`symlink ${path.relative(target, entry)} -> ${link} points outside the target`);
      }
    } else if (!info.isFile() && !info.isDirectory()) {
      throw new Error(`${path.relative(target, entry)} is neither a file, a directory nor a link`);
    } else if ((info.mode & 0o6000) !== 0) {
      throw new Error(`${path.relative(target, entry)} kept a setuid or setgid bit`);
    }
  }
}

/** Extracts `count` mutations under `workDir`; throws on the first outcome that is not allowed. */
export async function fuzz(seeds: Buffer[], seed: number, count: number, workDir: string): Promise<FuzzOutcome> {
  const next = seeded(seed);
  const outcome: FuzzOutcome = { ok: 0, rejected: 0 };
  for (let i = 0; i < count; i++) {
    const archive = mutate(seeds[i % seeds.length]!, next);
    const root = path.join(workDir, `case-${i}`);
    const target = path.join(root, 'target');
    const sentinel = path.join(root, 'sentinel');
    mkdirSync(target, { recursive: true });
    mkdirSync(sentinel);
    writeFileSync(path.join(sentinel, 'file.txt'), 'original');
    const fail = (what: string) => {
      const failure = new Error(`tar fuzz case ${i} (seed ${seed}): ${what}`);
      (failure as Error & { input?: Buffer }).input = archive; // bench/fuzz.ts saves it
      return failure;
    };
    const chunk = 1 + Math.floor(next() * 20_000);
    try {
      const result = await settleWithin(
        CASE_TIMEOUT_MS,
        (signal) => extractArchive(Readable.from(pieces(archive, [chunk])), target, { signal, availableBytes: AVAILABLE_BYTES }),
        () => fail(`extraction still running after ${CASE_TIMEOUT_MS / 1000} s`),
      );
      if ('err' in result) {
        const { err } = result;
        if (!isImportError(err)) throw fail(`not an ImportError: ${(err as Error)?.stack ?? String(err)}`);
        if (err.message.includes('\n')) throw fail(`a message of more than one line: ${JSON.stringify(err.message)}`);
        const left = readdirSync(target);
        if (left.length > 0) throw fail(`refused (${err.message}) but left ${left.join(', ')} in the target`);
        outcome.rejected++;
      } else {
        try {
          checkExtracted(target);
        } catch (err) {
          throw fail((err as Error).message);
        }
        outcome.ok++;
      }
      const beside = readdirSync(root).sort();
      if (beside.join() !== 'sentinel,target') throw fail(`created beside the target: ${beside.join(', ')}`);
      if (readdirSync(sentinel).join() !== 'file.txt' || readFileSync(path.join(sentinel, 'file.txt'), 'utf8') !== 'original') {
        throw fail('the sentinel directory beside the target changed');
      }
    } finally {
      try {
        rmSync(root, { recursive: true, force: true });
      } catch {
        // Read-only directories from the archive (not for root): make them removable first.
        sh(`chmod -R u+rwx '${root}'`);
        rmSync(root, { recursive: true, force: true });
      }
    }
  }
  return outcome;
}
