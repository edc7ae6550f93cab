# Shared benchmark helpers: run a command several times, take medians, print ratios.
# Source this file; needs /usr/bin/time (Debian package "time").

BENCH_RUNS=${BENCH_RUNS:-3}
# Inputs (made once) and run times; the scripts run from the repository root.
BENCH_DIR=${BENCH_DIR:-$PWD/.bench}

# bench_start PREFIX: the benchmark directory, no times left from an earlier run's PREFIX-* rows, a fresh build.
bench_start() {
  mkdir -p "$BENCH_DIR"
  rm -f "$BENCH_DIR/$1"-*.times
  npm run --silent build
}

# Node reads the file NODE_EXTRA_CA_CERTS names at every start, before any of our code runs. This
# machine sets it to the whole system bundle, which adds ~30 ms to each run; the container image
# sets nothing of the kind, so the runs go without it. node_start_context prints what it costs.
BENCH_MACHINE_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS:-}
unset NODE_EXTRA_CA_CERTS

node_start_context() {
  [ -n "$BENCH_MACHINE_EXTRA_CA_CERTS" ] || return 0
  rm -f "$BENCH_DIR"/node-start-*.times
  for _ in $(seq 5); do
    measure node-start-ca "NODE_EXTRA_CA_CERTS=$BENCH_MACHINE_EXTRA_CA_CERTS node -e 0"
    measure node-start "node -e 0"
  done
  printf 'context: node start %.3fs with this machine'"'"'s NODE_EXTRA_CA_CERTS, %.3fs without (the runs above: without)\n' \
    "$(median "$BENCH_DIR/node-start-ca.times" 1)" "$(median "$BENCH_DIR/node-start.times" 1)"
}

# measure NAME CMD... : runs CMD once, appends "seconds maxrss_kib" to $BENCH_DIR/NAME.times. The seconds
# come from the shell's clock (microseconds): /usr/bin/time's %e has 10 ms steps, a tenth of a small run.
# BENCH_BEFORE: a command run first, untimed (bench/qcow2.sh's idle row sleeps there).
measure() {
  local name=$1; shift
  [ -z "${BENCH_BEFORE:-}" ] || bash -c "$BENCH_BEFORE"
  local started=$EPOCHREALTIME
  /usr/bin/time -f '%M' -o "$BENCH_DIR/.last" bash -c "$*" >/dev/null 2>"$BENCH_DIR/.stderr" || {
    echo "benchmark command failed: $*" >&2; cat "$BENCH_DIR/.stderr" >&2; exit 1; }
  awk -v a="$started" -v b="$EPOCHREALTIME" -v rss="$(cat "$BENCH_DIR/.last")" 'BEGIN { printf "%.4f %s\n", b - a, rss }' >> "$BENCH_DIR/$name.times"
}

# measure_pair RUN OURS_NAME OURS_CMD REF_NAME REF_CMD : both, ours first on odd runs, the reference
# first on even ones. On a busy machine the first command after another workload is often the slow
# one; a fixed order would put that on one side every time.
measure_pair() {
  if (( $1 % 2 )); then measure "$2" "$3"; measure "$4" "$5"; else measure "$4" "$5"; measure "$2" "$3"; fi
}

# median FILE COLUMN
median() {
  sort -n -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# compare LABEL OURS_NAME REF_NAME TARGET_RATIO|- : prints medians, the ratio, and whether it meets the target.
# Two ratios: of the medians, and the median of each run's own ratio (ours against the reference run
# next to it, which share the machine's state at that moment). The verdict takes the larger: a run
# where a slow spell hit the reference's medians more than ours can make the first look better than it is.
compare() {
  local label=$1 ours=$2 ref=$3 target=$4
  local t_ours t_ref rss ratio paired worse verdict
  t_ours=$(median "$BENCH_DIR/$ours.times" 1)
  t_ref=$(median "$BENCH_DIR/$ref.times" 1)
  rss=$(sort -n -k2,2 "$BENCH_DIR/$ours.times" | tail -1 | awk '{ printf "%.0f", $2 / 1024 }')
  ratio=$(awk -v a="$t_ours" -v b="$t_ref" 'BEGIN { printf "%.2f", a / b }')
  paired=$(paste -d' ' "$BENCH_DIR/$ours.times" "$BENCH_DIR/$ref.times" | awk '{ print $1 / $3 }' > "$BENCH_DIR/.ratios" && median "$BENCH_DIR/.ratios" 1)
  paired=$(awk -v r="$paired" 'BEGIN { printf "%.2f", r }')
  worse=$(awk -v a="$ratio" -v b="$paired" 'BEGIN { print (a > b) ? a : b }')
  # A target of "-": a context row, no target to meet.
  if [ "$target" = - ]; then verdict='context'; else verdict="target <= $target: $(awk -v r="$worse" -v t="$target" 'BEGIN { print (r <= t) ? "ok" : "MISSED" }')"; fi
  printf '%-44s ours %6.3fs  ref %6.3fs  ratio %5s, run by run %5s (%s)  peak RSS %s MiB\n' \
    "$label" "$t_ours" "$t_ref" "$ratio" "$paired" "$verdict" "$rss"
}
