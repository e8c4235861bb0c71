#!/usr/bin/env bash
# Koha-shaped pages (tests/perl/koha_pages.pl) against one sandbox (master + 2 replicas,
# every process on this machine), through several routes back to back, counting stale
# reads: what the read/write split with causal reads costs, through one kohaproxy and
# through two (writes via one, reads via the other: two Koha hosts with a proxy each).
#
# A page (see koha_pages.pl), in the order of a Koha request: the worker's session row read
# on the read port (it must be what the previous page flushed on the write port, else a
# stale read), two catalogue reads on the read port, every 5th page a checkout transaction
# on the write port whose result is read back on the read port, and last the session row
# flushed (REPLACE) on the write port. Workers hold one connection to each port, as Koha's
# Starman workers do.
#
# Routes (write port / read port):
#   direct        the master / the master
#   haproxy       HAProxy (TCP mode, nbthread 2, to the master only) / the same
#   kp-1-global   kohaproxy A, [routing] read_write_split = true, causal_reads = "global"
#   kp-1-local    kohaproxy A' with causal_reads = "local" (writes this process acknowledged)
#   kp-2-global   kohaproxy A / kohaproxy B, both causal_reads = "global"
#   kp-2-local    kohaproxy A' / B', both "local": B cannot know A's writes, so stale reads
#                 are expected here (the control)
#   kp-split-off  kohaproxy with read_write_split = false (every read on the master)
# The kohaproxy processes (at most 5: A, B, A', B', split off) are started once, before the
# passes, from copies of the sandbox's kohaproxy.toml (own port, own admin socket, [routing]
# set, checked with `kohaproxy check-config`), and run until the end. kp-1-global is A
# alone and kp-1-local A' alone.
#
# Per run: pages/s and latency percentiles, stale reads and errors (koha_pages.pl's summary
# line); the CPU time of the kohaproxy processes serving the route (utime+stime,
# /proc/PID/stat) per page; the master's Com_select increase per page (read directly as root
# before and after: how many SELECTs reached the master, health probes included); the
# increase of the SHOW STATS rows named causal* (admin console) of the serving processes.
#
# Prints a markdown report on stdout (progress on stderr) and writes it to
# target/bench-results/koha-STAMP.md:
#   benches/koha.sh > koha.md
#   SMOKE=1 benches/koha.sh          # a check that everything works, about a minute
# Environment (defaults):
#   WORKERS=8 (koha_pages.pl workers, i.e. pairs of connections) DURATION=20 (s per run)
#   PASSES=2 (passes over all routes; even passes run them in reverse order)
#   ROUTES="direct haproxy kp-1-global kp-1-local kp-2-global kp-2-local kp-split-off"
#   WARMUP=5 (s of pages directly on the master before the passes) PAUSE=1 (s before each run)
#   CATCHUP_TIMEOUT=30 (s each replica may take to catch up with the master before a run)
#   SMOKE=1: WORKERS=2 DURATION=3 PASSES=1 WARMUP=1 unless set
#   RESULTS_DIR=target/bench-results
#   KOHAPROXY_BIN (default: target/release/kohaproxy, built first)
#   KEEP=1 keeps the temporary directory (sandbox, configs, logs, each run's output).
# Exit status: 1 if a run failed (or setup, or a proxy exited); else 3 if a route other
# than kp-2-local had a stale read (the report has a WARNING line); else 0.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

all_routes='direct haproxy kp-1-global kp-1-local kp-2-global kp-2-local kp-split-off'
if [[ ${SMOKE:-0} == 1 ]]; then
  WORKERS=${WORKERS:-2} DURATION=${DURATION:-3} PASSES=${PASSES:-1} WARMUP=${WARMUP:-1}
fi
WORKERS=${WORKERS:-8}
DURATION=${DURATION:-20}
PASSES=${PASSES:-2}
ROUTES=${ROUTES:-$all_routes}
WARMUP=${WARMUP:-5}
PAUSE=${PAUSE:-1}
CATCHUP_TIMEOUT=${CATCHUP_TIMEOUT:-30}
REPLICAS=2
pages_pl=$root/tests/perl/koha_pages.pl

log() { echo "bench $(date -u +%T): $*" >&2; }
want() { [[ " $ROUTES " == *" $1 "* ]]; }

