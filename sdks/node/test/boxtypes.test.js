// The box types on their real images: CodeBox (python image), BrowserBox (browser image,
// driven by playwright-core over CDP; it downloads no browser), ComputerBox (desktop image),
// InteractiveBox (busybox). One box each for all its checks.
"use strict";
const test = require("node:test");
const assert = require("node:assert/strict");

const boxlite = require("@boxlite-ai/boxlite");
const { READY_TIMEOUT_SECS, busybox, builtImage, newHome } = require("./helpers.js");

test("CodeBox keeps its interpreter and gives results", async (t) => {
  const { home, cleanup, stopLater } = newHome();
  t.after(cleanup);
  const runtime = new boxlite.JsBoxlite({ homeDir: home });
  const box = new boxlite.CodeBox({ runtime, image: builtImage("python"), network: { mode: "disabled" },
    readyTimeoutSecs: READY_TIMEOUT_SECS });
  stopLater(box);
  assert.equal(await box.run("x = 41\nprint('hello')"), "hello\n");
  const detailed = await box.runDetailed("x + 1");
  assert.equal(detailed.result["text/plain"], "42");
  const failed = await box.run("1/0");
  assert.match(failed, /ZeroDivisionError/);
  const stuck = await box.runDetailed("while True: pass", { timeoutSecs: 2 });
  assert.ok(stuck.error);
  assert.equal((await box.runDetailed("x")).result["text/plain"], "41");
  await assert.rejects(box.installPackage("surely-not-reachable"), boxlite.BoxliteError);
  assert.equal((await box.exec("python3", "-c", "print(6 * 7)")).stdout, "42\n");
});

test("BrowserBox is driven by playwright-core over CDP", async (t) => {
  const { home, cleanup, stopLater } = newHome();
  t.after(cleanup);
  const runtime = new boxlite.JsBoxlite({ homeDir: home });
  const box = new boxlite.BrowserBox({ runtime, image: builtImage("browser"), readyTimeoutSecs: READY_TIMEOUT_SECS });
  stopLater(box);
  assert.equal(box.browser, "chromium");
  const endpoint = await box.endpoint();
  assert.match(endpoint, /^ws:\/\/127\.0\.0\.1:\d+\/devtools\/browser\//);
  const { chromium } = require("playwright-core");
  const browser = await chromium.connectOverCDP(endpoint, { timeout: 120_000 });
  try {
    const context = browser.contexts()[0] || (await browser.newContext());
    const page = await context.newPage();
    await page.goto("data:text/html,<title>Hello from the box</title><h1>boxlite</h1>", { timeout: 120_000 });
    assert.equal(await page.title(), "Hello from the box");
    assert.equal(await page.textContent("h1"), "boxlite");
    const png = await page.screenshot();
    assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  } finally {
    await browser.close();
  }
  // A crashed browser is seen and started again.
  await box.exec("sh", "-c", "pkill -9 chromium; true");
  const deadline = Date.now() + 60_000;
  while ((await box.isRunning()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await box.isRunning(), false);
  await box.restart();
  assert.notEqual(await box.endpoint(), endpoint);
  await assert.rejects(Promise.resolve().then(() => new boxlite.BrowserBox({ browser: "firefox" })), boxlite.UnsupportedError);
});

test("ComputerBox is operated with its 14 methods", async (t) => {
  const { home, cleanup, stopLater } = newHome();
  t.after(cleanup);
  const runtime = new boxlite.JsBoxlite({ homeDir: home });
  const box = new boxlite.ComputerBox({ runtime, image: builtImage("desktop"), memoryMib: 1024,
    readyTimeoutSecs: READY_TIMEOUT_SECS });
  stopLater(box);
  await box.waitUntilReady(60);
  assert.deepEqual(await box.getScreenSize(), [1024, 768]);
  const shot = await box.screenshot();
  assert.equal(shot.width, 1024);
  assert.equal(shot.format, "png");
  assert.equal(Buffer.from(shot.data, "base64").subarray(1, 4).toString(), "PNG");
  await box.mouseMove(100, 200);
  assert.deepEqual(await box.cursorPosition(), [100, 200]);
  await box.leftClickDrag(10, 10, 300, 300);
  assert.deepEqual(await box.cursorPosition(), [300, 300]);
  await box.leftClick();
  await box.rightClick();
  await box.middleClick();
  await box.doubleClick();
  await box.tripleClick();
  await box.scroll(50, 50, "down", 2);
  await box.key("Escape");
  await box.type("hi");
  await assert.rejects(box.mouseMove(5000, 10), boxlite.InvalidArgumentError);
  await assert.rejects(box.scroll(10, 10, "sideways"), boxlite.InvalidArgumentError);
  assert.deepEqual(await box.cursorPosition(), [50, 50], "a refused action moved nothing");
});

test("InteractiveBox drives a shell on a terminal", async (t) => {
  const { home, cleanup, stopLater } = newHome();
  t.after(cleanup);
  const runtime = new boxlite.JsBoxlite({ homeDir: home });
  const shell = new boxlite.InteractiveBox({ runtime, image: busybox(), memoryMib: 256,
    readyTimeoutSecs: READY_TIMEOUT_SECS });
  stopLater(shell);
  await shell.write("echo $((6 * 7))\n");
  assert.match(await shell.readUntil("42\r\n", 60), /42/);
  await shell.resize(40, 120);
  await shell.write("stty size\n");
  assert.match(await shell.readUntil("40 120", 60), /40 120/);
  await assert.rejects(shell.readUntil("never printed", 0.5), boxlite.ExecutionError);
  await shell.write("exit 3\n");
  assert.equal((await shell.wait()).exitCode, 3);
});
