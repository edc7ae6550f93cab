/**
 * Scratch storage for the one-pass driver: host clusters that went by before anything mapped
 * them, kept until their L2 entry shows up. Only these bytes touch the scratch directory.
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { fileProblem, isOutOfSpace, ScratchSpaceRequiredError, targetError } from '../errors.js';
import { randomHex } from '../util/random-hex.js';

/** Thrown by a measuring spill (inspect) when the spill would exceed its memory budget. */
export class SpillBudgetExceeded extends Error {}

export class SpillFile {
  private handle?: FileHandle;
  private file?: string;
  private readonly slots = new Map<number, number>();
  /** Measuring mode (inspect): spilled clusters are held in memory, up to a budget, never written. */
  private readonly memory?: Map<number, Buffer>;
  private end = 0;

  constructor(
    private readonly scratchDir: string | undefined,
    private readonly memoryBudget?: number,
  ) {
    if (memoryBudget !== undefined) this.memory = new Map();
  }

  /** Bytes written to scratch so far. */
  get bytesUsed(): number {
    return this.end;
  }

  has(cluster: number): boolean {
    return this.slots.has(cluster);
  }

  async put(cluster: number, data: Buffer): Promise<void> {
    if (this.slots.has(cluster)) return;
    if (this.memory) {
      if (this.end + data.length > this.memoryBudget!) throw new SpillBudgetExceeded();
      this.memory.set(cluster, Buffer.from(data));
      this.slots.set(cluster, this.end);
      this.end += data.length;
      return;
    }
    if (!this.handle) {
      if (this.scratchDir === undefined) {
        throw new ScratchSpaceRequiredError(
          'the qcow2 image stores clusters before the tables that map them (written after an internal snapshot, grown by qemu-img resize, or otherwise out of order), so a one-pass import must set them aside; give a scratch directory (--scratch DIR; a scratch volume in a pod), or import it from a seekable source (the .qcow2 decompressed first, or HTTP with Range)',
        );
      }
      this.file = path.join(this.scratchDir, `qcow2-spill-${process.pid}-${randomHex(12)}`);
      try {
        this.handle = await open(this.file, 'wx+', 0o600);
        // Unlinked at once, used through the open handle only: the kernel frees it however the
        // process ends (kill -9, OOM), so no dead attempt's spill fills the scratch of the next.
        await rm(this.file, { force: true });
      } catch (err) {
        throw targetError(`cannot create a scratch file in ${this.scratchDir}: ${fileProblem(err)}`, err);
      }
    }
    try {
      await this.handle.write(data, 0, data.length, this.end);
    } catch (err) {
      if (isOutOfSpace(err)) {
        throw targetError(
          `the scratch space ${this.scratchDir} is full after ${this.end} bytes of clusters set aside (they arrive before the tables that map them; cdi-importer info --scan measures how much an image needs): give a larger scratch directory or volume, or import it from a seekable source (the .qcow2 decompressed first, or HTTP with Range)`,
          err,
        );
      }
      throw targetError(`cannot write to the scratch space ${this.scratchDir}: ${fileProblem(err)}`, err);
    }
    this.slots.set(cluster, this.end);
    this.end += data.length;
  }

  /** Copies `length` bytes at `offsetInCluster` of spilled `cluster` into `into` at `at`. */
  async read(cluster: number, offsetInCluster: number, length: number, into: Buffer, at: number): Promise<void> {
    const held = this.memory?.get(cluster);
    if (held) {
      held.copy(into, at, offsetInCluster, offsetInCluster + length);
      return;
    }
    const slot = this.slots.get(cluster);
    if (slot === undefined || !this.handle) throw new Error(`cluster ${cluster} was not spilled`);
    const { bytesRead } = await this.handle.read(into, at, length, slot + offsetInCluster);
    if (bytesRead !== length) throw new Error(`short read from the scratch file ${this.file}`);
  }

  async dispose(): Promise<void> {
    const { handle } = this;
    this.handle = undefined;
    this.slots.clear();
    this.memory?.clear();
    if (handle) await handle.close().catch(() => {});
  }
}
