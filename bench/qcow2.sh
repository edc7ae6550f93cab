#!/usr/bin/env bash
# qcow2 benchmark: a 2 GiB virtual disk with ~40 % data, as qcow2 (plain and zstd-compressed
# clusters; deflate-compressed, `convert -c`'s default, as a context row) and as qcow2.xz,
# converted to a raw file by cdi-importer and by the reference: `qemu-img convert -O raw`, and for
# .xz CDI's path (`xz -dc > scratch` then qemu-img convert).
# Alternates ours/reference BENCH_RUNS times; prints medians, ratios and our peak RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${BENCH_QCOW2_SIZE:-2147483648}
source bench/lib.sh
bench_start q
RAW="$BENCH_DIR/qcow2-src-$SIZE.raw"
Q="$BENCH_DIR/qcow2-$SIZE.qcow2"
QZ="$BENCH_DIR/qcow2-zstd-$SIZE.qcow2"
if [ ! -f "$Q.xz" ]; then
  echo "making the qcow2 benchmark images (once; cached in $BENCH_DIR)" >&2
  node --import tsx bench/qcow2-make-image.ts "$RAW" "$SIZE"
  qemu-img convert -O qcow2 "$RAW" "$Q"
  qemu-img convert -c -O qcow2 -o compression_type=zstd "$RAW" "$QZ"
  xz -T2 -1 -k -c "$Q" > "$Q.xz.tmp" && mv "$Q.xz.tmp" "$Q.xz"
  rm -f "$RAW"
fi
QD="$BENCH_DIR/qcow2-deflate-$SIZE.qcow2"
# Made from the plain image, so the cached images of earlier runs serve.
[ -f "$QD" ] || { qemu-img convert -c -O qcow2 "$Q" "$QD.tmp" && mv "$QD.tmp" "$QD"; }
OUT="$BENCH_DIR/q-out.raw"
SCRATCH="$BENCH_DIR/q-scratch.qcow2"
ours() { echo "node bin/cdi-importer convert $1 $OUT -q ${2:-}; rm -f $OUT"; }

# Correctness and the scratch claim first: same bytes as qemu-img, and 0 scratch bytes for .xz.
node bin/cdi-importer convert "$Q.xz" "$OUT" -q --json > "$BENCH_DIR/q-xz.json"
grep -q '"scratchBytesUsed":0' "$BENCH_DIR/q-xz.json" || { echo "qcow2.xz used scratch: $(cat "$BENCH_DIR/q-xz.json")" >&2; exit 1; }
qemu-img convert -O raw "$Q" "$OUT.ref"
cmp "$OUT" "$OUT.ref" || { echo "qcow2.xz output differs from qemu-img" >&2; exit 1; }
node bin/cdi-importer convert "$QZ" "$OUT" -q
cmp "$OUT" "$OUT.ref" || { echo "zstd qcow2 output differs from qemu-img" >&2; exit 1; }
node bin/cdi-importer convert "$QD" "$OUT" -q
cmp "$OUT" "$OUT.ref" || { echo "deflate qcow2 output differs from qemu-img" >&2; exit 1; }
rm -f "$OUT" "$OUT.ref"

# Neither `convert` nor qemu-img convert fsyncs the output. An import does (CDI does, so a pod's disk
# survives a node crash): the *-sync rows run `convert --fsync` against the references followed by
# `sync FILE` (one fsync of the output).
for run in $(seq "$BENCH_RUNS"); do
  echo "run $run/$BENCH_RUNS" >&2
  measure_pair "$run" q-plain-ours "$(ours "$Q")" \
    q-plain-ref "qemu-img convert -O raw $Q $OUT; rm -f $OUT"
  measure_pair "$run" q-plain-ours-sync "$(ours "$Q" --fsync)" \
    q-plain-ref-sync "qemu-img convert -O raw $Q $OUT; sync $OUT; rm -f $OUT"
  measure_pair "$run" q-zstd-ours "$(ours "$QZ")" \
    q-zstd-ref "qemu-img convert -O raw $QZ $OUT; rm -f $OUT"
  measure_pair "$run" q-zstd-ours-sync "$(ours "$QZ" --fsync)" \
    q-zstd-ref-sync "qemu-img convert -O raw $QZ $OUT; sync $OUT; rm -f $OUT"
  measure_pair "$run" q-deflate-ours "$(ours "$QD")" \
    q-deflate-ref "qemu-img convert -O raw $QD $OUT; rm -f $OUT"
  measure_pair "$run" q-xz-ours "$(ours "$Q.xz")" \
    q-xz-ref "xz -dc $Q.xz > $SCRATCH; qemu-img convert -O raw $SCRATCH $OUT; rm -f $OUT $SCRATCH"
  measure_pair "$run" q-xz-ours-sync "$(ours "$Q.xz" --fsync)" \
    q-xz-ref-sync "xz -dc $Q.xz > $SCRATCH; qemu-img convert -O raw $SCRATCH $OUT; sync $OUT; rm -f $OUT $SCRATCH"
done
# After IDLE seconds idle (untimed), as an import on a quiet node starts: a VM that returns free
# memory to its host (virtio-balloon free page reporting) has to take it back for the page cache,
# and large writes made that slow (README, "Writes of at most 512 KiB, then 128 KiB"). A loop of its
# own, so that no row above starts after an idle spell. BENCH_IDLE=0 leaves the row out.
IDLE=${BENCH_IDLE:-3}
if (( IDLE > 0 )); then
  for run in $(seq "$BENCH_RUNS"); do
    echo "idle run $run/$BENCH_RUNS" >&2
    BENCH_BEFORE="sleep $IDLE" measure_pair "$run" q-idle-ours "$(ours "$Q")" \
      q-idle-ref "qemu-img convert -O raw $Q $OUT; rm -f $OUT"
  done
fi

echo "median of $BENCH_RUNS runs, $(numfmt --to=iec "$SIZE") virtual qcow2, ~40 % data:"
compare 'qcow2      -> raw vs qemu-img convert' q-plain-ours q-plain-ref 1.0
compare 'qcow2 zstd -> raw vs qemu-img convert' q-zstd-ours q-zstd-ref 1.0
compare 'qcow2.xz   -> raw vs xz -dc + qemu-img' q-xz-ours q-xz-ref 0.6
compare 'qcow2 deflate -> raw vs qemu-img convert' q-deflate-ours q-deflate-ref -
compare 'qcow2      --fsync vs qemu-img + sync FILE' q-plain-ours-sync q-plain-ref-sync 1.0
compare 'qcow2 zstd --fsync vs qemu-img + sync FILE' q-zstd-ours-sync q-zstd-ref-sync 1.0
compare 'qcow2.xz   --fsync vs xz -dc + qemu-img + sync' q-xz-ours-sync q-xz-ref-sync 0.6
if (( IDLE > 0 )); then compare "qcow2 -> raw after $IDLE s idle vs qemu-img" q-idle-ours q-idle-ref -; fi
node_start_context
