//! `BoxCommand` and `Execution`: one command in a box.

use super::*;

/// A command to run in a box.
#[derive(Debug, Clone, Default)]
pub struct BoxCommand {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) working_dir: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) stdin: bool,
    pub(crate) tty: bool,
}

impl BoxCommand {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            args: vec![program.into()],
            ..Default::default()
        }
    }
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
    /// SIGTERM after this long, SIGKILL 2 s later; `wait` then reports `timed_out`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Runs the command on a pseudo-terminal: its output arrives on stdout, stdin is open.
    pub fn tty(mut self, tty: bool) -> Self {
        self.tty = tty;
        self
    }

    /// Gives the command a stdin pipe (else it reads /dev/null).
    pub fn stdin(mut self, piped: bool) -> Self {
        self.stdin = piped;
        self
    }
}

/// An exec's id (a ULID): any process can attach to the command by it.
pub type ExecutionId = String;

/// How long past its timeout a command may take to be reported ended before the host stops
/// waiting for the guest (which enforces the timeout itself: SIGTERM, SIGKILL 2 s later).
const HOST_TIMEOUT_GRACE: Duration = Duration::from_secs(10);

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecResult {
    /// The exit code, or -1 when a signal ended the command.
    pub exit_code: i32,
    /// Why the command did not end by itself: the signal, or its timeout. `None` when it
    /// exited.
    pub error_message: Option<String>,
    /// The signal that ended it, 0 when it exited.
    pub signal: i32,
    /// Its timeout ended it.
    pub timed_out: bool,
}

impl ExecResult {
    /// It exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0 && self.signal == 0
    }
}

/// A command running in a box. Output is kept in the box until read, by this or any other
/// process that attaches by [`Execution::id`]: up to 4 MiB per stream wait in the box (then the
/// command's writes block until someone reads), and a read is acknowledged by the next one, so
/// a reader killed mid-read loses nothing (see [`Execution::read_stdout_chunk`]).
///
/// [`Execution::stdout`], [`Execution::stderr`] and [`Execution::stdin`] hand each stream out
/// once; the `read_*`/`write_stdin` methods work on the same streams without taking them.
pub struct Execution {
    pub(crate) id: ExecutionId,
    pub(crate) client: ShimClient,
    /// Stream offsets this handle (and its clones) have read up to: stdout, stderr.
    pub(crate) positions: Arc<[std::sync::atomic::AtomicU64; 2]>,
    /// When the host stops waiting for the end (the command's timeout, plus a grace).
    pub(crate) deadline: Option<tokio::time::Instant>,
    stdout_taken: bool,
    stderr_taken: bool,
    stdin_available: bool,
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Execution").field("id", &self.id).finish()
    }
}

impl Execution {
    pub(crate) fn new(
        id: String,
        client: ShimClient,
        stdin: bool,
        timeout: Option<Duration>,
    ) -> Self {
        Self {
            id,
            client,
            positions: Arc::default(),
            deadline: timeout.map(|t| tokio::time::Instant::now() + t + HOST_TIMEOUT_GRACE),
            stdout_taken: false,
            stderr_taken: false,
            stdin_available: stdin,
        }
    }

    /// A handle on an exec started elsewhere (stdin is the attaching caller's to ask for).
    pub(crate) fn attached(id: String, client: ShimClient) -> Self {
        Self {
            stdin_available: true,
            ..Self::new(id, client, false, None)
        }
    }

    /// The exec's id.
    pub fn id(&self) -> &ExecutionId {
        &self.id
    }

    /// The command's stdout as a stream of lines (without their newline; invalid UTF-8 is
    /// replaced), once; `None` when it was taken already. [`ExecStdout::bytes`] gives raw
    /// chunks instead.
    pub fn stdout(&mut self) -> Option<ExecStdout> {
        if std::mem::replace(&mut self.stdout_taken, true) {
            return None;
        }
        Some(ExecStdout::new(OutputReader::new(
            self.clone_handle(),
            OutputStream::STDOUT,
        )))
    }

