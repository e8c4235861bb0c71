#!/usr/bin/env bash
# Backup and restore, on one sandbox replica and the same sysbench data, with three tools:
#   kohaproxy    `kohaproxy backup run --config CONFIG` (pauses the replica's SQL thread, per-table
#                mariadb-dump | zstd in parallel, writes <backup.dir>/<id>/ with manifest.json);
#                `--from REPLICA` too when the build has it, so that it reads the same replica as the
#                others; restored with `kohaproxy backup restore <id> --config CONFIG --to
#                HOST:PORT --user root`. Skipped with a note when this build has no `backup` subcommand.
#   mariadb-dump `mariadb-dump --single-transaction --routines --triggers --events --databases DBS
#                | zstd -q -3` (one stream, one zstd thread); restored with `zstd -dc | mariadb`
#                (`mariadb --init-command='SET SESSION sql_log_bin = 0'`).
#   mydumper     `mydumper --threads N --compress` (gzip: Debian's 0.10 has no zstd), under
#                `timeout` because it hung in 2 of 13 runs in docs/research/backup-dump-methods.md;
#                restored with `myloader --threads N`.
# Restores run without binary logging, as kohaproxy's restore and myloader do by default
# (RESTORE_BINLOG=1: with it, for all three: `--keep-binlog`, plain `mariadb`, `myloader -e`).
# DBS = every database on the replica except mysql, information_schema, performance_schema, sys.
# Every restore goes into a fresh, empty server (`kohaproxy sandbox up --replicas 0`), started
# for that restore and stopped after it. After each restore (not timed) the table count and
# CHECKSUM TABLE of every restored table are compared with the source replica.
#
# The data: sysbench oltp tables in `sbtest`, prepared on the master (2 threads, as root); the
# script waits for the replicas to apply it, then reads the whole of it once on the replica
# (the CHECKSUM TABLE the restores are checked against; it also warms the buffer pool).
# The master gets no writes during the dumps and restores.
#
# Then (LATENCY=1, the default) the master's write latency while each tool dumps: a paced write
# load on the master (sysbench oltp_write_only on the same sbtest tables, LAT_RATE tx/s in all,
# Poisson arrivals, LAT_THREADS connections; paced by a Lua wrapper so that latency counts from
# when a transaction was due), LAT_BASE s with no dump, the tool's dump from the same replica
# (no restore), LAT_AFTER s after; per phase tx/s, avg/p95/p99/max latency, the worst second's
# p95, the master's semi-sync ack wait, and the CPU of the master, the replicas, the tool and
# everything else on the machine. About 35 s + the dump per tool. Last, a control with no
# database work: nproc busy loops for LAT_BURN s in place of a dump (CPU contention alone).
#
# Prints a markdown report on stdout (progress goes to stderr) and writes it to
# $RESULTS_DIR/backup-STAMP.md (the path is printed at the end):
#   benches/backup.sh > backup.md          # ~1 GB (8 tables x 500,000 rows), about 5.5 minutes
#   SMALL=1 benches/backup.sh              # ~50 MB, a quick check (about 2.5 minutes after the build)
#   LATENCY=only benches/backup.sh         # only the latency section (no restores), about 3.5 minutes
# Environment (defaults):
#   SMALL=1             DATA_MB=50 instead of 1000
#   DATA_MB=1000        target size of data + indexes in MB; TABLE_SIZE = DATA_MB*4000/TABLES
#                       (sysbench rows take about 250 bytes with their index)
#   TABLES=8 TABLE_SIZE (rows per table; overrides DATA_MB)
#   TOOLS="kohaproxy mariadb-dump mydumper"   which tools to run, in this order
#   ROUNDS=1            times to run every tool (interleaved); one table row per tool and round
#   MYDUMPER_THREADS=2  mydumper's and myloader's --threads; a list ("2 4") runs each
#   ZSTD_LEVEL=3        level of the mariadb-dump row's zstd
#   MYDUMPER_TIMEOUT=300  seconds before a mydumper run counts as hung (then it is killed)
#   STEP_TIMEOUT=3600   seconds any other dump or restore may take
#   REPLICAS=1          replicas in the source sandbox; dumps read the first one (db2). With one
#                       replica, kohaproxy's backup has no other replica to choose.
#   BUFFER_POOL_MB=2048 innodb_buffer_pool_size of every server (the ~1 GB fits)
#   RESTORE_BINLOG=0    1: the restores write the target's binary log (see above)
#   BACKUP_TOML=""      extra lines for the [backup] section of the config kohaproxy backup reads
#   LATENCY=1           0: no latency section; only: the latency section without the dump and
#                       restore runs (loading the data, the catch-up and the checksum still run)
#   LAT_TOOLS="$TOOLS cpu-burn"  tools of the latency section (mydumper with the first
#                       MYDUMPER_THREADS); cpu-burn, a control: nproc busy loops for LAT_BURN s;
#                       also kohaproxy-low, kohaproxy-normal: kohaproxy's backup with
#                       [backup] priority = "low" or "normal" (kohaproxy: the config's, by
#                       default "idle"); kohaproxy-replica-idle: kohaproxy's backup with the
#                       replicas' mariadbd under SCHED_IDLE while it runs; controls
#                       cpu-burn-idle (the busy loops under SCHED_IDLE), zstd-idle (nproc zstd
#                       compressions under SCHED_IDLE), io-write (8 x 50 MB written and synced)
#   LAT_BURN=8          seconds of the cpu-burn control (about as long as a kohaproxy dump)
#   LAT_PIN=0           1: the master and the write load on core 0, the replicas and the dumps
#                       on the other cores (taskset): the master as on a host of its own
#   LAT_RATE=50         transactions/s of the write load, all threads together
#   LAT_THREADS=1       connections of the write load
#   LAT_WARMUP=3 LAT_BASE=15 LAT_AFTER=10   seconds of load not counted, before the dump, after it
#   RESULTS_DIR=target/bench-results
#   KOHAPROXY_BIN       a kohaproxy binary to use (default: target/release/kohaproxy, built first)
#   KEEP=1              keep the temporary directory (sandboxes, dumps, logs)
# Exit status 1 if any dump or restore failed, hung, or restored different data.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

