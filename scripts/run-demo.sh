#!/usr/bin/env bash
# Sets the machine up (idempotent) and runs one command in a fresh box booted from a busybox
# image built locally: scripts/run-demo.sh [COMMAND...]   (default: uname and a greeting)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --quiet --locked -p boxlite-tests --example run -- "$@"
