# shellcheck shell=bash
# Helpers shared by scripts/demo.sh and the benches (sysbench.sh, backup.sh). Source it; it defines functions
# only. Nothing here kills a process the calling script did not start: every stop goes by a
# pid the caller recorded, and is checked against the process's command line first.

# kp_toml_addr FILE listen|master: prints host:port of the proxy listener ([proxy] listen)
# or of the master (the first [[servers]] address, db1 in a sandbox).
kp_toml_addr() {
  python3 - "$1" "$2" <<'EOF'
import re, sys
path, what = sys.argv[1], sys.argv[2]
text = open(path, encoding="utf-8").read()
try:
    import tomllib
    cfg = tomllib.loads(text)
    addr = cfg["proxy"]["listen"] if what == "listen" else cfg["servers"][0]["address"]
except ImportError:  # python < 3.11: good enough for the files the sandbox writes
    section = "[proxy]" if what == "listen" else "[[servers]]"
    key = "listen" if what == "listen" else "address"
    body = text.split(section, 1)[1]
    addr = re.search(r'^\s*%s\s*=\s*"([^"]+)"' % key, body, re.M).group(1)
print(addr)
EOF
}

# kp_sandbox_servers DIR: prints "name role port pid" per server from DIR/sandbox.json,
# which may be a list of servers, {"servers": [...]}, or {name: {...}}.
kp_sandbox_servers() {
  python3 - "$1/sandbox.json" <<'EOF'
import json, sys
data = json.load(open(sys.argv[1], encoding="utf-8"))
if isinstance(data, dict):
    if isinstance(data.get("servers"), list):
        data = data["servers"]
    else:
        data = [dict(v, name=v.get("name", k)) for k, v in data.items() if isinstance(v, dict)]
for s in data:
    print(s.get("name", "?"), s.get("role", "?"), s.get("port", 0), s.get("pid") or 0)
EOF
}

# kp_master_port DIR: the master's port, from DIR/kohaproxy.toml, else DIR/sandbox.json.
kp_master_port() {
  local addr
  if addr=$(kp_toml_addr "$1/kohaproxy.toml" master 2>/dev/null); then
    echo "${addr##*:}"
    return
  fi
  kp_sandbox_servers "$1" | awk '$2 == "master" || $2 == "primary" || ($1 == "db1" && !p) { p = $3 } END { if (!p) exit 1; print p }'
}

# kp_free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
kp_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# kp_port_open PORT: true if something accepts connections on 127.0.0.1:PORT.
kp_port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# kp_state PID: prints the process state letter of /proc/PID/stat (R, S, D, Z...); fails
# when there is no such process.
kp_state() {
  local stat
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  echo "${stat:0:1}"
}

# kp_running PID: true while PID runs: not gone, not a zombie (an exited child of ours).
# Not judged by its command line, which is also empty for a moment while it execs (seen:
# HAProxy taken for dead at its start in CI).
kp_running() {
  local state
  state=$(kp_state "$1") || return 1
  [[ $state != [ZX] ]]
}

# kp_alive PID [WORD]: true if PID runs and (when given) its command line contains WORD.
# A child started with `&` a moment ago still runs the shell until it execs its program;
# its command line is then its parent's, and kp_alive waits (up to 5 s) for the exec.
kp_alive() {
  local pid=$1 word=${2:-} cmd i
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 1
  [[ -z $word ]] && return 0
  for ((i = 0; i < 50; i++)); do
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
    [[ $cmd == *"$word"* ]] && return 0
    kp_not_yet_execed "$pid" "$cmd" || return 1
    sleep 0.1
  done
  return 1
}

