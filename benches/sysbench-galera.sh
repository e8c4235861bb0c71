#!/usr/bin/env bash
# sysbench against a Galera sandbox (NODES nodes, every process on this machine): the Galera
# counterpart of benches/sysbench.sh; see benches/README.md ("Galera") for how to read it.
#
# Three routes, for each (workload, threads) cell back to back:
#   direct     sysbench -> db1
#   haproxy    sysbench -> HAProxy (TCP mode, nbthread 2) -> db1, as Galera users deploy it:
#              one writer backend, db1 active and the other nodes `backup`, `option httpchk`
#              against a clustercheck-style HTTP service per node (200 when the node's
#              wsrep_local_state is 4 Synced, or 2 Donor/Desynced with AVAILABLE_WHEN_DONOR=1;
#              else 503), `inter 2s`
#   kohaproxy  sysbench -> kohaproxy (release build, the sandbox's Galera config as written:
#              one writer, reads to the other nodes with causal reads, wsrep_sync_wait)
# Cells (CELLS): oltp_read_write at 4 and 16 threads, oltp_read_only at 8, oltp_point_select
# at 8, all with --db-ps-mode=disable (the text protocol, as Koha's DBD::mysql).
#
# For every run: tps, qps, p95, tps vs direct, the proxy's CPU per query and RSS, sysbench's
# ignored errors, the certification conflicts of the run (wsrep_local_cert_failures +
# wsrep_local_bf_aborts summed over the nodes, after minus before) and the share of the
# SELECTs (Com_select, every node, before and after) that the nodes other than db1 served.
#
# Method as in ../shared/research/anchor-bench.md: sbtest prepared through db1 as koha/koha,
# a warm-up, --report-interval=0 --percentile=95. Before every run each node must be Synced
# with an empty receive queue (up to CATCHUP_TIMEOUT s), so that applying the previous run's
# write sets does not eat CPU during the next one.
#
# Prints a markdown report on stdout (progress goes to stderr) and writes it to
# target/bench-results/sysbench-galera-STAMP.md:
#   benches/sysbench-galera.sh > bench.md
#   SMOKE=1 benches/sysbench-galera.sh   # a check that everything works, about a minute
# Environment (defaults):
#   CELLS="oltp_read_write:4 oltp_read_write:16 oltp_read_only:8 oltp_point_select:8"
#     (WORKLOAD:THREADS; WORKLOAD+skip_trx runs it with --skip_trx=on)
#   TABLES=4 TABLE_SIZE=20000 BUFFER_POOL_MB=128 NODES=3 (at least 2)
#   DURATION=12 (s per run) WARMUP=8 (s) PAUSE=2 (s before each run)
#   CATCHUP_TIMEOUT=60 (s the nodes may take to apply everything before a run)
#   AVAILABLE_WHEN_DONOR=0 (clustercheck's flag: 1 also passes a Donor/Desynced node)
#   SMOKE=1: TABLE_SIZE=2000 DURATION=3 WARMUP=2 PAUSE=1 CELLS=oltp_read_write:4 unless set
#   RESULTS_DIR=target/bench-results
#   KOHAPROXY_BIN (default: target/release/kohaproxy, built first)
#   KEEP=1 keeps the temporary directory (datadirs, configs, logs) for inspection.
# Exit status is non-zero if any run failed, or if a kohaproxy or HAProxy run had
# certification conflicts (or they could not be counted): with one writer there must be none.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

if [[ ${SMOKE:-0} == 1 ]]; then
  TABLE_SIZE=${TABLE_SIZE:-2000} DURATION=${DURATION:-3} WARMUP=${WARMUP:-2}
  PAUSE=${PAUSE:-1} CELLS=${CELLS:-oltp_read_write:4}
fi
CELLS=${CELLS:-oltp_read_write:4 oltp_read_write:16 oltp_read_only:8 oltp_point_select:8}
TABLES=${TABLES:-4}
TABLE_SIZE=${TABLE_SIZE:-20000}
DURATION=${DURATION:-12}
WARMUP=${WARMUP:-8}
PAUSE=${PAUSE:-2}
NODES=${NODES:-3}
BUFFER_POOL_MB=${BUFFER_POOL_MB:-128}
CATCHUP_TIMEOUT=${CATCHUP_TIMEOUT:-60}
AVAILABLE_WHEN_DONOR=${AVAILABLE_WHEN_DONOR:-0}

