//! `CodeBox`: Python code execution in a box, with one persistent interpreter per box
//! (variables and imports survive between runs) and rich results.
//!
//! The interpreter is our own small server (`codebox_server.py`, stdlib only), started in
//! the box as `python3 -c` on the first run (so any image with python3 serves): requests go to its stdin as JSON lines, answers
//! come back on its stdout as JSON lines (bounded by [`MAX_ANSWER_BYTES`]: the box is
//! untrusted). A run that outlives its timeout gets SIGINT (KeyboardInterrupt: the
//! interpreter and its state survive); one that ignores it gets its interpreter killed and
//! restarted on the next run.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::runtime::{
    BoxCommand, BoxliteError, BoxliteResult, BoxliteRuntime, ExecStdin, Execution, ExecutionError,
    InvalidArgument, LiteBox,
};
use crate::simple_box::{ExecOutput, SimpleBox};
use crate::{BoxOptions, RootfsSpec};

/// The interpreter server, run in the box with `python3 -c`.
const SERVER: &str = include_str!("codebox_server.py");
/// How long one run may take unless told otherwise.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an interrupted run gets to stop before its interpreter is killed.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// How long the interpreter may take to start (the first `run` of a box).
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The most one answer of the interpreter may hold (output is cut at 8 MiB per stream in
/// the box; figures are base64 PNGs).
pub const MAX_ANSWER_BYTES: usize = 64 << 20;
/// The image a `CodeBox` runs when its options name none: `BOXLITE_CODEBOX_IMAGE`, else the
/// python image `scripts/build-images.sh python` builds (see [`default_image`]).
pub const IMAGE_ENV: &str = "BOXLITE_CODEBOX_IMAGE";

/// The image reference `CodeBox` uses by default: `BOXLITE_CODEBOX_IMAGE`, else the OCI
/// layout `scripts/build-images.sh python` keeps (see [`super::local_image`]).
pub fn default_image() -> String {
    super::local_image(IMAGE_ENV, "python")
}

/// Data by MIME type: `text/plain` always, `text/html`, `image/png` (base64) and others
/// when the value renders so.
pub type MimeBundle = BTreeMap<String, String>;

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CodeResult {
    /// Everything written to stdout: print(), C extensions, child processes.
    pub stdout: String,
    pub stderr: String,
    /// The value of the code's last line when it is an expression (and not None).
    pub result: Option<MimeBundle>,
    /// Figures and other displays the code produced (matplotlib figures as PNG).
    pub display: Vec<MimeBundle>,
    /// The exception that ended the code, if one did.
    pub error: Option<CodeError>,
}

impl CodeResult {
    /// The code ran to its end without an exception.
    pub fn success(&self) -> bool {
        self.error.is_none()
    }

    /// The last expression's value as text (its `repr`).
    pub fn text(&self) -> Option<&str> {
        self.result
            .as_ref()
            .and_then(|r| r.get("text/plain"))
            .map(String::as_str)
    }
}

/// An exception raised by the code (or `Timeout` when the run was interrupted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CodeError {
    /// The exception's class name (`ZeroDivisionError`, `SyntaxError`, ...), or `Timeout`.
    pub name: String,
    /// Its message.
    pub value: String,
    /// The formatted traceback, from the code's own frames on.
    pub traceback: Vec<String>,
}

/// The interpreter's answer as it arrives (`id` checked, the rest becomes a `CodeResult`).
#[derive(Deserialize)]
struct Answer {
    id: Option<u64>,
    #[serde(flatten)]
    result: CodeResult,
    #[serde(default)]
    fatal: Option<String>,
}

/// A running interpreter: its exec, stdin, and what has arrived of its stdout.
struct Interpreter {
    execution: Execution,
    stdin: ExecStdin,
    pending: Vec<u8>,
}

impl Interpreter {
    /// The next line of the interpreter's stdout, at most [`MAX_ANSWER_BYTES`].
    async fn next_line(&mut self) -> BoxliteResult<Vec<u8>> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                return Ok(line);
            }
            if self.pending.len() > MAX_ANSWER_BYTES {
                return Err(interpreter_error(format!(
                    "the interpreter sent an answer of more than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            match self.execution.read_stdout().await? {
                Some(bytes) => self.pending.extend_from_slice(&bytes),
                None => {
                    return Err(interpreter_error(
                        "the interpreter ended (the code may have killed it, or the box \
                         stopped); the next run starts a new one without its state"
                            .into(),
                    ))
                }
            }
        }
    }
}