read -r -a routes <<<"$ROUTES"
((${#routes[@]} > 0)) || {
  log "ROUTES is empty"
  exit 2
}
for r in "${routes[@]}"; do
  [[ " $all_routes " == *" $r "* ]] || {
    log "unknown route '$r' in ROUTES (known: $all_routes)"
    exit 2
  }
done
for v in WORKERS DURATION PASSES WARMUP PAUSE CATCHUP_TIMEOUT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || {
    log "$v must be a whole number (it is '${!v}')"
    exit 2
  }
done
((WORKERS > 0 && DURATION > 0 && PASSES > 0)) || {
  log "WORKERS, DURATION and PASSES must be positive"
  exit 2
}

needed=(mariadb python3 perl getconf)
want haproxy && needed+=(haproxy)
kp_need "${needed[@]}"
perl -MDBI -MDBD::mysql -e1 2>/dev/null || {
  log "perl's DBD::mysql is missing; run scripts/install-deps.sh (libdbd-mysql-perl)"
  exit 1
}

kp_bench_paths "$root"

begin=$SECONDS
kp_word=$(basename "$bin") # what our kohaproxy's command line contains
work=$(mktemp -d "${TMPDIR:-/tmp}/kohaproxy-koha.XXXXXX")
sandbox=$work/sandbox
mkdir -p "$work/runs"
haproxy_pid='' run_pid='' sandbox_up=false
# The kohaproxy processes, by name (g-a, g-b, l-a, l-b, off): pid, port, admin socket, log.
declare -A kp_pid=() kp_port=() kp_sock=() kp_log=()

# shellcheck disable=SC2317 # called from the EXIT trap
cleanup() {
  local rc=$? name
  trap - EXIT INT TERM
  set +e
  [[ -n $run_pid ]] && kp_stop_pid "$run_pid" koha_pages
  for name in "${!kp_pid[@]}"; do
    kp_stop_pid "${kp_pid[$name]}" "$kp_word"
  done
  [[ -n $haproxy_pid ]] && kp_stop_pid "$haproxy_pid" haproxy
  if $sandbox_up; then
    kp_sandbox_down "$bin" "$sandbox" >&2 || log "sandbox down failed; see $sandbox"
  fi
  kp_remove_work "$work"
  exit "$rc"
}
kp_traps

# Which kohaproxy processes each route needs: the write side first, then the read side
# (one name: both ports on it).
route_procs() {
  case $1 in
    kp-1-global) echo g-a ;;
    kp-1-local) echo l-a ;;
    kp-2-global) echo g-a g-b ;;
    kp-2-local) echo l-a l-b ;;
    kp-split-off) echo off ;;
  esac
}
proc_names=()
for r in "${routes[@]}"; do
  for n in $(route_procs "$r"); do
    [[ " ${proc_names[*]} " == *" $n "* ]] || proc_names+=("$n")
  done
done