    /// The command's stderr, as [`Execution::stdout`].
    pub fn stderr(&mut self) -> Option<ExecStderr> {
        if std::mem::replace(&mut self.stderr_taken, true) {
            return None;
        }
        Some(ExecStderr::new(OutputReader::new(
            self.clone_handle(),
            OutputStream::STDERR,
        )))
    }

    /// The command's stdin, once; `None` when the command was started without one
    /// ([`BoxCommand::stdin`]) or it was taken already.
    pub fn stdin(&mut self) -> Option<ExecStdin> {
        if !std::mem::replace(&mut self.stdin_available, false) {
            return None;
        }
        Some(ExecStdin {
            execution: self.clone_handle(),
            closed: false,
        })
    }

    /// Sends the command's output to the box's output log ([`LiteBox::logs`]) from now on:
    /// the box's shim reads it, so the command never blocks on output nobody reads (what
    /// `boxlite run -d` does). This and other handles read nothing more of it; `wait` still
    /// gives the exit code.
    pub async fn send_output_to_log(&self) -> Result<()> {
        Ok(self.client.log_output(&self.id).await?)
    }

    /// The next bytes of stdout this handle has not seen; `None` once it has ended.
    pub async fn read_stdout(&self) -> Result<Option<Vec<u8>>> {
        self.read_new(OutputStream::STDOUT).await
    }

    /// The next bytes of stderr this handle has not seen; `None` once it has ended.
    pub async fn read_stderr(&self) -> Result<Option<Vec<u8>>> {
        self.read_new(OutputStream::STDERR).await
    }

    /// The next stdout bytes with their offset in the stream. After re-attaching, the first
    /// chunk may start before the end of what a dead reader received: bytes it never
    /// acknowledged are sent again rather than lost, and the offset says where they belong.
    pub async fn read_stdout_chunk(&self) -> Result<Option<OutputChunk>> {
        self.read_chunk(OutputStream::STDOUT).await
    }

    /// [`Execution::read_stdout_chunk`] for stderr.
    pub async fn read_stderr_chunk(&self) -> Result<Option<OutputChunk>> {
        self.read_chunk(OutputStream::STDERR).await
    }

    pub(crate) fn position(&self, stream: OutputStream) -> &std::sync::atomic::AtomicU64 {
        &self.positions[stream as usize]
    }

    pub(crate) async fn read_chunk(&self, stream: OutputStream) -> Result<Option<OutputChunk>> {
        use std::sync::atomic::Ordering;
        let from = self.position(stream).load(Ordering::Acquire);
        let chunk = self.client.agent().read(&self.id, stream, from).await?;
        if let Some(chunk) = &chunk {
            self.position(stream)
                .fetch_max(chunk.end(), Ordering::AcqRel);
        }
        Ok(chunk)
    }

    pub(crate) async fn read_new(&self, stream: OutputStream) -> Result<Option<Vec<u8>>> {
        loop {
            let seen = self
                .position(stream)
                .load(std::sync::atomic::Ordering::Acquire);
            let Some(mut chunk) = self.read_chunk(stream).await? else {
                return Ok(None);
            };
            let skip = seen.saturating_sub(chunk.offset) as usize;
            if skip < chunk.data.len() {
                chunk.data.drain(..skip);
                return Ok(Some(chunk.data));
            }
        }
    }

    pub async fn write_stdin(&self, data: &[u8]) -> Result<()> {
        Ok(self
            .client
            .agent()
            .write_stdin(&self.id, data, false)
            .await?)
    }

    pub async fn close_stdin(&self) -> Result<()> {
        Ok(self.client.agent().write_stdin(&self.id, &[], true).await?)
    }

    /// A second handle on the same exec (one reads while another resizes or signals). The
    /// streams stay with this one.
    pub fn clone_handle(&self) -> Execution {
        Execution {
            id: self.id.clone(),
            client: self.client.clone(),
            positions: Arc::clone(&self.positions),
            deadline: self.deadline,
            stdout_taken: true,
            stderr_taken: true,
            stdin_available: false,
        }
    }

