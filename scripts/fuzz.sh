#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time, failing when one
# finds a crash (a panic, a failed check, a sanitizer report, a timeout or an out-of-memory).
#
#   scripts/fuzz.sh [TARGET...]     default: every target in fuzz/fuzz_targets/
#   FUZZ_SECONDS=600 scripts/fuzz.sh copy_unpack
#
# FUZZ_SECONDS (default 60) is each target's fuzzing time. Inputs are the committed seeds
# (fuzz/corpus/TARGET), the reproducers of crashes found before (fuzz/regressions/TARGET, run
# first, so a regression fails at once) and what earlier runs on this machine found
# (fuzz/target/corpus/TARGET, not committed). A crash's input is written under
# fuzz/artifacts/TARGET/; the script prints its path and how to rerun it.
#
# cargo-fuzz needs nightly compiler flags (-Zsanitizer=address, sanitizer coverage);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take them, so no nightly is installed.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
say() { echo "fuzz: $*" >&2; }

seconds=${FUZZ_SECONDS:-60}
case $seconds in
  '' | *[!0-9]*) say "FUZZ_SECONDS must be a whole number of seconds, not '$seconds'"; exit 2 ;;
esac
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version '^0.13'
fi

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for file in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$file" .rs)")
  done
fi

# cargo-fuzz has no --locked; checking the lock file first keeps the build from changing it.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
say "building ${targets[*]}"
for target in "${targets[@]}"; do
  cargo fuzz build "$target"
done

# The targets extract archives and write box files into fresh directories under TMPDIR, one
# tree per input: on tmpfs (/dev/shm) that is several times faster than on a disk. Whatever
# a run leaves there is removed after it.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  scratch_parent=/dev/shm
else
  scratch_parent=$repo/fuzz/target
fi
scratch=$(mktemp -d "$scratch_parent/boxlite-fuzz.XXXXXX")
# An archive may leave directories without write or search permission; chmod -R does not
# follow the symlinks it meets.
clear_scratch() {
  chmod -R u+rwx "$scratch" 2>/dev/null || true
  rm -rf "$scratch"
}
trap clear_scratch EXIT
logs=$repo/fuzz/target/logs
mkdir -p "$logs"

# Tar streams and layers need room for a few 512-byte members; messages are small.
max_len() {
  case $1 in
    copy_unpack | layer_apply) echo 32768 ;;
    *) echo 8192 ;;
  esac
}

failed=()
for target in "${targets[@]}"; do
  # Absolute paths: cargo-fuzz runs the fuzzer in another directory. New inputs go to the
  # first directory only, so the committed ones are never written to.
  found=$repo/fuzz/target/corpus/$target
  mkdir -p "$found"
  inputs=("$found" "$repo/fuzz/corpus/$target")
  [ -d "fuzz/regressions/$target" ] && inputs+=("$repo/fuzz/regressions/$target")
  log=$logs/$target.log
  say "running $target for ${seconds}s (log: ${log#"$repo"/})"
  rc=0
  # -max_total_time ends the run; the hard timeout is for a fuzzer that does not stop (the
  # build it starts is done already, and libFuzzer's own -timeout catches a slow input).
  TMPDIR=$scratch timeout --kill-after=30 $((seconds + 120)) \
    cargo fuzz run "$target" "${inputs[@]}" -- \
    -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=30 \
    -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || rc=$?
  clear_scratch
  mkdir "$scratch"
  if [ "$rc" = 0 ]; then
    say "$target: $(grep -aE '^stat::number_of_executed_units' "$log" | awk '{print $2}') runs," \
      "no crash"
    continue
  fi
  failed+=("$target")
  tail -n 80 "$log" >&2
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    say "$target: did not finish within $((seconds + 120))s; killed (see $log)"
  fi
  reproducers=$(LC_ALL=C sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
  for input in $reproducers; do
    input=${input#"$repo"/}
    say "$target: reproducer: $input"
    say "  rerun it: RUSTC_BOOTSTRAP=1 cargo fuzz run $target $input"
  done
done

if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "all targets ran ${seconds}s each without a crash"