# Distinct free ports: the sandbox's proxy port (unused: its config is only copied),
# HAProxy, and one per kohaproxy process.
ports=()
while ((${#ports[@]} < 2 + ${#proc_names[@]})); do
  p=$(kp_free_port)
  [[ " ${ports[*]} " == *" $p "* ]] || ports+=("$p")
done
sandbox_proxy_port=${ports[0]} ha_port=${ports[1]}
for i in "${!proc_names[@]}"; do
  n=${proc_names[i]}
  kp_port[$n]=${ports[i + 2]}
  kp_sock[$n]=$work/admin-$n.sock
  kp_log[$n]=$work/kohaproxy-$n.log
done

log "sandbox in $sandbox: master + $REPLICAS replicas"
sandbox_up=true
"$bin" sandbox up --dir "$sandbox" --replicas "$REPLICAS" --proxy-port "$sandbox_proxy_port" >&2
master_port=$(kp_master_port "$sandbox")
log "master on 127.0.0.1:$master_port"

# Replica ports, from sandbox.json (for the catch-up before each run).
replica_ports=()
if [[ -r $sandbox/sandbox.json ]]; then
  while read -r _ _ port _; do
    [[ $port != "$master_port" && $port != 0 ]] && replica_ports+=("$port")
  done < <(kp_sandbox_servers "$sandbox")
fi

root_sql() { mariadb --no-defaults -h127.0.0.1 -P"$1" -uroot -N -e "$2"; }

# catch_up SECONDS: waits (up to SECONDS per replica) until every replica has applied what
# the master has written. Prints the ports of those that did not make it.
catch_up() {
  local gtid port r lagging=''
  gtid=$(root_sql "$master_port" 'SELECT @@gtid_binlog_pos') || return 0
  for port in "${replica_ports[@]}"; do
    r=$(root_sql "$port" "SELECT MASTER_GTID_WAIT('$gtid', $1)" 2>&1) || r="error: $r"
    if [[ $r != 0 ]]; then
      log "  the replica on port $port did not reach GTID $gtid within $1 s ($r)"
      lagging+="${lagging:+, }$port"
    fi
  done
  [[ -z $lagging ]] || echo "$lagging"
}

# com_select: the master's Com_select ('' if it does not answer).
com_select() {
  { root_sql "$master_port" "SHOW GLOBAL STATUS LIKE 'Com_select'" 2>/dev/null || true; } | awk '{ print $2 }'
}

log "koha_pages.pl setup through the master ($WORKERS workers' items)"
if ! perl "$pages_pl" --setup-only --write-port "$master_port" --workers "$WORKERS" \
  >"$work/setup.out" 2>&1; then
  cat "$work/setup.out" >&2
  exit 1
fi
catch_up 120 >/dev/null

if want haproxy; then
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
fi

# kp_config DST PORT SOCKET SPLIT CAUSAL: a copy of the sandbox's config (parsed with
# tomllib, written back as TOML) that listens on PORT, has its admin console on SOCKET,
# [routing] read_write_split = SPLIT and (unless CAUSAL is -) causal_reads = CAUSAL, and
# no backup schedule. Checked with `kohaproxy check-config`.
kp_config() {
  python3 - "$sandbox/kohaproxy.toml" "$@" <<'EOF'
import json, re, sys, tomllib
src, dst, port, sock, split, causal = sys.argv[1:]
with open(src, "rb") as f:
    cfg = tomllib.load(f)
cfg.setdefault("proxy", {})["listen"] = f"127.0.0.1:{port}"
cfg.setdefault("admin", {})["socket"] = sock
routing = cfg.setdefault("routing", {})
routing["read_write_split"] = split == "true"
if causal != "-":
    routing["causal_reads"] = causal
if "backup" in cfg:
    cfg["backup"]["schedule"] = "off"  # one backup scheduler per cluster at most: none here

def key(k):
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)

def value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise ValueError(f"cannot write {v!r} as TOML here")

def is_tables(v):
    return isinstance(v, list) and v and all(isinstance(x, dict) for x in v)

def emit(table, path, out, header):
    plain = [(k, v) for k, v in table.items() if not isinstance(v, dict) and not is_tables(v)]
    if header:
        out.append(header)
    for k, v in plain:
        out.append(f"{key(k)} = {value(v)}")
    for k, v in table.items():
        sub = path + [key(k)]
        if isinstance(v, dict):
            emit(v, sub, out, "[" + ".".join(sub) + "]")
        elif is_tables(v):
            for item in v:
                emit(item, sub, out, "[[" + ".".join(sub) + "]]")

out = []
emit(cfg, [], out, None)
text = "\n".join(out) + "\n"
assert tomllib.loads(text) == cfg, "the TOML written back does not read back the same"
with open(dst, "w", encoding="utf-8") as f:
    f.write(text)
EOF
  "$bin" check-config "$1" >&2
}

# start_kohaproxy NAME CONFIG: starts it in the background, waits until it accepts logins.
start_kohaproxy() {
  local n=$1
  log "starting kohaproxy $n on 127.0.0.1:${kp_port[$n]} with $2 (log: ${kp_log[$n]})"
  "$bin" run --config "$2" >"${kp_log[$n]}" 2>&1 &
  kp_pid[$n]=$!
  kp_wait_login "${kp_port[$n]}" 30 "${kp_pid[$n]}" "$kp_word" || {
    log "kohaproxy $n does not accept logins; its log:"
    tail -n 30 "${kp_log[$n]}" >&2
    exit 1
  }
}

for n in "${proc_names[@]}"; do
  case $n in
    g-*) split=true causal=global ;;
    l-*) split=true causal=local ;;
    off) split=false causal=- ;;
  esac
  kp_config "$work/kohaproxy-$n.toml" "${kp_port[$n]}" "${kp_sock[$n]}" "$split" "$causal" || {
    log "the config for kohaproxy $n (causal_reads = $causal) is refused (a binary without" \
      "causal_reads = \"local\" refuses it: leave the *-local routes out of ROUTES)"
    exit 1
  }
  start_kohaproxy "$n" "$work/kohaproxy-$n.toml"
