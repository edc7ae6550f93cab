/**
 * Finding the one disk file under /disk across an image's layers, honouring whiteouts, in one
 * streaming pass over each layer.
 *
 * Why this order: the disk's bytes must reach the pipeline as they arrive (never staged on disk
 * or in memory), yet a later layer may delete or replace an earlier layer's disk. So the layers
 * are walked top (last) to base (first). A layer's entries can only be hidden by the layers above
 * it, which have been read by then (their headers; file data is skipped as it streams), so the
 * first visible regular file under disk/ met in this order is the final disk: its bytes are
 * handed on right away, from the same download. After the consumer has read it, the walk goes
 * on through the rest of that layer and the layers below to make sure no second visible file or
 * directory sits under disk/, and fails before the stream ends if one does. Layers above the
 * disk's are downloaded fully for their headers and digests; in containerDisk images they are
 * small, and the disk layer itself is downloaded once.
 */
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { badInput, oneLine } from '../../errors.js';
import type { Header } from 'tar-stream';
import { fileLayout, type FileLayout } from '../../formats/tar/sparse-layout.js';
import { sparseEntryStream } from '../../formats/tar/sparse-entry-stream.js';
import type { EntryFacts } from '../../formats/tar/tar-prepass.js';
import type { LayerEntry } from './layer-entries.js';

export interface FoundDisk {
  /** Path in the image, e.g. `disk/fedora.qcow2`. */
  path: string;
  size: number;
  body: Readable;
  /** Index in the manifest's layer list (0 = base). */
  layer: number;
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/**
 * `./disk/a.img`, `/disk/a.img`, `disk/a.img/`, `disk//a.img`, `disk/./a.img` → `disk/a.img`: the
 * path a runtime lays the entry out at (containerd's and CDI's filepath.Join clean it), `..` never
 * above the root.
 */
export function normalizeEntryPath(name: string): string {
  return posix.normalize(`/${name}`).replace(/^\/+|\/+$/g, '');
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
}

function baseOf(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Paths that can hide (or be) the disk: the root, `disk` itself and anything under it. */
function concernsDisk(path: string): boolean {
  return path === '' || path === 'disk' || path.startsWith('disk/');
}

/** What the layers above hide from the layers below. */
class LowerLayerMask {
  /** Whiteout targets and non-directory entries: they hide that path and everything under it. */
  private readonly removed = new Set<string>();
  /** Opaque directories: everything under them in lower layers is hidden. */
  private readonly opaque = new Set<string>();

  hides(path: string): boolean {
    if (this.opaque.has('')) return true;
    const parts = path.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (this.removed.has(prefix)) return true;
      if (i < parts.length && this.opaque.has(prefix)) return true;
    }
    return false;
  }

  remove(path: string): void {
    if (concernsDisk(path)) this.removed.add(path);
  }

  makeOpaque(dir: string): void {
    if (concernsDisk(dir)) this.opaque.add(dir);
  }

  mergeInto(other: LowerLayerMask): void {
    for (const p of this.removed) other.removed.add(p);
    for (const p of this.opaque) other.opaque.add(p);
  }
}

const REGULAR = new Set(['file', 'contiguous-file']);

/** What a non-regular entry is, in words: "a hard link to /x", "a symbolic link to y", "a fifo". */
function entryKind(header: Header): string {
  if (header.type === 'link') return `a hard link to /${normalizeEntryPath(header.linkname ?? '')}`;
  if (header.type === 'symlink') return `a symbolic link to ${header.linkname ?? ''}`;
  return `a ${header.type ?? 'special entry'}`;
}

/**
 * A regular entry's real name and layout: a GNU sparse file's name and size are in its PAX
 * records, its data is only the parts that are not holes. A broken sparse header is returned
 * (not thrown): it matters only if the entry turns out to be the disk.
 */
function sparseLayout(header: Header, facts: EntryFacts | undefined, where: string): FileLayout | Error | null {
  try {
    return fileLayout(header.name, header.size ?? 0, (header.pax as Record<string, string> | undefined) ?? null, facts);
  } catch (err) {
    return badInput(`${where}: ${oneLine(err)}`, err);
  }
}

/**
 * Yields the disk once (the consumer must read or abandon its body before asking for more),
 * then returns when every layer agrees there is exactly one; throws bad-input otherwise.
 */
export async function* walkForDisk(
  layerCount: number,
  openLayer: (index: number) => AsyncIterable<LayerEntry>,
  display: string,
): AsyncGenerator<FoundDisk, void, undefined> {
  const mask = new LowerLayerMask();
  let found: FoundDisk | undefined;
  for (let index = layerCount - 1; index >= 0; index--) {
    const layerMask = new LowerLayerMask();
    const where = `layer ${index + 1} of ${layerCount}`;
    for await (const { header, body: stored, facts } of openLayer(index)) {
      const layout = REGULAR.has(header.type ?? '') ? sparseLayout(header, facts, `${display} (${where})`) : null;
      const path = normalizeEntryPath(layout && !(layout instanceof Error) ? layout.name : header.name);
      const base = baseOf(path);
      if (base === OPAQUE) {
        layerMask.makeOpaque(parentOf(path));
        continue;
      }
      if (base.startsWith(WHITEOUT)) {
        const parent = parentOf(path);
        layerMask.remove(parent ? `${parent}/${base.slice(WHITEOUT.length)}` : base.slice(WHITEOUT.length));
        continue;
      }
      if (header.type !== 'directory') layerMask.remove(path);
      if (!path.startsWith('disk/') || mask.hides(path)) continue;

      if (header.type === 'directory') {
        throw badInput(`${display} has a directory /${path} (${where}) under /disk: /disk must hold exactly one regular file, the disk image`);
      }
      if (!REGULAR.has(header.type ?? '')) {
        throw badInput(`${display}: /${path} (${where}) is ${entryKind(header)}, not a regular file: /disk must hold exactly one regular file, the disk image`);
      }
      if (parentOf(path) !== 'disk') {
        // The directory is there even when the tar has no entry of its own for it.
        const directory = path.split('/').slice(0, 2).join('/');
        throw badInput(`${display} has a directory /${directory} (${where}) under /disk: /disk must hold exactly one regular file, the disk image`);
      }
      if (found?.path === path && found.layer === index) {
        // tar lets a later entry replace an earlier one; which one a runtime would keep is not
        // ours to guess after the first has been streamed (CDI takes the first, runtimes the last).
        throw badInput(`${display} has /${path} twice in ${where}: rebuild the image with the disk in it once`);
      }
      if (found) {
        throw badInput(`${display} has more than one file under /disk (/${found.path} and /${path}): the image must hold exactly one disk image`);
      }
      const size = header.size ?? 0;
      if (!Number.isSafeInteger(size) || size < 0) throw badInput(`${display}: /${path} has an invalid size ${String(header.size)}`);
      if (layout instanceof Error) throw layout;
      // A sparse entry (`tar --sparse`) stores only its data; the disk is that data with its holes.
      const body =
        layout && (layout.segments !== null || layout.mapInData)
          ? sparseEntryStream(stored as AsyncIterable<Buffer>, layout, size, (why) => badInput(`${display}: /${path} (${where}) is an invalid GNU sparse file: ${why}`))
          : stored;
      found = { path, size: layout?.realSize ?? size, body, layer: index };
      yield found;
    }
    layerMask.mergeInto(mask);
  }
  if (!found) {
    throw badInput(`${display} has no disk image: expected one regular file under /disk in the image (as in a KubeVirt containerDisk)`);
  }
}
