// Type definitions of @boxlite-ai/boxlite (the Node.js SDK of boxlite). The names and shapes
// are the reference's (@boxlite-ai/boxlite 0.10.0) where the feature exists in both.

/// <reference types="node" />

export interface JsImageRegistry {
  host: string;
  transport?: "https" | "http";
  skipVerify?: boolean;
  search?: boolean;
  auth?: { username?: string; password?: string; bearerToken?: string };
}

export interface JsOptions {
  homeDir?: string;
  imageRegistries?: Array<JsImageRegistry | string>;
}

export interface JsEnvVar {
  key: string;
  value: string;
}

export interface JsHostPathVolumeSpec {
  hostPath: string;
  guestPath: string;
  readOnly?: boolean;
}

export interface JsPortSpec {
  hostPort?: number;
  guestPort: number;
  protocol?: string;
  hostIp?: string;
}

export interface JsNetworkSpec {
  mode?: "enabled" | "disabled";
  allowNet?: string[];
}

export interface SecurityOptions {
  jailerEnabled?: boolean;
  seccompEnabled?: boolean;
  maxOpenFiles?: number;
  maxFileSize?: number;
  maxProcesses?: number;
  maxMemory?: number;
  maxCpuTime?: number;
  networkEnabled?: boolean;
  closeFds?: boolean;
}

/** A box's options. Unknown names are refused; fields the runtime cannot honour yet
 * (entrypoint, cmd, user, autoStop, autoDelete, autoResume, healthCheck, secrets,
 * advanced.capabilities) throw UnsupportedError. */
export interface JsBoxOptions {
  image?: string;
  rootfsPath?: string;
  cpus?: number;
  memoryMib?: number;
  diskSizeGb?: number;
  workingDir?: string;
  env?: JsEnvVar[] | Array<[string, string]> | Record<string, string>;
  volumes?: JsHostPathVolumeSpec[];
  network?: JsNetworkSpec;
  ports?: JsPortSpec[];
  autoRemove?: boolean;
  detach?: boolean;
  security?: SecurityOptions;
  /** Beyond the reference: the network policy, the engine, the boot deadline, labels. */
  allowNet?: string[];
  denyNet?: string[];
  allowHost?: boolean;
  engine?: "qemu" | "krun";
  readyTimeoutSecs?: number;
  labels?: Record<string, string>;
}

export interface JsBoxStateInfo {
  status: string;
  running: boolean;
  pid?: number;
}

export interface JsBoxInfo {
  id: string;
  name?: string | null;
  state: JsBoxStateInfo;
  createdAt: string;
  lastUpdated: string;
  image: string;
  cpus: number;
  memoryMib: number;
  engine?: string | null;
  network: null;
}

export interface JsRuntimeMetrics {
  boxesCreatedTotal: number;
  boxesFailedTotal: number;
  numRunningBoxes: number;
  totalCommandsExecuted: number;
  totalExecErrors: number;
}

export interface JsBoxMetrics {
  commandsExecutedTotal: number;
  bytesSentTotal: number;
  bytesReceivedTotal: number;
  guestBootDurationMs?: number | null;
  cpuPercent?: number | null;
  memoryBytes?: number | null;
  /** Beyond the reference: how the VM started ("boot", "template", "standby", "snapshot"). */
  startMode?: string | null;
  /** Beyond the reference: why no template served the box, when it booted. */
  templateMiss?: string | null;
}

export interface JsExecResult {
  exitCode: number;
  errorMessage?: string;
  signal: number;
  timedOut: boolean;
}

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  errorMessage?: string;
}

export interface CopyOptions {
  recursive?: boolean;
  overwrite?: boolean;
  followSymlinks?: boolean;
  includeParent?: boolean;
}

export interface ImageInfo {
  reference: string;
  repository: string;
  tag: string;
  id: string;
  cachedAt: string;
  sizeBytes?: number;
}

export interface ImagePullResult {
  reference: string;
  configDigest: string | null;
  layerCount: number | null;
}

export interface ImageHandle {
  pull(reference: string): Promise<ImagePullResult>;
  list(): Promise<ImageInfo[]>;
}

export declare class JsExecStdout implements AsyncIterable<string> {
  /** The next line without its newline; null at the end. */
  next(): Promise<string | null>;
  [Symbol.asyncIterator](): AsyncIterator<string>;
}

export declare class JsExecStderr extends JsExecStdout {}

export declare class JsExecStdin {
  write(data: Buffer | Uint8Array | string): Promise<void>;
  writeString(text: string): Promise<void>;
  close(): Promise<void>;
}

export declare class JsExecution {
  id(): Promise<string>;
  stdin(): Promise<JsExecStdin | null>;
  stdout(): Promise<JsExecStdout | null>;
  stderr(): Promise<JsExecStderr | null>;
  wait(): Promise<JsExecResult>;
  kill(): Promise<void>;
  signal(signal: number): Promise<void>;
  resizeTty(rows: number, cols: number): Promise<void>;
}

