#!/usr/bin/env bash
# The Node.js SDK's tests (sdks/node): installs it the way the README says
# (scripts/node-sdk.sh: `npm install ./sdks/node` into a scratch project, with playwright-core,
# which downloads no browser: the tests drive the BrowserBox's own Chromium over CDP), runs
# the README's example as written, then `node --test` against real VMs.
# Needs scripts/setup.sh first. Ends with node's test summary.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "node-sdk: $*" >&2; }

project=$("$repo/scripts/node-sdk.sh")
# The README's example, run as written in a new home (its CodeBox stops and removes itself).
sed -n '/^## The Node.js SDK/,/^## /p' "$repo/README.md" | sed -n '/^```js$/,/^```$/p' | sed '1d;$d' \
  > "$project/readme_example.js"
home=$(mktemp -d /tmp/boxlite-node-readme.XXXXXX)
trap 'rm -rf "$home"' EXIT
say "the README's example"
output=$(BOXLITE_HOME="$home" node "$project/readme_example.js")
echo "$output" >&2
if [ "$output" != "$(printf '3\n\n0 Linux')" ]; then
  say "the README's example printed something else"
  exit 1
fi
NODE_PATH="$project/node_modules" node --test --test-concurrency=1 "$repo"/sdks/node/test/*.test.js