SMALL=${SMALL:-0}
if [[ $SMALL == 1 ]]; then DATA_MB=${DATA_MB:-50}; else DATA_MB=${DATA_MB:-1000}; fi
TABLES=${TABLES:-8}
TABLE_SIZE=${TABLE_SIZE:-$((DATA_MB * 4000 / TABLES))}
TOOLS=${TOOLS:-kohaproxy mariadb-dump mydumper}
ROUNDS=${ROUNDS:-1}
MYDUMPER_THREADS=${MYDUMPER_THREADS:-2}
ZSTD_LEVEL=${ZSTD_LEVEL:-3}
MYDUMPER_TIMEOUT=${MYDUMPER_TIMEOUT:-300}
STEP_TIMEOUT=${STEP_TIMEOUT:-3600}
REPLICAS=${REPLICAS:-1}
BUFFER_POOL_MB=${BUFFER_POOL_MB:-2048}
BACKUP_TOML=${BACKUP_TOML:-}
RESTORE_BINLOG=${RESTORE_BINLOG:-0}
LATENCY=${LATENCY:-1}
LAT_TOOLS=${LAT_TOOLS:-$TOOLS cpu-burn}
LAT_PIN=${LAT_PIN:-0}
LAT_RATE=${LAT_RATE:-50}
LAT_THREADS=${LAT_THREADS:-1}
LAT_WARMUP=${LAT_WARMUP:-3}
LAT_BASE=${LAT_BASE:-15}
LAT_AFTER=${LAT_AFTER:-10}
LAT_BURN=${LAT_BURN:-8}

log() { echo "backup-bench $(date -u +%T): $*" >&2; }

for t in $TOOLS; do
  case $t in
    kohaproxy | mariadb-dump | mydumper) ;;
    *) log "unknown tool '$t' in TOOLS (known: kohaproxy mariadb-dump mydumper)"; exit 2 ;;
  esac
done
for t in $LAT_TOOLS; do
  case $t in
    kohaproxy | kohaproxy-low | kohaproxy-normal | kohaproxy-replica-idle | mariadb-dump | mydumper | cpu-burn | cpu-burn-idle | zstd-idle | io-write) ;;
    *) log "unknown tool '$t' in LAT_TOOLS (known: kohaproxy kohaproxy-low kohaproxy-normal kohaproxy-replica-idle mariadb-dump mydumper cpu-burn cpu-burn-idle zstd-idle io-write)"; exit 2 ;;
  esac
done
case $LATENCY in
  0 | 1 | only) ;;
  *) log "LATENCY must be 0, 1 or only"; exit 2 ;;
esac
for v in LAT_RATE LAT_THREADS LAT_WARMUP LAT_BASE LAT_AFTER LAT_BURN; do
  [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { log "$v must be a whole number above 0"; exit 2; }
done
((REPLICAS >= 1)) || { log "REPLICAS must be at least 1: the dumps read a replica"; exit 2; }
[[ $LAT_PIN == 0 || $LAT_PIN == 1 ]] || { log "LAT_PIN must be 0 or 1"; exit 2; }

need=(mariadb mariadb-dump zstd sysbench python3 timeout)
[[ " $TOOLS $LAT_TOOLS " == *" mydumper "* ]] && need+=(mydumper myloader gzip)
for c in "${need[@]}"; do
  command -v "$c" >/dev/null 2>&1 || {
    log "$c not found (scripts/install-deps.sh; mydumper: apt-get install -y mydumper)"
    exit 1
  }
done

kp_bench_paths "$root"

begin=$SECONDS
started=$(date -u '+%Y-%m-%d %H:%M UTC')
work=$(mktemp -d "${TMPDIR:-/tmp}/kohaproxy-backup-bench.XXXXXX")
src=$work/source
src_up=false restore_dir='' step_pid='' lat_pid=''

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  # a step still running (Ctrl-C): timeout passes the signal on to the step's process group
  [[ -n $step_pid ]] && kp_stop_pid "$step_pid" timeout
  [[ -n $lat_pid ]] && kp_stop_pid "$lat_pid" sysbench
  if [[ -n $restore_dir ]]; then
    kp_sandbox_down "$bin" "$restore_dir" >&2 || log "restore sandbox down failed; see $restore_dir"
  fi
  if $src_up; then
    kp_sandbox_down "$bin" "$src" >&2 || log "sandbox down failed; see $src"
  fi
  kp_remove_work "$work"
  exit "$rc"
}
kp_traps

sql() { mariadb -h127.0.0.1 -P"$1" -uroot -N -B -e "$2"; }

# --- the source cluster and its data ---------------------------------------------------------

log "source sandbox in $src: master + $REPLICAS replica(s), buffer pool ${BUFFER_POOL_MB} MiB"
src_up=true
"$bin" sandbox up --dir "$src" --replicas "$REPLICAS" --proxy-port 0 \
  --buffer-pool-mb "$BUFFER_POOL_MB" >&2
cfg=$src/kohaproxy.toml
master_port=$(kp_master_port "$src")
src_name='' src_port='' src_pids=()
while read -r name _ port pid; do
  [[ $pid != 0 ]] && src_pids+=("$pid")
  if [[ -z $src_port && $port != "$master_port" ]]; then src_name=$name src_port=$port; fi
done < <(kp_sandbox_servers "$src")
[[ -n $src_port ]] || { log "no replica in $src/sandbox.json"; exit 1; }
log "master on 127.0.0.1:$master_port; dumps read $src_name on 127.0.0.1:$src_port"

# backup_toml SRC DST LINES: DST is SRC with LINES ("key = value" lines) in [backup]; a key
# that [backup] already has is replaced
backup_toml() {
  python3 - "$@" <<'EOF'
import sys
src, dst, extra = sys.argv[1], sys.argv[2], sys.argv[3]
lines = open(src, encoding="utf-8").read().splitlines()
heads = [l.strip() for l in lines]
if "[backup]" not in heads:
    lines.append("[backup]")
    heads.append("[backup]")
i = heads.index("[backup]")
end = next((j for j in range(i + 1, len(lines)) if heads[j].startswith("[")), len(lines))
new = [l for l in extra.splitlines() if l.strip()]
keys = {l.split("=")[0].strip() for l in new if "=" in l}
kept = [l for l in lines[i + 1:end] if "=" not in l or l.split("=")[0].strip() not in keys]
open(dst, "w", encoding="utf-8").write("\n".join(lines[:i + 1] + new + kept + lines[end:]) + "\n")
EOF
}
if [[ -n $BACKUP_TOML ]]; then
  backup_toml "$cfg" "$cfg" "$BACKUP_TOML"
