//! A typed client of the guest agent's ttrpc service.

use std::time::Duration;

use boxlite_protocol::agent::{
    CopyRequest, ExecRequest, OutputStream, PingRequest, PingResponse, ReadOutputRequest,
    ShutdownRequest, SignalRequest, WaitRequest, WriteStdinRequest,
};
use boxlite_protocol::agent_ttrpc;
use boxlite_protocol::MAX_READ_CHUNK;
use tokio::net::UnixStream;

pub use ttrpc::Code;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent {method}: {message}")]
    Rpc {
        method: &'static str,
        code: ttrpc::Code,
        message: String,
    },
    #[error("agent {method}: connection failed: {message}")]
    Transport {
        method: &'static str,
        message: String,
    },
    #[error("agent {method}: no answer within {after:?}")]
    Timeout {
        method: &'static str,
        after: Duration,
    },
    #[error(
        "agent {method}: the box stopped answering (no ping answered within {after:?}); its \
         shim or VM may be stopped or dead"
    )]
    Unresponsive {
        method: &'static str,
        after: Duration,
    },
}

impl AgentError {
    fn from_ttrpc(method: &'static str, err: ttrpc::Error) -> Self {
        match err {
            ttrpc::Error::RpcStatus(status) => AgentError::Rpc {
                method,
                code: status.code(),
                message: status.message().to_string(),
            },
            other => AgentError::Transport {
                method,
                message: other.to_string(),
            },
        }
    }

    /// The ttrpc status code, when the agent answered with an error.
    pub fn code(&self) -> Option<ttrpc::Code> {
        match self {
            AgentError::Rpc { code, .. } => Some(*code),
            AgentError::Transport { .. }
            | AgentError::Timeout { .. }
            | AgentError::Unresponsive { .. } => None,
        }
    }
}

/// Bytes of an output stream and where they start in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub offset: u64,
    pub data: Vec<u8>,
}

impl OutputChunk {
    /// Offset just past the chunk.
    pub fn end(&self) -> u64 {
        // The offset comes from the guest: a hostile one must not make the host overflow.
        self.offset.saturating_add(self.data.len() as u64)
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, or -1 when a signal ended the command.
    pub code: i32,
    /// The signal that ended the command, 0 when it exited.
    pub signal: i32,
    /// Whether the exec's timeout ended it.
    pub timed_out: bool,
}

/// Everything a finished command printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub stdin: bool,
    /// "name", "uid", "name:group" or "uid:gid" inside the box; empty is root.
    pub user: String,
    /// Ended with SIGTERM after this long (SIGKILL 2 s later), enforced by the agent.
    pub timeout: Option<Duration>,
    /// Run on a pseudo-terminal (output on stdout only; stdin always open).
    pub tty: bool,
}

