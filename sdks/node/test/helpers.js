// Fixtures for the Node SDK's tests, against real VMs: a new home per test whose shims and
// VMMs are killed at the end (also when the test failed), the busybox image of
// scripts/build-demo-image.sh and the box types' images of scripts/build-images.sh.
"use strict";
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const REPO = path.resolve(__dirname, "../../..");
const SCRATCH = process.env.BOXLITE_TEST_SCRATCH || "/tmp/boxlite-node";
const READY_TIMEOUT_SECS = 120;

function lastLine(command, args) {
  const out = execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  return out.trim().split("\n").pop();
}

function busybox() {
  return `oci:${lastLine(path.join(REPO, "scripts/build-demo-image.sh"), [])}:busybox`;
}

function builtImage(name) {
  return `oci:${lastLine(path.join(REPO, "scripts/build-images.sh"), [name])}:${name}`;
}

function startTime(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return null;
  }
}

/** The live shims and VMMs a home recorded ("PID START_TIME" lines). */
function boxProcesses(home) {
  const pids = [];
  // The directories in `dir` (none if it is gone: a standby may retire meanwhile).
  const list = (dir) => {
    try {
      return fs
        .readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => path.join(dir, e.name));
    } catch {
      return [];
    }
  };
  // Boxes, and standbys (standby/<kind>/<name>/).
  const dirs = list(path.join(home, "boxes")).concat(...list(path.join(home, "standby")).map(list));
  for (const dir of dirs) {
    for (const file of ["shim.pid", "vmm.pid"]) {
      let text = "";
      try {
        text = fs.readFileSync(path.join(dir, file), "utf8");
      } catch {
        continue;
      }
      for (const line of text.split("\n")) {
        const [pid, start] = line.trim().split(/\s+/);
        if (pid && startTime(pid) === start) pids.push(Number(pid));
      }
    }
  }
  return pids;
}

/** A new home; `cleanup` (give it to `t.after`) stops the boxes given to `stopLater`, then
 * kills whatever VM of the home is left and deletes it. */
function newHome() {
  fs.mkdirSync(SCRATCH, { recursive: true });
  const home = fs.mkdtempSync(path.join(SCRATCH, "h"));
  const boxes = [];
  const stopLater = (box) => boxes.push(box);
  const cleanup = async () => {
    for (const box of boxes) {
      await box.stop().catch((err) => console.error(`stopping a box: ${err.message}`));
    }
    for (const pid of boxProcesses(home)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    const deadline = Date.now() + 30_000;
    while (boxProcesses(home).length && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    fs.rmSync(home, { recursive: true, force: true });
  };
  return { home, cleanup, stopLater };
}

module.exports = { REPO, READY_TIMEOUT_SECS, busybox, builtImage, newHome, tmpdir: os.tmpdir };