fn interpreter_error(message: String) -> BoxliteError {
    ExecutionError::Interpreter(message).into()
}

/// A box with a persistent Python interpreter. Removed when dropped, like [`SimpleBox`].
pub struct CodeBox {
    simple: SimpleBox,
    interpreter: tokio::sync::Mutex<Option<Interpreter>>,
    next_id: AtomicU64,
}

impl CodeBox {
    /// A box of [`default_image`] with 1 GiB of memory (numpy, pandas and matplotlib want
    /// it), started; the interpreter starts with the first run.
    pub async fn new(runtime: &BoxliteRuntime) -> BoxliteResult<Self> {
        Self::with_options(runtime, Self::default_options()).await
    }

    /// The options [`CodeBox::new`] uses, to adjust and pass to [`CodeBox::with_options`].
    pub fn default_options() -> BoxOptions {
        BoxOptions {
            rootfs: RootfsSpec::from_reference(&default_image()),
            memory_mib: Some(1024),
            ..BoxOptions::default()
        }
    }

    /// A box of `options` (any image with `python3` and `sh`), started.
    pub async fn with_options(
        runtime: &BoxliteRuntime,
        options: BoxOptions,
    ) -> BoxliteResult<Self> {
        Ok(Self {
            simple: SimpleBox::new(runtime, options).await?,
            interpreter: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        })
    }

    /// The box underneath.
    pub fn litebox(&self) -> &LiteBox {
        self.simple.litebox()
    }

    pub fn id(&self) -> &str {
        self.simple.id()
    }

    /// Runs `code` in the box's interpreter, within [`DEFAULT_RUN_TIMEOUT`].
    pub async fn run(&self, code: &str) -> BoxliteResult<CodeResult> {
        self.run_with_timeout(code, DEFAULT_RUN_TIMEOUT).await
    }

    /// Runs `code`; past `timeout` it is interrupted (the result's error is `Timeout`).
    pub async fn run_with_timeout(
        &self,
        code: &str,
        timeout: Duration,
    ) -> BoxliteResult<CodeResult> {
        let mut guard = self.interpreter.lock().await;
        if guard.is_none() {
            *guard = Some(self.start_interpreter().await?);
        }
        let interpreter = guard.as_mut().expect("started above");
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = serde_json::to_vec(&serde_json::json!({ "id": id, "code": code }))
            .expect("a request serializes");
        request.push(b'\n');
        if let Err(err) = interpreter.stdin.write_all(&request).await {
            discard(guard.take()).await;
            return Err(err);
        }
        let answer = match tokio::time::timeout(timeout, read_answer(interpreter, id)).await {
            Ok(Ok(result)) => return Ok(result),
            Ok(Err(err)) => {
                // Ended, or answered what it should not: the next run starts a new one.
                discard(guard.take()).await;
                return Err(err);
            }
            Err(_) => {
                // SIGINT: KeyboardInterrupt in the running code, the interpreter lives on.
                let _ = interpreter.execution.signal(libc::SIGINT).await;
                tokio::time::timeout(INTERRUPT_GRACE, read_answer(interpreter, id)).await
            }
        };
        let stopped = format!("the code ran longer than {timeout:?} and was interrupted");
        match answer {
            Ok(Ok(mut result)) => {
                let traceback = result.error.take().map(|e| e.traceback).unwrap_or_default();
                result.error = Some(CodeError {
                    name: "Timeout".into(),
                    value: format!("{stopped}; the interpreter kept its state"),
                    traceback,
                });
                Ok(result)
            }
            _ => {
                discard(guard.take()).await;
                Ok(CodeResult {
                    error: Some(CodeError {
                        name: "Timeout".into(),
                        value: format!(
                            "{stopped}; it did not stop, so its interpreter was killed: the \
                             next run starts a new one without the old state"
                        ),
                        traceback: Vec::new(),
                    }),
                    ..CodeResult::default()
                })
            }
        }
    }

