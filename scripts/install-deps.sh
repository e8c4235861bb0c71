#!/usr/bin/env bash
# Installs the system packages kohaproxy's demo, tests and benchmarks need, on Debian 12
# (bookworm). Idempotent: when every package is already installed, apt is not touched.
# The Debian mariadb (and haproxy) services are not started: the sandbox runs its own
# mariadbd processes on free ports, and nothing should listen on 3306.
# Run as root, or as a user with sudo. The Rust toolchain is not installed here (Debian's
# rustc is too old): use rustup.
set -euo pipefail
cd "$(dirname "$0")/.."

# For the Galera sandbox: galera-4 (the provider), rsync (its SST method), iproute2 (`ss`)
# and lsof (wsrep_sst_common checks its sockets with one of them) and socat (other SST
# methods). A minimal image lacks some of them, so they are listed explicitly.
packages=(mariadb-server mariadb-client sysbench haproxy libdbd-mysql-perl libdbi-perl galera-4 rsync socat lsof iproute2 python3 openssl)

installed() {
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
  done
else
  # Not a Debian system: we cannot install, only check the commands we rely on.
  PATH=$PATH:/usr/sbin:/sbin
  for c in mariadbd mariadb mariadb-install-db sysbench haproxy rsync python3; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  if ((${#missing[@]})); then
    echo "install-deps: not a Debian system and these are missing: ${missing[*]}" >&2
    exit 1
  fi
fi

if ((${#missing[@]} == 0)); then
  echo "install-deps: all packages present (${packages[*]})"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "install-deps: not root and no sudo; as root run: apt-get install ${missing[*]}" >&2
  exit 1
fi

# Deny service starts while apt runs (the policy-rc.d convention, honoured by invoke-rc.d
# and deb-systemd-invoke), unless a policy is already in place.
policy=/usr/sbin/policy-rc.d
own_policy=false
cleanup() {
  if $own_policy; then "${as_root[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# written by kohaproxy scripts/install-deps.sh for the length of one apt run\nexit 101\n' |
    "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  own_policy=true
fi

"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

for p in "${packages[@]}"; do
  if ! installed "$p"; then
    echo "install-deps: $p is still not installed" >&2
    exit 1
  fi
done
echo "install-deps: done"
