#!/usr/bin/env bash
# The whole test suite: sets up the machine (scripts/setup.sh, idempotent), checks formatting
# and lints, then runs every test, including the ones that boot real VMs under QEMU.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# CI builds once from a clean clone: incremental caches would only cost disk (GBs) there.
if [ -n "${CI:-}" ]; then
    export CARGO_INCREMENTAL=0
fi
# Each phase names itself and the disk space left, so a run that fills the disk shows where.
phase() {
    echo "test: $* (disk free: $(df -h --output=avail "$repo" | tail -1 | tr -d ' '))" >&2
}
# The SDK workspaces (sdks/python, sdks/c, sdks/node) share one target directory; the SDK
# scripts default to the same one.
sdk_target="$repo/target/sdks"
sdk_cargo() { CARGO_TARGET_DIR="$sdk_target" cargo "$@"; }
phase "setting up"

scripts/setup.sh

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
phase "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
# The krun engine is built, linted and unit-tested on every host, so it cannot rot where no
# machine can boot it.
phase "cargo clippy, krun engine built in"
cargo clippy --workspace --all-targets --locked --features boxlite-tests/krun -- -D warnings
phase "unit tests, krun engine built in"
cargo test --locked -p boxlite-shim --features krun --lib
phase "cargo test"
cargo test --workspace --locked

# The VM suites that go through shim processes, again on the krun engine, where it can boot.
# (vm_boot and vm_image test the QEMU engine itself.)
if grep -qwE 'vmx|svm' /proc/cpuinfo && [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    phase "VM suites on the krun engine"
    BOXLITE_ENGINE=krun cargo test --locked -p boxlite-tests --features krun \
        --test shim_process --test runtime_api --test multi_process --test copy \
        --test network --test volumes --test cli
else
    echo "test: VM suites on the krun engine SKIPPED: no hardware virtualisation here" \
        "(needs vmx or svm in /proc/cpuinfo and a read-write /dev/kvm); krun was built," \
        "linted and unit-tested above" >&2
fi

# A clean clone in CI is built once: what the main workspace's builds left in target/debug is
# not needed again (the programs themselves stay: the C SDK's tests take the shim), and the
# SDK phases that follow need the room (GBs).
if [ -n "${CI:-}" ]; then
    rm -rf target/debug/deps target/debug/build target/debug/.fingerprint target/debug/examples
fi

# --- the Python SDK (sdks/python: its own cargo workspace, PyO3 + maturin) ---
phase "Python SDK: fmt, clippy, pip install ./sdks/python, pytest on real VMs"
cargo fmt --manifest-path sdks/python/Cargo.toml -- --check
sdk_cargo clippy --manifest-path sdks/python/Cargo.toml --locked --all-targets -- -D warnings
python=$(scripts/python-sdk.sh)
(cd sdks/python && "$python" -m pytest -q -p no:cacheprovider)

# --- the C SDK (sdks/c: its own cargo workspace, libboxlite and boxlite.h) ---
phase "C SDK: fmt, clippy, header check, C tests with gcc, valgrind"
cargo fmt --manifest-path sdks/c/Cargo.toml -- --check
sdk_cargo clippy --manifest-path sdks/c/Cargo.toml --locked --all-targets -- -D warnings
scripts/c-sdk-test.sh

# --- the Node.js SDK (sdks/node: its own cargo workspace, napi-rs) ---
phase "Node.js SDK: fmt, clippy, npm install ./sdks/node, node --test on real VMs"
cargo fmt --manifest-path sdks/node/Cargo.toml -- --check
sdk_cargo clippy --manifest-path sdks/node/Cargo.toml --locked --all-targets -- -D warnings
scripts/node-sdk-test.sh

# A clean clone in CI is built once: the SDKs' build products are not needed again, and the
# fuzzers' sanitizer builds need the room.
if [ -n "${CI:-}" ]; then
    rm -rf "$sdk_target"
fi

# --- fuzzing (fuzz/, its own workspace; see fuzz/README.md) ---
# Every target that parses untrusted input (tar streams and image layers, agent requests and
# replies, box files) runs for FUZZ_SECONDS (default 60) each, after the reproducers of crashes
# found before; a crash fails the suite and its reproducer's path is printed.
phase "fuzzing, ${FUZZ_SECONDS:-60}s per target"
scripts/fuzz.sh
# --- end fuzzing ---
