#!/bin/bash
# Loads sysbench tables (and optionally Koha's sample data) on the benchmark sandbox's master.
# usage: load.sh TABLE_SIZE [TABLES] [koha]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); . "$here/env.sh"
size=${1:-500000} tables=${2:-8}
mariadb -h127.0.0.1 -P"$MASTER_PORT" -uroot -e 'CREATE DATABASE IF NOT EXISTS sbtest'
uptime
/usr/bin/time -f 'sysbench prepare: %e s wall, %U user %S sys' \
  sysbench oltp_read_write --mysql-host=127.0.0.1 --mysql-port="$MASTER_PORT" --mysql-user=root \
  --mysql-db=sbtest --tables="$tables" --table-size="$size" --threads=2 prepare
if [[ ${3:-} == koha ]]; then
  /usr/bin/time -f 'koha load: %e s' /work/shared/koha/load.sh 127.0.0.1 "$MASTER_PORT" root '' koha
fi
uptime