    /// Sets the window size of a tty exec.
    pub async fn resize_tty(&self, rows: u16, cols: u16) -> Result<()> {
        Ok(self.client.agent().resize(&self.id, rows, cols).await?)
    }

    /// [`Execution::resize_tty`].
    pub async fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        self.resize_tty(rows, cols).await
    }

    /// Ends the command with SIGKILL.
    pub async fn kill(&mut self) -> Result<()> {
        self.signal(libc::SIGKILL).await
    }

    /// Sends `signal` to the command.
    pub async fn signal(&self, signal: i32) -> Result<()> {
        Ok(self.client.agent().signal(&self.id, signal).await?)
    }

    /// Waits for the end; read the output first (or concurrently), it is kept until read.
    /// A command with a timeout is also bounded from the host: if the box has not reported
    /// its end 10 s after the timeout, it is sent SIGKILL and reported timed out.
    pub async fn wait(&mut self) -> Result<ExecResult> {
        self.wait_shared().await
    }

    pub(crate) async fn wait_shared(&self) -> Result<ExecResult> {
        let wait = self.client.agent().wait(&self.id);
        let status = match self.deadline {
            None => wait.await?,
            Some(deadline) => match tokio::time::timeout_at(deadline, wait).await {
                Ok(status) => status?,
                Err(_) => {
                    let _ = self.signal(libc::SIGKILL).await;
                    return Ok(ExecResult {
                        exit_code: -1,
                        error_message: Some(
                            "the box did not report the command's end within its timeout; \
                             it was sent SIGKILL from the host"
                                .into(),
                        ),
                        signal: libc::SIGKILL,
                        timed_out: true,
                    });
                }
            },
        };
        let error_message = if status.timed_out {
            Some(format!("timed out (ended by signal {})", status.signal))
        } else if status.signal != 0 {
            Some(format!("killed by signal {}", status.signal))
        } else {
            None
        };
        Ok(ExecResult {
            exit_code: status.code,
            error_message,
            signal: status.signal,
            timed_out: status.timed_out,
        })
    }

    /// Reads both streams to their end (from where this handle is), then waits:
    /// (stdout, stderr, result).
    pub async fn output(&self) -> Result<(Vec<u8>, Vec<u8>, ExecResult)> {
        let drain = |stream| async move {
            let mut all = Vec::new();
            while let Some(data) = self.read_new(stream).await? {
                all.extend_from_slice(&data);
            }
            Ok::<_, BoxliteError>(all)
        };
        let (stdout, stderr) =
            tokio::join!(drain(OutputStream::STDOUT), drain(OutputStream::STDERR));
        Ok((stdout?, stderr?, self.wait_shared().await?))
    }
}

/// Reads one stream of an exec for [`ExecStdout`] and [`ExecStderr`].
struct OutputReader {
    execution: Execution,
    stream: OutputStream,
    /// Cuts what arrives into lines, holding at most one unfinished line.
    splitter: LineSplitter,
    /// Lines cut and not yet handed out.
    ready: std::collections::VecDeque<Vec<u8>>,
    ended: bool,
}

/// The longest line an output stream hands out whole; longer ones come in pieces, so that a
/// guest printing without newlines costs the host a bounded buffer.
pub const MAX_LINE_BYTES: usize = 1 << 20;

