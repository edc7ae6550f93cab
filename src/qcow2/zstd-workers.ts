/**
 * zstd-napi decodes synchronously; a few worker threads let zstd clusters decode in parallel
 * and off the event loop (zlib already uses libuv's thread pool), as qemu's thread pool does.
 * Workers are created on first use, unref'd, and shared by every image.
 */
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

export interface ZstdResult {
  output: Buffer;
  /** Bytes of `output` filled. */
  produced: number;
  /** ZSTD_decompressStream's last return value: 0 when the last frame ended. */
  remaining: number;
  error?: string;
}

// The loop of qemu's qcow2_zstd_decompress, run inside the worker (plain CommonJS, no TypeScript).
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const binding = require(workerData.bindingPath);
const dctx = new binding.DCtx();
dctx.setParameter(binding.DParameter.windowLogMax, 23);
parentPort.on('message', ({ id, input, clusterSize }) => {
  const src = Buffer.from(input);
  const output = Buffer.allocUnsafe(clusterSize);
  let produced = 0, consumed = 0, remaining = 0;
  try {
    dctx.reset(binding.ResetDirective.sessionOnly);
    while (produced < clusterSize) {
      const [ret, out, used] = dctx.decompressStream(output.subarray(produced), src.subarray(consumed));
      produced += out;
      consumed += used;
      remaining = ret;
      if (out === 0 && used === 0) break;
    }
    parentPort.postMessage({ id, output: output.buffer, offset: output.byteOffset, produced, remaining }, [output.buffer]);
  } catch (err) {
    parentPort.postMessage({ id, error: String(err && err.message || err) });
  }
});
`;

interface Pending {
  resolve(result: ZstdResult): void;
  reject(err: Error): void;
}

class ZstdWorkerPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 0;
  private nextWorker = 0;
  private active = 0;

  constructor(size: number, bindingPath: string) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { bindingPath } });
      worker.unref();
      worker.on('message', (message: { id: number; output?: ArrayBuffer; offset?: number; produced?: number; remaining?: number; error?: string }) => {
        const waiter = this.pending.get(message.id);
        if (!waiter) return;
        this.pending.delete(message.id);
        if (--this.active === 0) this.workers.forEach((w) => w.unref());
        if (message.error !== undefined) {
          waiter.resolve({ output: Buffer.alloc(0), produced: 0, remaining: 0, error: message.error });
        } else {
          const output = Buffer.from(message.output!, message.offset ?? 0);
          waiter.resolve({ output, produced: message.produced!, remaining: message.remaining! });
        }
      });
      worker.on('error', (err) => {
        for (const waiter of this.pending.values()) waiter.reject(err);
        this.pending.clear();
      });
      this.workers.push(worker);
    }
  }

  decompress(input: Buffer, clusterSize: number): Promise<ZstdResult> {
    const id = this.nextId++;
    const worker = this.workers[this.nextWorker++ % this.workers.length]!;
    // A copy the worker owns: `input` is usually a view into a larger read buffer.
    const copy = new Uint8Array(input.length);
    copy.set(input);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Referenced while work is pending so the process waits for it; unref'd again when idle.
      if (this.active++ === 0) this.workers.forEach((w) => w.ref());
      worker.postMessage({ id, input: copy.buffer, clusterSize }, [copy.buffer]);
    });
  }
}

let pool: ZstdWorkerPool | undefined | null;

/** The shared pool, or null when workers cannot be started (the caller decodes inline). */
export function zstdWorkerPool(): ZstdWorkerPool | null {
  if (pool !== undefined) return pool;
  try {
    const require = createRequire(import.meta.url);
    // Two: zstd decodes at over 1 GB/s per thread; more workers mostly add memory (about 10 MiB each).
    const size = Math.max(1, Math.min(2, availableParallelism()));
    pool = new ZstdWorkerPool(size, require.resolve('zstd-napi/binding.js'));
  } catch {
    pool = null;
  }
  return pool;
}
