// One round of the Node.js SDK's calls against a running box, for tests/benches/sdks.rs:
// `node node_exec.js HOME BOX N` prints `{"exec": [ms...], "info": [ms...]}`: N round trips
// of exec("true") + wait() (no stdin) and N getInfo calls (a database read, no VM).
"use strict";
const { JsBoxlite } = require("@boxlite-ai/boxlite");

const [home, name, count] = process.argv.slice(2);
const n = Number(count);

(async () => {
  const runtime = new JsBoxlite({ homeDir: home });
  const box = await runtime.get(name);
  const exec = [];
  const info = [];
  for (let i = 0; i < n; i++) {
    const start = process.hrtime.bigint();
    const execution = await box.exec("true", [], null, false, null, null, null, { stdin: false });
    await execution.wait();
    exec.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  for (let i = 0; i < n; i++) {
    const start = process.hrtime.bigint();
    await runtime.getInfo(name);
    info.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  console.log(JSON.stringify({ exec, info }));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
