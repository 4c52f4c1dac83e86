// Pause and resume, memory snapshots (the reference's `box.snapshot` handle: create, list,
// get, remove, restore) and forks, on real VMs.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");

const boxlite = require("@boxlite-ai/boxlite");
const { READY_TIMEOUT_SECS, busybox, newHome } = require("./helpers.js");

const options = () => ({ image: busybox(), memoryMib: 256, autoRemove: false, readyTimeoutSecs: READY_TIMEOUT_SECS });

async function sh(box, script) {
  const execution = await box.exec("sh", ["-c", script]);
  const lines = [];
  for await (const line of await execution.stdout()) lines.push(line);
  assert.equal((await execution.wait()).exitCode, 0, `${script}: ${lines}`);
  return lines.join("\n");
}

test("snapshots restore a box in place; forks continue it", async (t) => {
  const { home, cleanup } = newHome();
  t.after(cleanup);
  const runtime = new boxlite.JsBoxlite({ homeDir: home });
  const box = await runtime.create(options(), "src");
  // A file on the disk, one in memory (tmpfs), and a process.
  await sh(box, "echo before > /f; echo kept > /dev/shm/m; (while :; do sleep 1; done) >/dev/null 2>&1 & echo $! > /pid");

  await box.pause();
  assert.equal((await box.info()).state.status, "paused");
  await assert.rejects(box.exec("true"), boxlite.InvalidStateError);
  await box.resume();

  const info = await box.snapshot.create("v1");
  assert.equal(info.name, "v1");
  assert.equal(info.boxId, box.id);
  assert.equal(info.boxName, "src");
  assert.ok(info.id && Number.isInteger(info.createdAt) && info.containerDiskBytes > 0 && info.sizeBytes > 0);
  assert.deepEqual((await box.snapshot.list()).map((s) => s.name), ["v1"]);
  assert.equal((await box.snapshot.get("v1")).id, info.id);
  assert.equal(await box.snapshot.get("nope"), null);

  await sh(box, "echo after > /f; rm /dev/shm/m");
  await box.snapshot.restore("v1");
  assert.equal(await sh(box, "cat /f /dev/shm/m; kill -0 $(cat /pid) && echo alive"), "before\nkept\nalive");

  const fork = await box.fork("copy");
  assert.equal(fork.name, "copy");
  assert.equal(await sh(fork, "cat /f; kill -0 $(cat /pid) && echo alive"), "before\nalive");
  await sh(fork, "echo forked > /f");
  assert.equal(await sh(box, "cat /f"), "before");
  assert.deepEqual(await fork.snapshot.list(), []);

  await assert.rejects(box.snapshot.create("v1"), boxlite.AlreadyExistsError);
  await assert.rejects(box.fork("copy"), boxlite.AlreadyExistsError);
  await assert.rejects(fork.snapshot.restore("v1"), (err) => err instanceof boxlite.InvalidArgumentError && /not of box/.test(err.message));
  await assert.rejects(box.snapshot.restore("nope"), boxlite.NotFoundError);

  const made = await runtime.createFromSnapshot("v1", "made");
  assert.equal(await sh(made, "cat /f /dev/shm/m"), "before\nkept");
  assert.deepEqual((await runtime.listSnapshots()).map((s) => s.name), ["v1"]);
  await box.snapshot.remove("v1");
  assert.deepEqual(await runtime.listSnapshots(), []);
  for (const name of ["src", "copy", "made"]) await runtime.remove(name, true);
});

test("standbys serve boxes' first starts", async (t) => {
  const { home, cleanup } = newHome();
  t.after(cleanup);
  process.env.BOXLITE_STANDBY = "1";
  t.after(() => delete process.env.BOXLITE_STANDBY);
  const runtime = new boxlite.JsBoxlite({ homeDir: home });
  const oneReady = async () => {
    const deadline = Date.now() + 120_000;
    while (runtime.standbysReady() !== 1) {
      assert.ok(Date.now() < deadline, "no standby warmed up");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const first = await runtime.create(options(), "first");
  await first.start();
  assert.equal((await first.metrics()).startMode, "template");
  await oneReady();
  const second = await runtime.create(options(), "second");
  await second.start();
  assert.equal((await second.metrics()).startMode, "standby");
  assert.equal(await sh(second, "hostname"), "second");
  await oneReady();
  assert.equal(await runtime.retireStandbys(), 1);
  assert.equal(runtime.standbysReady(), 0);
  for (const box of [first, second]) await runtime.remove(box.id, true);
});
