#!/bin/bash
# Times one dump method against the benchmark sandbox's replica (whose SQL thread the caller
# has stopped: see bench.sh). Appends one line of results to $OUT/results.tsv.
# usage: dump.sh METHOD WORKERS RUN
#   single      mariadb-dump --single-transaction --routines --triggers --events --databases ... | zstd
#               (zstd -T WORKERS: 1 = one compression thread, the usual command)
#   single-raw  the same to /dev/null, no zstd (the dump's own ceiling)
#   pertable    one schema-only dump, then one mariadb-dump --no-create-info per job (each table
#               over 10 MB alone; the small tables of each database together), WORKERS at a time,
#               each | zstd into its own file
#   mydumper    mydumper --threads WORKERS --compress (gzip: 0.10.0 has no zstd)
#   mydumper-raw  mydumper --threads WORKERS, uncompressed
# ZSTD_LEVEL=N (default 3) changes zstd's level; the result is labelled METHOD-zstdN.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); . "$here/env.sh"
method=$1 workers=${2:-1} run=${3:-1}
level=${ZSTD_LEVEL:-3}; label=$method; [[ $level == 3 ]] || label=$method-zstd$level; export level
host=(-h127.0.0.1 -P"$REPLICA_PORT" -uroot)
dir=$OUT/$label-$workers-$run; rm -rf "$dir"; mkdir -p "$dir"
cpulog=$dir/cpu.log; : >"$cpulog"
sysdbs="'mysql','information_schema','performance_schema','sys'"
dbs=$(mariadb "${host[@]}" -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN ($sysdbs) ORDER BY 1")
data_bytes=$(mariadb "${host[@]}" -N -e "SELECT SUM(data_length) FROM information_schema.tables WHERE table_schema NOT IN ($sysdbs)")
srvpid=$(python3 -c "import json; print([s['pid'] for s in json.load(open('$BKDIR/sandbox.json'))['servers'] if s['name']=='db2'][0])")
srvcpu() { awk '{print $14+$15}' /proc/"$srvpid"/stat; }   # clock ticks, user+system
busycpu() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat; }   # whole machine, clock ticks
T() { /usr/bin/time -a -o "$cpulog" -f "$1 %e %U %S %M" "${@:2}"; }   # name wall user sys maxrss_kb
export -f T; export cpulog

load0=$(cut -d' ' -f1-3 /proc/loadavg); s0=$(srvcpu); b0=$(busycpu); t0=$(date +%s.%N)
case $method in
single)
  T dump mariadb-dump "${host[@]}" --single-transaction --routines --triggers --events --databases $dbs |
    T zstd zstd -q -"$level" -T"$workers" >"$dir/all.sql.zst" ;;
single-raw)
  T dump mariadb-dump "${host[@]}" --single-transaction --routines --triggers --events --databases $dbs >/dev/null ;;
pertable)
  T dump mariadb-dump "${host[@]}" --no-data --routines --triggers --events --databases $dbs |
    T zstd zstd -q -"$level" -T1 >"$dir/schema.sql.zst"
  # jobs, biggest first: "db table..." per line
  mariadb "${host[@]}" -N -e "
    SELECT CONCAT(table_schema,' ',table_name) FROM information_schema.tables
     WHERE table_schema NOT IN ($sysdbs) AND table_type='BASE TABLE' AND data_length > 10*1024*1024
    UNION ALL
    SELECT CONCAT(table_schema,' ',GROUP_CONCAT(table_name SEPARATOR ' ')) FROM information_schema.tables
     WHERE table_schema NOT IN ($sysdbs) AND table_type='BASE TABLE' AND data_length <= 10*1024*1024
     GROUP BY table_schema" >"$dir/jobs"
  export REPLICA_PORT dir
  tr '\n' '\0' <"$dir/jobs" | xargs -0 -P "$workers" -n 1 bash -c '
    set -o pipefail; read -r db tables <<<"$1"; name=$db.$(cut -d" " -f1 <<<"$tables")
    T dump mariadb-dump -h127.0.0.1 -P"$REPLICA_PORT" -uroot --single-transaction --no-create-info \
      --skip-triggers "$db" $tables | T zstd zstd -q -"$level" -T1 >"$dir/$name.sql.zst"' _ ;;
mydumper)
  T mydumper mydumper --host 127.0.0.1 --port "$REPLICA_PORT" --user root --threads "$workers" --compress --triggers --events --routines \
    --regex "^($(tr '\n' '|' <<<"$dbs" | sed 's/|$//'))\." --outputdir "$dir/out" ;;
mydumper-raw)
  T mydumper mydumper --host 127.0.0.1 --port "$REPLICA_PORT" --user root --threads "$workers" --triggers --events --routines \
    --regex "^($(tr '\n' '|' <<<"$dbs" | sed 's/|$//'))\." --outputdir "$dir/out" ;;
*) echo "unknown method $method" >&2; exit 2 ;;
esac
t1=$(date +%s.%N); s1=$(srvcpu); b1=$(busycpu); load1=$(cut -d' ' -f1-3 /proc/loadavg)

# sizes (not timed): compressed = files on disk; uncompressed = decompressed bytes
comp=$(find "$dir" -type f \( -name '*.zst' -o -name '*.gz' -o -name '*.sql' \) -printf '%s\n' | awk '{s+=$1} END{print s+0}')
case $method in
single-raw) unc=NA ;;
mydumper|mydumper-raw) unc=$(find "$dir/out" -type f -name '*.sql*' -print0 | xargs -0 zcat -f | wc -c) ;;
*) unc=$(cat "$dir"/*.zst | zstd -dc | wc -c) ;;
esac
cpu=$(awk '{u[$1]+=$3+$4} END{for(k in u) printf "%s=%.1f ", k, u[k]}' "$cpulog")
clientcpu=$(awk '{s+=$3+$4} END{printf "%.2f", s}' "$cpulog")
hz=$(getconf CLK_TCK)
python3 - "$label" "$workers" "$run" "$t0" "$t1" "$s0" "$s1" "$hz" "$data_bytes" "$unc" "$comp" "$cpu" "$load0" "$load1" "$b0" "$b1" "$clientcpu" "$OUT/results.tsv" <<'PY'
import sys, os
m, w, r, t0, t1, s0, s1, hz, data, unc, comp, cpu, l0, l1, b0, b1, ccpu, path = sys.argv[1:]
other = (int(b1) - int(b0)) / int(hz) - (int(s1) - int(s0)) / int(hz) - float(ccpu)  # CPU s used by everything else
wall = float(t1) - float(t0); srv = (int(s1) - int(s0)) / int(hz)
mb = lambda b: int(b) / 1e6
row = [m, w, r, f"{wall:.1f}", f"{mb(data)/wall:.1f}",
       "NA" if unc == "NA" else f"{mb(unc):.0f}", "NA" if unc == "NA" else f"{mb(unc)/wall:.1f}",
       f"{mb(comp):.0f}", f"{srv:.1f}", cpu.strip(), f"{other:.1f}", l0, l1]
hdr = "method workers run wall_s data_MBps dump_MB dump_MBps compressed_MB server_cpu_s client_cpu_s other_cpu_s load_start load_end".split()
new = not os.path.exists(path)
with open(path, "a") as f:
    if new: f.write("\t".join(hdr) + "\n")
    f.write("\t".join(row) + "\n")
print("\t".join(f"{h}={v}" for h, v in zip(hdr, row)))
PY
