#!/usr/bin/env bash
# sysbench through three routes to the same master, in one run on one sandbox:
#   direct     sysbench -> master
#   haproxy    sysbench -> HAProxy (TCP mode, nbthread 2) -> master
#   kohaproxy  sysbench -> kohaproxy (release build) -> the cluster
# Method as in ../shared/research/anchor-bench.md: sbtest prepared through the master as
# koha/koha, a warm-up, then for each (workload, threads) cell the three routes back to back
# with --db-ps-mode=disable --report-interval=0 --percentile=95, and one extra series of
# oltp_point_select with server-side prepared statements (--db-ps-mode=auto).
#
# Prints a markdown report on stdout (progress goes to stderr):
#   benches/sysbench.sh > bench.md
# Environment (defaults): TABLES=4 TABLE_SIZE=100000 DURATION=20 (s per run) WARMUP=15 (s)
#   PAUSE=2 (s between runs) REPLICAS=2 BUFFER_POOL_MB=128
#   KOHAPROXY_BIN (default: target/release/kohaproxy, built first)
#   KEEP=1 keeps the temporary directory (datadirs, configs, logs) for inspection.
# Exit status is non-zero if any run failed; the report still shows the runs that worked.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-100000}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-15}
PAUSE=${PAUSE:-2}
REPLICAS=${REPLICAS:-2}
BUFFER_POOL_MB=${BUFFER_POOL_MB:-128}

log() { echo "bench: $*" >&2; }

for c in sysbench haproxy mariadb python3 getconf; do
  command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
  command -v "$c" >/dev/null 2>&1 || {
    log "$c not found; run scripts/install-deps.sh"
    exit 1
  }
done

if [[ -n ${KOHAPROXY_BIN:-} ]]; then
  bin=$KOHAPROXY_BIN
