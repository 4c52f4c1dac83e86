#!/usr/bin/env bash
# The whole test suite: sets up the machine (scripts/setup.sh, idempotent), checks formatting
# and lints, then runs every test, including the ones that boot real VMs under QEMU.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

scripts/setup.sh

echo "test: cargo fmt --check" >&2
cargo fmt --all -- --check
echo "test: cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "test: cargo test" >&2
cargo test --workspace --locked
