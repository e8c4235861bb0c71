#!/usr/bin/env bash
# sysbench against one sandbox (master + replicas, every process on this machine), in two
# sections; see benches/README.md for how to read the tables.
#
# compare: three routes to the same master, for each (workload, threads) cell back to back:
#   direct     sysbench -> master
#   haproxy    sysbench -> HAProxy (TCP mode, nbthread 2) -> master
#   kohaproxy  sysbench -> kohaproxy (release build, the sandbox's config as written) -> cluster
#   Cells: oltp_point_select at 1, 8 and 32 threads, oltp_read_only at 8 and 32 threads
#   (--db-ps-mode=disable), and oltp_point_select at 8 threads with --db-ps-mode=auto.
#
# split: the read/write split, text protocol only (--db-ps-mode=disable, as Koha's DBD::mysql;
#   kohaproxy sends server-side prepared statements to the master). For each workload
#   (oltp_read_only; oltp_read_only with --skip_trx=on, i.e. plain autocommit SELECTs as Koha
#   sends them: kohaproxy keeps every statement of an open transaction on the master, so
#   sysbench's BEGIN...COMMIT read-only transactions never reach a replica; oltp_read_write)
#   and thread count (4, 16), four routes back to back:
#   direct to the master; HAProxy to the master; kohaproxy with [routing]
#   read_write_split = false; kohaproxy with read_write_split = true. Before every run the
#   replicas catch up with the master; the share of SELECTs the replicas served is read from
#   each server's Com_select before and after the run.
#
# Method as in ../shared/research/anchor-bench.md: sbtest prepared through the master as
# koha/koha, a warm-up, --report-interval=0 --percentile=95.
#
# Prints a markdown report on stdout (progress goes to stderr), and writes it under
# target/bench-results/ (sysbench-STAMP.md: the whole report; split-STAMP.md: the split
# section):
#   benches/sysbench.sh > bench.md
# Environment (defaults):
#   SECTIONS="compare split"  which sections to run
#   TABLES=4 TABLE_SIZE=100000 BUFFER_POOL_MB=128 REPLICAS=2 (the split section wants >= 1; 2
#     is what it is designed for)
#   DURATION=15 (s per run, compare section) WARMUP=15 (s) PAUSE=2 (s before each run)
#   SPLIT_DURATION=12 (s per run, split section) SPLIT_THREADS="4 16"
#   SPLIT_WORKLOADS="oltp_read_only oltp_read_only+skip_trx oltp_read_write" (+skip_trx: run
#     the workload with --skip_trx=on, i.e. without BEGIN/COMMIT)
#   CATCHUP_TIMEOUT=60 (s a replica may take to catch up before a run; then it is noted)
#   RESULTS_DIR=target/bench-results
#   KOHAPROXY_BIN (default: target/release/kohaproxy, built first)
#   KEEP=1 keeps the temporary directory (datadirs, configs, logs) for inspection.
# With the defaults the whole script takes about 12 minutes on a 2-core machine (after the
# build). Exit status is non-zero if any run failed; the report still shows every run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

SECTIONS=${SECTIONS:-compare split}
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-100000}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-15}
PAUSE=${PAUSE:-2}
REPLICAS=${REPLICAS:-2}
BUFFER_POOL_MB=${BUFFER_POOL_MB:-128}
SPLIT_DURATION=${SPLIT_DURATION:-12}
SPLIT_THREADS=${SPLIT_THREADS:-4 16}
SPLIT_WORKLOADS=${SPLIT_WORKLOADS:-oltp_read_only oltp_read_only+skip_trx oltp_read_write}
CATCHUP_TIMEOUT=${CATCHUP_TIMEOUT:-60}

log() { echo "bench $(date -u +%T): $*" >&2; }
want() { [[ " $SECTIONS " == *" $1 "* ]]; }

for s in $SECTIONS; do
  [[ $s == compare || $s == split ]] || {
    log "unknown section '$s' in SECTIONS (known: compare split)"
    exit 2
  }
