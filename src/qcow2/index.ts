/**
 * qcow2-reader: reads QCOW2 images (versions 2 and 3) as a stream of extents of the guest disk,
 * byte-identical to `qemu-img convert -O raw`. No network and no file-system policy inside: the
 * caller hands in a random-access reader or a sequential stream (and, for the one-pass driver, a
 * scratch directory it may spill out-of-order clusters to).
 */
export type { Qcow2OpenOptions } from './options.js';
export type { Qcow2Header, CompressionType } from './header.js';
export { openQcow2RandomAccess } from './random-access.js';
export { openQcow2Stream } from './one-pass.js';
export { inspectQcow2, inspectQcow2Stream, type Qcow2Info, type InspectOptions } from './inspect.js';
