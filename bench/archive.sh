#!/usr/bin/env bash
# Archive extraction (content type archive) against GNU tar, which CDI's importer runs: a tar of
# 50 000 empty files (the per-entry cost: headers, creates, modes, times) and a tar.gz of a few
# large files (the byte path). Output on BENCH_OUT_DIR (default /dev/shm, so the file system's
# own speed, the same for both, does not drown the difference). No issue sets a target: context rows.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${BENCH_OUT_DIR:-/dev/shm}/cdi-bench-archive
source bench/lib.sh
bench_start a
MANY="$BENCH_DIR/archive-many.tar"
BIG="$BENCH_DIR/archive-big.tar.gz"
if [ ! -f "$MANY" ] || [ ! -f "$BIG" ]; then
  echo "making the archive benchmark inputs (once; cached in $BENCH_DIR)" >&2
  src=$(mktemp -d)
  mkdir -p "$src/many/d" "$src/big"
  (cd "$src/many/d" && seq 1 50000 | xargs touch)
  tar -cf "$MANY" -C "$src/many" .
  node --import tsx bench/make-disk-image.ts "$src/big/a.img" $((256 << 20)) >/dev/null
  node --import tsx bench/make-disk-image.ts "$src/big/b.img" $((128 << 20)) >/dev/null
  tar -czf "$BIG" -C "$src/big" .
  rm -rf "$src"
fi

fresh() { echo "rm -rf $OUT && mkdir -p $OUT"; }
for run in $(seq "$BENCH_RUNS"); do
  echo "run $run/$BENCH_RUNS" >&2
  measure_pair "$run" a-many-ours "$(fresh) && node bin/cdi-importer import $MANY $OUT --content-type archive -q" \
    a-many-ref "$(fresh) && tar -xf $MANY -C $OUT"
  measure_pair "$run" a-big-ours "$(fresh) && node bin/cdi-importer import $BIG $OUT --content-type archive -q" \
    a-big-ref "$(fresh) && tar -xzf $BIG -C $OUT"
done
rm -rf "$OUT"

echo "median of $BENCH_RUNS runs, output in $(dirname "$OUT"):"
compare '50 000 empty files vs tar -xf' a-many-ours a-many-ref -
compare '384 MiB in two files (tar.gz) vs tar -xzf' a-big-ours a-big-ref -
