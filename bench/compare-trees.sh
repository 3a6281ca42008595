#!/usr/bin/env bash
# Runs one benchmark in two built checkouts, alternating, in the same session, so a change can be
# compared with the tree before it under the same machine load.
#   bash bench/compare-trees.sh BEFORE_DIR foundation|gateway [rounds] [-- bench args]
# Each checkout must have node_modules and a built dist/. Prints each run's table under a heading.
set -euo pipefail
before=$(cd "$1" && pwd); bench=$2; rounds=${3:-2}; shift 3 || shift $#
[ "${1:-}" = "--" ] && shift
after=$(cd "$(dirname "$0")/.." && pwd)
for i in $(seq 1 "$rounds"); do
  for tree in "$before" "$after"; do
    echo "### round $i: $( [ "$tree" = "$before" ] && echo before || echo after ) ($tree)"
    (cd "$tree" && node "bench/$bench.mjs" "$@")
  done
done
