// The Node.js SDK of boxlite: the reference's classes (JsBoxlite, SimpleBox, CodeBox,
// BrowserBox, ComputerBox, InteractiveBox, the errors) over the native addon (src/, built by
// scripts/build.js). Every behaviour lives in the Rust core; this file shapes options and
// results and turns the core's errors into the error class of their kind.
"use strict";

const native = require("./boxlite.node");

// ---- errors ---------------------------------------------------------------------------

class BoxliteError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

class ExecError extends BoxliteError {
  constructor(command, exitCode, stderr) {
    super(`command ${JSON.stringify(command)} exited with code ${exitCode}: ${String(stderr).trim()}`);
    this.command = command;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

class TimeoutError extends BoxliteError {}
class ParseError extends BoxliteError {}

// One class per error kind of the core, with the kind's name and number (the C SDK's codes).
const KINDS = {
  Internal: 1, NotFound: 2, AlreadyExists: 3, InvalidState: 4, InvalidArgument: 5, Config: 6,
  Storage: 7, Image: 8, Network: 9, Execution: 10, Stopped: 11, Engine: 12, Unsupported: 13,
  Database: 14, Portal: 15, Rpc: 16,
};
/** An error of the core: `kind` (its name) and `code` (its number). */
class KindError extends BoxliteError {}

const ERRORS = {};
for (const [kind, code] of Object.entries(KINDS)) {
  ERRORS[kind] = {
    [`${kind}Error`]: class extends KindError {
      constructor(message) {
        super(message);
        this.kind = kind;
        this.code = code;
      }
    },
  }[`${kind}Error`];
}

/** The native error `err` as the class of its kind (the addon prefixes messages `[Kind] `). */
function typed(err) {
  const match = err && typeof err.message === "string" && /^\[(\w+)\] ([\s\S]*)$/.exec(err.message);
  if (!match || !ERRORS[match[1]]) return err;
  const error = new ERRORS[match[1]](match[2]);
  error.cause = err;
  return error;
}

async function call(promise) {
  try {
    return await promise;
  } catch (err) {
    throw typed(err);
  }
}

function callSync(fn) {
  try {
    return fn();
  } catch (err) {
    throw typed(err);
  }
}

function unsupported(message) {
  return new ERRORS.Unsupported(message);
}

// ---- options --------------------------------------------------------------------------

function envPairs(env) {
  if (!env) return [];
  if (Array.isArray(env)) {
    return env.map((e) => (Array.isArray(e) ? [String(e[0]), String(e[1])] : [String(e.key), String(e.value)]));
  }
  return Object.entries(env).map(([k, v]) => [k, String(v)]);
}

/** The reference's JsBoxOptions as the JSON the addon reads; what the core cannot do yet is
 * refused with UnsupportedError naming the field, never ignored. */
const BOX_OPTION_NAMES = new Set([
  "image", "rootfsPath", "cpus", "memoryMib", "diskSizeGb", "workingDir", "env", "volumes",
  "network", "ports", "autoRemove", "detach", "autoStop", "autoDelete", "autoResume",
  "entrypoint", "cmd", "user", "advanced", "security", "healthCheck", "secrets",
  // Beyond the reference:
  "allowNet", "denyNet", "allowHost", "readyTimeoutSecs", "engine", "labels",
]);

function boxOptionsJson(options = {}) {
  for (const name of Object.keys(options)) {
    if (!BOX_OPTION_NAMES.has(name)) {
      throw new ERRORS.InvalidArgument(`unknown box option ${JSON.stringify(name)}`);
    }
  }
  for (const field of ["entrypoint", "cmd", "user", "autoStop", "autoDelete", "autoResume", "healthCheck"]) {
    if (options[field] !== undefined && options[field] !== null) {
      throw unsupported(`box option ${field} is not supported yet`);
    }
  }
  if (options.secrets && options.secrets.length) throw unsupported("box option secrets is not supported yet");
  if (options.advanced && options.advanced.capabilities) {
    throw unsupported("advanced.capabilities is not supported yet");
  }
  const network = options.network || {};
  if (network.inbound || network.outbound) {
    throw unsupported("network.inbound/outbound are not supported yet: use network.allowNet");
  }
  const volumes = (options.volumes || []).map((v) => {
    if (v.managedVolume) throw unsupported("managed volumes are not supported yet: use hostPath");
    return { hostPath: v.hostPath, guestPath: v.guestPath, readOnly: Boolean(v.readOnly) };
  });
  const json = {
    image: options.image,
    rootfsPath: options.rootfsPath,
    cpus: options.cpus,
    memoryMib: options.memoryMib,
    diskSizeGb: options.diskSizeGb,
    workingDir: options.workingDir,
    env: envPairs(options.env),
    volumes,
    network: network.mode,
    allowNet: network.allowNet || options.allowNet,
    denyNet: options.denyNet,
    allowHost: options.allowHost,
    ports: (options.ports || []).map((p) => ({
      hostPort: p.hostPort, guestPort: p.guestPort, protocol: p.protocol, hostIp: p.hostIp,
    })),
    autoRemove: options.autoRemove,
    detach: options.detach,
    security: options.security,
    readyTimeoutSecs: options.readyTimeoutSecs,
    engine: options.engine,
    labels: options.labels,
  };
  return JSON.stringify(json);
}

/** Host names from JsOptions.imageRegistries (strings or {host, transport, ...}). */
function registryHosts(options = {}) {
  return (options.imageRegistries || []).map((r) => {
    if (typeof r === "string") return r;
    if (r.transport && r.transport !== "https" && r.transport !== "http") {
      throw new ERRORS.InvalidArgument(`image registry ${r.host}: transport ${r.transport}`);
    }
    if (r.skipVerify) throw unsupported(`image registry ${r.host}: skipVerify is not supported`);
    if (r.auth) {
      throw unsupported(`image registry ${r.host}: credentials come from ~/.docker/config.json, not auth`);
    }
    return r.host;
  });
}

function copyOptionsJson(options) {
  return options ? JSON.stringify(options) : null;
}

// ---- runtime, boxes, executions ----------------------------------------------------------

class JsExecStdout {
  constructor(nativeStream) {
    this._native = nativeStream;
  }

  /** The next line (without its newline), or null at the end. */
  async next() {
    return call(this._native.next());
  }

  async *[Symbol.asyncIterator]() {
    for (;;) {
      const line = await this.next();
      if (line === null) return;
      yield line;
    }
  }
}

class JsExecStderr extends JsExecStdout {}

class JsExecStdin {
  constructor(nativeStdin) {
    this._native = nativeStdin;
  }

  async write(data) {
    return call(this._native.write(Buffer.isBuffer(data) ? data : Buffer.from(data)));
  }

  async writeString(text) {
    return call(this._native.writeString(String(text)));
  }

  /** Sends end-of-file. */
  async close() {
    return call(this._native.close());
  }
}

function execResult(json) {
  const end = JSON.parse(json);
  const result = { exitCode: end.exitCode, signal: end.signal, timedOut: end.timedOut };
  if (end.errorMessage !== null) result.errorMessage = end.errorMessage;
  return result;
}

class JsExecution {
  constructor(nativeExecution) {
    this._native = nativeExecution;
  }

  async id() {
    return this._native.id;
  }

  /** The stdin writer (once; null later, or for a command started without stdin). */
  async stdin() {
    const stdin = this._native.stdin();
    return stdin ? new JsExecStdin(stdin) : null;
  }

  /** The stdout lines (once; null later). */
  async stdout() {
    const stream = this._native.stdout();
    return stream ? new JsExecStdout(stream) : null;
  }

  async stderr() {
    const stream = this._native.stderr();
    return stream ? new JsExecStderr(stream) : null;
  }

  /** `{exitCode, errorMessage?, signal, timedOut}` once the command ended. */
  async wait() {
    return execResult(await call(this._native.wait()));
  }

  async kill() {
    return call(this._native.kill());
  }

  async signal(signal) {
    return call(this._native.signal(signal));
  }

  async resizeTty(rows, cols) {
    return call(this._native.resizeTty(rows, cols));
  }
}

class JsBox {
  constructor(nativeBox) {
    this._native = nativeBox;
  }

  get id() {
    return this._native.id;
  }

  get name() {
    return this._native.name ?? null;
  }

  async info() {
    return JSON.parse(await call(this._native.info()));
  }

  async start() {
    return call(this._native.start());
  }

  async stop() {
    return call(this._native.stop());
  }

  /** Starts `command`; `env` is `[[key, value], ...]` (or an object). The command's stdin is
   * open (`execution.stdin()`); pass `{stdin: false}` last to give it none. */
  async exec(command, args, env, tty, user, timeoutSecs, workingDir, options = {}) {
    const execution = await call(
      this._native.exec(
        command, (args || []).map(String), envPairs(env), Boolean(tty), user ?? null,
        timeoutSecs ?? null, workingDir ?? null, options.stdin !== false,
      ),
    );
    return new JsExecution(execution);
  }

  /** A command started earlier, by any process, by its id. */
  async attach(executionId) {
    return new JsExecution(await call(this._native.attach(executionId)));
  }

  async metrics() {
    return JSON.parse(await call(this._native.metrics()));
  }

  async copyIn(hostPath, containerDest, options) {
    return call(this._native.copyIn(hostPath, containerDest, copyOptionsJson(options)));
  }

  async copyOut(containerSrc, hostDest, options) {
    return call(this._native.copyOut(containerSrc, hostDest, copyOptionsJson(options)));
  }

  /** Stops the box's vCPUs; its processes and memory are kept. Commands and copies are
   * refused until `resume()`; `stop()` works. */
  async pause() {
    return call(this._native.pause());
  }

  /** Runs a paused box again, from where it stopped. */
  async resume() {
    return call(this._native.resume());
  }

  /** This box's memory snapshots: `await box.snapshot.create("v1")`. */
  get snapshot() {
    return new JsSnapshotHandle(this._native);
  }

  /** A second box, `name`, that continues from this moment of this one (its processes still
   * running, its files and memory identical) and is independent afterwards. */
  async fork(name) {
    return new JsBox(await call(this._native.fork(name)));
  }
}

/** A box's snapshots (`box.snapshot`). A snapshot saves the running or paused box whole:
 * memory, devices and disk; a stopped box cannot be snapshotted. */
class JsSnapshotHandle {
  constructor(nativeBox) {
    this._native = nativeBox;
  }

  /** Saves the box as snapshot `name` (unique in the home); a running box runs on.
   * `options` is the reference's placeholder (none yet). */
  async create(name, options) {
    return JSON.parse(await call(this._native.snapshotCreate(name)));
  }

  /** The snapshots taken of this box, oldest first. */
  async list() {
    return JSON.parse(await call(this._native.snapshots()));
  }

  /** This box's snapshot `name`, or null. */
  async get(name) {
    return (await this.list()).find((s) => s.name === name) ?? null;
  }

  async remove(name) {
    return call(this._native.snapshotRemove(name));
  }

  /** Puts the box back to its snapshot `name`: what happened since is lost, and the box runs
   * on from that moment (its processes still running). The snapshot is kept. */
  async restore(name) {
    return call(this._native.snapshotRestore(name));
  }
}

function imageInfo(i) {
  const colon = i.reference.lastIndexOf(":");
  const tagged = colon > 0 && !i.reference.slice(colon).includes("/");
  return {
    reference: i.reference,
    repository: tagged ? i.reference.slice(0, colon) : i.reference,
    tag: tagged ? i.reference.slice(colon + 1) : "",
    id: i.id,
    cachedAt: new Date(i.cachedAt * 1000).toISOString(),
    sizeBytes: i.sizeBytes,
  };
}

class JsBoxlite {
  /** A runtime on `options.homeDir` (default `BOXLITE_HOME`, else `~/.boxlite`) with
   * `options.imageRegistries` for unqualified image names. */
  constructor(options = {}) {
    this._native = callSync(() => new native.NativeRuntime(options.homeDir ?? null, registryHosts(options)));
  }

  static _wrap(nativeRuntime) {
    const runtime = Object.create(JsBoxlite.prototype);
    runtime._native = nativeRuntime;
    return runtime;
  }

  static withDefaultConfig() {
    return JsBoxlite._wrap(callSync(() => native.NativeRuntime.withDefaultConfig()));
  }

  static initDefault(options = {}) {
    callSync(() => native.NativeRuntime.initDefault(options.homeDir ?? null, registryHosts(options)));
  }

  get homeDir() {
    return this._native.homeDir;
  }

  async create(options, name) {
    return new JsBox(await call(this._native.create(boxOptionsJson(options), name ?? null)));
  }

  /** `{created, box}`: the box named `name`, or a new one. */
  async getOrCreate(options, name) {
    const box = await call(this._native.getOrCreate(boxOptionsJson(options), name ?? null));
    return { created: box.created, box: new JsBox(box) };
  }

  async get(idOrName) {
    const box = await call(this._native.get(idOrName));
    return box ? new JsBox(box) : null;
  }

  async getInfo(idOrName) {
    const info = await call(this._native.getInfo(idOrName));
    return info === null ? null : JSON.parse(info);
  }

  async listInfo() {
    return JSON.parse(await call(this._native.listInfo()));
  }

  async remove(idOrName, force) {
    return call(this._native.remove(idOrName, force ?? false));
  }

  async metrics() {
    return JSON.parse(await call(this._native.metrics()));
  }

  async shutdown(timeout) {
    return call(this._native.shutdown(timeout ?? null));
  }

  /** Standbys (warm VMs kept with `BOXLITE_STANDBY=N`) ready for boxes' first starts. */
  standbysReady() {
    return this._native.standbysReady();
  }

  /** Powers every standby of the home off; resolves to how many were running. */
  async retireStandbys() {
    return call(this._native.retireStandbys());
  }

  /** Every snapshot of the home, oldest first. */
  async listSnapshots() {
    return JSON.parse(await call(this._native.listSnapshots()));
  }

  /** Removes a snapshot; boxes made from it are not affected. */
  async removeSnapshot(name) {
    return call(this._native.removeSnapshot(name));
  }

  /** A new box from `snapshot`, started: it continues from the moment the snapshot was
   * taken, with its own name and network (and no host port forwards). */
  async createFromSnapshot(snapshot, name) {
    return new JsBox(await call(this._native.createFromSnapshot(snapshot, name ?? null)));
  }

  /** Nothing to release: boxes belong to the home, not to this object. */
  close() {}

  get images() {
    const runtime = this;
    return {
      async pull(reference) {
        await call(runtime._native.pullImage(reference));
        const found = JSON.parse(callSync(() => runtime._native.listImages())).find((i) => i.reference === reference);
        return { reference, configDigest: found ? found.id : null, layerCount: null };
      },
      async list() {
        return JSON.parse(callSync(() => runtime._native.listImages())).map(imageInfo);
      },
    };
  }
}

// ---- box types -----------------------------------------------------------------------------

/** A box for running commands to completion, made on first use (or `start()`), stopped (and
 * with `autoRemove`, the default, removed) by `stop()` or `await using`. */
class SimpleBox {
  constructor(options = {}) {
    const { runtime, name, reuseExisting, autoRemove, ...boxOptions } = options;
    this._runtime = runtime || null;
    this._name = name;
    this._reuseExisting = Boolean(reuseExisting);
    this._boxOpts = { ...boxOptions, autoRemove: autoRemove ?? true };
    this._box = null;
    this._boxPromise = null;
    this._created = null;
  }

  _runtimeOrDefault() {
    return this._runtime || JsBoxlite.withDefaultConfig();
  }

  async _make(runtime) {
    let box;
    if (this._reuseExisting && this._name) {
      const found = await runtime.getOrCreate(this._boxOpts, this._name);
      this._created = found.created;
      box = found.box;
    } else {
      box = await runtime.create(this._boxOpts, this._name);
      this._created = true;
    }
    await box.start();
    return box;
  }

  async _ensureBox() {
    if (this._box) return this._box;
    if (!this._boxPromise) {
      this._boxPromise = this._make(this._runtimeOrDefault()).then(
        (box) => (this._box = box),
        (err) => {
          this._boxPromise = null;
          throw err;
        },
      );
    }
    return this._boxPromise;
  }

  async start() {
    await this._ensureBox();
  }

  get id() {
    if (!this._box) throw new ERRORS.InvalidState(`${this.constructor.name} is not started: await start() first`);
    return this._box.id;
  }

  async getId() {
    return (await this._ensureBox()).id;
  }

  get name() {
    return this._box ? this._box.name ?? undefined : this._name;
  }

  get created() {
    return this._created;
  }

  async info() {
    return (await this._ensureBox()).info();
  }

  async getInfo() {
    return this.info();
  }

  /** `exec(cmd, ...args)` or `exec(cmd, args, env, {cwd, user, timeoutSecs})`: the command's
   * whole output and exit code, `{exitCode, stdout, stderr, errorMessage?}`. */
  async exec(cmd, ...rest) {
    let args = rest;
    let env;
    let options = {};
    if (Array.isArray(rest[0])) {
      [args, env, options = {}] = rest;
    }
    const box = await this._ensureBox();
    const end = JSON.parse(
      await call(
        box._native.run(cmd, args.map(String), envPairs(env), options.user ?? null,
          options.timeoutSecs ?? null, options.cwd ?? null),
      ),
    );
    const result = { exitCode: end.exitCode, stdout: end.stdout, stderr: end.stderr };
    if (end.errorMessage !== null) result.errorMessage = end.errorMessage;
    return result;
  }

  async copyIn(hostPath, containerDest, options) {
    return (await this._ensureBox()).copyIn(hostPath, containerDest, options);
  }

  async copyOut(containerSrc, hostDest, options) {
    return (await this._ensureBox()).copyOut(containerSrc, hostDest, options);
  }

  async metrics() {
    return (await this._ensureBox()).metrics();
  }

  /** Stops the box (removed too with `autoRemove`). */
  async stop() {
    if (this._box) await this._box.stop();
  }

  async [Symbol.asyncDispose]() {
    await this.stop();
  }
}

/** A SimpleBox made by one of the core's box types (`_makeNative`), removed when it stops. */
class TypedBox extends SimpleBox {
  constructor(options = {}) {
    if (options.autoRemove === false) throw unsupported(`${new.target.name} is always removed when it stops`);
    if (options.reuseExisting) throw unsupported(`${new.target.name} cannot reuse an existing box`);
    super(options);
    delete this._boxOpts.autoRemove;
    this._typed = null;
  }

  async _make(runtime) {
    this._typed = await call(this._makeNative(runtime._native, boxOptionsJson(this._boxOpts)));
    this._created = true;
    return new JsBox(this._typed.box());
  }

  async _handle() {
    await this._ensureBox();
    if (!this._typed) throw new ERRORS.InvalidState(`${this.constructor.name} has stopped; create a new one`);
    return this._typed;
  }

  async stop() {
    if (this._typed) {
      const typed = this._typed;
      this._typed = null;
      await call(typed.remove());
    }
  }
}

function codeText(result) {
  const error = result.error ? (result.error.traceback.length ? result.error.traceback.join("") : `${result.error.name}: ${result.error.value}\n`) : "";
  return result.stdout + result.stderr + error;
}

/** A persistent Python interpreter in a box (the python image of scripts/build-images.sh by
 * default). `run` returns the output as a string, as the reference's does; `runDetailed`
 * returns the whole result (stdout, stderr, result, display, error). */
class CodeBox extends TypedBox {
  _makeNative(runtime, optionsJson) {
    return runtime.createCodeBox(optionsJson);
  }

  async runDetailed(code, options = {}) {
    const handle = await this._handle();
    return JSON.parse(await call(handle.run(code, options.timeoutSecs ?? null)));
  }

  async run(code, timeoutSecs) {
    return codeText(await this.runDetailed(code, { timeoutSecs }));
  }

  async runScript(scriptPath) {
    const handle = await this._handle();
    return codeText(JSON.parse(await call(handle.runScript(scriptPath))));
  }

  async installPackage(packageName) {
    return this.installPackages(packageName);
  }

  async installPackages(...packages) {
    if (!packages.length) throw new ERRORS.InvalidArgument("installPackages: name at least one package");
    const handle = await this._handle();
    return call(handle.installPackages(packages));
  }
}

/** Headless Chromium in a box; `endpoint()` is its CDP WebSocket URL on this host, for
 * playwright's `chromium.connectOverCDP` or any CDP client. */
class BrowserBox extends TypedBox {
  constructor(options = {}) {
    const { browser = "chromium", port, cdpPort, ...rest } = options;
    if (browser !== "chromium") throw unsupported(`BrowserBox: browser ${browser}: only chromium`);
    if (port !== undefined || cdpPort !== undefined) throw unsupported("BrowserBox: the CDP port is chosen free on the host");
    super({ memoryMib: 2048, cpus: 2, ...rest });
    this._browser = browser;
  }

  get browser() {
    return this._browser;
  }

  _makeNative(runtime, optionsJson) {
    return runtime.createBrowserBox(optionsJson);
  }

  async start() {
    await this._ensureBox();
  }

  async endpoint() {
    return call((await this._handle()).endpoint());
  }

  async httpEndpoint() {
    return call((await this._handle()).httpEndpoint());
  }

  async playwrightEndpoint() {
    return this.endpoint();
  }

  async isRunning() {
    return call((await this._handle()).isRunning());
  }

  /** Starts the browser again (after a crash); the endpoint changes. */
  async restart() {
    return call((await this._handle()).restart());
  }

  /** A playwright-core Browser connected over CDP (needs the playwright-core package). */
  async connect(options = {}) {
    let playwright;
    try {
      playwright = require("playwright-core");
    } catch (err) {
      throw new BoxliteError(`BrowserBox.connect needs playwright-core (npm install playwright-core): ${err.message}`);
    }
    return playwright.chromium.connectOverCDP(await this.endpoint(), { timeout: (options.timeout ?? 60) * 1000 });
  }
}

/** A desktop (Xvfb and a window manager) in a box, operated with 14 methods. */
class ComputerBox extends TypedBox {
  constructor(options = {}) {
    const { guiHttpPort = 3000, guiHttpsPort = 3001, screenWidth = 1024, screenHeight = 768, ...rest } = options;
    if (guiHttpPort !== 3000 || guiHttpsPort !== 3001) throw unsupported("ComputerBox has no web GUI: guiHttpPort/guiHttpsPort");
    super({ cpus: 2, memoryMib: 2048, ...rest });
    this._screen = [screenWidth, screenHeight];
  }

  _makeNative(runtime, optionsJson) {
    return runtime.createComputerBox(optionsJson, this._screen[0], this._screen[1]);
  }

  async _do(method, ...args) {
    return call((await this._handle())[method](...args));
  }

  async waitUntilReady(timeout = 60) {
    return this._do("waitUntilReady", timeout);
  }

  /** `{data: base64 PNG, width, height, format: "png"}`. */
  async screenshot() {
    const shot = await this._do("screenshot");
    return { data: shot.png.toString("base64"), width: shot.width, height: shot.height, format: "png" };
  }

  async mouseMove(x, y) { return this._do("mouseMove", x, y); }
  async leftClick() { return this._do("leftClick"); }
  async rightClick() { return this._do("rightClick"); }
  async middleClick() { return this._do("middleClick"); }
  async doubleClick() { return this._do("doubleClick"); }
  async tripleClick() { return this._do("tripleClick"); }
  async leftClickDrag(startX, startY, endX, endY) { return this._do("leftClickDrag", startX, startY, endX, endY); }
  async cursorPosition() { return this._do("cursorPosition"); }
  async type(text) { return this._do("type", text); }
  async key(keySequence) { return this._do("key", keySequence); }
  async scroll(x, y, direction, amount = 3) { return this._do("scroll", x, y, direction, amount); }
  async getScreenSize() { return this._do("getScreenSize"); }
}

/** A shell on a pseudo-terminal in a box, driven by a program: write, read, readUntil,
 * resize, wait. */
class InteractiveBox extends TypedBox {
  constructor(options = {}) {
    const { shell = "/bin/sh", tty, ...rest } = options;
    if (tty === false) throw unsupported("InteractiveBox always runs its shell on a terminal");
    super(rest);
    this._shell = shell;
  }

  _makeNative(runtime, optionsJson) {
    return runtime.createInteractiveBox(optionsJson, this._shell);
  }

  async write(data) {
    return call((await this._handle()).write(Buffer.isBuffer(data) ? data : Buffer.from(String(data))));
  }

  /** The next terminal output (a Buffer), or null once the shell ended and all was read. */
  async read() {
    return call((await this._handle()).read());
  }

  /** Terminal output up to and including `pattern`; what follows is kept for the next read. */
  async readUntil(pattern, timeoutSecs = 10) {
    return call((await this._handle()).readUntil(pattern, timeoutSecs));
  }

  async resize(rows, cols) {
    return call((await this._handle()).resize(rows, cols));
  }

  /** Waits for the shell to end: `{exitCode, ...}`. */
  async wait() {
    return execResult(await call((await this._handle()).wait()));
  }
}

const constants = {
  DEFAULT_CPUS: 1,
  DEFAULT_MEMORY_MIB: 512,
  COMPUTERBOX_CPUS: 2,
  COMPUTERBOX_MEMORY_MIB: 2048,
  COMPUTERBOX_DISPLAY_NUMBER: ":1",
  COMPUTERBOX_DISPLAY_WIDTH: 1024,
  COMPUTERBOX_DISPLAY_HEIGHT: 768,
  COMPUTERBOX_GUI_HTTP_PORT: 3000,
  COMPUTERBOX_GUI_HTTPS_PORT: 3001,
  DESKTOP_READY_TIMEOUT: 60,
};

function getNativeModule() {
  return native;
}

function getJsBoxlite() {
  return JsBoxlite;
}

exports.JsBoxlite = JsBoxlite;
exports.JsBox = JsBox;
exports.JsSnapshotHandle = JsSnapshotHandle;
exports.JsExecution = JsExecution;
exports.JsExecStdout = JsExecStdout;
exports.JsExecStderr = JsExecStderr;
exports.JsExecStdin = JsExecStdin;
exports.SimpleBox = SimpleBox;
exports.CodeBox = CodeBox;
exports.BrowserBox = BrowserBox;
exports.ComputerBox = ComputerBox;
exports.InteractiveBox = InteractiveBox;
exports.BoxliteError = BoxliteError;
exports.KindError = KindError;
exports.ExecError = ExecError;
exports.TimeoutError = TimeoutError;
exports.ParseError = ParseError;
exports.InternalError = ERRORS.Internal;
exports.NotFoundError = ERRORS.NotFound;
exports.AlreadyExistsError = ERRORS.AlreadyExists;
exports.InvalidStateError = ERRORS.InvalidState;
exports.InvalidArgumentError = ERRORS.InvalidArgument;
exports.ConfigError = ERRORS.Config;
exports.StorageError = ERRORS.Storage;
exports.ImageError = ERRORS.Image;
exports.NetworkError = ERRORS.Network;
exports.ExecutionError = ERRORS.Execution;
exports.StoppedError = ERRORS.Stopped;
exports.EngineError = ERRORS.Engine;
exports.UnsupportedError = ERRORS.Unsupported;
exports.DatabaseError = ERRORS.Database;
exports.PortalError = ERRORS.Portal;
exports.RpcError = ERRORS.Rpc;
exports.getNativeModule = getNativeModule;
exports.getJsBoxlite = getJsBoxlite;
exports.DEFAULT_CPUS = constants.DEFAULT_CPUS;
exports.DEFAULT_MEMORY_MIB = constants.DEFAULT_MEMORY_MIB;
exports.COMPUTERBOX_CPUS = constants.COMPUTERBOX_CPUS;
exports.COMPUTERBOX_MEMORY_MIB = constants.COMPUTERBOX_MEMORY_MIB;
exports.COMPUTERBOX_DISPLAY_NUMBER = constants.COMPUTERBOX_DISPLAY_NUMBER;
exports.COMPUTERBOX_DISPLAY_WIDTH = constants.COMPUTERBOX_DISPLAY_WIDTH;
exports.COMPUTERBOX_DISPLAY_HEIGHT = constants.COMPUTERBOX_DISPLAY_HEIGHT;
exports.COMPUTERBOX_GUI_HTTP_PORT = constants.COMPUTERBOX_GUI_HTTP_PORT;
exports.COMPUTERBOX_GUI_HTTPS_PORT = constants.COMPUTERBOX_GUI_HTTPS_PORT;
exports.DESKTOP_READY_TIMEOUT = constants.DESKTOP_READY_TIMEOUT;