# kp_not_yet_execed PID CMDLINE: true if PID is a live fork whose command line (CMDLINE)
# is still its parent's, i.e. it has not exec'd its program yet.
kp_not_yet_execed() {
  local pid=$1 cmd=$2 stat rest state ppid
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  rest=${stat##*) }
  read -r state ppid _ <<<"$rest"
  [[ $state != [ZX] && $ppid =~ ^[0-9]+$ ]] || return 1
  # Empty while a live process execs: not there yet.
  [[ -z $cmd ]] && return 0
  [[ $cmd == "$(tr '\0' ' ' 2>/dev/null <"/proc/$ppid/cmdline")" ]]
}

# kp_stop_pid PID WORD: SIGTERM the process if it is still ours (command line contains
# WORD), wait up to 10 s, then SIGKILL.
kp_stop_pid() {
  local pid=$1 word=$2 i
  kp_alive "$pid" "$word" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; i++)); do
    # an exited child of ours is a zombie with an empty command line: not alive
    kp_alive "$pid" "$word" || break
    sleep 0.1
  done
  if kp_alive "$pid" "$word"; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true # reaps it when it is our child; harmless otherwise
}

# kp_sandbox_down BIN DIR: `kohaproxy sandbox down`; if that fails, stop the mariadbd
# processes this sandbox's sandbox.json lists (checked: mariadbd with DIR on its command line).
kp_sandbox_down() {
  local bin=$1 dir=$2 name role port pid
  [[ -e $dir/sandbox.json || -e $dir/kohaproxy.toml ]] || return 0
  if [[ -x $bin ]] && "$bin" sandbox down --dir "$dir"; then
    return 0
  fi
  echo "kohaproxy sandbox down failed; stopping the servers listed in $dir/sandbox.json" >&2
  [[ -r $dir/sandbox.json ]] || return 1
  kp_sandbox_servers "$dir" | while read -r name role port pid; do
    if kp_alive "$pid" "$dir"; then
      echo "  stopping $name ($role, port $port, pid $pid)" >&2
      kp_stop_pid "$pid" "$dir"
    fi
  done
}

