// JsBoxlite, JsBox, JsExecution and SimpleBox on real VMs: lifecycle, streaming, stdin,
// errors, copies, metrics, many processes on one home.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const boxlite = require("@boxlite-ai/boxlite");
const { READY_TIMEOUT_SECS, busybox, newHome } = require("./helpers.js");

const IMAGE = busybox();
const options = (extra = {}) => ({ image: IMAGE, memoryMib: 256, readyTimeoutSecs: READY_TIMEOUT_SECS, ...extra });

async function lines(stream) {
  const all = [];
  for await (const line of stream) all.push(line);
  return all;
}

test("a box lives, streams, takes stdin and is removed", async (t) => {
  const { home, cleanup } = newHome();
  t.after(cleanup);
  const runtime = new boxlite.JsBoxlite({ homeDir: home });
  const box = await runtime.create(options({ autoRemove: false, env: [{ key: "GREETING", value: "hi" }] }), "first");
  assert.equal(box.name, "first");
  assert.equal((await box.info()).state.status, "configured");

  const execution = await box.exec("sh", ["-c", "echo $GREETING; echo two; echo oops >&2; exit 3"]);
  assert.match(await execution.id(), /^[0-9A-Z]{26}$/);
  assert.deepEqual(await lines(await execution.stdout()), ["hi", "two"]);
  const stderr = await execution.stderr();
  assert.equal(await stderr.next(), "oops");
  assert.equal(await stderr.next(), null);
  assert.deepEqual(await execution.wait(), { exitCode: 3, signal: 0, timedOut: false });
  assert.equal((await box.info()).state.running, true);

  const cat = await box.exec("cat");
  const stdin = await cat.stdin();
  await stdin.write(Buffer.from("line one\n"));
  await stdin.writeString("line two\n");
  await stdin.close();
  assert.deepEqual(await lines(await cat.stdout()), ["line one", "line two"]);
  assert.equal((await cat.wait()).exitCode, 0);

  const where = await box.exec("sh", ["-c", "pwd; echo $X"], [["X", "y"]], false, "root", null, "/tmp");
  assert.deepEqual(await lines(await where.stdout()), ["/tmp", "y"]);
  const sleeper = await box.exec("sleep", ["30"]);
  await sleeper.kill();
  const killed = await sleeper.wait();
  assert.equal(killed.signal, 9);
  assert.ok(killed.errorMessage);

  const dir = fs.mkdtempSync(path.join(require("node:os").tmpdir(), "boxlite-node-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, "in.txt"), "payload");
  await box.copyIn(path.join(dir, "in.txt"), "/root/in.txt");
  await box.copyOut("/root/in.txt", path.join(dir, "out.txt"));
  assert.equal(fs.readFileSync(path.join(dir, "out.txt"), "utf8"), "payload");

  assert.ok((await box.metrics()).commandsExecutedTotal >= 4);
  const metrics = await runtime.metrics();
  assert.equal(metrics.boxesCreatedTotal, 1);
  assert.equal(metrics.numRunningBoxes, 1);

  const again = await runtime.get("first");
  assert.equal(again.id, box.id);
  const { created, box: same } = await runtime.getOrCreate(options(), "first");
  assert.equal(created, false);
  assert.equal(same.id, box.id);

  await box.stop();
  assert.equal((await runtime.getInfo("first")).state.status, "stopped");
  await runtime.remove("first");
  assert.equal(await runtime.get("first"), null);
  assert.equal(await runtime.getInfo("first"), null);
});

test("errors are typed with the core's kinds", async (t) => {
  const { home, cleanup } = newHome();
  t.after(cleanup);
  const runtime = new boxlite.JsBoxlite({ homeDir: home });
  await assert.rejects(runtime.remove("nothing-here"), (err) => {
    assert.ok(err instanceof boxlite.NotFoundError && err instanceof boxlite.BoxliteError);
    assert.equal(err.kind, "NotFound");
    assert.equal(err.code, 2);
    assert.match(err.message, /nothing-here/);
    return true;
  });
  await runtime.create(options(), "taken");
  await assert.rejects(runtime.create(options(), "taken"), boxlite.AlreadyExistsError);
  await assert.rejects(runtime.create(options({ cpus: 0 })), boxlite.InvalidArgumentError);
  await assert.rejects(runtime.create(options({ entrypoint: ["/bin/sh"] })), boxlite.UnsupportedError);
  await assert.rejects(runtime.create({ ...options(), nonsense: 1 }), boxlite.InvalidArgumentError);
  assert.throws(() => new boxlite.JsBoxlite({ homeDir: home, imageRegistries: [{ host: "x", auth: { password: "p" } }] }),
    boxlite.UnsupportedError);
  const box = await runtime.create(options());
  await box.start();
  const missing = await box.exec("no-such-program").then((e) => e.wait()).catch((err) => err);
  assert.ok(missing instanceof boxlite.ExecutionError || missing.exitCode === 127, String(missing));
  assert.equal((await (await box.exec("true")).wait()).exitCode, 0);
  await box.stop();
  assert.equal(await runtime.get(box.id), null, "autoRemove is the default");
});

test("SimpleBox collects output and cleans up", async (t) => {
  const { home, cleanup } = newHome();
  t.after(cleanup);
  const runtime = new boxlite.JsBoxlite({ homeDir: home });
  const box = new boxlite.SimpleBox({ ...options(), runtime, name: "simple" });
  assert.throws(() => box.id, boxlite.InvalidStateError);
  const result = await box.exec("sh", "-c", "echo out; echo err >&2; exit 4");
  assert.deepEqual(result, { exitCode: 4, stdout: "out\n", stderr: "err\n" });
  const withEnv = await box.exec("sh", ["-c", "echo $A; pwd"], { A: "b" }, { cwd: "/tmp" });
  assert.equal(withEnv.stdout, "b\n/tmp\n");
  assert.equal(box.created, true);
  assert.match(await box.getId(), /^[0-9A-Z]{26}$/);
  await box[Symbol.asyncDispose]();
  assert.equal(await runtime.get("simple"), null);
});

test("two processes share a home; a detached box outlives its maker", async (t) => {
  const { home, cleanup } = newHome();
  t.after(cleanup);
  const script = `
    const boxlite = require("@boxlite-ai/boxlite");
    (async () => {
      const runtime = new boxlite.JsBoxlite({ homeDir: process.argv[1] });
      const box = await runtime.create({ image: process.argv[2], memoryMib: 256, detach: true,
        autoRemove: false, readyTimeoutSecs: 120 }, "shared");
      const execution = await box.exec("sh", ["-c", "echo made > /root/by"]);
      console.log((await execution.wait()).exitCode);
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const out = execFileSync(process.execPath, ["-e", script, home, IMAGE], { encoding: "utf8" });
  assert.equal(out.trim(), "0");
  const runtime = new boxlite.JsBoxlite({ homeDir: home });
  assert.equal((await runtime.getInfo("shared")).state.status, "running");
  const box = await runtime.get("shared");
  const cat = await box.exec("cat", ["/root/by"]);
  assert.deepEqual(await lines(await cat.stdout()), ["made"]);
  await runtime.remove("shared", true);
});