log() { echo "bench $(date -u +%T): $*" >&2; }

for v in TABLES TABLE_SIZE DURATION WARMUP PAUSE NODES BUFFER_POOL_MB CATCHUP_TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || {
    log "$v must be a whole number (it is '${!v}')"
    exit 2
  }
done
((NODES >= 2 && TABLES > 0 && TABLE_SIZE > 0 && DURATION > 0)) || {
  log "NODES must be at least 2; TABLES, TABLE_SIZE and DURATION positive"
  exit 2
}
[[ $AVAILABLE_WHEN_DONOR == 0 || $AVAILABLE_WHEN_DONOR == 1 ]] || {
  log "AVAILABLE_WHEN_DONOR must be 0 or 1"
  exit 2
}
read -r -a cells <<<"$CELLS"
((${#cells[@]} > 0)) || {
  log "CELLS is empty"
  exit 2
}
for c in "${cells[@]}"; do
  [[ $c =~ ^oltp_[a-z_]+(\+skip_trx)?:[0-9]+$ ]] || {
    log "CELLS: '$c' is not WORKLOAD[+skip_trx]:THREADS (e.g. oltp_read_write:4)"
    exit 2
  }
done

kp_need sysbench haproxy mariadb python3 getconf

kp_bench_paths "$root"

begin=$SECONDS
kp_word=$(basename "$bin") # what our kohaproxy's command line contains
work=$(mktemp -d "${TMPDIR:-/tmp}/kohaproxy-galera.XXXXXX")
# As root, the Galera nodes run as the mysql user, which must be able to reach the sandbox
# directory: mktemp's directory is 0700.
chmod o+x "$work"
sandbox=$work/sandbox
haproxy_pid='' kohaproxy_pid='' cc_pid='' sandbox_up=false

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [[ -n $kohaproxy_pid ]] && kp_stop_pid "$kohaproxy_pid" "$kp_word"
  [[ -n $haproxy_pid ]] && kp_stop_pid "$haproxy_pid" haproxy
  [[ -n $cc_pid ]] && kp_stop_pid "$cc_pid" clustercheck.py
  if $sandbox_up; then
    kp_sandbox_down "$bin" "$sandbox" >&2 || log "sandbox down failed; see $sandbox"
  fi
  kp_remove_work "$work"
  exit "$rc"
}
kp_traps

# Distinct free ports: kohaproxy (the sandbox's proxy port), HAProxy, and one clustercheck
# port per node.
ports=()
while ((${#ports[@]} < 2 + NODES)); do
  p=$(kp_free_port)
  [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
done
kp_port=${ports[0]} ha_port=${ports[1]} cc_ports=("${ports[@]:2}")

log "Galera sandbox in $sandbox: $NODES nodes, buffer pool ${BUFFER_POOL_MB} MiB"
sandbox_up=true
"$bin" sandbox up --dir "$sandbox" --galera --nodes "$NODES" --proxy-port "$kp_port" \
  --buffer-pool-mb "$BUFFER_POOL_MB" >&2

# Every node, in sandbox.json's order (db1 first): names and client ports.
node_names=() node_ports=()
while read -r name _ port _; do
  node_names+=("$name") node_ports+=("$port")
done < <(kp_sandbox_servers "$sandbox")
((${#node_ports[@]} == NODES)) || {
  log "sandbox.json lists ${#node_ports[@]} servers, not $NODES"
  exit 1
}
db1_port=${node_ports[0]}
log "nodes: $(for i in "${!node_ports[@]}"; do printf '%s:%s ' "${node_names[i]}" "${node_ports[i]}"; done)"

root_sql() { mariadb -h127.0.0.1 -P"$1" -uroot -N --connect-timeout=5 -e "$2"; }

# settle SECONDS: waits (up to SECONDS in all) until every node is Synced with an empty
# receive queue. Prints the nodes that did not make it, if any.
settle() {
  local deadline=$((SECONDS + $1)) i out state queue lagging
  while :; do
    lagging=''
    for i in "${!node_ports[@]}"; do
      out=$(root_sql "${node_ports[i]}" "SHOW GLOBAL STATUS WHERE Variable_name IN
        ('wsrep_local_state', 'wsrep_local_recv_queue')" 2>/dev/null) || out=''
      state=$(awk '$1 == "wsrep_local_state" { print $2 }' <<<"$out")
      queue=$(awk '$1 == "wsrep_local_recv_queue" { print $2 }' <<<"$out")
      [[ $state == 4 && $queue == 0 ]] ||
        lagging+="${lagging:+, }${node_names[i]} (state ${state:-?}, queue ${queue:-?})"
    done
    [[ -z $lagging ]] && return 0
    if ((SECONDS >= deadline)); then
      log "  not settled after $1 s: $lagging"
      echo "$lagging"
      return 0
    fi
    sleep 0.2
  done
}

# snapshot: per node, "Com_select:cert_failures:bf_aborts" ('?' when the node does not
# answer), space-separated, in node order. SHOW GLOBAL STATUS reads the same counters as
# information_schema.GLOBAL_STATUS without counting as a SELECT itself.
snapshot() {
  local port out v vals=()
  for port in "${node_ports[@]}"; do
    out=$(root_sql "$port" "SHOW GLOBAL STATUS WHERE Variable_name IN
      ('Com_select', 'wsrep_local_cert_failures', 'wsrep_local_bf_aborts')" 2>/dev/null) || out=''
    v=$(awk 'BEGIN { n = 0 }
      tolower($1) == "com_select" { c = $2; n++ }
      tolower($1) == "wsrep_local_cert_failures" { f = $2; n++ }
      tolower($1) == "wsrep_local_bf_aborts" { b = $2; n++ }
      END { if (n == 3) print c ":" f ":" b; else print "?" }' <<<"$out")
    vals+=("$v")
  done
  echo "${vals[*]}"
}

# conflicts BEFORE AFTER: the run's certification conflicts summed over the nodes ('?' if
# a node did not answer).
conflicts() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); total = 0
    for (i = 1; i <= n; i++) {
      if (x[i] == "?" || y[i] == "?") { print "?"; exit }
      split(x[i], p, ":"); split(y[i], q, ":")
      total += (q[2] - p[2]) + (q[3] - p[3])
    }
    print total
  }'
}

# select_share BEFORE AFTER: of the SELECTs all nodes counted, the share of the nodes other
# than db1, and the counts.
select_share() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x, " "); split(b, y, " "); total = 0; others = 0
    for (i = 1; i <= n; i++) {
      if (x[i] == "?" || y[i] == "?") { print "?"; exit }
      split(x[i], p, ":"); split(y[i], q, ":")
      d = q[1] - p[1]; total += d; if (i > 1) others += d
    }
    if (total > 0) printf "%.3f (%d of %d)", others / total, others, total; else print "- (no SELECTs)"
  }'
}

sb_common=(--db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=koha --mysql-password=koha
  --mysql-db=sbtest --tables="$TABLES" --table-size="$TABLE_SIZE")

log "preparing sbtest: $TABLES tables x $TABLE_SIZE rows, through ${node_names[0]}"
kp_sb_prepare "$db1_port" "$work/prepare.log" "${sb_common[@]}"
log "waiting for every node to apply the data"
settle 300 >/dev/null

# ---------------------------------------------------------------------------------------
# clustercheck and HAProxy

# One process, one HTTP port per node, in the manner of clustercheck (percona-clustercheck:
# a shell script behind xinetd that runs the mysql client for each request): each request
# runs `mariadb ... SHOW GLOBAL STATUS LIKE 'wsrep_local_state'` as root against its node.
# Logs only changes of a node's answer.
cat >"$work/clustercheck.py" <<'EOF'
import subprocess, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

donor_ok = sys.argv[1] == "1"
pairs = [tuple(int(x) for x in arg.split(":")) for arg in sys.argv[2:]]  # listen:node
last, lock = {}, threading.Lock()

def local_state(node):
    try:
        r = subprocess.run(
            ["mariadb", "-h127.0.0.1", f"-P{node}", "-uroot", "-N", "--connect-timeout=10",
             "-e", "SHOW GLOBAL STATUS LIKE 'wsrep_local_state'"],
            capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    f = r.stdout.split()
    return f[1] if r.returncode == 0 and len(f) >= 2 else None

class Check(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def answer(self, body=True):
        node = self.server.node
        state = local_state(node)
        ok = state == "4" or (state == "2" and donor_ok)
        code = 200 if ok else 503
        text = f"Galera node {'is' if ok else 'is not'} synced (wsrep_local_state {state}).\r\n"
        with lock:
            if last.get(node) != code:
                last[node] = code
                print(f"{time.strftime('%H:%M:%S')} node :{node} -> {code} (state {state})",
                      file=sys.stderr, flush=True)
        try:
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if body:
                self.wfile.write(text.encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # HAProxy resets the connection once it has the status line

    def do_GET(self):
        self.answer()

    def do_OPTIONS(self):  # HAProxy's `option httpchk` sends OPTIONS / HTTP/1.0
        self.answer()

    def do_HEAD(self):
        self.answer(body=False)

    def log_message(self, *args):
        pass

for listen, node in pairs:
    srv = ThreadingHTTPServer(("127.0.0.1", listen), Check)
    srv.node = node
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
print(f"clustercheck: {pairs} (available when donor: {donor_ok})", file=sys.stderr, flush=True)
threading.Event().wait()
EOF
cc_args=()
for i in "${!node_ports[@]}"; do cc_args+=("${cc_ports[i]}:${node_ports[i]}"); done
log "starting clustercheck on 127.0.0.1:${cc_ports[*]}"
python3 "$work/clustercheck.py" "$AVAILABLE_WHEN_DONOR" "${cc_args[@]}" >"$work/clustercheck.log" 2>&1 &
cc_pid=$!

# cc_code PORT: the HTTP status clustercheck gives on PORT (empty if none).
cc_code() {
  local line=''
  {
    exec 3<>"/dev/tcp/127.0.0.1/$1" &&
      printf 'OPTIONS / HTTP/1.0\r\n\r\n' >&3 &&
      IFS= read -r -t 15 line <&3
    exec 3<&- 3>&-
  } 2>/dev/null || true
  awk '{ print $2 }' <<<"$line"
}
deadline=$((SECONDS + 20))
for i in "${!cc_ports[@]}"; do
  until [[ $(cc_code "${cc_ports[i]}") == 200 ]]; do
    if ((SECONDS >= deadline)) || ! kp_alive "$cc_pid" clustercheck.py; then
      log "clustercheck does not answer 200 for ${node_names[i]}; its log:"
      cat "$work/clustercheck.log" >&2
      exit 1
    fi
    sleep 0.2
  done
done

log "starting HAProxy on 127.0.0.1:$ha_port (writer ${node_names[0]}, the others backup)"
{
  cat <<EOF
global
    nbthread 2
    stats socket $work/haproxy.sock mode 600 level user

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

frontend galera
    bind 127.0.0.1:$ha_port
    default_backend galera_writer

backend galera_writer
    option httpchk
EOF
  for i in "${!node_ports[@]}"; do
    printf '    server %s 127.0.0.1:%s check port %s inter 2s rise 2 fall 3%s\n' \
      "${node_names[i]}" "${node_ports[i]}" "${cc_ports[i]}" "$( ((i > 0)) && echo ' backup')"
  done
} >"$work/haproxy.cfg"
kp_start_haproxy "$work" "$ha_port"

# ha_servers: HAProxy's view of its servers, from its stats socket: "db1 UP (L7OK/200,
# N sessions), db2 UP backup (...), ...".
ha_servers() {
  python3 - "$work/haproxy.sock" <<'EOF' 2>/dev/null || echo '?'
import csv, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
rows = csv.DictReader(data.decode().lstrip("# ").splitlines())
out = []
for r in rows:
    if r["pxname"] == "galera_writer" and r["svname"] not in ("FRONTEND", "BACKEND"):
        backup = " backup" if r["bck"] == "1" else ""
        out.append(f"{r['svname']} {r['status']}{backup} ({r['check_status']}/{r['check_code']}, "
                   f"{r['stot']} sessions)")
print(", ".join(out))
EOF
}
# Wait until HAProxy's first clustercheck round has passed on every server.
deadline=$((SECONDS + 20))
until (($(ha_servers | grep -o 'L7OK/200' | wc -l) == NODES)); do
  if ((SECONDS >= deadline)); then
    log "HAProxy's checks have not all passed: $(ha_servers)"
    exit 1
  fi
  sleep 0.5
done
log "HAProxy: $(ha_servers)"

# ---------------------------------------------------------------------------------------
# kohaproxy

log "starting kohaproxy on 127.0.0.1:$kp_port with $sandbox/kohaproxy.toml"
"$bin" run --config "$sandbox/kohaproxy.toml" >"$work/kohaproxy.log" 2>&1 &
kohaproxy_pid=$!
kp_wait_login "$kp_port" 30 "$kohaproxy_pid" "$kp_word" || {
  log "kohaproxy does not accept logins; its log:"
  tail -n 30 "$work/kohaproxy.log" >&2
  exit 1
}
kp_writer() {
  root_sql "$db1_port" "SET SESSION wsrep_sync_wait = 1;
    SELECT writer FROM kohaproxy.galera_writer WHERE id = 1" 2>/dev/null || echo '?'
}

clk_tck=$(getconf CLK_TCK)
failed=0
rows=()

# sb WORKLOAD THREADS PORT SECONDS [EXTRA...]: one sysbench run (text protocol); output in
# $work/last.out.
sb() {
  sysbench "$1" "${sb_common[@]}" --mysql-port="$3" --threads="$2" --time="$4" \
    --report-interval=0 --percentile=95 --db-ps-mode=disable "${@:5}" run >"$work/last.out" 2>&1
}

# sb_field NAME: a figure from $work/last.out (tps qps queries p95 ignored reconnects).
sb_field() { kp_sb_field "$work/last.out" "$1"; }

sb_error() { kp_sb_error "$work/last.out"; }

# cc_cpu_ticks: clustercheck's CPU with its reaped children (the mariadb clients it runs):
# utime + stime + cutime + cstime, in ticks.
cc_cpu_ticks() {
  local stat rest
  local -a f
  stat=$(<"/proc/$cc_pid/stat") || return 1
  rest=${stat##*) }
  read -r -a f <<<"$rest"
  echo $((f[11] + f[12] + f[13] + f[14]))
}

short=$((WARMUP < 3 ? WARMUP : 3))
log "warm-up: ${WARMUP}s oltp_read_only, 8 threads, on ${node_names[0]} directly"
sb oltp_read_only 8 "$db1_port" "$WARMUP" || {
  tail -n 20 "$work/last.out" >&2
  exit 1
}
# kohaproxy sends reads to the other nodes: warm their buffer pools too.
for ((i = 1; i < NODES; i++)); do
  log "warm-up: ${short}s oltp_read_only, 4 threads, on ${node_names[i]} directly"
  sb oltp_read_only 4 "${node_ports[i]}" "$short" || log "warm-up on ${node_names[i]} failed: $(sb_error)"
done
log "warm-up: ${short}s oltp_point_select, 8 threads, through HAProxy, then kohaproxy"
sb oltp_point_select 8 "$ha_port" "$short" || log "warm-up through HAProxy failed: $(sb_error)"
sb oltp_point_select 8 "$kp_port" "$short" || log "warm-up through kohaproxy failed: $(sb_error)"
writer_before=$(kp_writer)
log "kohaproxy's writer: $writer_before"

# cell WORKLOAD[+skip_trx] THREADS: the three routes back to back; appends table rows.
cell() {
  local spec=$1 threads=$2 workload extra=() label route port pid word direct_tps=''
  local lagging s0 s1 c0 c1 k0 k1 rc tps qps queries p95 ign rec errors ratio usq rss
  local conf share note
  workload=${spec%%+*} label=$workload
  if [[ $spec == *+skip_trx ]]; then
    extra=(--skip_trx=on)
    label="$workload (skip_trx)"
  fi
  for route in direct haproxy kohaproxy; do
    case $route in
      direct) port=$db1_port pid='' word='' ;;
      haproxy) port=$ha_port pid=$haproxy_pid word=haproxy ;;
      kohaproxy) port=$kp_port pid=$kohaproxy_pid word=$kp_word ;;
    esac
    lagging=$(settle "$CATCHUP_TIMEOUT")
    sleep "$PAUSE"
    log "$label threads=$threads route=$route"
    if [[ -n $pid ]] && ! kp_alive "$pid" "$word"; then
      rows+=("| $label | $threads | $route | - | - | - | - | - | - | - | - | - | $route had exited before the run |")
      log "  $route has exited"
      failed=1
      continue
    fi
    s0=$(snapshot)
    c0='' k0=''
    [[ -n $pid ]] && c0=$(kp_cpu_ticks "$pid")
    [[ $route == haproxy ]] && k0=$(cc_cpu_ticks)
    rc=0
    sb "$workload" "$threads" "$port" "$DURATION" "${extra[@]}" || rc=$?
    c1='' rss='' k1=''
    if [[ -n $pid ]] && kp_alive "$pid" "$word"; then
      c1=$(kp_cpu_ticks "$pid")
      rss=$(kp_rss_kb "$pid")
    fi
    [[ $route == haproxy ]] && k1=$(cc_cpu_ticks)
    s1=$(snapshot)
    tps=$(sb_field tps) qps=$(sb_field qps) queries=$(sb_field queries) p95=$(sb_field p95)
    ign=$(sb_field ignored) rec=$(sb_field reconnects)
    errors=$(kp_sb_errors "$rc" "$ign" "$rec")
    note=''
    ((rc == 0)) || note="FAILED: $(sb_error)"
    [[ -n $tps ]] || note=${note:-FAILED: no result}
    ((rc == 0)) && [[ -n $tps ]] || failed=1
    conf=$(conflicts "$s0" "$s1")
    if [[ $route != direct && $conf != 0 ]]; then
      note+="${note:+; }certification conflicts with one writer"
      failed=1
    fi
    share=$(select_share "$s0" "$s1")
    [[ -n $lagging ]] && note+="${note:+; }not settled before the run: $lagging"
    if [[ -n $k0 && -n $k1 ]]; then
      note+="${note:+; }clustercheck $(awk -v t=$((k1 - k0)) -v hz="$clk_tck" 'BEGIN { printf "%.0f", t / hz * 1000 }') ms CPU"
    fi
    [[ $route == direct && -n $tps ]] && direct_tps=$tps
    ratio='-'
    if [[ -n $tps ]]; then
      ratio=$(awk -v a="$tps" -v b="$direct_tps" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')
    fi
    if [[ -n $c0 && -n $c1 && -n $queries && $queries != 0 ]]; then
      usq=$(awk -v t=$((c1 - c0)) -v hz="$clk_tck" -v q="$queries" 'BEGIN { printf "%.1f", t / hz / q * 1e6 }')
      rss=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
    elif [[ -n $pid ]]; then
      usq='?' rss='?' # the proxy died during the run, or sysbench gave no query count
    else
      usq='-' rss='-'
    fi
    if [[ -n $tps ]]; then
      tps=$(printf '%.0f' "$tps") qps=$(printf '%.0f' "$qps")
    fi
    rows+=("| $label | $threads | $route | ${tps:--} | ${qps:--} | ${p95:--} | $ratio | $usq | $rss | $errors | $conf | $share | $note |")
    log "  ${rows[-1]}"
  done
}

started=$(date -u '+%Y-%m-%d %H:%M UTC')
for c in "${cells[@]}"; do
  cell "${c%%:*}" "${c##*:}"
done

if ! kp_alive "$kohaproxy_pid" "$kp_word"; then
  log "kohaproxy exited during the runs; the end of its log:"
  tail -n 30 "$work/kohaproxy.log" >&2
  failed=1
fi
if ! kp_alive "$haproxy_pid" haproxy; then
  log "HAProxy exited during the runs"
  failed=1
fi
writer_after=$(kp_writer)
ha_end=$(ha_servers)
cc_changes=$(grep -c ' -> ' "$work/clustercheck.log" || true)

# ---------------------------------------------------------------------------------------
# report

elapsed=$((SECONDS - begin))
version() { "$@" 2>&1 | head -n 1 || true; }
mariadb_version=$(version root_sql "$db1_port" 'SELECT VERSION()')
galera_version=$(root_sql "$db1_port" "SHOW GLOBAL STATUS LIKE 'wsrep_provider_version'" 2>/dev/null |
  awk '{ print $2 }' || true)
git_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
git -C "$root" diff --quiet HEAD -- 2>/dev/null || git_rev+=' (with uncommitted changes)'
others="${node_names[*]:1}"
others=${others// /, }

stamp=$(date -u '+%Y-%m-%dT%H%MZ')
{
  cat <<EOF
# kohaproxy sysbench on Galera: direct vs HAProxy + clustercheck vs kohaproxy

One Galera sandbox, every process (sysbench, proxies, clustercheck, nodes) on this machine.

| item | value |
|---|---|
| CPU | $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) |
| kernel | $(uname -r) |
| MariaDB | $mariadb_version, Galera ${galera_version:-?}, $NODES nodes, buffer pool ${BUFFER_POOL_MB} MiB each |
| sysbench | $(version sysbench --version) |
| HAProxy | $(version haproxy -v | awk '{ print $3 }') (TCP mode, nbthread 2; ${node_names[0]} active, $others backup; option httpchk to clustercheck, inter 2s rise 2 fall 3, available when donor: $AVAILABLE_WHEN_DONOR) |
| kohaproxy | $(version "$bin" --version), git $git_rev; the sandbox's config as written (writer ${writer_before} before the runs, ${writer_after} after) |
| data | $TABLES tables x $TABLE_SIZE rows |
| script | $((elapsed / 60)) min $((elapsed % 60)) s from sandbox up to this report |

## Routes compared

Run $started. Runs of ${DURATION} s, text protocol (\`--db-ps-mode=disable\`), the routes of
a cell back to back; before each run every node was Synced with an empty receive queue,
then ${PAUSE} s pause.

- direct: sysbench to ${node_names[0]}. haproxy: HAProxy to its one active server
  (${node_names[0]}). kohaproxy: writes and transactions to its writer, autocommit reads to
  the other nodes with causal reads (\`wsrep_sync_wait\`).
- errors: 0, or each of sysbench's ignored errors, reconnects and a non-zero exit status.
- proxy CPU µs/query: the proxy process's utime+stime over the run over sysbench's query
  count (BEGIN/COMMIT included). HAProxy's excludes clustercheck (in the notes, with the
  mariadb clients it ran).
- cert conflicts: \`wsrep_local_cert_failures\` + \`wsrep_local_bf_aborts\` summed over the
  nodes, after minus before the run. With one writer it must be 0.
- SELECTs not on ${node_names[0]}: of the SELECTs all nodes counted during the run
  (\`Com_select\`), the share the other nodes ($others) counted, then the counts.
  kohaproxy's health probes count on every route (it runs through all of them): the direct
  and haproxy rows show that floor.

| workload | threads | route | tps | qps | p95 ms | tps vs direct | proxy CPU µs/query | proxy RSS MiB | errors | cert conflicts | SELECTs not on ${node_names[0]} | notes |
|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|---|
EOF
  printf '%s\n' "${rows[@]}"
  cat <<EOF

HAProxy's servers at the end: $ha_end. clustercheck answer changes logged: $cc_changes
(one per node at start).
EOF
} >"$work/report.md"

if mkdir -p "$results_dir" 2>/dev/null; then
  cp "$work/report.md" "$results_dir/sysbench-galera-$stamp.md"
  log "report written to $results_dir/sysbench-galera-$stamp.md"
else
  log "cannot create $results_dir; the report is only on stdout"
fi
cat "$work/report.md"
log "done in $((elapsed / 60)) min $((elapsed % 60)) s; exit status $failed"
exit "$failed"