export declare class JsBox {
  readonly id: string;
  readonly name: string | null;
  info(): Promise<JsBoxInfo>;
  exec(
    command: string,
    args?: string[] | null,
    env?: Array<[string, string]> | Record<string, string> | null,
    tty?: boolean | null,
    user?: string | null,
    timeoutSecs?: number | null,
    workingDir?: string | null,
    options?: { stdin?: boolean },
  ): Promise<JsExecution>;
  attach(executionId: string): Promise<JsExecution>;
  start(): Promise<void>;
  stop(): Promise<void>;
  metrics(): Promise<JsBoxMetrics>;
  copyIn(hostPath: string, containerDest: string, options?: CopyOptions | null): Promise<void>;
  copyOut(containerSrc: string, hostDest: string, options?: CopyOptions | null): Promise<void>;
  /** Stops the box's vCPUs; processes and memory are kept (commands wait for `resume`). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** This box's memory snapshots. */
  readonly snapshot: JsSnapshotHandle;
  /** A second box, `name`, continuing from this moment of this one. */
  fork(name: string): Promise<JsBox>;
}

/** A snapshot: a box saved whole (memory, devices, disk). `createdAt` is in Unix seconds,
 * `containerDiskBytes` the size of the box's disk as its guest sees it, `sizeBytes` what the
 * snapshot takes on the host. */
export interface JsSnapshotInfo {
  id: string;
  boxId: string;
  boxName: string | null;
  name: string;
  createdAt: number;
  containerDiskBytes: number;
  sizeBytes: number;
  image: string;
  cpus: number;
  memoryMib: number;
}

/** None yet: the reference's placeholder. */
export type JsSnapshotOptions = Record<string, never>;

export declare class JsSnapshotHandle {
  create(name: string, options?: JsSnapshotOptions | null): Promise<JsSnapshotInfo>;
  list(): Promise<JsSnapshotInfo[]>;
  get(name: string): Promise<JsSnapshotInfo | null>;
  remove(name: string): Promise<void>;
  /** Puts the box back to its snapshot `name`; it runs on from that moment. */
  restore(name: string): Promise<void>;
}

export declare class JsBoxlite {
  constructor(options?: JsOptions);
  static withDefaultConfig(): JsBoxlite;
  static initDefault(options: JsOptions): void;
  readonly homeDir: string;
  readonly images: ImageHandle;
  create(options: JsBoxOptions, name?: string | null): Promise<JsBox>;
  getOrCreate(options: JsBoxOptions, name?: string | null): Promise<{ readonly created: boolean; readonly box: JsBox }>;
  listInfo(): Promise<JsBoxInfo[]>;
  getInfo(idOrName: string): Promise<JsBoxInfo | null>;
  get(idOrName: string): Promise<JsBox | null>;
  metrics(): Promise<JsRuntimeMetrics>;
  remove(idOrName: string, force?: boolean | null): Promise<void>;
  close(): void;
  shutdown(timeout?: number | null): Promise<void>;
  listSnapshots(): Promise<JsSnapshotInfo[]>;
  removeSnapshot(name: string): Promise<void>;
  /** Beyond the reference: standbys (warm VMs kept with `BOXLITE_STANDBY=N`) ready for
   * boxes' first starts. */
  standbysReady(): number;
  /** Beyond the reference: powers every standby of the home off; how many were running. */
  retireStandbys(): Promise<number>;
  /** A new box from `snapshot`, started: it continues from that moment. */
  createFromSnapshot(snapshot: string, name?: string | null): Promise<JsBox>;
}

export type Boxlite = JsBoxlite;

export interface SimpleBoxOptions extends JsBoxOptions {
  runtime?: JsBoxlite;
  name?: string;
  reuseExisting?: boolean;
}