impl OutputReader {
    fn new(execution: Execution, stream: OutputStream) -> Self {
        Self {
            execution,
            stream,
            splitter: LineSplitter::with_max_line(MAX_LINE_BYTES),
            ready: std::collections::VecDeque::new(),
            ended: false,
        }
    }

    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if self.ended {
            return Ok(None);
        }
        let chunk = self.execution.read_new(self.stream).await;
        if !matches!(chunk, Ok(Some(_))) {
            self.ended = true;
        }
        chunk
    }

    async fn next_line(&mut self) -> Option<String> {
        loop {
            if let Some(line) = self.ready.pop_front() {
                let line = line.strip_suffix(b"\r").unwrap_or(&line);
                return Some(String::from_utf8_lossy(line).into_owned());
            }
            match self.next_chunk().await {
                Ok(Some(data)) => self.ready.extend(self.splitter.push(&data)),
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!("exec {}: reading its output: {err}", self.execution.id);
                    break;
                }
            }
        }
        // The last line, without a newline.
        self.splitter
            .finish()
            .map(|line| String::from_utf8_lossy(&line).into_owned())
    }

    fn bytes(self) -> futures::stream::BoxStream<'static, Result<Vec<u8>>> {
        Box::pin(futures::stream::unfold(self, |mut reader| async move {
            match reader.next_chunk().await {
                Ok(Some(data)) => Some((Ok(data), reader)),
                Ok(None) => None,
                Err(err) => Some((Err(err), reader)),
            }
        }))
    }
}

type PendingLine =
    std::pin::Pin<Box<dyn std::future::Future<Output = (Option<String>, OutputReader)> + Send>>;

macro_rules! output_stream {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The command's ", $what, ": a stream of its lines (see [`Execution::stdout`]).")]
        pub struct $name {
            reader: Option<OutputReader>,
            /// The line being read, across polls.
            pending: Option<PendingLine>,
        }

        impl $name {
            fn new(reader: OutputReader) -> Self {
                Self {
                    reader: Some(reader),
                    pending: None,
                }
            }

            fn into_reader(mut self) -> Option<OutputReader> {
                // A line being read is given up with its future; only mixed use gets here.
                self.pending = None;
                self.reader.take()
            }

            /// The raw bytes instead of lines, chunk by chunk; an error ends the stream.
            pub fn bytes(self) -> futures::stream::BoxStream<'static, Result<Vec<u8>>> {
                match self.into_reader() {
                    Some(reader) => reader.bytes(),
                    None => Box::pin(futures::stream::empty()),
                }
            }

            /// The next line (without its newline); `None` at the end.
            pub async fn next_line(&mut self) -> Option<String> {
                futures::StreamExt::next(self).await
            }
        }

        impl futures::Stream for $name {
            type Item = String;

            fn poll_next(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<String>> {
                let this = self.get_mut();
                if this.pending.is_none() {
                    let Some(mut reader) = this.reader.take() else {
                        return std::task::Poll::Ready(None);
                    };
                    this.pending = Some(Box::pin(async move {
                        let line = reader.next_line().await;
                        (line, reader)
                    }));
                }
                let pending = this.pending.as_mut().expect("set above");
                match pending.as_mut().poll(cx) {
                    std::task::Poll::Ready((line, reader)) => {
                        this.pending = None;
                        this.reader = Some(reader);
                        std::task::Poll::Ready(line)
                    }
                    std::task::Poll::Pending => std::task::Poll::Pending,
                }
            }
        }
    };
}

output_stream!(ExecStdout, "stdout");
output_stream!(ExecStderr, "stderr");

/// The command's stdin (see [`Execution::stdin`]). Dropping it leaves stdin open; `close`
/// sends end-of-file.
pub struct ExecStdin {
    execution: Execution,
    closed: bool,
}

impl ExecStdin {
    /// Writes `data` (the command reads it as it likes; this waits while the box's pipe is
    /// full, up to 300 s).
    pub async fn write(&mut self, data: &[u8]) -> Result<()> {
        if self.closed {
            return Err(ExecutionError::Stdin(format!(
                "stdin of exec {} is closed",
                self.execution.id
            ))
            .into());
        }
        self.execution.write_stdin(data).await
    }

    /// [`ExecStdin::write`] of the whole of `data`.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<()> {
        self.write(data).await
    }

    /// Writes a string.
    pub async fn write_str(&mut self, text: &str) -> Result<()> {
        self.write(text.as_bytes()).await
    }

    /// Sends end-of-file.
    pub async fn close(&mut self) -> Result<()> {
        if !std::mem::replace(&mut self.closed, true) {
            self.execution.close_stdin().await?;
        }
        Ok(())
    }
}