# kp_cpu_ticks PID: utime + stime (fields 14 and 15 of /proc/PID/stat, all threads), in ticks.
kp_cpu_ticks() {
  local stat rest
  local -a f
  stat=$(<"/proc/$1/stat") || return 1
  rest=${stat##*) }        # the command name (field 2) may contain spaces; skip past it
  read -r -a f <<<"$rest"  # f[0] is field 3
  echo $((f[11] + f[12]))
}

# kp_rss_kb PID: VmRSS in KiB.
kp_rss_kb() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# kp_wait_login PORT SECONDS [PID WORD]: waits until koha/koha can run SELECT 1 on PORT;
# gives up early if the process PID (when given) has exited. WORD is not checked here: a
# process just started with `cmd &` is, for a moment, still the script's own subshell,
# whose command line lacks it (seen under load: HAProxy "did not pass logins" at once,
# with an empty log).
kp_wait_login() {
  local port=$1 secs=$2 pid=${3:-} word=${4:-} deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    if mariadb -h127.0.0.1 -P"$port" -ukoha -pkoha --connect-timeout=2 -e 'SELECT 1' >/dev/null 2>&1; then
      return 0
    fi
    if [[ -n $pid ]] && ! kp_running "$pid"; then
      echo "${word:-process} $pid exited before it passed a login on 127.0.0.1:$port" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "no login on 127.0.0.1:$port within ${secs}s" >&2
  return 1
}

# kp_bench_paths ROOT: sets target_dir, bin (KOHAPROXY_BIN, or a release build made now;
# the build's output goes to stderr) and results_dir (RESULTS_DIR, default
# target/bench-results), all absolute.
kp_bench_paths() {
  local root=$1
  target_dir=${CARGO_TARGET_DIR:-$root/target}
  [[ $target_dir == /* ]] || target_dir=$root/$target_dir
  if [[ -n ${KOHAPROXY_BIN:-} ]]; then
    bin=$KOHAPROXY_BIN
  else
    bin=$target_dir/release/kohaproxy
    echo "building kohaproxy (release)" >&2
    (cd "$root" && cargo build --release >&2)
  fi
  results_dir=${RESULTS_DIR:-$target_dir/bench-results}
  [[ $results_dir == /* ]] || results_dir=$root/$results_dir
}

# kp_remove_work DIR: the last step of a bench's EXIT trap: removes its temporary
# directory DIR, or with KEEP=1 keeps it and says where.
kp_remove_work() {
  if [[ ${KEEP:-0} == 1 ]]; then
    echo "kept $1" >&2
  else
    rm -rf "$1"
  fi
}

# kp_traps: runs the calling script's `cleanup` function on exit, and turns Ctrl-C and
# SIGTERM into exits (so that cleanup runs then too).
kp_traps() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# kp_start_haproxy DIR PORT: starts HAProxy on DIR/haproxy.cfg in the background (pid in
# $haproxy_pid, log in DIR/haproxy.log) and waits until it passes logins on PORT; exits
# the script with HAProxy's log if it does not.
kp_start_haproxy() {
  haproxy -f "$1/haproxy.cfg" -db >"$1/haproxy.log" 2>&1 &
  haproxy_pid=$!
  kp_wait_login "$2" 20 "$haproxy_pid" haproxy || {
    echo "HAProxy does not pass logins:" >&2
    cat "$1/haproxy.log" >&2
    exit 1
  }
}

# kp_sb_errors RC IGNORED RECONNECTS: a sysbench run's errors for a report: "0" when it
# exited 0 (RC), ignored no error and never reconnected; else each non-zero one.
kp_sb_errors() {
  local errors=''
  [[ ${2:-0} != 0 ]] && errors+="ignored $2; "
  [[ ${3:-0} != 0 ]] && errors+="reconnects $3; "
  (($1 == 0)) || errors+="exit $1; "
  errors=${errors%; }
  echo "${errors:-0}"
}

# kp_need CMD...: exits the script, saying so, unless every CMD is on PATH (/usr/sbin
# added, where Debian puts haproxy).
kp_need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin
    command -v "$c" >/dev/null 2>&1 || {
      echo "$c not found; run scripts/install-deps.sh" >&2
      exit 1
    }
  done
}

# kp_sb_field FILE NAME: a figure from sysbench's output in FILE (tps qps queries p95
# ignored reconnects); empty if it has none.
kp_sb_field() {
  case $2 in
    tps) awk '$1 == "transactions:" { sub(/\(/, "", $3); print $3 }' "$1" ;;
    qps) awk '$1 == "queries:" { sub(/\(/, "", $3); print $3 }' "$1" ;;
    queries) awk '$1 == "queries:" { print $2 }' "$1" ;;
    p95) awk '$1 == "95th" { print $3 }' "$1" ;;
    ignored) awk '$1 == "ignored" && $2 == "errors:" { print $3 }' "$1" ;;
    reconnects) awk '$1 == "reconnects:" { print $2 }' "$1" ;;
  esac
}

# kp_sb_error FILE: the first line of sysbench's output in FILE that reports an error,
# cut for a table cell.
kp_sb_error() { grep -m1 -i -E 'fatal|error' "$1" | cut -c1-120 | tr '|' '/' || true; }

# kp_sb_prepare PORT LOG SYSBENCH_ARGS...: recreates the sbtest database on 127.0.0.1:PORT
# (as root) and fills it with `sysbench oltp_read_write ... prepare` (SYSBENCH_ARGS: the
# connection and table options); on failure shows the end of LOG and exits the script.
kp_sb_prepare() {
  local port=$1 out=$2
  shift 2
  mariadb -h127.0.0.1 -P"$port" -uroot -N -e 'DROP DATABASE IF EXISTS sbtest; CREATE DATABASE sbtest'
  if ! sysbench oltp_read_write "$@" --mysql-port="$port" --threads=4 prepare >"$out" 2>&1; then
    tail -n 20 "$out" >&2
    exit 1
  fi
}