impl ExecOptions {
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(args: I) -> Self {
        Self {
            args: args.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }
}

/// Deadline of a call that does not wait on the command: Exec, CopyIn/Out, Signal, ResizeTty.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of one WriteStdin: the command may be slow to read its input, and a write cut
/// short could not say how much of it went in, so it is long, and not retried.
pub const STDIN_WRITE_TIMEOUT: Duration = Duration::from_secs(300);
/// ReadOutput and Wait wait on the command, for as long as it runs; they are made of calls of
/// at most this long, with a Ping between two, so that a box that stops answering (a stopped
/// or dead shim or VM) ends the wait with an error instead of hanging. Both are safe to
/// repeat: output stays in the agent until a later read acknowledges it.
pub const LONG_POLL: Duration = Duration::from_secs(20);
/// Deadline of the Ping that checks a box between two long polls.
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(10);

fn ctx_timeout(timeout: Duration) -> ttrpc::context::Context {
    ttrpc::context::with_timeout(timeout.as_nanos().min(i64::MAX as u128) as i64)
}

/// Runs one call with `limit` as its deadline, passed to the other side too (the shim relays
/// it to the guest, whose server gives up at it), and enforced here in case nobody answers.
async fn bounded<T, F, Fut>(method: &'static str, limit: Duration, call: F) -> Result<T, AgentError>
where
    F: FnOnce(ttrpc::context::Context) -> Fut,
    Fut: std::future::Future<Output = ttrpc::Result<T>>,
{
    let timeout = || AgentError::Timeout {
        method,
        after: limit,
    };
    // A little later than the deadline sent, so that the other side's answer wins when
    // it comes in time.
    match tokio::time::timeout(limit + Duration::from_secs(1), call(ctx_timeout(limit))).await {
        Err(_) => Err(timeout()),
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(ttrpc::Error::RpcStatus(status))) if status.code() == Code::DEADLINE_EXCEEDED => {
            Err(timeout())
        }
        Ok(Err(ttrpc::Error::Others(message))) if message.contains("deadline elapsed") => {
            Err(timeout())
        }
        Ok(Err(err)) => Err(AgentError::from_ttrpc(method, err)),
    }
}

/// A connection to one guest agent.
#[derive(Clone)]
pub struct AgentClient {
    inner: agent_ttrpc::AgentClient,
}

impl AgentClient {
    /// Speaks ttrpc over an established stream (from `RunningVm::connect_agent`, or a unix
    /// socket of an agent running on the host).
    pub fn new(stream: UnixStream) -> Self {
        Self::from_ttrpc(ttrpc::r#async::Client::new(stream.into()))
    }

    /// Speaks to the Agent service on an existing ttrpc connection (the shim serves it too).
    pub fn from_ttrpc(client: ttrpc::r#async::Client) -> Self {
        Self {
            inner: agent_ttrpc::AgentClient::new(client),
        }
    }

    /// The generated client underneath, for relaying requests as they are.
    pub fn raw(&self) -> agent_ttrpc::AgentClient {
        self.inner.clone()
    }

    pub async fn ping(&self, timeout: Duration) -> Result<PingResponse, AgentError> {
        let request = PingRequest::new();
        bounded("Ping", timeout, |c| self.inner.ping(c, &request)).await
    }

    /// Starts a command under the caller-chosen `exec_id`; returns its guest pid.
    pub async fn exec(&self, exec_id: &str, options: &ExecOptions) -> Result<u32, AgentError> {
        let req = ExecRequest {
            exec_id: exec_id.to_string(),
            args: options.args.clone(),
            env: options.env.clone(),
            working_dir: options.working_dir.clone(),
            stdin: options.stdin,
            user: options.user.clone(),
            timeout_ms: options.timeout.map(|t| t.as_millis() as u64).unwrap_or(0),
            tty: options.tty,
            ..Default::default()
        };
        let resp = bounded("Exec", CALL_TIMEOUT, |c| self.inner.exec(c, &req)).await?;
        Ok(resp.pid)
    }

    /// Starts the agent's copy helper as exec `exec_id`: into the box (a tar stream on its
    /// stdin is unpacked at `path`) or out of it (`path` packed to its stdout).
    pub async fn copy(&self, exec_id: &str, into_box: bool, path: &str) -> Result<u32, AgentError> {
        let req = CopyRequest {
            exec_id: exec_id.to_string(),
            path: path.to_string(),
            ..Default::default()
        };
        let resp = if into_box {
            bounded("CopyIn", CALL_TIMEOUT, |c| self.inner.copy_in(c, &req)).await
        } else {
            bounded("CopyOut", CALL_TIMEOUT, |c| self.inner.copy_out(c, &req)).await
        };
        resp.map(|r| r.pid)
    }

    /// The next bytes of one stream after offset `from` (which also acknowledges everything
    /// before it); `None` once the stream has ended. The chunk's offset is below `from` when
    /// bytes a reader never acknowledged are sent again (see agent.proto).
    pub async fn read(
        &self,
        exec_id: &str,
        stream: OutputStream,
        from: u64,
    ) -> Result<Option<OutputChunk>, AgentError> {
        let req = ReadOutputRequest {
            exec_id: exec_id.to_string(),
            stream: stream.into(),
            max_bytes: MAX_READ_CHUNK,
            offset: from,
            ..Default::default()
        };
        let resp = self
            .long_poll("ReadOutput", |c| self.inner.read_output(c, &req))
            .await?;
        Ok(if resp.eof && resp.data.is_empty() {
            None
        } else {
            Some(OutputChunk {
                offset: resp.offset,
                data: resp.data,
            })
        })
    }

    /// Feeds one stream to `sink` from its first unacknowledged byte until it ends.
    pub async fn drain(
        &self,
        exec_id: &str,
        stream: OutputStream,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), AgentError> {
        let mut position = 0;
        while let Some(chunk) = self.read(exec_id, stream, position).await? {
            // Bytes sent again that this reader already has are skipped.
            let skip = position.saturating_sub(chunk.offset) as usize;
            if skip < chunk.data.len() {
                sink(&chunk.data[skip..]);
            }
            position = position.max(chunk.end());
        }
        Ok(())
    }

    /// Reads both streams to their end (together, so that neither pipe fills while the other
    /// is read) and then waits for the exit.
    pub async fn output(&self, exec_id: &str) -> Result<ExecOutput, AgentError> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let (out, err) = tokio::join!(
            self.drain(exec_id, OutputStream::STDOUT, |c| stdout
                .extend_from_slice(c)),
            self.drain(exec_id, OutputStream::STDERR, |c| stderr
                .extend_from_slice(c)),
        );
        out?;
        err?;
        let status = self.wait(exec_id).await?;
        Ok(ExecOutput {
            stdout,
            stderr,
            status,
        })
    }

