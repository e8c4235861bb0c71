#!/usr/bin/env bash
# Coverage-guided fuzzing of one target with AFL++ (cargo-afl, stable toolchain).
#
#   scripts/fuzz.sh TARGET [SECONDS]    # codec relay handshake classify track config
#   scripts/fuzz.sh all [SECONDS]       # every target, one after the other
#
# Installs cargo-afl (which builds AFL++) when it is missing, builds the target's AFL
# binary (fuzz/afl, outside the workspace), fuzzes for SECONDS (default 480) starting from
# fuzz/corpus/TARGET, and prints execs, coverage, crashes and hangs. One afl-fuzz process,
# one core. The output goes to a temporary folder that is kept only when something was
# found (its path is printed); the harnesses and the workflow for a finding are in
# fuzz/README.md.
#
# Environment: KOHAPROXY_FUZZ_OUT (keep the output here instead), KOHAPROXY_FUZZ_MERGE=1
# (afterwards, minimise the corpus plus what the run found with afl-cmin and write it back
# to fuzz/corpus/TARGET).
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(codec relay handshake classify track config)
target=${1:-}
seconds=${2:-480}
usage() {
  echo "usage: scripts/fuzz.sh TARGET|all [SECONDS]; targets: ${targets[*]}" >&2
  exit 2
}
[[ -n $target && $seconds =~ ^[0-9]+$ ]] || usage
if [[ $target == all ]]; then
  for t in "${targets[@]}"; do
    "$0" "$t" "$seconds"
  done
  exit 0
fi
[[ " ${targets[*]} " == *" $target "* ]] || usage

if ! command -v cargo >/dev/null 2>&1 && [[ -r $HOME/.cargo/env ]]; then
  # shellcheck source=/dev/null
  . "$HOME/.cargo/env"
fi
if ! cargo afl --version >/dev/null 2>&1; then
  echo "==> installing cargo-afl (it builds AFL++ as it installs)"
  cargo install --locked cargo-afl
fi
# cargo-afl 0.18 builds AFL++ at install time; older ones need `config --build`, which
# fails with "already built" when there is nothing to do.
if ! out=$(cargo afl config --build 2>&1) && [[ $out != *"already built"* ]]; then
  echo "$out" >&2
  exit 1
fi

echo "==> building fuzz/afl ($target)"
(cd fuzz/afl && cargo afl build --release --bin "$target")
binary=fuzz/afl/target/release/$target

out=${KOHAPROXY_FUZZ_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/kohaproxy-fuzz-$target.XXXXXX")}
mkdir -p "$out"
# No CPU governor, no core_pattern pipe, no terminal UI on a shared build machine; the
# scheduler places the process instead of afl-fuzz binding it to a core.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
echo "==> fuzzing $target for $seconds s (output: $out)"
cargo afl fuzz -i "fuzz/corpus/$target" -o "$out" -V "$seconds" -t 1000 -- "$binary" >"$out/afl.log" 2>&1 || {
  tail -40 "$out/afl.log" >&2
  exit 1
}

stats=$out/default/fuzzer_stats
stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
crashes=$(stat saved_crashes)
hangs=$(stat saved_hangs)
echo "<== $target: $(stat execs_done) execs in $(stat run_time) s ($(stat execs_per_sec)/s)," \
  "corpus $(stat corpus_count) (from $(find "fuzz/corpus/$target" -type f | wc -l) seeds)," \
  "edges $(stat edges_found) of $(stat total_edges) ($(stat bitmap_cvg))," \
  "crashes $crashes, hangs $hangs"

if [[ ${KOHAPROXY_FUZZ_MERGE:-0} == 1 ]]; then
  echo "==> minimising fuzz/corpus/$target with afl-cmin"
  all=$out/cmin-in min=$out/cmin-out
  mkdir -p "$all"
  cp "fuzz/corpus/$target"/* "$out/default/queue"/id:* "$all"/
  # afl-cmin.py (what `cargo afl cmin` runs) finds no coverage in these persistent-mode
  # binaries here; the shell version does.
  bin=$(dirname "$(find "$HOME/.local/share/afl.rs" -path '*/afl/bin/afl-cmin.bash' | head -1)")
  AFL_PATH=$bin "$bin/afl-cmin.bash" -i "$all" -o "$min" -t 1000 -- "$binary" >"$out/cmin.log" 2>&1
  rm -f "fuzz/corpus/$target"/*
  for f in "$min"/*; do
    cp "$f" "fuzz/corpus/$target/min-$(sha1sum "$f" | cut -c1-12)"
  done
  echo "<== fuzz/corpus/$target: $(find "fuzz/corpus/$target" -type f | wc -l) files"
fi

if ((crashes + hangs > 0)); then
  echo "findings kept in $out/default/crashes and $out/default/hangs: replay one with"
  echo "  $binary < FILE"
elif [[ -z ${KOHAPROXY_FUZZ_OUT:-} ]]; then
  rm -rf "$out"
fi
