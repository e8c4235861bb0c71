#!/usr/bin/env bash
# The whole test suite, in one command: system packages, formatting, lints, and every test
# (unit and end-to-end against real local MariaDB clusters), in release mode because the
# end-to-end tests push 20 MiB blobs and sysbench through the proxy.
#
#   scripts/test.sh
#
# Every step runs even if an earlier one failed; the exit status is non-zero if any failed.
# Environment: KOHAPROXY_TEST_THREADS (default 2), KOHAPROXY_TEST_TIMEOUT_S (default 1800,
# a guard against a hung test, for the cargo test step).
set -euo pipefail
cd "$(dirname "$0")/.."

# Backtraces for panics, but not on every error message the binary prints.
export RUST_BACKTRACE=${RUST_BACKTRACE:-1} RUST_LIB_BACKTRACE=${RUST_LIB_BACKTRACE:-0}
threads=${KOHAPROXY_TEST_THREADS:-2}
test_timeout=${KOHAPROXY_TEST_TIMEOUT_S:-1800}

echo "==> system packages"
bash scripts/install-deps.sh

if ! command -v cargo >/dev/null 2>&1 && [[ -r $HOME/.cargo/env ]]; then
  # shellcheck source=/dev/null
  . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || {
  echo "test: cargo not found; install Rust with https://rustup.rs" >&2
  exit 1
}
for component in rustfmt clippy; do
  sub=${component/rustfmt/fmt}
  if ! cargo "$sub" --version >/dev/null 2>&1 && command -v rustup >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done

log=$(mktemp "${TMPDIR:-/tmp}/kohaproxy-test.XXXXXX")
trap 'rm -f "$log"' EXIT

failed=()
step() {
  local name=$1 start=$SECONDS
  shift
  echo
  echo "==> $name: $*"
  if "$@"; then
    echo "<== $name: ok ($((SECONDS - start)) s)"
  else
    echo "<== $name: FAILED ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}

run_tests() {
  local rc=0
  # --no-fail-fast: one failing test binary must not hide the results of the others
  timeout -k 30 "$test_timeout" \
    cargo test --workspace --release --no-fail-fast -- --test-threads="$threads" 2>&1 | tee "$log" || rc=$?
  if ((rc == 124)); then
    echo "cargo test did not finish within ${test_timeout} s (KOHAPROXY_TEST_TIMEOUT_S)"
  fi
  return "$rc"
}

step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step test run_tests

echo
echo "==> summary of cargo test"
# Each "test result" line, under the name of the test binary it belongs to; then failures.
awk '
  /^ *Running / {
    bin = $0; sub(/^ *Running /, "", bin)
    if (match(bin, /\([^)]*\)$/)) {  # "unittests src/lib.rs (target/release/deps/crate-hash)"
      n = split(substr(bin, RSTART + 1, RLENGTH - 2), part, "/"); name = part[n]
      sub(/-[0-9a-f]+$/, "", name)
      bin = name " (" substr(bin, 1, RSTART - 2) ")"
    }
    pending = 1
  }
  /^ *Doc-tests / { bin = $2 " (doc-tests)"; pending = 1 }
  /^test result:/ { printf "%-50s %s\n", bin, $0; pending = 0 }
  /^failures:$/ { inlist = 1; next }
  inlist && /^    [^ ]/ { failures[$1] = 1 }
  inlist && /^$/ { inlist = 0 }
  /^test .* \.\.\. FAILED$/ { failures[$2] = 1 }
  END {
    if (pending) printf "%-50s %s\n", bin, "no result: it crashed, hung or was stopped"
    for (f in failures) print "FAILED: " f
  }
' "$log"
if grep -q -E '^error(\[E[0-9]+\])?:' "$log"; then
  echo "(cargo test reported compile or run errors; see above)"
fi

echo
if ((${#failed[@]})); then
  echo "test.sh: FAILED steps: ${failed[*]}"
  exit 1
fi
echo "test.sh: all steps passed"
