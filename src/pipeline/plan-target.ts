import { access, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import type { ImportRequest } from '../request.js';
import type { DiskTarget } from '../targets/disk-target.js';
import { SparseFileTarget } from '../targets/sparse-file-target.js';
import { BlockDeviceTarget } from '../targets/block-device-target.js';
import { freeSpace, usableSpace } from '../targets/usable-space.js';
import { targetFailure } from '../targets/target-errors.js';
import { targetError } from '../errors.js';
import { inspectDestination, refuseStickyReplace } from './destination-path.js';
import { blockDeviceOverlap } from '../util/block-device-info.js';

/** What the pipeline knows about the destination before anything is written. */
export interface TargetPlan {
  kind: 'file' | 'block';
  path: string;
  /** Bytes the image may occupy; a larger virtual size fails before writing. */
  capacity: number;
  /** Size to grow the image to (SPEC §7); undefined = no resize. */
  growTo?: number;
  /** For a file on a bounded volume: the space `capacity` was figured from, before the overhead kept free. */
  spaceBeforeOverhead?: number;
  create(): Promise<DiskTarget>;
  /** Lets go of what planning holds (an opened device) when the import stops before create(). */
  abandon?(): Promise<void>;
}

/** Sizes the target of a disk import without touching it (SPEC §7). */
export async function planDiskTarget(request: ImportRequest): Promise<TargetPlan> {
  const target = request.target;
  if (target.kind === 'directory') throw targetError(`${target.path} is a directory target; disk images need a file or block device`);
  // Standard input redirected from a file (`convert - disk.img < disk.img`) is that file: /dev/stdin names it.
  const sourceFile = request.source.kind === 'file' ? request.source.path : request.source.kind === 'stdin' ? '/dev/stdin' : undefined;
  if (target.kind === 'block') return planBlock(target.path, request.preallocation, target.sync ?? true, sourceFile);

  // An existing block device given as a file path is written as a device; a link, to the file it names.
  const destination = await inspectDestination(target.path, sourceFile);
  if (destination.kind === 'block') return planBlock(target.path, request.preallocation, target.sync ?? true, sourceFile);
  if (destination.kind === 'directory') throw targetError(`${target.path} is a directory: give a file name for the disk image (e.g. ${path.join(target.path, 'disk.img')})`);
  const filePath = destination.path;

  const directory = path.dirname(path.resolve(filePath));
  const dirInfo = await stat(directory).catch((err) => {
    // Through a symbolic link, the directory that is missing is the one the link points into.
    throw targetFailure(err, filePath === path.resolve(target.path) ? target.path : `${target.path} (that is, ${filePath})`);
  });
  if (!dirInfo.isDirectory()) throw targetError(`destination directory ${directory} is not a directory`);
  if (destination.kind === 'file' && target.atomic) refuseStickyReplace(destination, dirInfo, target.path);
  // A read-only file system reports little or no free space (an ISO or squashfs none): said as what
  // it is, before the size check would call it too small. Other refusals are the create's to name.
  await access(directory, constants.W_OK).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'EROFS') throw targetFailure(err, target.path);
  });
  // Unbounded (convert, as qemu-img convert), or a file system that reports no size: no free-space
  // check; a disk that fills up fails when it does.
  const free = target.unbounded ? undefined : await freeSpace(directory);
  const limits = [free, request.requestedSize].filter((bytes) => bytes !== undefined);
  const available = limits.length > 0 ? Math.min(...limits) : undefined;
  const capacity = usableSpace(available ?? Number.MAX_SAFE_INTEGER, request.filesystemOverhead);
  return {
    kind: 'file',
    path: target.path,
    capacity,
    growTo: request.requestedSize !== undefined ? capacity : undefined,
    spaceBeforeOverhead: target.unbounded ? undefined : available,
    create: () =>
      SparseFileTarget.create({
        path: filePath,
        capacity,
        atomic: target.atomic,
        localMode: target.localMode ?? false,
        replaced: destination.kind === 'file' ? destination : undefined,
        sync: target.sync ?? true,
        preallocation: request.preallocation,
      }),
  };
}

async function planBlock(devicePath: string, preallocation: boolean, sync: boolean, sourceFile: string | undefined): Promise<TargetPlan> {
  // A device that holds the source's bytes would be overwritten while they are read (found by a QA
  // pass: `convert /dev/loop0 /dev/loop0` zeroed most of the disk and exited 0).
  if (sourceFile !== undefined) {
    const [device, source] = await Promise.all([stat(devicePath).catch(() => undefined), stat(sourceFile).catch(() => undefined)]);
    const overlap = device && source && (source.isFile() || source.isBlockDevice()) ? await blockDeviceOverlap(device.rdev, source) : undefined;
    if (overlap) throw targetError(`${devicePath} is ${overlap}: writing it would overwrite the image while it is read; write the output to another device or file`);
  }
  const device = await BlockDeviceTarget.open(devicePath, { preallocation, sync });
  // The device is opened (O_EXCL) now, to know its size: an import refused before create() must
  // close it, or the next import of the same device (an upload retried) finds it "in use".
  return { kind: 'block', path: devicePath, capacity: device.capacity, create: async () => device, abandon: () => device.abort() };
}
