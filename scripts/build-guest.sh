#!/usr/bin/env bash
# Builds the guest agent as a static binary (glibc with crt-static; the musl target is not
# installed on our machines). The runtime packs it into the initramfs itself.
# Prints the agent's path as its last line.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
target=x86_64-unknown-linux-gnu
# --target keeps these flags off build scripts and proc macros, which cannot be static.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p boxlite-agent --target "$target" >&2
agent="$repo/target/$target/release/boxlite-agent"
# A static(-pie) binary needs no shared libraries: the initramfs carries nothing else.
if readelf -d "$agent" | grep -q NEEDED; then
  echo "build-guest: $agent is not statically linked" >&2
  exit 1
fi
echo "$agent"