    /// Runs the Python file at `path` on this host in the box's interpreter.
    pub async fn run_script(&self, path: impl AsRef<Path>) -> BoxliteResult<CodeResult> {
        let path = path.as_ref();
        let code = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| InvalidArgument::Script {
                path: path.display().to_string(),
                problem: e.to_string(),
            })?;
        self.run(&code).await
    }

    /// Installs `package` with pip in the box (it needs the network and an index it may
    /// reach). The pip output is returned; a failure is an error that says why.
    pub async fn install_package(&self, package: &str) -> BoxliteResult<ExecOutput> {
        self.install_packages(&[package]).await
    }

    /// Installs `packages` with pip in one go.
    pub async fn install_packages(&self, packages: &[&str]) -> BoxliteResult<ExecOutput> {
        if packages.is_empty() {
            return Err(InvalidArgument::Package(String::new()).into());
        }
        if let Some(bad) = packages
            .iter()
            .find(|p| p.is_empty() || p.starts_with('-') || p.contains(char::is_whitespace))
        {
            return Err(InvalidArgument::Package(bad.to_string()).into());
        }
        let command = BoxCommand::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--break-system-packages",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                "--no-input",
                "--progress-bar",
                "off",
            ])
            .args(packages.iter().copied());
        let output = self.simple.run(command).await?;
        if output.success() {
            return Ok(output);
        }
        let said = output.stderr.trim();
        let offline = [
            "Failed to establish a new connection",
            "Temporary failure in name resolution",
            "Network is unreachable",
            "No route to host",
            "Could not fetch URL",
        ]
        .iter()
        .any(|sign| said.contains(sign));
        let hint = if offline {
            "the box cannot reach a package index: give it a network (and a network policy that \
             allows the index)"
        } else {
            "see pip's message"
        };
        let tail: Vec<&str> = said.lines().rev().take(5).collect();
        Err(ExecutionError::Package {
            packages: packages.join(" "),
            message: format!(
                "{hint}: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        }
        .into())
    }

    /// Removes the box now, reporting what went wrong.
    pub async fn remove(self) -> BoxliteResult<()> {
        self.simple.remove().await
    }

    async fn start_interpreter(&self) -> BoxliteResult<Interpreter> {
        // The server's own stderr goes to a file in the box: nobody reads it, and unread
        // output would stall the interpreter once the agent's buffer is full.
        let mut execution = self
            .litebox()
            .exec(
                BoxCommand::new("sh")
                    .args([
                        "-c",
                        "exec python3 -u -c \"$1\" 2>>/tmp/.boxlite-codebox.log",
                        "sh",
                        SERVER,
                    ])
                    .stdin(true),
            )
            .await?;
        let stdin = execution
            .stdin()
            .ok_or_else(|| interpreter_error("the interpreter's stdin is missing".into()))?;
        let mut interpreter = Interpreter {
            execution,
            stdin,
            pending: Vec::new(),
        };
        let line = tokio::time::timeout(START_TIMEOUT, interpreter.next_line())
            .await
            .map_err(|_| {
                interpreter_error(format!(
                    "the interpreter did not start within {START_TIMEOUT:?}"
                ))
            })??;
        let hello: serde_json::Value = serde_json::from_slice(&line).map_err(|_| {
            interpreter_error(format!(
                "the box's python3 did not start the interpreter; it said: {}",
                String::from_utf8_lossy(&line).trim()
            ))
        })?;
        if hello.get("ready") != Some(&serde_json::Value::Bool(true)) {
            return Err(interpreter_error(format!(
                "unexpected greeting from the interpreter: {hello}"
            )));
        }
        Ok(interpreter)
    }
}

/// Ends an interpreter that will not be used again (it may still be running in the box).
async fn discard(interpreter: Option<Interpreter>) {
    if let Some(mut interpreter) = interpreter {
        let _ = interpreter.execution.kill().await;
    }
}

/// Reads answers until the one for request `id` (an earlier, interrupted request's answer
/// may come first).
async fn read_answer(interpreter: &mut Interpreter, id: u64) -> BoxliteResult<CodeResult> {
    loop {
        let line = interpreter.next_line().await?;
        let answer: Answer = serde_json::from_slice(&line).map_err(|e| {
            interpreter_error(format!("the interpreter sent an unreadable answer: {e}"))
        })?;
        if let Some(fatal) = answer.fatal {
            return Err(interpreter_error(fatal));
        }
        if answer.id == Some(id) {
            return Ok(answer.result);
        }
    }
}
