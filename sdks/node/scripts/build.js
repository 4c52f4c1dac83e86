// Builds the native addon (boxlite.node) with cargo when the package is installed
// (`npm install ./sdks/node`): napi-rs needs no CLI for that. The addon carries the shim and
// the guest agent; the box kernel is the one scripts/setup.sh builds.
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const profile = process.env.BOXLITE_NODE_PROFILE === "debug" ? "debug" : "release";
const args = ["build", "--locked", "--manifest-path", path.join(root, "Cargo.toml")];
if (profile === "release") args.push("--release");
console.error(`boxlite: cargo ${args.join(" ")} (a few minutes the first time)`);
execFileSync("cargo", args, { stdio: "inherit" });
const built = path.join(root, "target", profile, "libboxlite_node.so");
const addon = path.join(root, "boxlite.node");
// Replaced by rename, so a process that has the old addon loaded keeps a valid file.
fs.copyFileSync(built, `${addon}.tmp`);
fs.renameSync(`${addon}.tmp`, addon);
console.error(`boxlite: ${addon}`);
