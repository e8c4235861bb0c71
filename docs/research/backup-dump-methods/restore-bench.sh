#!/bin/bash
# Runs restore.sh for every method ROUNDS times (interleaved), from the run-1 dumps of bench.sh.
# Needs: kohaproxy sandbox up --dir /tmp/bkrestore --replicas 0 --proxy-port 0 --buffer-pool-mb 256
# usage: restore-bench.sh [ROUNDS]      results: $OUT/restore.tsv  (FIRST_RUN=N numbers the rounds from N)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); . "$here/env.sh"
for run in $(seq "${FIRST_RUN:-1}" "$((${FIRST_RUN:-1} + ${1:-2} - 1))"); do
  timeout 900 "$here/restore.sh" single 1 "$run" "$OUT/single-1-1"
  timeout 900 "$here/restore.sh" pertable 2 "$run" "$OUT/pertable-4-1"
  timeout 900 "$here/restore.sh" pertable 4 "$run" "$OUT/pertable-4-1"
  timeout 900 "$here/restore.sh" myloader 2 "$run" "$OUT/mydumper-2-1"
  timeout 900 "$here/restore.sh" myloader 4 "$run" "$OUT/mydumper-2-1"
done