done
if want split && ((REPLICAS < 1)); then
  log "the split section needs replicas (REPLICAS=$REPLICAS); it will not run"
  SECTIONS=${SECTIONS//split/}
fi

kp_need sysbench haproxy mariadb python3 getconf

kp_bench_paths "$root"

begin=$SECONDS
kp_word=$(basename "$bin") # what our kohaproxy's command line contains
work=$(mktemp -d "${TMPDIR:-/tmp}/kohaproxy-bench.XXXXXX")
sandbox=$work/sandbox
haproxy_pid='' kohaproxy_pid='' kp_off_pid='' kp_on_pid='' sandbox_up=false

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  set +e
  for pid in "$kohaproxy_pid" "$kp_off_pid" "$kp_on_pid"; do
    [[ -n $pid ]] && kp_stop_pid "$pid" "$kp_word"
  done
  [[ -n $haproxy_pid ]] && kp_stop_pid "$haproxy_pid" haproxy
  if $sandbox_up; then
    kp_sandbox_down "$bin" "$sandbox" >&2 || log "sandbox down failed; see $sandbox"
  fi
  kp_remove_work "$work"
  exit "$rc"
}
kp_traps

# Four distinct free ports: the sandbox's proxy port, HAProxy, and kohaproxy with the
# split off and on (the split section runs both at once, so that neither restarts).
ports=()
while ((${#ports[@]} < 4)); do
  p=$(kp_free_port)
  [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
done
kp_port=${ports[0]} ha_port=${ports[1]} kp_off_port=${ports[2]} kp_on_port=${ports[3]}

log "sandbox in $sandbox: master + $REPLICAS replicas, buffer pool ${BUFFER_POOL_MB} MiB"
sandbox_up=true
"$bin" sandbox up --dir "$sandbox" --replicas "$REPLICAS" --proxy-port "$kp_port" \
  --buffer-pool-mb "$BUFFER_POOL_MB" >&2
master_port=$(kp_master_port "$sandbox")
log "master on 127.0.0.1:$master_port"

# Every server, master first: names and ports.
srv_names=() srv_ports=()
if [[ -r $sandbox/sandbox.json ]]; then
  while read -r name _ port _; do
    if [[ $port == "$master_port" ]]; then
      srv_names=("$name" "${srv_names[@]}") srv_ports=("$port" "${srv_ports[@]}")
    else
      srv_names+=("$name") srv_ports+=("$port")
    fi
  done < <(kp_sandbox_servers "$sandbox")
fi
[[ ${srv_ports[0]:-} == "$master_port" ]] || srv_names=(master) srv_ports=("$master_port")
log "servers: $(for i in "${!srv_ports[@]}"; do printf '%s:%s ' "${srv_names[i]}" "${srv_ports[i]}"; done)"

root_sql() { mariadb -h127.0.0.1 -P"$1" -uroot -N -e "$2"; }

# catch_up SECONDS: waits (up to SECONDS per replica) until every replica has applied what
# the master has written, so that catching up does not eat CPU during the next run. Prints
# the replicas that did not make it, if any.
catch_up() {
  local gtid i r lagging=''
  gtid=$(root_sql "$master_port" 'SELECT @@gtid_binlog_pos') || return 0
  for ((i = 1; i < ${#srv_ports[@]}; i++)); do
    r=$(root_sql "${srv_ports[i]}" "SELECT MASTER_GTID_WAIT('$gtid', $1)" 2>&1) || r="error: $r"
    if [[ $r != 0 ]]; then
      log "  ${srv_names[i]} did not reach GTID $gtid within $1 s ($r)"
      lagging+="${lagging:+, }${srv_names[i]}"
    fi
  done
  [[ -z $lagging ]] || echo "$lagging"
}

sb_common=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=koha --mysql-password=koha
  --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE")

log "preparing sbtest: $TABLES tables x $TABLE_SIZE rows, through the master"
kp_sb_prepare "$master_port" "$work/prepare.log" "${sb_common[@]}"

log "waiting for the replicas to apply the data"
catch_up 300 >/dev/null

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
kp_start_haproxy "$work" "$ha_port"

# start_kohaproxy CONFIG PORT LOG: starts kohaproxy in the background (pid in $started_pid)
# and waits until it accepts logins on PORT.
start_kohaproxy() {
  log "starting kohaproxy on 127.0.0.1:$2 with $1 (log: $3)"
  "$bin" run --config "$1" >"$3" 2>&1 &
  started_pid=$!
  kp_wait_login "$2" 30 "$started_pid" "$kp_word" || {
    log "kohaproxy does not accept logins; its log:"
    tail -n 30 "$3" >&2
    exit 1
  }
}

clk_tck=$(getconf CLK_TCK)
failed=0
rows=() split_rows=()

# sb WORKLOAD THREADS PORT PSMODE SECONDS [EXTRA...]: one sysbench run; output in
# $work/last.out.
sb() {
  sysbench "$1" "${sb_common[@]}" --mysql-port="$3" --threads="$2" --time="$5" \
    --report-interval=0 --percentile=95 --db-ps-mode="$4" "${@:6}" run >"$work/last.out" 2>&1
}

# sb_field NAME: a figure from $work/last.out (tps qps queries p95 ignored reconnects).
sb_field() { kp_sb_field "$work/last.out" "$1"; }

sb_error() { kp_sb_error "$work/last.out"; }

log "warm-up: ${WARMUP}s oltp_read_only, 8 threads, direct; then 3 s through HAProxy"
sb oltp_read_only 8 "$master_port" disable "$WARMUP" || {
  tail -n 20 "$work/last.out" >&2
  exit 1
}
sb oltp_point_select 8 "$ha_port" disable 3 || log "warm-up through HAProxy failed: $(sb_error)"

# ---------------------------------------------------------------------------------------
# compare section

# cell WORKLOAD THREADS PSMODE: the three routes back to back; appends table rows.
cell() {
  local workload=$1 threads=$2 ps=$3 route port pid word direct_tps=''
  local c0 c1 tps qps queries p95 errors ratio cpu10k usq rss note
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
      note="FAILED: $(sb_error)"
      failed=1
    fi
    c1='' rss=''
    if [[ -n $pid ]] && kp_alive "$pid" "$word"; then
      c1=$(kp_cpu_ticks "$pid")
      rss=$(kp_rss_kb "$pid")
    fi
    tps=$(sb_field tps) qps=$(sb_field qps) queries=$(sb_field queries)
    p95=$(sb_field p95) errors=$(sb_field ignored)
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

# split_config SRC DST true|false PORT: a copy of the sandbox's config that listens on PORT,
# has its own admin socket, and sets [routing] read_write_split (the section is added when
# absent). Checked with tomllib and with `kohaproxy check-config`.
split_config() {
  python3 - "$@" <<'EOF'
import re, sys, tomllib
src, dst, split, port = sys.argv[1:]
sock = dst.rsplit(".", 1)[0] + ".admin.sock"
out, section, set_split = [], None, False
for line in open(src, encoding="utf-8").read().splitlines():
    m = re.match(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]\]?\s*(#.*)?$", line)
    if m:
        if section == "routing" and not set_split:
            out.append(f"read_write_split = {split}")
            set_split = True
        section = m.group(1)
    elif section == "proxy" and re.match(r"^\s*listen\s*=", line):
        line = f'listen = "127.0.0.1:{port}"'
    elif section == "admin" and re.match(r"^\s*socket\s*=", line):
        line = "socket = " + '"' + sock.replace("\\", "\\\\").replace('"', '\\"') + '"'
    elif section == "routing" and re.match(r"^\s*read_write_split\s*=", line):
        line = f"read_write_split = {split}"
        set_split = True
    out.append(line)
if not set_split:
    if section != "routing":
        out += ["[routing]"]
    out.append(f"read_write_split = {split}")
text = "\n".join(out) + "\n"
cfg = tomllib.loads(text)
assert cfg["proxy"]["listen"] == f"127.0.0.1:{port}", "the [proxy] listen line was not found"
assert cfg["routing"]["read_write_split"] == (split == "true")
open(dst, "w", encoding="utf-8").write(text)
EOF
  "$bin" check-config "$2" >&2
}

compare_started='' compare_routing=''
if want compare; then
  # Like for like with HAProxy (which only reaches the master): the split is off here; the
  # split section below measures it.
  split_config "$sandbox/kohaproxy.toml" "$work/kohaproxy-compare.toml" false "$kp_port"
  start_kohaproxy "$work/kohaproxy-compare.toml" "$kp_port" "$work/kohaproxy.log"
  kohaproxy_pid=$started_pid
  sb oltp_point_select 8 "$kp_port" disable 3 || log "warm-up through kohaproxy failed: $(sb_error)"
  compare_routing='read_write_split = false'
  compare_started=$(date -u '+%Y-%m-%d %H:%M UTC')
  cell oltp_point_select 1 disable
  cell oltp_point_select 8 disable
  cell oltp_point_select 32 disable
  cell oltp_read_only 8 disable
  cell oltp_read_only 32 disable
  cell oltp_point_select 8 auto
  if ! kp_alive "$kohaproxy_pid" "$kp_word"; then
    log "kohaproxy exited during the compare section; the end of its log:"
    tail -n 30 "$work/kohaproxy.log" >&2
    failed=1
  fi
  # The split section starts its own kohaproxy processes; this one would only add noise.
  kp_stop_pid "$kohaproxy_pid" "$kp_word"
  kohaproxy_pid=''
fi

# ---------------------------------------------------------------------------------------
# split section


# com_selects: Com_select of every server, in srv_ports order, space-separated ('?' when a
# server does not answer).
com_selects() {
  local port v out=()
  for port in "${srv_ports[@]}"; do
    v=$(root_sql "$port" "SHOW GLOBAL STATUS LIKE 'Com_select'" 2>/dev/null | awk '{ print $2 }') || v=''
    out+=("${v:-?}")
  done
  echo "${out[*]}"
}

# split_cell WORKLOAD[+skip_trx] THREADS: the four routes back to back; appends split_rows.
split_cell() {
  local spec=$1 threads=$2 workload extra=() label route name port pid word
  local lagging s0 s1 c0 c1 rc tps qps queries p95 ign rec errors cpu share note
  workload=${spec%%+*} label=$workload
  if [[ $spec == *+skip_trx ]]; then
    extra=(--skip_trx=on)
    label="$workload (skip_trx)"
  fi
  for route in direct haproxy kp-off kp-on; do
    case $route in
      direct) name=direct port=$master_port pid='' word='' ;;
      haproxy) name=HAProxy port=$ha_port pid=$haproxy_pid word=haproxy ;;
      kp-off) name='kohaproxy, split off' port=$kp_off_port pid=$kp_off_pid word=$kp_word ;;
      kp-on) name='kohaproxy, split on' port=$kp_on_port pid=$kp_on_pid word=$kp_word ;;
    esac
    lagging=$(catch_up "$CATCHUP_TIMEOUT")
    sleep "$PAUSE"
    log "split: $label threads=$threads route=$name"
    if [[ -n $pid ]] && ! kp_alive "$pid" "$word"; then
      split_rows+=("| $label | $threads | $name | - | - | - | exited | - | - | $name had exited before the run |")
      log "  $name has exited"
      failed=1
      continue
    fi
    s0=$(com_selects)
    c0=''
    [[ -n $pid ]] && c0=$(kp_cpu_ticks "$pid")
    rc=0
    sb "$workload" "$threads" "$port" disable "$SPLIT_DURATION" "${extra[@]}" || rc=$?
    c1=''
    [[ -n $pid ]] && kp_alive "$pid" "$word" && c1=$(kp_cpu_ticks "$pid")
    s1=$(com_selects)
    tps=$(sb_field tps) qps=$(sb_field qps) queries=$(sb_field queries) p95=$(sb_field p95)
    ign=$(sb_field ignored) rec=$(sb_field reconnects)
    errors=$(kp_sb_errors "$rc" "$ign" "$rec")
    note=''
    ((rc == 0)) || note="FAILED: $(sb_error)"
    [[ -n $tps ]] || note=${note:-FAILED: no result}
    [[ -n $lagging ]] && note+="${note:+; }replicas behind before the run: $lagging"
    ((rc == 0)) && [[ -n $tps ]] || failed=1
    if [[ -n $c0 && -n $c1 && -n $queries && $queries != 0 ]]; then
      cpu=$(awk -v t=$((c1 - c0)) -v hz="$clk_tck" -v q="$queries" 'BEGIN { printf "%.4f", t / hz / q * 1000 }')
    elif [[ -n $pid ]]; then
      cpu='?' # the proxy died during the run, or sysbench gave no query count
    else
      cpu='-'
    fi
    share='-'
    if [[ $route == kp-* ]]; then
      share=$(awk -v a="$s0" -v b="$s1" 'BEGIN {
        n = split(a, x, " "); split(b, y, " "); total = 0; rep = 0
        for (i = 1; i <= n; i++) {
          if (x[i] == "?" || y[i] == "?") { print "?"; exit }
          d = y[i] - x[i]; total += d; if (i > 1) rep += d
        }
        if (total > 0) printf "%.3f (%d of %d)", rep / total, rep, total; else print "- (no SELECTs)"
      }')
    fi
    if [[ -n $tps ]]; then
      tps=$(printf '%.0f' "$tps") qps=$(printf '%.0f' "$qps")
    fi
    split_rows+=("| $label | $threads | $name | ${tps:--} | ${qps:--} | ${p95:--} | $errors | $cpu | $share | $note |")
    log "  ${split_rows[-1]}"
  done
}

split_started=''
if want split; then
  for mode in off on; do
    [[ $mode == on ]] && flag=true || flag=false
    port_var=kp_${mode}_port
    split_config "$sandbox/kohaproxy.toml" "$work/kohaproxy-split-$mode.toml" "$flag" "${!port_var}"
    start_kohaproxy "$work/kohaproxy-split-$mode.toml" "${!port_var}" "$work/kohaproxy-split-$mode.log"
    printf -v "kp_${mode}_pid" '%s' "$started_pid"
    sb oltp_point_select 8 "${!port_var}" disable 3 ||
      log "warm-up through kohaproxy (split $mode) failed: $(sb_error)"
  done
  # The replicas serve reads only with the split on: warm their buffer pools too.
  for ((i = 1; i < ${#srv_ports[@]}; i++)); do
    log "warm-up: 3 s oltp_read_only, 4 threads, on ${srv_names[i]} directly"
    sb oltp_read_only 4 "${srv_ports[i]}" disable 3 ||
      log "warm-up on ${srv_names[i]} failed: $(sb_error)"
  done
  split_started=$(date -u '+%Y-%m-%d %H:%M UTC')
  for w in $SPLIT_WORKLOADS; do
    for t in $SPLIT_THREADS; do
      split_cell "$w" "$t"
    done
  done
  for mode in off on; do
    pid_var=kp_${mode}_pid
    if ! kp_alive "${!pid_var}" "$kp_word"; then
      log "kohaproxy (split $mode) exited during the split section; the end of its log:"
      tail -n 30 "$work/kohaproxy-split-$mode.log" >&2
      failed=1
    fi
  done
fi

# ---------------------------------------------------------------------------------------
# report

elapsed=$((SECONDS - begin))
version() { "$@" 2>&1 | head -n 1 || true; }
mariadb_version=$(version mariadb -h127.0.0.1 -P"$master_port" -uroot -N -e 'SELECT VERSION()')
git_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
git -C "$root" diff --quiet HEAD -- 2>/dev/null || git_rev+=' (with uncommitted changes)'

machine() {
  cat <<EOF
| item | value |
|---|---|
| CPU | $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) |
| kernel | $(uname -r) |
| MariaDB | $mariadb_version, master + $REPLICAS replicas, buffer pool ${BUFFER_POOL_MB} MiB each |
| sysbench | $(version sysbench --version) |
| HAProxy | $(version haproxy -v | awk '{ print $3 }') (TCP mode, nbthread 2, to the master only) |
| kohaproxy | $(version "$bin" --version), git $git_rev |
| data | $TABLES tables x $TABLE_SIZE rows |
| script | $((elapsed / 60)) min $((elapsed % 60)) s from sandbox up to this report (SECTIONS="$SECTIONS") |
EOF
}

split_report() {
  cat <<EOF
## Read/write split: text protocol (--db-ps-mode=disable), master + $REPLICAS replicas

Run $split_started. Workloads $SPLIT_WORKLOADS; threads $SPLIT_THREADS; ${SPLIT_DURATION} s
per run; before each run the replicas caught up with the master, then ${PAUSE} s pause. The
four routes of a cell ran back to back on the same data. "split off"/"split on" are two
kohaproxy processes with the sandbox's config and \`[routing] read_write_split\` = false/true
(both running through the whole section). "(skip_trx)": sysbench's --skip_trx=on, no
BEGIN/COMMIT around the statements; kohaproxy runs every statement of an open transaction on
the master, so only autocommit SELECTs (Koha's usual case) can go to a replica.

- errors: 0, or each of sysbench's ignored errors, reconnects and a non-zero exit status.
- proxy CPU: the proxy process's utime+stime over the run, in seconds per 1000 queries
  (sysbench's query count, BEGIN/COMMIT included); x 1000 = µs per query.
- replica SELECTs: of the SELECTs all servers counted during the run (\`Com_select\`, read
  directly before and after), the share the replicas counted, and the counts. Health probes
  count too (each kohaproxy process probes each server twice a second): the split-off row
  shows that floor.

| workload | threads | route | tps | qps | p95 ms | errors | proxy CPU s / 1000 queries | replica SELECTs | notes |
|---|---:|---|---:|---:|---:|---|---:|---|---|
EOF
  printf '%s\n' "${split_rows[@]}"
}

stamp=$(date -u '+%Y-%m-%dT%H%MZ')
{
  echo "# kohaproxy sysbench: direct vs HAProxy vs kohaproxy"
  echo
  echo "One sandbox, every process (sysbench, proxies, servers) on this machine."
  echo
  machine
  if want compare; then
    cat <<EOF

## Routes compared

Run $compare_started. kohaproxy with the sandbox's config (routing: $compare_routing).
Runs of ${DURATION} s, ${PAUSE} s apart, the routes of a cell back to back.

ps: disable = text protocol (what Koha's DBD::mysql does), auto = server-side prepared
statements. "vs direct" is tps over the direct run of the same cell. Proxy CPU is the
proxy process's utime+stime over the run; "CPU µs/query" is the unit used in
anchor-bench.md. RSS is VmRSS after the run.

| workload | ps | threads | route | tps | qps | p95 ms | tps vs direct | proxy CPU s / 10k queries | proxy CPU µs/query | proxy RSS MiB | errors |
|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
    printf '%s\n' "${rows[@]}"
  fi
  if want split; then
    echo
    split_report
  fi
} >"$work/report.md"

if mkdir -p "$results_dir" 2>/dev/null; then
  cp "$work/report.md" "$results_dir/sysbench-$stamp.md"
  if want split; then
    { machine; echo; split_report; } >"$results_dir/split-$stamp.md"
  fi
  log "report written to $results_dir/sysbench-$stamp.md"
else
  log "cannot create $results_dir; the report is only on stdout"
fi
cat "$work/report.md"
log "done in $((elapsed / 60)) min $((elapsed % 60)) s; exit status $failed"
exit "$failed"
