// Drop-in for the reference's users: the exports and methods of @boxlite-ai/boxlite 0.10.0
// (shared/reference/node-api-boxlite-0.10.0.txt) are here, except what is listed with its
// reason; the test fails when the list and the code disagree either way.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");

const boxlite = require("@boxlite-ai/boxlite");
const { REPO } = require("./helpers.js");

const REFERENCE = path.join(REPO, "..", "shared", "reference", "node-api-boxlite-0.10.0.txt");
// Tunnels, REST runtimes, credentials and skill boxes: not in this runtime yet.
const NOT_HERE = new Set(["BoxliteRestOptions", "ApiKeyCredential", "BoxTunnel", "TunnelForwarder",
  "NetworkHandle", "SkillBox"]);
const METHODS_NOT_HERE = new Set(["SimpleBox.tunnel", "JsBoxlite.importBox", "JsBox.cloneBox", "JsBox.export",
  "JsBox.network"]);

function referenceText() {
  assert.ok(fs.existsSync(REFERENCE), `${REFERENCE} is missing (shared/ lies beside the checkout)`);
  return fs.readFileSync(REFERENCE, "utf8");
}

test("the reference's value exports are here", () => {
  const text = referenceText();
  const index = text.split("## index.d.ts")[1].split("## ")[0];
  const names = [];
  for (const match of index.matchAll(/export \{([^}]*)\}/g)) {
    for (const part of match[1].split(",")) {
      const name = part.trim();
      if (name && !name.startsWith("type ")) names.push(name.split(" as ").pop().trim());
    }
  }
  names.push("JsBoxlite");
  const missing = names.filter((n) => !NOT_HERE.has(n) && !(n in boxlite));
  assert.deepEqual(missing, []);
  for (const n of NOT_HERE) assert.ok(!(n in boxlite), `${n} exists now: take it off NOT_HERE`);
});

test("the reference's classes have their methods", () => {
  const text = referenceText();
  const problems = [];
  for (const match of text.matchAll(/export declare class (\w+)[^{]*\{([\s\S]*?)\n\}/g)) {
    const [, name, body] = match;
    const cls = boxlite[name];
    if (!cls || NOT_HERE.has(name)) continue;
    for (const m of body.matchAll(/^\s{4}(?:static\s+)?(?:get\s+)?(\w+)\(/gm)) {
      const method = m[1];
      if (method === "constructor" || body.includes(`private ${method}`) || body.includes(`private readonly ${method}`)) continue;
      const key = `${name}.${method}`;
      const has = method in cls.prototype || method in cls;
      if (METHODS_NOT_HERE.has(key)) {
        assert.ok(!has, `${key} exists now: take it off METHODS_NOT_HERE`);
      } else if (!has) {
        problems.push(key);
      }
    }
  }
  // The native runtime's interface (JsBoxlite) and box (JsBox).
  const runtimeInterface = text.split("export interface JsBoxlite {")[1].split("\n}")[0];
  for (const m of runtimeInterface.matchAll(/^\s{4}(\w+)\(/gm)) {
    if (!(m[1] in boxlite.JsBoxlite.prototype) && !METHODS_NOT_HERE.has(`JsBoxlite.${m[1]}`)) problems.push(`JsBoxlite.${m[1]}`);
  }
  const boxInterface = text.split("export interface JsBox {")[1].split("\n}")[0];
  for (const m of boxInterface.matchAll(/^\s{4}(?:readonly\s+)?(\w+)[(:]/gm)) {
    if (!(m[1] in boxlite.JsBox.prototype) && !METHODS_NOT_HERE.has(`JsBox.${m[1]}`)) problems.push(`JsBox.${m[1]}`);
  }
  // The snapshot handle's methods, as the reference's JsSnapshotHandle has them.
  const snapshotInterface = text.split("export interface JsSnapshotHandle {")[1].split("\n}")[0];
  for (const m of snapshotInterface.matchAll(/^\s{4}(\w+)\(/gm)) {
    if (!(m[1] in boxlite.JsSnapshotHandle.prototype)) problems.push(`JsSnapshotHandle.${m[1]}`);
  }
  assert.deepEqual(problems, []);
});