    pub async fn write_stdin(
        &self,
        exec_id: &str,
        data: &[u8],
        close: bool,
    ) -> Result<(), AgentError> {
        let req = WriteStdinRequest {
            exec_id: exec_id.to_string(),
            data: data.to_vec(),
            close,
            ..Default::default()
        };
        bounded("WriteStdin", STDIN_WRITE_TIMEOUT, |c| {
            self.inner.write_stdin(c, &req)
        })
        .await
        .map(drop)
    }

    pub async fn wait(&self, exec_id: &str) -> Result<ExitStatus, AgentError> {
        let req = WaitRequest {
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let resp = self.long_poll("Wait", |c| self.inner.wait(c, &req)).await?;
        Ok(ExitStatus {
            code: resp.exit_code,
            signal: resp.signal,
            timed_out: resp.timed_out,
        })
    }

    /// Sets the window size of an exec's terminal.
    pub async fn resize(&self, exec_id: &str, rows: u16, cols: u16) -> Result<(), AgentError> {
        let req = boxlite_protocol::agent::ResizeTtyRequest {
            exec_id: exec_id.to_string(),
            rows: rows.into(),
            cols: cols.into(),
            ..Default::default()
        };
        bounded("ResizeTty", CALL_TIMEOUT, |c| {
            self.inner.resize_tty(c, &req)
        })
        .await
        .map(drop)
    }

    pub async fn signal(&self, exec_id: &str, signal: i32) -> Result<(), AgentError> {
        let req = SignalRequest {
            exec_id: exec_id.to_string(),
            signal,
            ..Default::default()
        };
        bounded("Signal", CALL_TIMEOUT, |c| self.inner.signal(c, &req))
            .await
            .map(drop)
    }

    /// Asks the agent to end every process and power the VM off. Returns once the agent has
    /// taken the request; the VM ends shortly after.
    pub async fn shutdown(&self, timeout: Duration) -> Result<(), AgentError> {
        let req = ShutdownRequest::new();
        bounded("Shutdown", timeout, |c| self.inner.shutdown(c, &req))
            .await
            .map(drop)
    }

    /// After a restore: the clock, fresh entropy, the hostname and (templates) the box's boot
    /// parameters. Mounting the box disk can take a while on a loaded host.
    pub async fn setup(
        &self,
        req: boxlite_protocol::agent::SetupRequest,
        timeout: Duration,
    ) -> Result<(), AgentError> {
        bounded("Setup", timeout, |c| self.inner.setup(c, &req))
            .await
            .map(drop)
    }

    /// A call that waits on the command (see [`LONG_POLL`]): repeated while the box answers
    /// pings, an error once it does not.
    async fn long_poll<T, F, Fut>(&self, method: &'static str, call: F) -> Result<T, AgentError>
    where
        F: Fn(ttrpc::context::Context) -> Fut,
        Fut: std::future::Future<Output = ttrpc::Result<T>>,
    {
        loop {
            match bounded(method, LONG_POLL, &call).await {
                Err(AgentError::Timeout { .. }) => {
                    self.ping(LIVENESS_TIMEOUT)
                        .await
                        .map_err(|_| AgentError::Unresponsive {
                            method,
                            after: LIVENESS_TIMEOUT,
                        })?;
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_offset_cannot_overflow_the_end_of_a_chunk() {
        // Found by fuzz/ (agent_replies, regressions/agent_replies/output-chunk-end-overflow).
        let chunk = OutputChunk {
            offset: u64::MAX,
            data: b"x".to_vec(),
        };
        assert_eq!(chunk.end(), u64::MAX);
    }
}
