/**
 * Compressed clusters, decoded exactly as qemu's qcow2-threads.c does: the output must fill the
 * cluster, trailing input bytes are allowed (the compressed size is only known to 512 bytes).
 * Stricter than qemu in one way (SPEC §3.1 hostile images): data that would inflate past the
 * cluster is an error, not silently cut.
 */
import { createRequire } from 'node:module';
import { constants as zlibConstants, inflateRaw, type ZlibOptions } from 'node:zlib';
import { badInput } from '../errors.js';
import { hex, type CompressionType } from './header.js';
import { nativeModule } from '../util/native-module.js';

type ZstdBinding = typeof import('zstd-napi/binding.js');
const require = createRequire(import.meta.url);
let zstdBinding: ZstdBinding | undefined;
let zstdContext: InstanceType<ZstdBinding['DCtx']> | undefined;


/** A decoded cluster, and how many input bytes its compressed data took (the rest of its last sector is not its own). */
export interface DecodedCluster {
  data: Buffer;
  consumed: number;
}

/**
 * Decodes one compressed cluster. With `into` (clusterSize bytes), the cluster lands there: zstd
 * and the native inflate decode straight into it, which spares a run of clusters one allocation
 * and one copy each. Deflate goes to native code when the module is there, else to Node's zlib.
 */
export async function decompressCluster(
  type: CompressionType,
  input: Buffer,
  clusterSize: number,
  hostOffset: number,
  into?: Buffer,
): Promise<DecodedCluster> {
  if (type === 'zstd') return zstdClusterInline(input, clusterSize, hostOffset, into);
  if (nativeModule()) {
    const output = into ?? Buffer.allocUnsafe(clusterSize);
    const consumed = await inflateClustersNatively(input, [{ from: 0, length: input.length, hostOffset }], clusterSize, output);
    return { data: output, consumed: consumed! };
  }
  const cluster = await inflateCluster(input, clusterSize, hostOffset);
  if (into) cluster.data.copy(into);
  return into ? { data: into, consumed: cluster.consumed } : cluster;
}

/** Node's zlib path for one deflate cluster (exported for the tests that hold the native path to it). */
export function inflateCluster(input: Buffer, clusterSize: number, hostOffset: number): Promise<DecodedCluster> {
  return new Promise((resolve, reject) => {
    // windowBits 12 and raw deflate: qemu's -12. Z_SYNC_FLUSH at the end accepts a stream cut
    // after the last byte of the cluster, as qemu's Z_BUF_ERROR-with-full-output does.
    // info: the engine tells how much input the deflate stream took (bytesWritten).
    inflateRaw(
      input,
      { windowBits: 12, maxOutputLength: clusterSize, finishFlush: zlibConstants.Z_SYNC_FLUSH, info: true } as ZlibOptions,
      (err, result) => {
        if (err) {
          const past = (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
          reject(past ? inflatesPast(hostOffset, clusterSize) : notDeflate(hostOffset, err.message));
          return;
        }
        const { buffer: output, engine } = result as unknown as { buffer: Buffer; engine: { bytesWritten: number } };
        if (output.length !== clusterSize) {
          reject(shortCluster(hostOffset, output.length, clusterSize));
        } else {
          resolve({ data: output, consumed: engine.bytesWritten });
        }
      },
    );
  });
}

/** A compressed cluster to decode: its bytes in the input (with any trailing bytes of its last sector) and where they were in the file. */
export interface ClusterPiece {
  from: number;
  length: number;
  hostOffset: number;
}

/**
 * Decodes a run of deflate clusters in one native pool job (native/file-copy's inflateClusters),
 * cluster i into output[i * clusterSize, +clusterSize), with the same checks and messages as Node's
 * zlib path (inflateCluster). Resolves to the input bytes the last cluster took. Node's inflateRaw
 * per cluster spent more of the main thread on its streams and buffers than the decoding took.
 * Undefined without the native module.
 */
export function inflateClustersNatively(input: Buffer, pieces: ClusterPiece[], clusterSize: number, output: Buffer): Promise<number> | undefined {
  const native = nativeModule();
  if (!native) return undefined;
  const ranges = new Float64Array(pieces.length * 2);
  pieces.forEach((piece, i) => {
    ranges[2 * i] = piece.from;
    ranges[2 * i + 1] = piece.length;
  });
  const outcome = new Float64Array(4);
  return new Promise((resolve, reject) => {
    native.inflateClusters(input, ranges, clusterSize, output, outcome, (zlibMessage) => {
      const [kind, index, got, consumed] = outcome as unknown as [number, number, number, number];
      const hostOffset = pieces[index]?.hostOffset ?? 0;
      if (kind === 0) resolve(consumed);
      else if (kind === 1) reject(inflatesPast(hostOffset, clusterSize));
      else if (kind === 3) reject(shortCluster(hostOffset, got, clusterSize));
      else reject(notDeflate(hostOffset, zlibMessage));
    });
  });
}

function inflatesPast(hostOffset: number, clusterSize: number) {
  return badInput(`qcow2 compressed cluster at host offset ${hex(hostOffset)} inflates past the ${clusterSize}-byte cluster: the image is corrupt or hostile`);
}

function notDeflate(hostOffset: number, reason: string) {
  return badInput(`qcow2 compressed cluster at host offset ${hex(hostOffset)} is not valid deflate data (${reason}): the image is corrupt`);
}

function notZstd(hostOffset: number, reason: string) {
  return badInput(`qcow2 compressed cluster at host offset ${hex(hostOffset)} is not valid zstd data (${reason}): the image is corrupt`);
}

function checkZstd(output: Buffer, produced: number, remaining: number, clusterSize: number, hostOffset: number): Buffer {
  if (produced < clusterSize) throw shortCluster(hostOffset, produced, clusterSize);
  if (remaining !== 0) throw inflatesPast(hostOffset, clusterSize);
  return output;
}

/**
 * qcow2_zstd_decompress: one or more frames until the cluster is full, the last one complete.
 * Synchronous, on this thread: zstd decodes a cluster in well under a millisecond, and worker
 * threads (tried) cost more memory than they saved time on two cores.
 */
function zstdClusterInline(input: Buffer, clusterSize: number, hostOffset: number, into?: Buffer): DecodedCluster {
  zstdBinding ??= require('zstd-napi/binding.js') as ZstdBinding;
  if (!zstdContext) {
    zstdContext = new zstdBinding.DCtx();
    // A frame may ask for a 2 GiB window; a cluster never needs more than 2 MiB of history.
    zstdContext.setParameter(zstdBinding.DParameter.windowLogMax, 23);
  }
  const dctx = zstdContext;
  const output = into ?? Buffer.allocUnsafe(clusterSize);
  let outPos = 0;
  let inPos = 0;
  let remaining = 0;
  try {
    dctx.reset(zstdBinding.ResetDirective.sessionOnly);
    while (outPos < clusterSize) {
      const [ret, produced, consumed] = dctx.decompressStream(output.subarray(outPos), input.subarray(inPos));
      outPos += produced;
      inPos += consumed;
      remaining = ret;
      if (produced === 0 && consumed === 0) break;
    }
  } catch (err) {
    throw notZstd(hostOffset, (err as Error).message);
  }
  return { data: checkZstd(output, outPos, remaining, clusterSize, hostOffset), consumed: inPos };
}

function shortCluster(hostOffset: number, got: number, clusterSize: number) {
  return badInput(
    `qcow2 compressed cluster at host offset ${hex(hostOffset)} inflates to ${got} bytes instead of ${clusterSize}: the image is corrupt or truncated`,
  );
}
