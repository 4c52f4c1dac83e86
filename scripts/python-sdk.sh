#!/usr/bin/env bash
# Installs the Python SDK (sdks/python) into a virtualenv for the tests and benchmarks, the
# way the README tells users to: `pip install ./sdks/python` (maturin and PyO3 come from the
# package registries; the wheel carries the shim and the guest agent). Idempotent: pip
# rebuilds only what changed (cargo's caches are kept under target/). Prints the venv's python.
# Needs scripts/setup.sh first (the box kernel, QEMU, passt).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv="${BOXLITE_PYTHON_VENV:-$repo/target/python-sdk-venv}"
# The three SDK workspaces build into one target directory: they share the runtime and its
# dependencies (one release build of them instead of two, and GBs less on disk).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/sdks}"
say() { echo "python-sdk: $*" >&2; }

if [ ! -x "$venv/bin/python" ]; then
  say "creating the virtualenv $venv"
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import pytest, pytest_asyncio' 2>/dev/null; then
  say "installing pytest and pytest-asyncio"
  "$venv/bin/pip" install --quiet --disable-pip-version-check pytest pytest-asyncio >&2
fi
say "pip install ./sdks/python (a release build: a few minutes the first time)"
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps \
  "$repo/sdks/python" >&2
echo "$venv/bin/python"
