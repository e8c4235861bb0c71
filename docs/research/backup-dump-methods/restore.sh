#!/bin/bash
# Times restoring a dump made by dump.sh into the throw-away server of the sandbox in $RESTORE_DIR
# (kohaproxy sandbox up --dir /tmp/bkrestore --replicas 0 --proxy-port 0). Drops the restored
# databases first; checks row counts and CHECKSUM TABLE of the sbtest tables against the replica
# afterwards (not timed). Appends one line to $OUT/restore.tsv.
# usage: restore.sh METHOD WORKERS RUN SRC_DIR
#   single    zstd -dc all.sql.zst | mariadb
#   pertable  schema.sql.zst first, then each data file: zstd -dc | mariadb DB, WORKERS at a time
#   myloader  myloader --threads WORKERS on a mydumper directory
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); . "$here/env.sh"
RESTORE_DIR=${RESTORE_DIR:-/tmp/bkrestore}
method=$1 workers=$2 run=$3 src=$4
RPORT=$(port_of "$RESTORE_DIR" db1)
rpid=$(python3 -c "import json; print([s['pid'] for s in json.load(open('$RESTORE_DIR/sandbox.json'))['servers'] if s['name']=='db1'][0])")
rs=(-h127.0.0.1 -P"$RPORT" -uroot)
dbs="sbtest koha"
for d in $dbs; do mariadb "${rs[@]}" -e "DROP DATABASE IF EXISTS \`$d\`"; done
cpulog=$(mktemp); export cpulog RPORT
T() { /usr/bin/time -a -o "$cpulog" -f "$1 %e %U %S %M" "${@:2}"; }; export -f T
srvcpu() { awk '{print $14+$15}' /proc/"$rpid"/stat; }
busycpu() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }
load0=$(cut -d' ' -f1-3 /proc/loadavg); s0=$(srvcpu); b0=$(busycpu); t0=$(date +%s.%N)
case $method in
single)
  T zstd zstd -dc "$src/all.sql.zst" | T client mariadb "${rs[@]}" ;;
pertable)
  T zstd zstd -dc "$src/schema.sql.zst" | T client mariadb "${rs[@]}"
  # biggest files first
  ls -S "$src"/*.sql.zst | grep -v '/schema.sql.zst$' | tr '\n' '\0' | xargs -0 -P "$workers" -n 1 bash -c '
    set -o pipefail; f=$1; db=$(basename "$f"); db=${db%%.*}
    T zstd zstd -dc "$f" | T client mariadb -h127.0.0.1 -P"$RPORT" -uroot "$db"' _ ;;
myloader)
  T myloader myloader --host 127.0.0.1 --port "$RPORT" --user root --threads "$workers" \
    --overwrite-tables --directory "$src/out" ;;
*) echo "unknown method $method" >&2; exit 2 ;;
esac
t1=$(date +%s.%N); s1=$(srvcpu); b1=$(busycpu); load1=$(cut -d' ' -f1-3 /proc/loadavg)
hz=$(getconf CLK_TCK)
wall=$(echo "$t1 - $t0" | bc); srv=$(echo "($s1 - $s0) / $hz" | bc -l)
ccpu=$(awk '{s+=$3+$4} END{printf "%.2f", s}' "$cpulog")
cpu=$(awk '{u[$1]+=$3+$4} END{for(k in u) printf "%s=%.1f ", k, u[k]}' "$cpulog")
other=$(echo "($b1 - $b0) / $hz - $srv - $ccpu" | bc -l)
# correctness (not timed)
chk() { mariadb -h127.0.0.1 -P"$1" -uroot -N -e "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema IN ('sbtest','koha'); CHECKSUM TABLE sbtest.sbtest1, sbtest.sbtest2, sbtest.sbtest3, sbtest.sbtest4, sbtest.sbtest5, sbtest.sbtest6, sbtest.sbtest7, sbtest.sbtest8, koha.biblio_metadata, koha.items, koha.systempreferences" | md5sum | cut -c1-8; }
ok=$([[ $(chk "$RPORT") == $(chk "$REPLICA_PORT") ]] && echo same || echo DIFFERENT)
[[ -f $OUT/restore.tsv ]] || printf 'method\tworkers\trun\twall_s\tserver_cpu_s\tclient_cpu_s\tother_cpu_s\tload_start\tload_end\tchecksums_vs_replica\n' >"$OUT/restore.tsv"
printf '%s\t%s\t%s\t%.1f\t%.1f\t%s\t%.1f\t%s\t%s\t%s\n' "$method" "$workers" "$run" "$wall" "$srv" "${cpu% }" "$other" "$load0" "$load1" "$ok" |
  tee -a "$OUT/restore.tsv"
rm -f "$cpulog"
