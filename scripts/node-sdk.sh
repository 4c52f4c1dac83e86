#!/usr/bin/env bash
# Installs the Node.js SDK the way the README says (`npm install ./sdks/node`, which builds
# the addon with cargo) into a scratch project under target/, with playwright-core from npm
# (it downloads no browser), for the tests and benchmarks. Idempotent. Prints the project's
# directory. Needs scripts/setup.sh first.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
project="${BOXLITE_NODE_PROJECT:-$repo/target/node-sdk-project}"
# The three SDK workspaces build into one target directory (see scripts/python-sdk.sh).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/sdks}"
mkdir -p "$project"
cd "$project"
[ -f package.json ] || echo '{ "private": true }' > package.json
echo "node-sdk: npm install ./sdks/node playwright-core (a release build of the addon: minutes the first time)" >&2
npm install --no-audit --no-fund --loglevel=error "$repo/sdks/node" playwright-core >&2
echo "$project"