fi
# [backup] dir, parallel, compression_level and priority (the crate's defaults: 2, 3, idle)
read -r kp_parallel kp_level kp_priority backup_dir < <(python3 -c '
import sys, tomllib
b = tomllib.load(open(sys.argv[1], "rb")).get("backup", {})
print(b.get("parallel", 2), b.get("compression_level", 3), b.get("priority", "idle"), b.get("dir", "-"))' "$cfg")

log "loading sbtest on the master: $TABLES tables x $TABLE_SIZE rows (sysbench prepare, 2 threads)"
sql "$master_port" 'CREATE DATABASE IF NOT EXISTS sbtest'
t0=$SECONDS
if ! sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$master_port" \
  --mysql-user=root --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE" --threads=2 \
  prepare >"$work/prepare.log" 2>&1; then
  tail -n 20 "$work/prepare.log" >&2
  exit 1
fi
tables_list=$(sql "$master_port" "SELECT GROUP_CONCAT(CONCAT(table_schema,'.',table_name) ORDER BY 1)
  FROM information_schema.tables WHERE table_schema = 'sbtest' AND table_type = 'BASE TABLE'")
sql "$master_port" "ANALYZE TABLE $tables_list" >/dev/null # exact sizes in information_schema
load_s=$((SECONDS - t0))
log "loaded in ${load_s} s; waiting for the replicas to apply it"
gtid=$(sql "$master_port" 'SELECT @@gtid_binlog_pos')
while read -r name _ port _; do
  [[ $port == "$master_port" ]] && continue
  r=$(sql "$port" "SELECT MASTER_GTID_WAIT('$gtid', 1800)")
  [[ $r == 0 ]] || { log "$name did not reach $gtid within 1800 s"; exit 1; }
done < <(kp_sandbox_servers "$src")
catchup_s=$((SECONDS - t0 - load_s))

sysdbs="'mysql','information_schema','performance_schema','sys'"
dbs=$(sql "$src_port" "SELECT GROUP_CONCAT(schema_name ORDER BY 1 SEPARATOR ' ')
  FROM information_schema.schemata WHERE schema_name NOT IN ($sysdbs)")
read -r data_bytes index_bytes ntables < <(sql "$src_port" "SELECT SUM(data_length), SUM(index_length), COUNT(*)
  FROM information_schema.tables WHERE table_schema NOT IN ($sysdbs)")
data_mb=$(awk -v b="$data_bytes" 'BEGIN { printf "%.0f", b / 1e6 }')
index_mb=$(awk -v b="$index_bytes" 'BEGIN { printf "%.0f", b / 1e6 }')
all_tables=$(sql "$src_port" "SELECT GROUP_CONCAT(CONCAT('\`',table_schema,'\`.\`',table_name,'\`') ORDER BY 1)
  FROM information_schema.tables WHERE table_schema NOT IN ($sysdbs) AND table_type = 'BASE TABLE'")
log "on $src_name: databases: $dbs; $ntables tables, $data_mb MB data + $index_mb MB indexes"
if ((data_mb + index_mb < DATA_MB * 8 / 10 || data_mb + index_mb > DATA_MB * 5 / 4)); then
  log "note: data + indexes = $((data_mb + index_mb)) MB, DATA_MB is $DATA_MB"
fi

# fingerprint PORT: table count and CHECKSUM TABLE of every table of the dumped databases.
fingerprint() {
  local in
  in=$(for d in $dbs; do printf "'%s'," "$d"; done)
  sql "$1" "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema IN (${in%,});
    CHECKSUM TABLE $all_tables EXTENDED" | md5sum | cut -c1-12
}
log "checksumming the source (also reads it all into the replica's buffer pool)"
t0=$SECONDS
src_fp=$(fingerprint "$src_port")
log "source fingerprint $src_fp ($((SECONDS - t0)) s)"

# --- measuring one step ----------------------------------------------------------------------

clk_tck=$(getconf CLK_TCK)
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
srv_ticks() {
  local p s=0 t
  for p in "$@"; do
    t=$(kp_cpu_ticks "$p" 2>/dev/null) || t=0
    s=$((s + t))
  done
  echo "$s"
}
# children_cpu FILE: user+system seconds of this shell's reaped children so far, from bash's
# `times` (run in this shell: in a $(...) subshell it would count the subshell's children).
children_cpu() {
  times >"$1"
  awk 'NR == 2 {
    s = 0
    for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] }
    printf "%.2f", s }' "$1"
}

# step TIMEOUT LOG CMD [SERVER_PIDS...]: runs `bash -c CMD` under timeout (its own process
# group, killed as a whole on timeout), output to LOG. Sets step_rc, step_wall (s),
# step_srv (CPU s of the given mariadbd processes), step_cli (CPU s of the step's processes),
# step_other (CPU s the machine spent on anything else meanwhile).
step() {
  local limit=$1 out=$2 cmd=$3 c0 c1 b0 b1 s0 s1 w0 w1
  shift 3
  children_cpu "$work/times" >"$work/times.0"
  c0=$(<"$work/times.0") b0=$(busy_ticks) s0=$(srv_ticks "$@") w0=$EPOCHREALTIME
  timeout -k 10 "$limit" bash -c "set -o pipefail; $cmd" >"$out" 2>&1 </dev/null &
  step_pid=$!
  step_rc=0
  wait "$step_pid" || step_rc=$?
  step_pid=''
  w1=$EPOCHREALTIME
  children_cpu "$work/times" >"$work/times.1"
  s1=$(srv_ticks "$@") b1=$(busy_ticks) c1=$(<"$work/times.1")
  step_wall=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.1f", b - a }')
  step_srv=$(awk -v a="$s0" -v b="$s1" -v hz="$clk_tck" 'BEGIN { printf "%.1f", (b - a) / hz }')
  step_cli=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", b - a }')
  step_other=$(awk -v a="$b0" -v b="$b1" -v hz="$clk_tck" -v s="$step_srv" -v c="$step_cli" \
    'BEGIN { o = (b - a) / hz - s - c; printf "%.1f", (o < 0 && o > -0.5) ? 0 : o }')
}
first_error() { grep -m1 -i -E 'error|fatal|fail|denied' "$1" | cut -c1-160 | tr '|' '/' || tail -n1 "$1" | cut -c1-160 | tr '|' '/'; }

# sizes DIR: "OUTPUT_MB SQL_MB": bytes of every file under DIR, and the bytes of SQL they hold
# (.zst and .gz decompressed, .sql as is; manifests and mydumper's metadata not counted).
sizes() {
  local out sqlb
  out=$(find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  sqlb=$(find "$1" -type f \( -name '*.zst' -o -name '*.gz' -o -name '*.sql' \) -print0 | sort -z |
    while IFS= read -r -d '' f; do
      case $f in
        *.zst) zstd -q -dc "$f" ;;
        *.gz) gzip -dc "$f" ;;
        *) cat "$f" ;;
      esac
    done | wc -c)
  awk -v o="$out" -v s="$sqlb" 'BEGIN { printf "%.0f %.0f\n", o / 1e6, s / 1e6 }'
}

# fresh_target: starts an empty server for one restore; sets restore_dir, dst_port, dst_pid.
fresh_target() {
  restore_dir=$work/restore-$1
  "$bin" sandbox up --dir "$restore_dir" --replicas 0 --proxy-port 0 \
    --buffer-pool-mb "$BUFFER_POOL_MB" >"$work/restore-$1.up.log" 2>&1 || {
    cat "$work/restore-$1.up.log" >&2
    return 1
  }
  dst_port=$(kp_master_port "$restore_dir")
  dst_pid=$(kp_sandbox_servers "$restore_dir" | awk 'NR == 1 { print $4 }')
}
drop_target() {
  kp_sandbox_down "$bin" "$restore_dir" >/dev/null 2>&1 || log "restore sandbox down failed: $restore_dir"
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$restore_dir"
  restore_dir=''
}

