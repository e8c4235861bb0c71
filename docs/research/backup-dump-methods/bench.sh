#!/bin/bash
# Pauses the replica's SQL thread, runs every dump method ROUNDS times (interleaved), resumes it.
# usage: bench.sh [ROUNDS]      results: $OUT/results.tsv, per-run output and cpu.log in $OUT/*
# FIRST_RUN=N numbers the rounds from N. METHODS="single 1;pertable 4" runs only those (METHOD WORKERS pairs); ZSTD_LEVEL is passed on.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); . "$here/env.sh"
rounds=${1:-2}
r() { mariadb -h127.0.0.1 -P"$REPLICA_PORT" -uroot -N -e "$1"; }
mkdir -p "$OUT"
r "STOP SLAVE SQL_THREAD"
echo "paused at gtid_slave_pos=$(r 'SELECT @@gtid_slave_pos')" | tee -a "$OUT/bench.log"
trap 'r "START SLAVE SQL_THREAD"; echo "resumed: $(r "SELECT @@gtid_slave_pos")" | tee -a "$OUT/bench.log"' EXIT
for run in $(seq "${FIRST_RUN:-1}" "$((${FIRST_RUN:-1} + rounds - 1))"); do
  IFS=';' read -ra ms <<<"${METHODS:-single 1;single 2;single-raw 1;pertable 2;pertable 4;mydumper-raw 2;mydumper-raw 4;mydumper 2;mydumper 4}"
  for m in "${ms[@]}"; do
    set -- $m
    timeout 600 "$here/dump.sh" "$1" "$2" "$run" | tee -a "$OUT/bench.log"
  done
done
echo "gtid_slave_pos at end of dumps=$(r 'SELECT @@gtid_slave_pos')" | tee -a "$OUT/bench.log"
