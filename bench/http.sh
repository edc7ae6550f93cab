#!/usr/bin/env bash
# HTTP benchmarks (issue 4): builds dist/ and runs bench/http-bench.ts. RUNS=3 SIZE_MIB=512 by default
# (SIZE_MIB=1024 for the issue's figures); BENCH_BASELINE, BENCH_IMAGES_DIR, BENCH_OUT_DIR, BENCH_CASES: see http-bench.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build >/dev/null
exec node --import tsx bench/http-bench.ts