sql_running() { mariadb -h127.0.0.1 -P"$src_port" -uroot -e 'SHOW SLAVE STATUS\G' | awk '$1 == "Slave_SQL_Running:" { print $2 }'; }

rows=()
failed=0
fmt_cpu() { echo "$step_srv / $step_cli / $step_other"; }

# dump_cmd_for TOOL THREADS DIR: sets label, dump_cmd (writing into DIR; kohaproxy writes into
# [backup] dir) and limit (its timeout); returns 1 (with a log line) when this build has no
# `kohaproxy backup`.
dump_cmd_for() {
  local tool=$1 threads=$2 dir=$3
  limit=$STEP_TIMEOUT
  case $tool in
    kohaproxy | kohaproxy-low | kohaproxy-normal | kohaproxy-replica-idle)
      label="kohaproxy backup (parallel $kp_parallel, zstd -$kp_level, priority $kp_priority)"
      if ! "$bin" backup --help >/dev/null 2>&1; then
        log "$label: skipped, \`$bin backup --help\` fails (the subcommand does not exist yet)"
        return 1
      fi
      local config=$cfg
      if [[ $tool == kohaproxy-low || $tool == kohaproxy-normal ]]; then # latency section only: the same at another priority
        config=$work/$tool.toml
        backup_toml "$cfg" "$config" "priority = \"${tool#kohaproxy-}\""
        label=${label/priority $kp_priority/priority ${tool#kohaproxy-}}
      fi
      dump_cmd="'$bin' backup run --config '$config'"
      if "$bin" backup run --help 2>/dev/null | grep -q -- '--from'; then
        dump_cmd+=" --from $src_name"
      fi
      if [[ $tool == kohaproxy-replica-idle ]]; then
        # latency section only: the replicas' mariadbd (all threads) under SCHED_IDLE while
        # the dump runs, so that their CPU stops competing with the master's, as it would
        # with the replica on a host of its own; set back to SCHED_OTHER after
        label+=", replicas' mariadbd under SCHED_IDLE"
        local pids=${replica_pids[*]}
        dump_cmd="for p in $pids; do chrt --idle -a -p 0 \$p >/dev/null; done; $dump_cmd; rc=\$?; for p in $pids; do chrt --other -a -p 0 \$p >/dev/null; done; exit \$rc"
      fi
      ;;
    mariadb-dump)
      label="mariadb-dump \\| zstd -$ZSTD_LEVEL"
      dump_cmd="mariadb-dump -h127.0.0.1 -P$src_port -uroot --single-transaction --routines --triggers --events --databases $dbs | zstd -q -$ZSTD_LEVEL -o '$dir/all.sql.zst'"
      ;;
    mydumper)
      label="mydumper --threads $threads --compress (gzip)"
      limit=$MYDUMPER_TIMEOUT
      dump_cmd="mydumper --host 127.0.0.1 --port $src_port --user root --threads $threads --compress --triggers --events --routines --regex '^(${dbs// /|})\\.' --outputdir '$dir/out' --verbose 3"
      ;;
    cpu-burn) # the latency section's control: as much CPU as the dumps take, no database work
      label="control: $(nproc) busy loops for $LAT_BURN s, no database"
      dump_cmd="for i in \$(seq $(nproc)); do timeout $LAT_BURN sh -c 'while :; do :; done' & done; wait"
      ;;
    io-write) # a control: as many bytes as kohaproxy's dump writes, 8 files of 50 MB, each synced
      label="control: 8 x 50 MB written and synced under chrt --idle 0, no database"
      dump_cmd="for i in 1 2 3 4 5 6 7 8; do chrt --idle 0 dd if=/dev/zero of='$dir/io-\$i' bs=1M count=50 conv=fsync status=none || exit 1; done"
      ;;
    zstd-idle) # a control: compression (memory and cache traffic, unlike the busy loops) under SCHED_IDLE
      label="control: $(nproc) zstd -$ZSTD_LEVEL of SQL text for $LAT_BURN s under chrt --idle 0, no database, no disk"
      dump_cmd="for i in \$(seq $(nproc)); do timeout $LAT_BURN chrt --idle 0 sh -c \"yes \\\"INSERT INTO sbtest1 VALUES (\\\$i,'83868641912-28773972837-60736120486-75162659906-27563526494')\\\" | zstd -q -$ZSTD_LEVEL >/dev/null\" & done; wait; exit 0"
      ;;
    cpu-burn-idle) # the same busy loops under SCHED_IDLE
      label="control: $(nproc) busy loops for $LAT_BURN s under chrt --idle 0, no database"
      dump_cmd="for i in \$(seq $(nproc)); do chrt --idle 0 timeout $LAT_BURN sh -c 'while :; do :; done' & done; wait"
      ;;
  esac
}

# backup_id_of LOG: the id in kohaproxy backup's last line, "backup ID ok ...".
backup_id_of() {
  local id
  id=$(awk 'NF { last = $0 } END { split(last, f, " "); if (f[1] == "backup" && f[3] == "ok") print f[2] }' "$1")
  # stdout and stderr share the log; if the last line is a log line, look for the line itself
  [[ -n $id ]] || id=$(awk '$1 == "backup" && $3 == "ok" { id = $2 } END { print id }' "$1")
  echo "$id"
}

# run_tool TOOL THREADS ROUND: one dump and its restore; appends a table row.
run_tool() {
  local tool=$1 threads=$2 round=$3 label dir dump_cmd restore_cmd limit id='' note=''
  local d_wall='-' mbps='-' out_mb='-' sql_mb='-' r_wall='-' check='-' d_cpu='-' r_cpu='-'
  local tag=$tool-$threads-$round
  dir=$work/dumps/$tag
  mkdir -p "$dir"
  if ! dump_cmd_for "$tool" "$threads" "$dir"; then
    rows+=("| $label | - | - | - | - | - | - | - | - | pending: this build has no \`kohaproxy backup\` subcommand |")
    return 0
  fi
  ((ROUNDS == 1)) || label="$label, round $round"

  log "$label: dump"
  step "$limit" "$work/$tag.dump.log" "$dump_cmd" "${src_pids[@]}"
  d_wall=$step_wall d_cpu=$(fmt_cpu)
  if ((step_rc != 0)); then
    failed=1
    if ((step_rc == 124 || step_rc == 137)); then
      if [[ $tool == mydumper ]]; then
        note="HUNG: killed after $limit s ($(find "$dir/out" -type f -name '*.sql.gz' 2>/dev/null | wc -l) data files written; myloader not run)"
      else
        note="dump timed out after $limit s"
      fi
      d_wall=">$limit"
    else
      note="dump FAILED (exit $step_rc): $(first_error "$work/$tag.dump.log")"
    fi
    log "$label: $note"
    rows+=("| $label | $d_wall | - | - | - | - | - | $d_cpu | - | $note |")
    if [[ $tool == kohaproxy && $(sql_running) != Yes ]]; then
      rows[-1]="${rows[-1]% |} ; the replica's SQL thread was left stopped (restarted by the script) |"
      sql "$src_port" 'START SLAVE SQL_THREAD' || true
    fi
    return 0
  fi
  case $tool in
    kohaproxy)
      id=$(backup_id_of "$work/$tag.dump.log")
      if [[ -z $id || -z $backup_dir || ! -d $backup_dir/$id ]]; then
        failed=1
        note="no backup id or directory (last line: $(tail -n1 "$work/$tag.dump.log" | cut -c1-100 | tr '|' '/'); [backup] dir = ${backup_dir:-unset})"
        rows+=("| $label | $d_wall | - | - | - | - | - | $d_cpu | - | $note |")
        log "$label: $note"
        return 0
      fi
      dir=$backup_dir/$id
      if [[ $(sql_running) != Yes ]]; then
        note="the replica's SQL thread was still stopped after the backup (restarted by the script); "
        sql "$src_port" 'START SLAVE SQL_THREAD' || true
      fi
      if [[ -f $dir/manifest.json ]]; then
        note+="backup $id; $(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
