#!/usr/bin/env bash
# Foundation benchmark (npm run bench): a 1 GiB disk-like raw image, compressed with gzip, xz
# (single block, and multi-block as `xz -T` and xz >= 5.6 write it) and zstd, imported to a file by cdi-importer and decompressed by the reference
# CLI (`gzip -dc > file` etc.), alternating, BENCH_RUNS times each. Prints median times, the ratio
# ours/reference and our peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=${BENCH_DIR:-$PWD/.bench}
SIZE=${BENCH_SIZE:-1073741824}
mkdir -p "$BENCH_DIR"
source bench/lib.sh
rm -f "$BENCH_DIR"/*.times

npm run --silent build
IMG="$BENCH_DIR/disk-$SIZE.raw"
if [ ! -f "$IMG.zst" ]; then
  echo "making $IMG and its compressed copies (once; cached in $BENCH_DIR)" >&2
  node --import tsx bench/make-disk-image.ts "$IMG" "$SIZE"
  gzip -6 -c "$IMG" > "$IMG.gz"
  xz -T1 -3 -c "$IMG" > "$IMG.xz"   # -T1: a single block, the common case for published images
  zstd -q -3 -c "$IMG" > "$IMG.zst"
fi
# Multi-block: blocks carry their sizes, so they can be decoded in parallel (ours and xz -T0 both do).
[ -f "$IMG.mt.xz" ] || xz -T0 -3 -c "$IMG" > "$IMG.mt.xz"
# BENCH_OUT_DIR=/dev/shm separates decoding from this disk's write stalls (see README).
OUT="${BENCH_OUT_DIR:-$BENCH_DIR}/out.img"
# `convert` is the import pipeline without the final fsync, like the references; the *-sync pair
# compares `import` (which fsyncs, as CDI's pod must) with the reference followed by `sync FILE`.
ours() { echo "node bin/cdi-importer convert $1 $OUT -q; rm -f $OUT"; }

for run in $(seq "$BENCH_RUNS"); do
  echo "run $run/$BENCH_RUNS" >&2
  measure_pair "$run" gz-ours "$(ours "$IMG.gz")" \
    gz-ref "gzip -dc $IMG.gz > $OUT; rm -f $OUT"
  measure_pair "$run" xz-ours "$(ours "$IMG.xz")" \
    xz-ref "xz -dc $IMG.xz > $OUT; rm -f $OUT"
  measure_pair "$run" xzmt-ours "$(ours "$IMG.mt.xz")" \
    xzmt-ref "xz -dc $IMG.mt.xz > $OUT; rm -f $OUT"
  measure xzmt-ref-t0 "xz -T0 -dc $IMG.mt.xz > $OUT; rm -f $OUT"
  measure_pair "$run" zst-ours "$(ours "$IMG.zst")" \
    zst-ref "zstd -dc $IMG.zst > $OUT; rm -f $OUT"
  measure_pair "$run" zst-import-ours "node bin/cdi-importer import $IMG.zst -o $OUT -q; rm -f $OUT" \
    zst-ref-sync "zstd -dc $IMG.zst > $OUT; sync $OUT; rm -f $OUT"
done

echo "median of $BENCH_RUNS runs, $(numfmt --to=iec "$SIZE") disk-like image:"
compare 'raw.gz  -> file vs gzip -dc > file' gz-ours gz-ref 1.0
compare 'raw.xz  -> file vs xz -dc > file' xz-ours xz-ref 1.1
compare 'raw.xz multi-block vs xz -dc > file' xzmt-ours xzmt-ref 1.1
compare 'raw.xz multi-block vs xz -T0 -dc > file' xzmt-ours xzmt-ref-t0 1.1
compare 'raw.zst -> file vs zstd -dc > file' zst-ours zst-ref 1.3
compare 'import raw.zst (fsync) vs zstd -dc + sync' zst-import-ours zst-ref-sync 1.3
node_start_context