done

# The ports of a route: "WRITE READ".
route_ports() {
  local procs
  case $1 in
    direct) echo "$master_port $master_port" ;;
    haproxy) echo "$ha_port $ha_port" ;;
    *)
      read -r -a procs <<<"$(route_procs "$1")"
      echo "${kp_port[${procs[0]}]} ${kp_port[${procs[-1]}]}"
      ;;
  esac
}

# cpu_ticks NAME...: utime+stime of these kohaproxy processes together ('' if one is gone).
cpu_ticks() {
  local n t sum=0
  for n in "$@"; do
    kp_alive "${kp_pid[$n]}" "$kp_word" || return 0
    t=$(kp_cpu_ticks "${kp_pid[$n]}") || return 0
    sum=$((sum + t))
  done
  echo "$sum"
}

# causal_stats NAME...: "name value" per SHOW STATS row named causal*, summed over these
# processes.
causal_stats() {
  local n
  for n in "$@"; do
    mariadb --no-defaults -S "${kp_sock[$n]}" --batch -N -e 'SHOW STATS' 2>/dev/null || true
  done | awk -F'\t' '$1 ~ /^causal/ { s[$1] += $2 } END { for (k in s) print k, s[k] }' | sort
}

# pages_run WRITE READ SECONDS OUT ERR: koha_pages.pl in the background (so that the traps
# run at once on a signal), waited for; its exit status.
pages_run() {
  local rc=0
  perl "$pages_pl" --no-setup --write-port "$1" --read-port "$2" --seconds "$3" \
    --workers "$WORKERS" >"$4" 2>"$5" &
  run_pid=$!
  wait "$run_pid" || rc=$?
  run_pid=''
  return "$rc"
}

if ((WARMUP > 0)); then
  log "warm-up: ${WARMUP} s of pages directly on the master"
  pages_run "$master_port" "$master_port" "$WARMUP" "$work/warmup.out" "$work/warmup.err" || {
    log "the warm-up failed:"
    tail -n 20 "$work/warmup.err" >&2
    exit 1
  }
fi

# The master's Com_select while nothing but the proxies' health probes runs.
idle_secs=$(( ${SMOKE:-0} == 1 ? 2 : 5 ))
s0=$(com_select)
sleep "$idle_secs"
s1=$(com_select)
idle_rate=$(awk -v a="$s0" -v b="$s1" -v t="$idle_secs" 'BEGIN { if (a == "" || b == "") print "?"; else printf "%.1f", (b - a) / t }')
log "idle: $idle_rate SELECT/s on the master (health probes)"

clk_tck=$(getconf CLK_TCK)
failed=0 stale_warn=0
runs_tsv=$work/runs.tsv
: >"$runs_tsv"

