#!/usr/bin/env bash
# The C SDK's tests (sdks/c): builds libboxlite (shared and static), checks that
# include/boxlite.h is a fresh cbindgen generation (cargo test), compiles the C tests with gcc
# against the shared and the static library, runs them against real VMs, and runs them once
# more under valgrind, which must report no leak ("definitely lost") and no memory error.
# Needs scripts/setup.sh first. Ends with the C tests' "N passed, N failed".
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "c-sdk: $*" >&2; }

# The three SDK workspaces build into one target directory (see scripts/python-sdk.sh).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/sdks}"
cd "$repo/sdks/c"
cargo build --locked >&2
cargo test --locked >&2
lib="$CARGO_TARGET_DIR/debug"
out="$repo/target/c-sdk"
mkdir -p "$out"
flags=(-std=c11 -Wall -Wextra -Werror -I include)
gcc "${flags[@]}" tests/c/test_boxlite.c -L "$lib" -lboxlite -Wl,-rpath,"$lib" -o "$out/test_shared"
# What a static Rust library needs from the system (cargo rustc --print native-static-libs).
gcc "${flags[@]}" tests/c/test_boxlite.c "$lib/libboxlite.a" \
  -lssl -lcrypto -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o "$out/test_static"

# The shim and agent of this checkout (a C program has no shim beside it).
export BOXLITE_SHIM="$repo/target/debug/boxlite-shim"
export BOXLITE_AGENT="$repo/target/x86_64-unknown-linux-gnu/release/boxlite-agent"
export BOXLITE_TEST_IMAGE="oci:$("$repo/scripts/build-demo-image.sh"):busybox"
scratch=$(mktemp -d /tmp/boxlite-c.XXXXXX)

# Kills every shim and VMM a home recorded ("PID START_TIME" lines) for its boxes and its
# standbys, also when a test failed.
kill_home() {
  local file pid start now
  shopt -s dotglob
  for file in "$1"/boxes/*/shim.pid "$1"/boxes/*/vmm.pid "$1"/standby/*/*/shim.pid \
    "$1"/standby/*/*/vmm.pid; do
    [ -f "$file" ] || continue
    while read -r pid start; do
      now=$(awk '{print $22}' "/proc/$pid/stat" 2>/dev/null || true)
      [ -n "$now" ] && [ "$now" = "$start" ] && kill -9 "$pid" 2>/dev/null || true
    done < "$file"
  done
}
cleanup() {
  for home in "$scratch"/*/; do kill_home "$home"; done
  rm -rf "$scratch"
}
trap cleanup EXIT

run() {
  local name=$1; shift
  local home="$scratch/$name"
  mkdir -p "$home"
  say "$name"
  BOXLITE_HOME="$home" "$@"
}
run static "$out/test_static" >&2
if ! command -v valgrind >/dev/null; then
  say "valgrind missing: scripts/setup.sh installs it"
  exit 1
fi
# valgrind's own report goes to a file (it warns about pidfd_open, which it does not know:
# the runtime then falls back to plain pids); printed when it found something.
if ! run valgrind valgrind --quiet --log-file="$out/valgrind.log" --leak-check=full \
  --errors-for-leak-kinds=definite --show-leak-kinds=definite --error-exitcode=99 \
  "$out/test_shared" >&2; then
  grep -v 'syscall: 434\|README_MISSING_SYSCALL\|consider this a bug\|valgrind.org/support\|write your own handler' \
    "$out/valgrind.log" >&2 || true
  say "the C tests failed under valgrind (report: $out/valgrind.log)"
  exit 1
fi

# The README's C example, compiled and run as written.
sed -n '/^## The C SDK/,/^## /p' "$repo/README.md" | sed -n '/^```c$/,/^```$/p' | sed '1d;$d' \
  > "$out/readme_example.c"
gcc "${flags[@]}" "$out/readme_example.c" -L "$lib" -lboxlite -Wl,-rpath,"$lib" -o "$out/readme_example"
run readme "$out/readme_example" "$BOXLITE_TEST_IMAGE" >&2
run shared "$out/test_shared"
