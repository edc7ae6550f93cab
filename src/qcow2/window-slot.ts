/** The one-pass driver's recent host clusters, and what of each some want took (one-pass.ts). */
import type { Want } from './want.js';

/** qcow2 gives a compressed cluster's length in 512-byte sectors. */
const SECTOR = 512;

export interface WindowSlot {
  index: number;
  start: number;
  buf: Buffer;
  /** [from, to) ranges some want took, relative to the cluster start. */
  covered: [number, number][];
  /**
   * The last 512-byte sector of a compressed cluster: its length is only known to the sector, and
   * qemu packs the next compressed cluster right after the last byte, so the rest of the sector
   * may hold another cluster, mapped by an L2 table still to come. What the cluster did not take
   * (known once it is decoded) is not covered.
   */
  provisional: { from: number; to: number; want: Want }[];
}

/**
 * Marks [from, to) (absolute host offsets within the slot) as taken by `want`. The last sector of
 * a compressed cluster is taken only provisionally (see WindowSlot.provisional).
 */
export function cover(slot: WindowSlot, from: number, to: number, want: Want): void {
  if (to <= from) return;
  const firmEnd = want.kind === 'compressed' ? Math.max(want.start, want.end - SECTOR) : want.end;
  if (Math.min(to, firmEnd) > from) slot.covered.push([from - slot.start, Math.min(to, firmEnd) - slot.start]);
  if (to > Math.max(from, firmEnd)) slot.provisional.push({ from: Math.max(from, firmEnd) - slot.start, to: to - slot.start, want });
}

/** True when wants took all of the slot firmly (the usual data cluster): gapsOf() would find nothing. */
export function fullyCovered(slot: WindowSlot): boolean {
  return slot.provisional.length === 0 && slot.covered.length === 1 && slot.covered[0]![0] === 0 && slot.covered[0]![1] >= slot.buf.length;
}

/**
 * What no want took in a slot leaving the window: its covered ranges, and of each provisional
 * sector the part its compressed cluster used (all of it while the cluster is not decoded yet).
 */
export function gapsOf(slot: WindowSlot): [number, number][] {
  const covered = [...slot.covered];
  for (const { from, to, want } of slot.provisional) {
    const used = want.consumedEnd === undefined ? to : Math.min(to, want.consumedEnd - slot.start);
    if (used > from) covered.push([from, used]);
  }
  return uncovered(covered, slot.buf.length);
}

/** The parts of [0, length) that no [from, to) range covers. */
function uncovered(covered: [number, number][], length: number): [number, number][] {
  covered.sort((a, b) => a[0] - b[0]);
  const gaps: [number, number][] = [];
  let at = 0;
  for (const [from, to] of covered) {
    if (from > at) gaps.push([at, from]);
    at = Math.max(at, to);
  }
  if (at < length) gaps.push([at, length]);
  return gaps;
}

const ZERO_BLOCK = Buffer.alloc(64 * 1024);

/** Whether buf[from, to) is all zeros. */
export function isZero(buf: Buffer, from: number, to: number): boolean {
  for (let at = from; at < to; at += ZERO_BLOCK.length) {
    const end = Math.min(to, at + ZERO_BLOCK.length);
    if (ZERO_BLOCK.compare(buf, at, end, 0, end - at) !== 0) return false;
  }
  return true;
}
