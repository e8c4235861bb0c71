#!/usr/bin/env bash
# The kohaproxy demo on one machine: a local MariaDB cluster (a master and two replicas),
# kohaproxy in front of it on 127.0.0.1:6033, and Koha's sample catalogue loaded through it.
#
#   scripts/demo.sh          install packages, build, start everything (replaces an earlier demo)
#   scripts/demo.sh stop     stop the proxy and the cluster
#
# Environment: KOHAPROXY_DEMO_DIR (default ./sandbox-data in the repo),
#              KOHAPROXY_DEMO_PORT (default 6033).
set -euo pipefail
caller_pwd=$PWD
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

dir=${KOHAPROXY_DEMO_DIR:-$root/sandbox-data}
[[ $dir == /* ]] || dir=$caller_pwd/$dir
port=${KOHAPROXY_DEMO_PORT:-6033}
bin=${CARGO_TARGET_DIR:-$root/target}/release/kohaproxy
[[ $bin == /* ]] || bin=$root/$bin
koha=$root/../shared/koha

stop() {
  if [[ -f $dir/proxy.pid ]]; then
    local pid
    pid=$(<"$dir/proxy.pid")
    if kp_alive "$pid" kohaproxy; then
      echo "stopping kohaproxy (pid $pid)"
      kp_stop_pid "$pid" kohaproxy
    fi
    rm -f "$dir/proxy.pid"
  fi
  if [[ -e $dir/sandbox.json || -e $dir/kohaproxy.toml ]]; then
    echo "stopping the sandbox in $dir"
    kp_sandbox_down "$bin" "$dir"
  fi
}

case ${1:-up} in
  stop | down)
    stop
    exit 0
    ;;
  up) ;;
  *)
    echo "usage: $0 [stop]" >&2
    exit 2
    ;;
esac

trap 'echo; echo "demo: failed. Logs are in $dir; scripts/demo.sh stop cleans up." >&2' ERR

echo "== system packages"
bash scripts/install-deps.sh

echo "== building kohaproxy (release)"
if ! command -v cargo >/dev/null 2>&1; then
  # shellcheck source=/dev/null
  [[ -r $HOME/.cargo/env ]] && . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "demo: cargo not found; install Rust with https://rustup.rs and run again" >&2
  exit 1
fi
cargo build --release

echo "== stopping any previous demo in $dir"
stop
# A directory the sandbox wrote is ours to clear; anything else we leave alone.
if [[ -e $dir/sandbox.json ]]; then
  rm -rf "$dir"
fi
if kp_port_open "$port"; then
  echo "demo: 127.0.0.1:$port is already in use; stop what listens there or set KOHAPROXY_DEMO_PORT" >&2
  exit 1
fi

echo "== starting the MariaDB sandbox (master db1, replicas db2 and db3)"
"$bin" sandbox up --dir "$dir" --proxy-port "$port"
"$bin" check-config "$dir/kohaproxy.toml"

echo "== starting kohaproxy on 127.0.0.1:$port (log: $dir/proxy.log)"
nohup "$bin" run --config "$dir/kohaproxy.toml" </dev/null >"$dir/proxy.log" 2>&1 &
echo $! >"$dir/proxy.pid"
if ! kp_wait_login "$port" 30 "$(<"$dir/proxy.pid")" kohaproxy; then
  echo "demo: kohaproxy does not accept logins; the end of $dir/proxy.log:" >&2
  tail -n 20 "$dir/proxy.log" >&2
  false
fi

if [[ -d $koha ]]; then
  echo "== loading Koha's sample catalogue into database koha, through the proxy"
  env -u KOHA_LOAD_TIMESTAMP bash "$koha/load.sh" 127.0.0.1 "$port" koha koha koha
else
  echo "== no Koha sample data at $koha; skipping the catalogue (database koha is empty)"
  mariadb -h127.0.0.1 -P"$port" -ukoha -pkoha -e 'CREATE DATABASE IF NOT EXISTS koha'
fi

echo
"$bin" sandbox status --dir "$dir" || true
rel_bin=${bin#"$root"/}
stop_cmd="scripts/demo.sh stop"
[[ -n ${KOHAPROXY_DEMO_DIR:-} ]] && stop_cmd="KOHAPROXY_DEMO_DIR=$dir $stop_cmd"
cat <<EOF

kohaproxy is running on 127.0.0.1:$port in front of the sandbox cluster in $dir.

  connect (as Koha would):  mariadb -h127.0.0.1 -P$port -ukoha -pkoha koha
  see the cluster:          $rel_bin sandbox status --dir $dir
  kill the master:          $rel_bin sandbox kill --dir $dir db1
  bring it back:            $rel_bin sandbox start --dir $dir db1
  admin console:            mariadb -S $dir/admin.sock -e 'SHOW SERVERS'
  take a backup:            mariadb -S $dir/admin.sock -e 'BACKUP NOW'
  list the backups:         $rel_bin backup list --config $dir/kohaproxy.toml
  proxy log:                $dir/proxy.log
  stop everything:          $stop_cmd

(Commands are relative to $root.)
EOF
