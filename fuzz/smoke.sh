#!/usr/bin/env bash
# Short smoke run of every fuzz target, for CI.
#
# * Skipped (exit 0) when the tools are missing: no nightly toolchain, no
#   cargo-fuzz, no `timeout`. Installing cargo-fuzz takes minutes; CI does not.
# * Skipped (exit 0) when building the targets does not finish inside the
#   budget (a cold build on a busy 2-core machine): nothing ran, nothing found.
# * Fails (exit 1) when a target does not build (the fuzz crate must follow the
#   public API it fuzzes) or when a target finds a crash, a timeout (-timeout)
#   or an out-of-memory: a crash is a bug. The input is left in
#   fuzz/artifacts/<target>/ and its path printed.
# * Bounded: the whole script stops within DPS_FUZZ_SMOKE_BUDGET seconds
#   (default 360) plus a few seconds of kill grace, whatever a target does.
#
# Each target runs DPS_FUZZ_SMOKE_SECONDS (default 15) from its committed
# seeds; what it grows goes to a temporary directory, not to corpus/.
set -uo pipefail
cd "$(dirname "$0")"

per_target=${DPS_FUZZ_SMOKE_SECONDS:-15}
# Builds go to a directory kept between runs (a fresh clone has no
# fuzz/target, and a cold build takes ~17 minutes on 2 cores: far over the
# budget, so on a machine without this cache the smoke skips).
export CARGO_TARGET_DIR=${DPS_FUZZ_TARGET_DIR:-${HOME:-/root}/.cache/dps/fuzz-target}
budget=${DPS_FUZZ_SMOKE_BUDGET:-360}

skip() {
  echo "fuzz smoke: skipped ($1)"
  exit 0
}

command -v timeout >/dev/null || skip "no timeout command"
rustup toolchain list 2>/dev/null | grep -q '^nightly' || skip "no nightly toolchain"
cargo +nightly fuzz --version >/dev/null 2>&1 || skip "cargo-fuzz is not installed"

deadline=$((SECONDS + budget))
remaining() { echo $((deadline - SECONDS)); }

# Leave time for at least a few targets after the build.
build_budget=$(($(remaining) - 60))
echo "fuzz smoke: building the targets (at most ${build_budget}s)"
timeout --kill-after=10 "$build_budget" cargo +nightly fuzz build
rc=$?
case $rc in
  0) ;;
  124 | 137) skip "the build did not finish within ${build_budget}s" ;;
  *)
    echo "fuzz smoke: FAILED: the fuzz targets do not build (exit $rc)"
    exit 1
    ;;
esac

mapfile -t targets < <(cargo +nightly fuzz list)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${targets[@]}"; do
  left=$(remaining)
  run_for=$((left - 15 < per_target ? left - 15 : per_target))
  if [ "$run_for" -lt 3 ]; then
    echo "fuzz smoke: out of time, not run: $target"
    continue
  fi
  mkdir -p "$scratch/$target"
  echo "fuzz smoke: $target for ${run_for}s"
  # The outer timeout is a backstop: libFuzzer stops itself at
  # -max_total_time, and -timeout turns one slow input into a finding.
  timeout --kill-after=5 $((run_for + 10)) \
    cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$run_for" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$scratch/$target.log" 2>&1
  rc=$?
  tail -n 12 "$scratch/$target.log" | grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' || true
  if [ $rc -ne 0 ]; then
    echo "fuzz smoke: FAILED: $target (exit $rc); its log:"
    grep -E 'ERROR|panicked|SUMMARY|Test unit written|artifact_prefix|timeout' "$scratch/$target.log" | head -n 20
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz smoke: ${#failed[@]} target(s) found a problem: ${failed[*]}"
  exit 1
fi
echo "fuzz smoke: ${#targets[@]} targets ran clean"
