#!/bin/bash
# Compressor cost on the dump itself: decompresses $OUT/single-1-1/all.sql.zst to $OUT/all.sql
# once, then times each compressor over it (input from the page cache, output to /dev/null).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); . "$here/env.sh"
f=$OUT/all.sql
[[ -f $f ]] || zstd -dc "$OUT/single-1-1/all.sql.zst" >"$f"
cat "$f" >/dev/null
size=$(stat -c %s "$f")
printf 'compressor\twall_s\tcpu_s\tMB_per_cpu_s\tratio\tload_start\n' | tee "$OUT/compress.tsv"
for c in "zstd -q -1 -T1" "zstd -q -3 -T1" "zstd -q -3 -T2" "zstd -q --fast=1 -T1" "lz4 -q -1" "gzip -1" "gzip -6" \
         ${EXTRA_COMPRESSORS:-}; do
  load=$(cut -d' ' -f1 /proc/loadavg)
  bytes=$(/usr/bin/time -o "$OUT/compress.time" -f '%e %U %S' $c <"$f" | wc -c)
  read -r wall u s <"$OUT/compress.time"
  awk -v c="$c" -v w="$wall" -v u="$u" -v s="$s" -v n="$size" -v b="$bytes" -v l="$load" \
    'BEGIN{printf "%s\t%.1f\t%.1f\t%.0f\t%.2f\t%s\n", c, w, u+s, n/1e6/(u+s), n/b, l}' | tee -a "$OUT/compress.tsv"
done