keys = [k for k in ("server", "replica", "source", "from", "host") if isinstance(m.get(k), (str, int))]
print(", ".join(f"{k} {m[k]}" for k in keys) or "manifest.json present")' "$dir/manifest.json" 2>/dev/null || echo 'manifest.json unreadable')"
      else
        note+="backup $id; no manifest.json"
      fi
      restore_cmd="'$bin' backup restore '$id' --config '$cfg' --to 127.0.0.1:\$DST_PORT --user root"
      [[ $RESTORE_BINLOG == 1 ]] && restore_cmd+=" --keep-binlog"
      ;;
    mariadb-dump)
      restore_cmd="zstd -q -dc '$dir/all.sql.zst' | mariadb -h127.0.0.1 -P\$DST_PORT -uroot"
      [[ $RESTORE_BINLOG == 1 ]] || restore_cmd+=" '--init-command=SET SESSION sql_log_bin = 0'"
      ;;
    mydumper)
      restore_cmd="myloader --host 127.0.0.1 --port \$DST_PORT --user root --threads $threads --directory '$dir/out' --verbose 3"
      [[ $RESTORE_BINLOG == 1 ]] && restore_cmd+=" --enable-binlog"
      ;;
  esac
  read -r out_mb sql_mb < <(sizes "$dir")
  mbps=$(awk -v b="$data_bytes" -v w="$d_wall" 'BEGIN { printf "%.0f", b / 1e6 / (w > 0 ? w : 0.1) }')
  log "$label: dump $d_wall s, $out_mb MB on disk ($sql_mb MB of SQL)"

  log "$label: restore into a fresh server"
  if ! fresh_target "$tag"; then
    failed=1
    rows+=("| $label | $d_wall | $mbps | $out_mb | $sql_mb | - | - | $d_cpu | - | ${note:+$note; }could not start the restore server |")
    return 0
  fi
  step "$STEP_TIMEOUT" "$work/$tag.restore.log" "DST_PORT=$dst_port; $restore_cmd" "$dst_pid" "${src_pids[@]}"
  r_wall=$step_wall r_cpu=$(fmt_cpu)
  if ((step_rc != 0)); then
    failed=1
    if ((step_rc == 124 || step_rc == 137)); then
      note+="${note:+; }restore timed out after $STEP_TIMEOUT s"
      r_wall=">$STEP_TIMEOUT"
    else
      note+="${note:+; }restore FAILED (exit $step_rc): $(first_error "$work/$tag.restore.log")"
    fi
  else
    log "$label: restored in $r_wall s; checking"
    if [[ $(fingerprint "$dst_port" 2>/dev/null) == "$src_fp" ]]; then
      check=same
    else
      check=DIFFERENT failed=1
    fi
  fi
  drop_target
  log "$label: restore $r_wall s, $check"
  rows+=("| $label | $d_wall | $mbps | $out_mb | $sql_mb | $r_wall | $check | $d_cpu | $r_cpu | ${note:--} |")
}

if [[ $LATENCY != only ]]; then
  for ((round = 1; round <= ROUNDS; round++)); do
    for tool in $TOOLS; do
      if [[ $tool == mydumper ]]; then
        for th in $MYDUMPER_THREADS; do run_tool mydumper "$th" "$round"; done
      else
        run_tool "$tool" 1 "$round"
      fi
    done
  done
fi

# --- the master's write latency while each tool dumps ----------------------------------------
#
# For each tool of LAT_TOOLS: a paced write load on the master (sysbench oltp_write_only on the
# same sbtest tables the dumps read, LAT_RATE transactions/s in all, Poisson arrivals, over
# LAT_THREADS connections), LAT_WARMUP s not counted, LAT_BASE s with no dump (baseline), then
# the dump from the replica (during), then LAT_AFTER s (after; kohaproxy's replica catches up
# then). No restores here. Each transaction's scheduled start, start and end are logged by
# the Lua wrapper below; lat_report turns them into one table row per phase.

# write_lat_lua FILE: oltp_write_only, paced by the wrapper rather than by sysbench's --rate,
# because sysbench 1.0 counts latency from when a thread takes the event, not from when it
# was due: a stall would show as one slow transaction instead of every one queued behind it.
write_lat_lua() {
  cat >"$1" <<'EOF'
-- Written by benches/backup.sh. sysbench's oltp_write_only, paced: Poisson arrivals at
-- KP_LAT_RATE transactions/s over all threads. One line per transaction into
-- KP_LAT_OUT.<thread>: "due start end" (CLOCK_REALTIME seconds). Stops at the first
-- transaction due once the file KP_LAT_STOP exists.
require("oltp_write_only")
local ffi = require("ffi")
pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } kp_timespec;
int clock_gettime(int clk_id, kp_timespec *tp);
int usleep(unsigned int usec);
]])
local ts = ffi.new("kp_timespec")
local function now()
  ffi.C.clock_gettime(0, ts) -- CLOCK_REALTIME, as bash's EPOCHREALTIME
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end
local out, due, rate
local inner_init, inner_event = thread_init, event
function thread_init(thread_id)
  inner_init(thread_id)
  rate = tonumber(os.getenv("KP_LAT_RATE")) / sysbench.opt.threads
  out = assert(io.open(os.getenv("KP_LAT_OUT") .. "." .. thread_id, "w"))
  out:setvbuf("line")
end
function event()
  local t = now()
  due = (due or t) - math.log(1 - sysbench.rand.uniform_double()) / rate
  if due > t then ffi.C.usleep((due - t) * 1e6) end
  local f = io.open(os.getenv("KP_LAT_STOP"))
  if f then
    f:close()
    return true
  end
  local t0 = now()
  while true do -- a deadlock (sysbench's ignored errors) retries within the same transaction
    local ok, err = pcall(inner_event)
    if ok then break end
    if type(err) ~= "table" or err.errcode ~= sysbench.error.RESTART_EVENT then error(err, 0) end
    if sysbench.hooks.before_restart_event then sysbench.hooks.before_restart_event(err) end
  end
  out:write(string.format("%.6f %.6f %.6f\n", due, t0, now()))
end
-- sysbench's own latency figures would include the pacing sleep: not printed
function sysbench.hooks.report_cumulative(stat)
  print(string.format("transactions: %d, errors: %d, reconnects: %d (latencies: KP_LAT_OUT files)",
    tonumber(stat.events), tonumber(stat.errors), tonumber(stat.reconnects)))
end
EOF
}

