import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** native/file-copy, our optional N-API module (file-copy.c, inflate-clusters.c, pool-work.h). */
export interface NativeModule {
  copyRuns(
    source: number,
    target: number,
    runs: Float64Array,
    written: Float64Array,
    callback: (err: { errno: number; syscall: 'read' | 'write' } | null) => void,
  ): void;
  writeData(target: number, data: Buffer, position: number, callback: (err: { errno: number; syscall: 'write' } | null, written: number) => void): void;
  inflateClusters(input: Buffer, pieces: Float64Array, clusterSize: number, output: Buffer, outcome: Float64Array, callback: (zlibMessage: string) => void): void;
}

let loaded: NativeModule | null | undefined;

/**
 * The module, built by npm ci as fs-ext is; undefined when it did not build, or with
 * CDI_IMPORTER_NATIVE_COPY=0. Without it the same work is done in JavaScript, with the same output.
 */
export function nativeModule(): NativeModule | undefined {
  if (loaded === undefined) {
    try {
      loaded = process.env.CDI_IMPORTER_NATIVE_COPY === '0' ? null : (require('cdi-importer-file-copy') as NativeModule);
    } catch {
      loaded = null;
    }
  }
  return loaded ?? undefined;
}
