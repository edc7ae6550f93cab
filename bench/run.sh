#!/usr/bin/env bash
# npm run bench: every benchmark script, one after the other.
set -euo pipefail
cd "$(dirname "$0")"
for script in decompress.sh qcow2.sh http.sh archive.sh; do
  if [ -x "$script" ]; then echo "== $script"; "./$script"; fi
done