# lat_sample: "EPOCH BUSY MASTER REPLICAS SYSBENCH WAIT_US WAITS NO_TX": the time, CPU ticks so
# far of the machine (busy), the master's and the replicas' mariadbd and the load's sysbench,
# and the master's semi-sync counters: microseconds commits waited for a replica's ack, commits
# that waited, commits that got no ack in time (rpl_semi_sync_master_timeout).
lat_sample() {
  local t=$EPOCHREALTIME cpu semi
  cpu="$(busy_ticks) $(srv_ticks "${master_pids[@]}") $(srv_ticks "${replica_pids[@]}") $(srv_ticks "$lat_pid")"
  semi=$(sql "$master_port" "SELECT
      COALESCE(SUM(IF(variable_name = 'RPL_SEMI_SYNC_MASTER_TX_WAIT_TIME', variable_value, 0)), 0),
      COALESCE(SUM(IF(variable_name = 'RPL_SEMI_SYNC_MASTER_TX_WAITS', variable_value, 0)), 0),
      COALESCE(SUM(IF(variable_name = 'RPL_SEMI_SYNC_MASTER_NO_TX', variable_value, 0)), 0)
    FROM information_schema.global_status WHERE variable_name LIKE 'RPL_SEMI_SYNC_MASTER_%'" | tr '\t' ' ') || semi='0 0 0'
  echo "$t $cpu $semi"
}

# lat_run TOOL THREADS: the three phases for one tool; appends to $work/lat-phases.
lat_run() {
  local tool=$1 threads=$2 label dump_cmd limit dir=$work/lat-dumps/$1 tag note=''
  local s0 s1 s2 s3 i id gtid t0 catchup load
  lat_n=$((lat_n + 1))
  tag=lat-$lat_n-$tool
  mkdir -p "$dir"
  if ! dump_cmd_for "$tool" "$threads" "$dir"; then
    lat_rows+=("| $label | - | - | - | - | - | - | - | - | - | - | - | - | pending: this build has no \`kohaproxy backup\` subcommand |")
    return 0
  fi
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  rm -f "$work/$tag.out".* "$work/lat.stop"
  log "latency, $label: load on the master ($LAT_RATE tx/s), ${LAT_WARMUP} s warm-up, ${LAT_BASE} s baseline (load average $load)"
  if [[ $LAT_PIN == 1 ]]; then
    dump_cmd="taskset -c 1-$(($(nproc) - 1)) bash -c $(printf '%q' "set -o pipefail; $dump_cmd")"
  fi
  KP_LAT_RATE=$LAT_RATE KP_LAT_STOP=$work/lat.stop KP_LAT_OUT=$work/$tag.out \
    "${lat_pin_load[@]}" sysbench "$work/lat.lua" --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$master_port" \
    --mysql-user=root --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE" \
    --threads="$LAT_THREADS" --time=$((LAT_WARMUP + LAT_BASE + ${limit%.*} + LAT_AFTER + 60)) \
    run >"$work/$tag.sysbench.log" 2>&1 </dev/null &
  lat_pid=$!
  sleep "$LAT_WARMUP"
  if ! kp_alive "$lat_pid" sysbench || ! compgen -G "$work/$tag.out.*" >/dev/null; then
    failed=1
    lat_rows+=("| $label | - | - | - | - | - | - | - | - | - | - | - | - | the write load did not start: $(first_error "$work/$tag.sysbench.log") |")
    kp_stop_pid "$lat_pid" sysbench
    lat_pid=''
    return 0
  fi
  s0=$(lat_sample)
  sleep "$LAT_BASE"
  s1=$(lat_sample)
  log "latency, $label: dump"
  step "$limit" "$work/$tag.dump.log" "$dump_cmd" "${src_pids[@]}"
  s2=$(lat_sample)
  if ((step_rc != 0)); then
    failed=1
    if ((step_rc == 124 || step_rc == 137)); then note="dump killed after $limit s"; else note="dump FAILED (exit $step_rc): $(first_error "$work/$tag.dump.log")"; fi
  fi
  if [[ $tool == kohaproxy* && $(sql_running) != Yes ]]; then
    note+="${note:+; }the replica's SQL thread was left stopped (restarted by the script)"
    sql "$src_port" 'START SLAVE SQL_THREAD' || true
  fi
  log "latency, $label: dump $step_wall s (exit $step_rc); ${LAT_AFTER} s after"
  sleep "$LAT_AFTER"
  s3=$(lat_sample)
  touch "$work/lat.stop"
  for ((i = 0; i < 100; i++)); do
    kp_alive "$lat_pid" sysbench || break
    sleep 0.1
  done
  if kp_alive "$lat_pid" sysbench; then
    note+="${note:+; }sysbench did not stop by itself (killed)"
  fi
  kp_stop_pid "$lat_pid" sysbench # reaps it
  lat_pid=''
  # the replica applies what it missed (kohaproxy: all writes of the dump), before the next tool
  gtid=$(sql "$master_port" 'SELECT @@gtid_binlog_pos')
  t0=$EPOCHREALTIME
  if [[ $(sql "$src_port" "SELECT MASTER_GTID_WAIT('$gtid', 300)") != 0 ]]; then
    note+="${note:+; }$src_name not caught up 300 s after the load"
  fi
  catchup=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  ((${catchup%.*} < 1)) || note+="${note:+; }$src_name caught up $catchup s after the load stopped"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$load" "$s0" "$s1" "$s2" "$s3" "$step_cli" "$work/$tag.out" "${note:--}" >>"$work/lat-phases"
  if [[ $tool == kohaproxy* ]]; then
    id=$(backup_id_of "$work/$tag.dump.log")
    [[ -n $id && $backup_dir != - ]] && rm -rf "${backup_dir:?}/$id"
  fi
  rm -rf "$dir"
}

# lat_report: the markdown rows for $work/lat-phases (and $work/lat-seconds.txt, per second).
lat_report() {
  python3 - "$work/lat-phases" "$clk_tck" "$work/lat-seconds.txt" <<'EOF'
import glob, math, sys
phases_file, hz, seconds_file = sys.argv[1], float(sys.argv[2]), sys.argv[3]

def pct(xs, p):  # nearest rank
    return xs[max(0, math.ceil(p * len(xs)) - 1)] if xs else float("nan")

def f(x, d=1):
    return "-" if x != x else f"{x:.{d}f}"

rows, base_avg, base_p95 = [], [], []
per_second = open(seconds_file, "w")
per_second.write("tool\tphase\tsecond\ttx\tp95 ms\tmax ms\n")
for line in open(phases_file):
    label, load, s0, s1, s2, s3, tool_cpu, out, note = line.rstrip("\n").split("\t")
    tx = []
    for path in glob.glob(out + ".*"):
        for l in open(path):
            due, start, end = map(float, l.split())
            tx.append((end, (end - due) * 1000))
    samples = [list(map(float, s.split())) for s in (s0, s1, s2, s3)]
    base = None
    for i, phase in enumerate(("baseline", "during the dump", "after")):
        a, b = samples[i], samples[i + 1]
        wall = b[0] - a[0]
        lat = sorted(ms for end, ms in tx if a[0] <= end < b[0])
        n = len(lat)
        p95s = []  # of every whole second of the phase with at least 10 transactions
        for sec in range(int(wall)):
            xs = sorted(ms for end, ms in tx if a[0] + sec <= end < a[0] + sec + 1)
            if xs:
                per_second.write(f"{label}\t{phase}\t{sec}\t{len(xs)}\t{pct(xs, 0.95):.2f}\t{xs[-1]:.2f}\n")
            if len(xs) >= 10:
                p95s.append(pct(xs, 0.95))
        worst = max(p95s) if p95s else float("nan")
        avg = sum(lat) / n if n else float("nan")
        p95 = pct(lat, 0.95)
        if i == 0:
            base = p95
            if n:
                base_avg.append(avg)
                base_p95.append(p95)
        cores = [(b[k] - a[k]) / hz / wall for k in range(1, 5)]  # busy, master, replicas, sysbench
        tool = float(tool_cpu) / wall if i == 1 and tool_cpu not in ("", "-") else 0.0
        other = cores[0] - cores[1] - cores[2] - cores[3] - tool
        cpu = f"{cores[1]:.2f} / {cores[2]:.2f} / {f(tool, 2) if i == 1 else '-'} / {cores[3]:.2f} / {max(other, 0):.2f}"
        ratio = "-" if i == 0 or not (p95 == p95 and base) else f"{p95 / base:.2f}"
        waits = b[6] - a[6]
        semi = f"{(b[5] - a[5]) / waits / 1000:.2f}" if waits > 0 else "-"
        semi += f" ({b[7] - a[7]:.0f})"
        rows.append(f"| {label} | {phase} | {wall:.1f} | {n} | {n / wall:.1f} | {f(avg, 2)} | {f(p95, 2)} | "
                    f"{f(pct(lat, 0.99), 2)} | {f(lat[-1] if lat else float('nan'), 1)} | {f(worst, 2)} | {ratio} | {semi} | "
                    f"{cpu} | {'load average ' + load + ' before' if i == 0 else (note if i == 1 else '-')} |")
print("\n".join(rows))
if len(base_p95) > 1:
    print(f"\nBaselines of the {len(base_p95)} runs (no dump): avg {min(base_avg):.2f}-{max(base_avg):.2f} ms, "
          f"p95 {min(base_p95):.2f}-{max(base_p95):.2f} ms.")
EOF
}

# lat_settle: has the source servers write out their dirty InnoDB pages (most of them from
# loading the data; with the default innodb_io_capacity an idle server takes minutes), then the
# file system its dirty pages, so that the first baseline does not run into that flushing.
# Sets lat_settled.
lat_settle() {
  local port ports=() old=() dirty=0 first='' t0=$EPOCHREALTIME i pct cap cap_max
  while read -r _ _ port _; do ports+=("$port"); done < <(kp_sandbox_servers "$src")
  for port in "${ports[@]}"; do
    old+=("$(sql "$port" 'SELECT CONCAT_WS(",", @@innodb_max_dirty_pages_pct, @@innodb_io_capacity, @@innodb_io_capacity_max)')")
    sql "$port" 'SET GLOBAL innodb_io_capacity_max = 20000; SET GLOBAL innodb_io_capacity = 20000;
      SET GLOBAL innodb_max_dirty_pages_pct = 0'
  done
  for ((i = 0; i < 300; i++)); do
    dirty=0
    for port in "${ports[@]}"; do
      dirty=$((dirty + $(sql "$port" "SELECT variable_value FROM information_schema.global_status
        WHERE variable_name = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")))
    done
    [[ -n $first ]] || first=$dirty
    ((dirty > 100)) || break
    sleep 1
  done
  for i in "${!ports[@]}"; do
    IFS=, read -r pct cap cap_max <<<"${old[$i]}"
    sql "${ports[$i]}" "SET GLOBAL innodb_max_dirty_pages_pct = $pct; SET GLOBAL innodb_io_capacity = $cap;
      SET GLOBAL innodb_io_capacity_max = $cap_max"
  done
  lat_settled="$first dirty InnoDB pages on the source servers written out in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s ($dirty left)"
  # and the kernel's dirty page cache (binary and relay logs, dump files): its writeback
  # stalls the master's fsyncs for 100-200 ms at a time in the minute after loading the data
  t0=$EPOCHREALTIME
  dirty=$(awk '/^Dirty:/ { printf "%.0f", $2 / 1024 }' /proc/meminfo)
  sync -f "$work" 2>/dev/null || sync
  lat_settled+=", then $dirty MB of the machine's dirty page cache in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s (\`sync\`)"
}

lat_rows=()
lat_load_before='' lat_n=0 lat_settled=''
if [[ $LATENCY != 0 ]]; then
  master_pids=() replica_pids=()
  while read -r _ _ port pid; do
    [[ $pid == 0 ]] && continue
    if [[ $port == "$master_port" ]]; then master_pids+=("$pid"); else replica_pids+=("$pid"); fi
  done < <(kp_sandbox_servers "$src")
  lat_pin_load=()
  if [[ $LAT_PIN == 1 ]]; then
    if (($(nproc) < 2)); then
      log "LAT_PIN=1 needs 2 cores or more"
      exit 2
    fi
    log "latency: the master and the write load on core 0, the replicas and the dumps on cores 1-$(($(nproc) - 1))"
    for p in "${master_pids[@]}"; do taskset -a -p -c 0 "$p" >/dev/null; done
    for p in "${replica_pids[@]}"; do taskset -a -p -c "1-$(($(nproc) - 1))" "$p" >/dev/null; done
    lat_pin_load=(taskset -c 0)
  fi
  log "latency: writing out the source servers' dirty pages first"
  lat_settle
  log "latency: $lat_settled"
  write_lat_lua "$work/lat.lua"
  : >"$work/lat-phases"
  lat_load_before=$(cut -d' ' -f1-3 /proc/loadavg)
  for tool in $LAT_TOOLS; do
    lat_run "$tool" "${MYDUMPER_THREADS%% *}"
  done
fi

# --- the report ------------------------------------------------------------------------------

elapsed=$((SECONDS - begin))
stamp=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$results_dir"
report=$results_dir/backup-$stamp.md
cmdline="benches/backup.sh"
for v in SMALL DATA_MB TABLES TABLE_SIZE TOOLS ROUNDS MYDUMPER_THREADS ZSTD_LEVEL MYDUMPER_TIMEOUT STEP_TIMEOUT REPLICAS BUFFER_POOL_MB RESTORE_BINLOG BACKUP_TOML LATENCY LAT_TOOLS LAT_RATE LAT_THREADS LAT_WARMUP LAT_BASE LAT_AFTER LAT_BURN LAT_PIN; do
  if printenv "$v" >/dev/null; then
    if [[ ${!v} =~ ^[A-Za-z0-9._/-]*$ ]]; then cmdline="$v=${!v} $cmdline"; else cmdline="$v='${!v}' $cmdline"; fi
  fi
done
# shellcheck disable=SC2016 # backticks for markdown
if [[ $RESTORE_BINLOG == 1 ]]; then
  binlog_note='every restore writing the binary log (`RESTORE_BINLOG=1`)'
else
  binlog_note='every restore with the binary log off for its sessions (`sql_log_bin = 0`; kohaproxy and myloader do that by default)'
fi
tool_versions="$(mariadb-dump --version | awk '{ print "mariadb-dump", $3 }'), $(zstd --version | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^v[0-9]/) { sub(/,$/, "", $i); print "zstd", $i; exit } }')"
if command -v mydumper >/dev/null; then
  tool_versions+=", $(mydumper --version | awk '{ print "mydumper", $2 }' | tr -d ,)"
fi
{
  cat <<EOF
## Backup and restore: kohaproxy backup, mariadb-dump | zstd, mydumper

Run $started, $((elapsed / 60)) min $((elapsed % 60)) s in all (load ${load_s} s, replica catch-up ${catchup_s} s). Command: \`$cmdline\`

| item | value |
|---|---|
| CPU | $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) |
| RAM | $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) |
| load average at the end | $(cut -d' ' -f1-3 /proc/loadavg) |
| MariaDB | $(sql "$src_port" 'SELECT VERSION()'), buffer pool ${BUFFER_POOL_MB} MiB on every server |
| tools | $tool_versions |
| source | $src_name, a replica of a sandbox master (+ $REPLICAS replica(s)); the master idle during the dump and restore runs (the latency runs write to it) |
| data | databases \`$dbs\`: $TABLES sysbench tables x $TABLE_SIZE rows; information_schema: $data_mb MB data + $index_mb MB indexes |

EOF
  if [[ $LATENCY != only ]]; then
    cat <<EOF

| tool | dump wall s | MB/s | output MB | SQL MB | restore wall s | restored = source | dump CPU s (server / tool / other) | restore CPU s (server / tool / other) | notes |
|---|---|---|---|---|---|---|---|---|---|
EOF
    printf '%s\n' "${rows[@]}"
    cat <<EOF

- MB/s: the table data (information_schema \`data_length\`, $data_mb MB, indexes not counted) over the dump's wall time.
- output MB: every file the dump wrote (compressed). SQL MB: the SQL those files hold, decompressed.
- restore: into a fresh empty server (\`kohaproxy sandbox up --replicas 0\`, binlog on,
  \`innodb_flush_log_at_trx_commit=1\`) as root, $binlog_note; restored = source: the table count and
  \`CHECKSUM TABLE ... EXTENDED\` of every table equal the source replica's (checked after the timing).
- CPU s: server = the sandbox's mariadbd processes (the source cluster, and the restore server
  for restores); tool = the dump or restore command and everything it started; other = the
  rest of the machine's busy CPU meanwhile (other users' jobs; near 0 on a quiet machine).
EOF
  fi
  if [[ $LATENCY != 0 ]]; then
    cat <<EOF

### The master's write latency while each tool dumps

A paced write load on the master, \`oltp_write_only\` (BEGIN, 2 UPDATEs, DELETE, INSERT, COMMIT) on the
same sbtest tables the dumps read: $LAT_RATE transactions/s in all (Poisson arrivals) over $LAT_THREADS
connection(s). Per tool: ${LAT_WARMUP} s warm-up (not counted), ${LAT_BASE} s with no dump (baseline), the dump
from $src_name (the same command as above; output deleted after, no restore), ${LAT_AFTER} s after it. The
control row runs $(nproc) shell busy loops (\`while :; do :; done\`, no I/O, no database) for ${LAT_BURN} s in
place of a dump: what CPU contention alone does to the master.
Before the first run: $lat_settled
(\`innodb_max_dirty_pages_pct = 0\` and \`innodb_io_capacity\` 20000 for that while); load average
$lat_load_before.

| tool | phase | s | tx | tx/s | avg ms | p95 ms | p99 ms | max ms | worst 1-s p95 ms | p95 / baseline | semi-sync ack wait ms/commit (not acked) | CPU cores (master / replicas / tool / sysbench / other) | notes |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
EOF
    [[ -s $work/lat-phases ]] && lat_report
    ((${#lat_rows[@]} == 0)) || printf '%s\n' "${lat_rows[@]}"
    cat <<EOF

- latency: from the moment the transaction was due (its scheduled arrival) to the end of its
  COMMIT, so a transaction that waits behind a slow one counts the wait; a transaction belongs to
  the phase in which it ended. tx/s: transactions that ended in the phase / its length (s).
- worst 1-s p95: the highest p95 of the whole seconds of the phase (from its start; those with
  10 or more transactions). p95 / baseline: the phase's p95 over the same run's baseline p95.
- semi-sync: the sandbox replicates semi-synchronously (\`AFTER_SYNC\`, timeout 10 s): each COMMIT
  on the master waits for a replica to acknowledge receiving it (its IO thread, which keeps running
  while kohaproxy's backup pauses the SQL thread). Average wait per commit over the phase, from the
  master's \`Rpl_semi_sync_master_tx_wait_time\` / \`_tx_waits\`; in brackets, commits that got no
  acknowledgement in time (\`Rpl_semi_sync_master_no_tx\`).
- CPU cores: average cores busy over the phase: the master's mariadbd, the replicas' mariadbd,
  the dump command with everything it started (during the dump only), the load's sysbench, and
  the rest of the machine (other users' jobs). The machine has $(nproc) cores.
EOF
    if [[ $LAT_PIN == 1 ]]; then
      cat <<EOF
- LAT_PIN=1: the master's mariadbd and the write load ran on core 0, the replicas' mariadbd and
  every dump on cores 1-$(($(nproc) - 1)) (\`taskset\`), as if the master had a host of its own.
EOF
    fi
    cat <<EOF
- priority: kohaproxy's \`[backup] priority\`: its dump threads and the mariadb-dump processes
  they start run under SCHED_IDLE (idle), nice 19 (low) or as the command (normal); the
  replica's mariadbd, which serves the dump's reads, keeps its own priority.
EOF
  fi
} >"$report"
cat "$report"
log "report written to $report"
exit "$failed"