export declare class SimpleBox {
  constructor(options?: SimpleBoxOptions);
  readonly id: string;
  getId(): Promise<string>;
  readonly name: string | undefined;
  readonly created: boolean | null;
  start(): Promise<void>;
  info(): Promise<JsBoxInfo>;
  getInfo(): Promise<JsBoxInfo>;
  exec(cmd: string, ...args: string[]): Promise<ExecResult>;
  exec(cmd: string, args: string[], env: Record<string, string>): Promise<ExecResult>;
  exec(
    cmd: string,
    args: string[],
    env: Record<string, string> | undefined,
    options?: { cwd?: string; user?: string; timeoutSecs?: number },
  ): Promise<ExecResult>;
  copyIn(hostPath: string, containerDest: string, options?: CopyOptions): Promise<void>;
  copyOut(containerSrc: string, hostDest: string, options?: CopyOptions): Promise<void>;
  metrics(): Promise<JsBoxMetrics>;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface CodeBoxOptions extends SimpleBoxOptions {}

export interface CodeError {
  name: string;
  value: string;
  traceback: string[];
}

export interface CodeResult {
  stdout: string;
  stderr: string;
  /** The last expression's value by MIME type (`text/plain`, `text/html`, `image/png`). */
  result: Record<string, string> | null;
  /** What the code displayed (matplotlib figures as `image/png`, base64). */
  display: Array<Record<string, string>>;
  error: CodeError | null;
}

export declare class CodeBox extends SimpleBox {
  constructor(options?: CodeBoxOptions);
  /** The output (stdout, stderr, then the traceback of an exception). */
  run(code: string, timeoutSecs?: number): Promise<string>;
  runDetailed(code: string, options?: { timeoutSecs?: number }): Promise<CodeResult>;
  runScript(scriptPath: string): Promise<string>;
  installPackage(packageName: string): Promise<string>;
  installPackages(...packages: string[]): Promise<string>;
}

export type BrowserType = "chromium" | "firefox" | "webkit";

export interface BrowserBoxOptions extends SimpleBoxOptions {
  browser?: BrowserType;
  port?: number;
  cdpPort?: number;
}

export declare class BrowserBox extends SimpleBox {
  constructor(options?: BrowserBoxOptions);
  readonly browser: BrowserType;
  endpoint(timeout?: number): Promise<string>;
  httpEndpoint(): Promise<string>;
  playwrightEndpoint(timeout?: number): Promise<string>;
  isRunning(): Promise<boolean>;
  restart(): Promise<void>;
  connect(options?: { timeout?: number }): Promise<unknown>;
}

export interface ComputerBoxOptions extends SimpleBoxOptions {
  guiHttpPort?: number;
  guiHttpsPort?: number;
  screenWidth?: number;
  screenHeight?: number;
}

export interface Screenshot {
  data: string;
  width: number;
  height: number;
  format: "png";
}

export declare class ComputerBox extends SimpleBox {
  constructor(options?: ComputerBoxOptions);
  waitUntilReady(timeout?: number): Promise<void>;
  screenshot(): Promise<Screenshot>;
  mouseMove(x: number, y: number): Promise<void>;
  leftClick(): Promise<void>;
  rightClick(): Promise<void>;
  middleClick(): Promise<void>;
  doubleClick(): Promise<void>;
  tripleClick(): Promise<void>;
  leftClickDrag(startX: number, startY: number, endX: number, endY: number): Promise<void>;
  cursorPosition(): Promise<[number, number]>;
  type(text: string): Promise<void>;
  key(keySequence: string): Promise<void>;
  scroll(x: number, y: number, direction: "up" | "down" | "left" | "right", amount?: number): Promise<void>;
  getScreenSize(): Promise<[number, number]>;
}

export interface InteractiveBoxOptions extends SimpleBoxOptions {
  shell?: string;
  tty?: boolean;
}

export declare class InteractiveBox extends SimpleBox {
  constructor(options: InteractiveBoxOptions);
  write(data: Buffer | string): Promise<void>;
  read(): Promise<Buffer | null>;
  readUntil(pattern: string, timeoutSecs?: number): Promise<string>;
  resize(rows: number, cols: number): Promise<void>;
  wait(): Promise<JsExecResult>;
}

export declare class BoxliteError extends Error {
  constructor(message: string);
}

/** An error of the core: its kind's name and number (the C SDK's code). */
export declare class KindError extends BoxliteError {
  readonly kind: string;
  readonly code: number;
}

export declare class InternalError extends KindError {}
export declare class NotFoundError extends KindError {}
export declare class AlreadyExistsError extends KindError {}
export declare class InvalidStateError extends KindError {}
export declare class InvalidArgumentError extends KindError {}
export declare class ConfigError extends KindError {}
export declare class StorageError extends KindError {}
export declare class ImageError extends KindError {}
export declare class NetworkError extends KindError {}
export declare class ExecutionError extends KindError {}
export declare class StoppedError extends KindError {}
export declare class EngineError extends KindError {}
export declare class UnsupportedError extends KindError {}
export declare class DatabaseError extends KindError {}
export declare class PortalError extends KindError {}
export declare class RpcError extends KindError {}

export declare class ExecError extends BoxliteError {
  readonly command: string;
  readonly exitCode: number;
  readonly stderr: string;
  constructor(command: string, exitCode: number, stderr: string);
}

export declare class TimeoutError extends BoxliteError {
  constructor(message: string);
}

export declare class ParseError extends BoxliteError {
  constructor(message: string);
}

export declare function getNativeModule(): unknown;
export declare function getJsBoxlite(): typeof JsBoxlite;

export declare const DEFAULT_CPUS: number;
export declare const DEFAULT_MEMORY_MIB: number;
export declare const COMPUTERBOX_CPUS: number;
export declare const COMPUTERBOX_MEMORY_MIB: number;
export declare const COMPUTERBOX_DISPLAY_NUMBER: string;
export declare const COMPUTERBOX_DISPLAY_WIDTH: number;
export declare const COMPUTERBOX_DISPLAY_HEIGHT: number;
export declare const COMPUTERBOX_GUI_HTTP_PORT: number;
export declare const COMPUTERBOX_GUI_HTTPS_PORT: number;
export declare const DESKTOP_READY_TIMEOUT: number;