else
  bin=${CARGO_TARGET_DIR:-$root/target}/release/kohaproxy
  [[ $bin == /* ]] || bin=$root/$bin
  log "building kohaproxy (release)"
  cargo build --release >&2
fi

kp_word=$(basename "$bin") # what our kohaproxy's command line contains
work=$(mktemp -d "${TMPDIR:-/tmp}/kohaproxy-bench.XXXXXX")
sandbox=$work/sandbox
haproxy_pid='' kohaproxy_pid='' sandbox_up=false

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [[ -n $kohaproxy_pid ]] && kp_stop_pid "$kohaproxy_pid" "$kp_word"
  [[ -n $haproxy_pid ]] && kp_stop_pid "$haproxy_pid" haproxy
  if $sandbox_up; then
    kp_sandbox_down "$bin" "$sandbox" >&2 || log "sandbox down failed; see $sandbox"
  fi
  if [[ ${KEEP:-0} == 1 ]]; then
    log "kept $work"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

kp_port=$(kp_free_port)
ha_port=$(kp_free_port)
while [[ $ha_port == "$kp_port" ]]; do ha_port=$(kp_free_port); done

log "sandbox in $sandbox: master + $REPLICAS replicas, buffer pool ${BUFFER_POOL_MB} MiB"
sandbox_up=true
"$bin" sandbox up --dir "$sandbox" --replicas "$REPLICAS" --proxy-port "$kp_port" \
  --buffer-pool-mb "$BUFFER_POOL_MB" >&2
master_port=$(kp_master_port "$sandbox")
log "master on 127.0.0.1:$master_port"

sb_common=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=koha --mysql-password=koha
  --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE")

log "preparing sbtest: $TABLES tables x $TABLE_SIZE rows, through the master"
mariadb -h127.0.0.1 -P"$master_port" -uroot -e 'DROP DATABASE IF EXISTS sbtest; CREATE DATABASE sbtest'
if ! sysbench oltp_read_write "${sb_common[@]}" --mysql-port="$master_port" --threads=4 prepare \
  >"$work/prepare.log" 2>&1; then
  tail -n 20 "$work/prepare.log" >&2
  exit 1
fi

# Let the replicas apply everything, so their catch-up does not eat CPU during the runs.
gtid=$(mariadb -h127.0.0.1 -P"$master_port" -uroot -N -e 'SELECT @@gtid_binlog_pos')
if [[ -r $sandbox/sandbox.json ]]; then
  kp_sandbox_servers "$sandbox" | while read -r name role port _; do
    [[ $port == "$master_port" ]] && continue
    log "waiting for $name ($role) to reach GTID $gtid"
    r=$(mariadb -h127.0.0.1 -P"$port" -uroot -N -e "SELECT MASTER_GTID_WAIT('$gtid', 300)" 2>&1) ||
      r="error: $r"
    [[ $r == 0 ]] || log "  $name did not catch up ($r); continuing"
  done
fi

log "starting HAProxy on 127.0.0.1:$ha_port"
cat >"$work/haproxy.cfg" <<EOF
global
    nbthread 2

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend mariadb
    bind 127.0.0.1:$ha_port
    default_backend master

backend master
    server db1 127.0.0.1:$master_port check inter 2s
EOF
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
haproxy_pid=$!

log "starting kohaproxy on 127.0.0.1:$kp_port (log: $work/kohaproxy.log)"
"$bin" run --config "$sandbox/kohaproxy.toml" >"$work/kohaproxy.log" 2>&1 &
kohaproxy_pid=$!

kp_wait_login "$ha_port" 20 "$haproxy_pid" haproxy || {
  log "HAProxy does not pass logins"
  cat "$work/haproxy.log" >&2
  exit 1
}
kp_wait_login "$kp_port" 30 "$kohaproxy_pid" "$kp_word" || {
  log "kohaproxy does not accept logins; its log:"
  tail -n 30 "$work/kohaproxy.log" >&2
  exit 1
}

clk_tck=$(getconf CLK_TCK)
failed=0
rows=()

# sb WORKLOAD THREADS PORT PSMODE SECONDS: one sysbench run; output in $work/last.out.
sb() {
  sysbench "$1" "${sb_common[@]}" --mysql-port="$3" --threads="$2" --time="$5" \
    --report-interval=0 --percentile=95 --db-ps-mode="$4" run >"$work/last.out" 2>&1
}

log "warm-up: ${WARMUP}s oltp_read_only, 8 threads, direct; then 3 s through each proxy"
sb oltp_read_only 8 "$master_port" disable "$WARMUP" || {
  tail -n 20 "$work/last.out" >&2
  exit 1
}
sb oltp_point_select 8 "$ha_port" disable 3 || log "warm-up through HAProxy failed: $(grep -m1 -i -E 'fatal|error' "$work/last.out")"
sb oltp_point_select 8 "$kp_port" disable 3 || log "warm-up through kohaproxy failed: $(grep -m1 -i -E 'fatal|error' "$work/last.out")"

# cell WORKLOAD THREADS PSMODE: the three routes back to back; appends table rows.
cell() {
  local workload=$1 threads=$2 ps=$3 route port pid word direct_tps=''
  local c0 c1 out tps qps queries p95 errors ratio cpu10k usq rss note
  for route in direct haproxy kohaproxy; do
    case $route in
      direct) port=$master_port pid='' ;;
      haproxy) port=$ha_port pid=$haproxy_pid word=haproxy ;;
      kohaproxy) port=$kp_port pid=$kohaproxy_pid word=$kp_word ;;
    esac
    sleep "$PAUSE"
    log "$workload ps=$ps threads=$threads route=$route"
    if [[ -n $pid ]] && ! kp_alive "$pid" "$word"; then
      rows+=("| $workload | $ps | $threads | $route | process exited | | | | | | | |")
      log "  $route has exited"
      failed=1
      continue
    fi
    c0=''
    [[ -n $pid ]] && c0=$(kp_cpu_ticks "$pid")
    if sb "$workload" "$threads" "$port" "$ps" "$DURATION"; then
      note=''
    else
      note="FAILED: $(grep -m1 -i -E 'fatal|error' "$work/last.out" | cut -c1-120 | tr '|' '/')"
      failed=1
    fi
    c1='' rss=''
    if [[ -n $pid ]] && kp_alive "$pid" "$word"; then
      c1=$(kp_cpu_ticks "$pid")
      rss=$(kp_rss_kb "$pid")
    fi
    out=$work/last.out
    tps=$(awk '$1 == "transactions:" { sub(/\(/, "", $3); print $3 }' "$out")
    qps=$(awk '$1 == "queries:" { sub(/\(/, "", $3); print $3 }' "$out")
    queries=$(awk '$1 == "queries:" { print $2 }' "$out")
    p95=$(awk '$1 == "95th" { print $3 }' "$out")
    errors=$(awk '$1 == "ignored" && $2 == "errors:" { print $3 }' "$out")
    if [[ -n $note || -z $tps ]]; then
      rows+=("| $workload | $ps | $threads | $route | ${note:-FAILED: no result} | | | | | | | |")
      log "  ${rows[-1]}"
      failed=1
      continue
    fi
    [[ $route == direct ]] && direct_tps=$tps
    ratio=$(awk -v a="$tps" -v b="$direct_tps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    if [[ -n $c0 && -n $c1 ]]; then
      # CPU seconds per 10,000 queries, and the same in µs per query (anchor-bench's unit)
      cpu10k=$(awk -v t=$((c1 - c0)) -v hz="$clk_tck" -v q="$queries" 'BEGIN { printf "%.3f", t / hz / q * 10000 }')
      usq=$(awk -v t=$((c1 - c0)) -v hz="$clk_tck" -v q="$queries" 'BEGIN { printf "%.1f", t / hz / q * 1e6 }')
      rss=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
    else
      cpu10k='-' usq='-' rss='-'
    fi
    rows+=("$(printf '| %s | %s | %s | %s | %.0f | %.0f | %s | %s | %s | %s | %s | %s |' \
      "$workload" "$ps" "$threads" "$route" "$tps" "$qps" "$p95" "$ratio" "$cpu10k" "$usq" "$rss" "${errors:-0}")")
    log "  ${rows[-1]}"
  done
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
cell oltp_point_select 1 disable
cell oltp_point_select 8 disable
cell oltp_point_select 32 disable
cell oltp_read_only 8 disable
cell oltp_read_only 32 disable
cell oltp_point_select 8 auto

version() { "$@" 2>&1 | head -n 1 || true; }
cat <<EOF
# kohaproxy sysbench: direct vs HAProxy vs kohaproxy

Run $started, one sandbox, every process on this machine.

| item | value |
|---|---|
| CPU | $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) |
| kernel | $(uname -r) |
| MariaDB | $(version mariadb -h127.0.0.1 -P"$master_port" -uroot -N -e 'SELECT VERSION()') |
| sysbench | $(version sysbench --version) |
| HAProxy | $(version haproxy -v | awk '{ print $3 }') (TCP mode, nbthread 2) |
| kohaproxy | $(version "$bin" --version), git $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'); routing: $(grep -E '^[[:space:]]*read_write_split' "$sandbox/kohaproxy.toml" | tr -s ' ' || echo 'read_write_split not set (default)') |
| data | $TABLES tables x $TABLE_SIZE rows, buffer pool ${BUFFER_POOL_MB} MiB, $REPLICAS replicas |
| runs | ${DURATION} s each, ${PAUSE} s apart, routes of a cell back to back |

ps: disable = text protocol (what Koha's DBD::mysql does), auto = server-side prepared
statements. "vs direct" is tps over the direct run of the same cell. Proxy CPU is the
proxy process's utime+stime over the run; "CPU µs/query" is the unit used in
anchor-bench.md. RSS is VmRSS after the run.

| workload | ps | threads | route | tps | qps | p95 ms | tps vs direct | proxy CPU s / 10k queries | proxy CPU µs/query | proxy RSS MiB | errors |
|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
printf '%s\n' "${rows[@]}"

if ! kp_alive "$kohaproxy_pid" "$kp_word"; then
  log "kohaproxy exited during the run; the end of its log:"
  tail -n 30 "$work/kohaproxy.log" >&2
  failed=1
fi
exit "$failed"
