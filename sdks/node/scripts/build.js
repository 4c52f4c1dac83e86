// Builds the native addon (boxlite.node) with cargo when the package is installed
// (`npm install ./sdks/node`): napi-rs needs no CLI for that. The addon carries the shim and
// the guest agent; the box kernel is the one scripts/setup.sh builds.
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const profile = process.env.BOXLITE_NODE_PROFILE === "debug" ? "debug" : "release";
// --message-format=json names the built library wherever cargo put it (CARGO_TARGET_DIR, a
// config's target-dir or the crate's own target/); cargo's progress goes to stderr.
const args = ["build", "--locked", "--message-format=json-render-diagnostics",
  "--manifest-path", path.join(root, "Cargo.toml")];
if (profile === "release") args.push("--release");
console.error(`boxlite: cargo ${args.join(" ")} (a few minutes the first time)`);
const messages = execFileSync("cargo", args, {
  stdio: ["ignore", "pipe", "inherit"],
  encoding: "utf8",
  maxBuffer: 256 * 1024 * 1024,
});
let built = null;
for (const line of messages.split("\n")) {
  if (!line.startsWith("{")) continue;
  const message = JSON.parse(line);
  if (message.reason === "compiler-artifact" && message.target.kind.includes("cdylib")) {
    built = message.filenames.find((file) => file.endsWith(".so")) || built;
  }
}
if (!built) {
  throw new Error("cargo built no libboxlite_node.so (see cargo's output above)");
}
const addon = path.join(root, "boxlite.node");
// Replaced by rename, so a process that has the old addon loaded keeps a valid file.
fs.copyFileSync(built, `${addon}.tmp`);
fs.renameSync(`${addon}.tmp`, addon);
console.error(`boxlite: ${addon}`);
