#!/usr/bin/env bash
# HTTP benchmarks (issue 4): builds dist/ and runs bench/http-bench.ts. RUNS=5 SIZE_MIB=64 by default.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json >/dev/null || test -f dist/main.js  # others' in-flight type errors do not stop the emit
exec node --import tsx bench/http-bench.ts