# run_route PASS ROUTE: one run; appends a line to runs.tsv.
run_route() {
  local pass=$1 route=$2 procs=() ports wport rport n status=ok note='' lagging
  local c0='' c1='' s0 s1 st0 st1 out err rc=0 line kv gone
  local pages=- wall=- pps=- p50=- p95=- p99=- stale=- errors=- codes=- cpu=- sel=- causal=-
  read -r -a procs <<<"$(route_procs "$route")"
  read -r wport rport <<<"$(route_ports "$route")"
  lagging=$(catch_up "$CATCHUP_TIMEOUT")
  [[ -z $lagging ]] || note="replicas behind before the run: $lagging"
  sleep "$PAUSE"
  log "pass $pass: $route (write port $wport, read port $rport)"
  for n in "${procs[@]}"; do
    if ! kp_alive "${kp_pid[$n]}" "$kp_word"; then
      status="kohaproxy $n had exited"
    fi
  done
  if [[ $route == haproxy ]] && ! kp_alive "$haproxy_pid" haproxy; then
    status='HAProxy had exited'
  fi
  if [[ $status != ok ]]; then
    failed=1
    log "  $status"
    printf '%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t%s\n' "$pass" "$route" "$status" "${note:--}" >>"$runs_tsv"
    return
  fi
  out=$work/runs/$pass-$route.out err=$work/runs/$pass-$route.err
  ((${#procs[@]})) && c0=$(cpu_ticks "${procs[@]}") && st0=$(causal_stats "${procs[@]}")
  s0=$(com_select)
  pages_run "$wport" "$rport" "$DURATION" "$out" "$err" || rc=$?
  s1=$(com_select)
  ((${#procs[@]})) && c1=$(cpu_ticks "${procs[@]}") && st1=$(causal_stats "${procs[@]}")
  # A proxy that exited during the run fails it (koha_pages.pl stops reconnecting when the
  # time is up, so it may not have noticed).
  gone=''
  for n in "${procs[@]}"; do
    kp_alive "${kp_pid[$n]}" "$kp_word" || gone+="${gone:+, }kohaproxy $n"
  done
  if [[ $route == haproxy ]] && ! kp_alive "$haproxy_pid" haproxy; then
    gone=HAProxy
  fi
  line=$(grep '^pages=' "$out" | tail -n 1 || true)
  if [[ -z $line ]]; then
    status="FAILED: exit $rc, no summary: $({ grep -v 'STALE' "$err" || true; } | tail -n 1 | cut -c1-150 | tr '|\t' '/ ')"
    failed=1
  else
    for kv in $line; do
      case ${kv%%=*} in
        pages) pages=${kv#*=} ;;
        seconds) wall=${kv#*=} ;;
        pages_per_s) pps=${kv#*=} ;;
        p50_ms) p50=${kv#*=} ;;
        p95_ms) p95=${kv#*=} ;;
        p99_ms) p99=${kv#*=} ;;
        stale) stale=${kv#*=} ;;
        errors) errors=${kv#*=} ;;
        error_codes) codes=${kv#*=} ;;
      esac
    done
    if [[ -n $gone ]]; then
      status="FAILED: $gone exited during the run"
      failed=1
    elif ((rc != 0)); then
      status="FAILED: exit $rc: $({ grep 'gives up\|failed\|died\|exited' "$err" || true; } | head -n 1 | cut -c1-150 | tr '|\t' '/ ')"
      failed=1
    elif ((pages == 0)); then
      status='FAILED: no page completed'
      failed=1
    fi
    if ((stale > 0)) && [[ $route != kp-2-local ]]; then
      stale_warn=1
    fi
    if [[ -n $c0 && -n $c1 ]] && ((pages > 0)); then
      cpu=$(awk -v t=$((c1 - c0)) -v hz="$clk_tck" -v p="$pages" 'BEGIN { printf "%.0f", t / hz / p * 1e6 }')
    elif ((${#procs[@]})); then
      cpu='?' # a proxy exited during the run
    fi
    if [[ -n $s0 && -n $s1 ]] && ((pages > 0)); then
      sel=$(awk -v a="$s0" -v b="$s1" -v p="$pages" 'BEGIN { printf "%.2f", (b - a) / p }')
    fi
    if [[ -n $gone ]]; then
      causal='?'
    elif ((${#procs[@]})); then
      causal=$({ join -a 2 -e 0 -o 0,1.2,2.2 <(echo "$st0") <(echo "$st1") 2>/dev/null || true; } |
        awk 'NF == 3 && $3 != $2 { printf "%s%s %+d", sep, $1, $3 - $2; sep = ", " }')
      causal=${causal:-none}
    fi
  fi
  # stale reads of this run, as koha_pages.pl described them (the first few)
  if [[ $stale != - && $stale != 0 ]]; then
    grep -m 3 'STALE' "$err" | cut -c1-300 | tr '|\t' '/ ' >"$work/runs/$pass-$route.stale" || true
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pass" "$route" "$status" \
    "$pages" "$wall" "$pps" "$p50" "$p95" "$p99" "$stale" "$errors" "$codes" "$cpu" "$sel" "$causal" "${note:--}" \
    >>"$runs_tsv"
  log "  $status: pages/s $pps, p95 $p95 ms, stale $stale, errors $errors ($codes), CPU µs/page $cpu, master SELECTs/page $sel, $causal"
}

passes_started=$(date -u '+%Y-%m-%d %H:%M UTC')
for ((pass = 1; pass <= PASSES; pass++)); do
  order=("${routes[@]}")
  if ((pass % 2 == 0)); then
    order=()
    for ((i = ${#routes[@]} - 1; i >= 0; i--)); do order+=("${routes[i]}"); done
  fi
  for route in "${order[@]}"; do
    run_route "$pass" "$route"
  done
done

for n in "${proc_names[@]}"; do
  if ! kp_alive "${kp_pid[$n]}" "$kp_word"; then
    log "kohaproxy $n exited during the passes; the end of its log:"
    tail -n 30 "${kp_log[$n]}" >&2
    failed=1
  fi
done

# ---------------------------------------------------------------------------------------
# report

elapsed=$((SECONDS - begin))
version() { "$@" 2>&1 | head -n 1 || true; }
mariadb_version=$(version root_sql "$master_port" 'SELECT VERSION()')
git_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
git -C "$root" diff --quiet HEAD -- 2>/dev/null || git_rev+=' (with uncommitted changes)'
haproxy_version='-'
want haproxy && haproxy_version="$(version haproxy -v | awk '{ print $3 }') (TCP mode, nbthread 2, to the master only)"
proc_list=''
for n in "${proc_names[@]}"; do
  proc_list+="${proc_list:+, }$n :${kp_port[$n]}"
done

stamp=$(date -u '+%Y-%m-%dT%H%MZ')
{
  cat <<EOF
# kohaproxy: Koha-shaped pages with causal reads, through one and two proxies

One sandbox (master + $REPLICAS replicas), every process (koha_pages.pl, proxies, servers) on
this machine.

| item | value |
|---|---|
| CPU | $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) |
| kernel | $(uname -r) |
| MariaDB | $mariadb_version |
| HAProxy | $haproxy_version |
| kohaproxy | $(version "$bin" --version): $bin, built $(date -u -r "$bin" '+%Y-%m-%d %H:%M UTC'); working tree git $git_rev; processes (name :port): ${proc_list:-none} |
| Perl, DBD::mysql | $(perl -e 'printf "%vd", $^V'), $(perl -MDBD::mysql -e 'print $DBD::mysql::VERSION') |
| load | koha_pages.pl, $WORKERS workers (one connection to each port each), ${DURATION} s per run, $PASSES pass(es), routes in order $ROUTES (even passes reversed); passes started $passes_started |
| idle master | $idle_rate SELECT/s on the master with no load (the kohaproxy processes' health probes): counted in "master SELECTs/page" |
| script | $((elapsed / 60)) min $((elapsed % 60)) s from sandbox up to this report |

A page: the session row written (write port) and read back (read port), an OPAC title
search and a detail view (read port), and on every 5th page a checkout transaction (write
port) whose item is read back (read port). "stale": reads that did not return what a write
acknowledged before them had written. "proxy CPU µs/page": utime+stime of the kohaproxy
processes serving the route over the run, per page. "master SELECTs/page": the master's
Com_select increase over the run, per page (direct: about 3.4 per page; with the split,
what still reaches the master: checkout reads inside the transaction, reads sent to the
master by the causal check, and causal position queries, if they are SELECTs). "causal":
the increase of the SHOW STATS rows named causal* of the serving processes (rows that did
not change are left out).
EOF
  python3 - "$runs_tsv" "$PASSES" <<'EOF'
import statistics, sys
path, passes = sys.argv[1], int(sys.argv[2])
cols = "pass route status pages wall pps p50 p95 p99 stale errors codes cpu sel causal note".split()
runs = [dict(zip(cols, line.rstrip("\n").split("\t"))) for line in open(path, encoding="utf-8") if line.strip()]

def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None

def fmt(v, spec):
    return "-" if v is None else format(v, spec)

order = []
for r in runs:
    if r["route"] not in order:
        order.append(r["route"])

for p in range(1, passes + 1):
    rows = [r for r in runs if r["pass"] == str(p)]
    base = next((num(r["pps"]) for r in rows if r["route"] == "haproxy"), None)
    print(f"\n## Pass {p}\n")
    print("| route | pages/s | vs haproxy | p50 ms | p95 ms | p99 ms | stale | errors | error codes | proxy CPU µs/page | master SELECTs/page | causal (SHOW STATS) | notes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---|")
    for r in rows:
        pps = num(r["pps"])
        vs = fmt(pps / base if pps is not None and base else None, ".2f")
        notes = "; ".join(x for x in (r["status"] if r["status"] != "ok" else "", r["note"] if r["note"] != "-" else "") if x)
        print(f"| {r['route']} | {r['pps']} | {vs} | {r['p50']} | {r['p95']} | {r['p99']} | {r['stale']} | {r['errors']} | {r['codes']} | {r['cpu']} | {r['sel']} | {r['causal']} | {notes} |")

def med(route, key):
    vals = [num(r[key]) for r in runs if r["route"] == route and r["status"] == "ok" and num(r[key]) is not None]
    return statistics.median(vals) if vals else None

def total(route, key):
    vals = [num(r[key]) for r in runs if r["route"] == route and num(r[key]) is not None]
    return int(sum(vals)) if vals else None

print(f"\n## Summary (median over {passes} pass(es); stale and errors: total)\n")
print("| route | pages/s | vs haproxy | p95 ms | stale | errors | proxy CPU µs/page | master SELECTs/page |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
base = med("haproxy", "pps")
for route in order:
    pps = med(route, "pps")
    vs = fmt(pps / base if pps is not None and base else None, ".2f")
    cpu = med(route, "cpu")
    cpu = "-" if route in ("direct", "haproxy") else fmt(cpu, ".0f")
    print(f"| {route} | {fmt(pps, '.1f')} | {vs} | {fmt(med(route, 'p95'), '.2f')} | {fmt(total(route, 'stale'), 'd')} | {fmt(total(route, 'errors'), 'd')} | {cpu} | {fmt(med(route, 'sel'), '.2f')} |")

g2, l1, g1 = med("kp-2-global", "pps"), med("kp-1-local", "pps"), med("kp-1-global", "pps")
def rel(other, name):
    if other is None:
        return f"{name}: not measured"
    return f"{g2 / other:.2f} x {name} ({other:.1f} pages/s)"
print()
if g2 is None:
    print("Cost of the cross-proxy guarantee: kp-2-global was not measured.")
else:
    print(f"Cost of the cross-proxy guarantee: kp-2-global runs {g2:.1f} pages/s = "
          f"{rel(l1, 'kp-1-local')} and {rel(g1, 'kp-1-global')}.")

bad = [r for r in runs if r["route"] != "kp-2-local" and (num(r["stale"]) or 0) > 0]
control = [r for r in runs if r["route"] == "kp-2-local"]
if control:
    n = sum(int(num(r["stale"]) or 0) for r in control)
    print(f"\nkp-2-local (the control: B cannot know A's writes): {n} stale read(s) in {len(control)} run(s).")
for r in bad:
    print(f"\n**WARNING: {r['stale']} stale read(s) in pass {r['pass']}, route {r['route']}, which promises causal reads.**")
    try:
        for line in open(path.rsplit("/", 1)[0] + f"/runs/{r['pass']}-{r['route']}.stale", encoding="utf-8"):
            print(f"- `{line.strip()}`")
    except OSError:
        pass
failed = [r for r in runs if r["status"] != "ok"]
if failed:
    print("\nFailed runs: " + "; ".join(f"pass {r['pass']} {r['route']}: {r['status']}" for r in failed))
EOF
} >"$work/report.md"

if mkdir -p "$results_dir" 2>/dev/null; then
  cp "$work/report.md" "$results_dir/koha-$stamp.md"
  log "report written to $results_dir/koha-$stamp.md"
else
  log "cannot create $results_dir; the report is only on stdout"
fi
cat "$work/report.md"
status=0
if ((failed)); then
  status=1
elif ((stale_warn)); then
  status=3
fi
log "done in $((elapsed / 60)) min $((elapsed % 60)) s; exit status $status"
exit "$status"
