#!/usr/bin/env bash
# Sets the machine up (idempotent), builds a busybox image locally, and runs one command in
# a fresh box with the boxlite CLI, then removes the box:
#   scripts/run-demo.sh [COMMAND...]   (default: uname and a greeting)
# Exits with the command's exit code. Boxes live in $BOXLITE_HOME (default ~/.boxlite).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
layout=$(scripts/build-demo-image.sh)
if [ $# -eq 0 ]; then
  set -- sh -c 'uname -a; echo "hello from a box: $(cat /etc/hostname)"'
fi
exec target/debug/boxlite run --rm "oci:$layout:busybox" "$@"
