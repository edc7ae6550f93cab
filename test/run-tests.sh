#!/usr/bin/env bash
# The test command (npm test): every test/**/*.test.ts through node:test and tsx.
# Node 20 does not expand globs in --test, so the files are listed here.
# Needs the system tools that .ci/run installs (qemu-utils, nginx, ...) and root for loop devices.
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.test.json  # src, tests and benchmarks
mapfile -t files < <(find test -name '*.test.ts' | sort)
if [ "$#" -gt 0 ]; then files=("$@"); fi
exec node --import tsx --test --test-concurrency="${TEST_CONCURRENCY:-2}" --test-timeout=600000 "${files[@]}"
