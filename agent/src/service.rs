//! The ttrpc Agent service: translates requests into calls on the exec table.

use std::sync::Arc;

use async_trait::async_trait;
use boxlite_protocol::agent::{
    CopyRequest, Empty, ExecRequest, ExecResponse, OutputStream, PingRequest, PingResponse,
    ReadOutputRequest, ReadOutputResponse, ResizeTtyRequest, SetupRequest, ShutdownRequest,
    SignalRequest, WaitRequest, WaitResponse, WriteStdinRequest,
};
use boxlite_protocol::agent_ttrpc::Agent;
use boxlite_protocol::MAX_READ_CHUNK;
use ttrpc::r#async::TtrpcContext;
use ttrpc::{Code, Error};

use crate::exec::{ExecError, ExecSpec, ExecTable, ExitState, Stream};

/// What the agent does when asked to shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// PID 1 of a VM: end everything and reset the VM.
    PowerOff,
    /// A process on a host (tests): end the commands and exit.
    ExitProcess,
}

pub struct AgentService {
    pub execs: Arc<ExecTable>,
    pub ready_at_ms: u64,
    pub shutdown: ShutdownMode,
    /// Set while a template's agent waits for the box it will serve.
    pub pending_box: crate::setup::Pending,
}

fn status(err: ExecError) -> Error {
    let code = match err {
        ExecError::UnknownId(_) => Code::NOT_FOUND,
        ExecError::DuplicateId(_) => Code::ALREADY_EXISTS,
        ExecError::Spawn { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Code::NOT_FOUND
        }
        // Not executable, or a directory: docker's 126 rather than 127.
        ExecError::Spawn { ref source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Code::PERMISSION_DENIED
        }
        ExecError::WorkingDir(_) => Code::FAILED_PRECONDITION,
        ExecError::EmptyArgs
        | ExecError::NulByte
        | ExecError::BadSignal(_)
        | ExecError::NoStdin(_)
        | ExecError::User(_)
        | ExecError::NoTty(_) => Code::INVALID_ARGUMENT,
        ExecError::StdinClosed(_) => Code::FAILED_PRECONDITION,
        ExecError::BadOffset { .. } => Code::OUT_OF_RANGE,
        _ => Code::INTERNAL,
    };
    Error::RpcStatus(ttrpc::get_status(code, err.to_string()))
}

impl AgentService {
    fn copy(&self, req: CopyRequest, into_box: bool) -> ttrpc::Result<ExecResponse> {
        if !req.path.starts_with('/') {
            return Err(Error::RpcStatus(ttrpc::get_status(
                Code::INVALID_ARGUMENT,
                format!(
                    "copy path {:?} must be absolute (a path in the box)",
                    req.path
                ),
            )));
        }
        let pid = self
            .execs
            .spawn_copy(req.exec_id, into_box, &req.path)
            .map_err(status)?;
        Ok(ExecResponse {
            pid,
            ..Default::default()
        })
    }
}

#[async_trait]
impl Agent for AgentService {
    async fn ping(&self, _ctx: &TtrpcContext, _req: PingRequest) -> ttrpc::Result<PingResponse> {
        Ok(PingResponse {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: crate::init::uptime_ms(),
            ready_at_ms: self.ready_at_ms,
            ..Default::default()
        })
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecRequest) -> ttrpc::Result<ExecResponse> {
        let pid = self
            .execs
            .spawn(ExecSpec {
                id: req.exec_id,
                args: req.args,
                env: req.env,
                working_dir: req.working_dir,
                stdin: req.stdin,
                user: req.user,
                tty: req.tty,
                timeout: (req.timeout_ms > 0)
                    .then(|| std::time::Duration::from_millis(req.timeout_ms)),
                outside_root: false,
            })
            .map_err(status)?;
        Ok(ExecResponse {
            pid,
            ..Default::default()
        })
    }

    async fn read_output(
        &self,
        _ctx: &TtrpcContext,
        req: ReadOutputRequest,
    ) -> ttrpc::Result<ReadOutputResponse> {
        let stream = match req.stream.enum_value_or_default() {
            OutputStream::STDOUT => Stream::Stdout,
            OutputStream::STDERR => Stream::Stderr,
        };
        let max = req.max_bytes.clamp(1, MAX_READ_CHUNK) as usize;
        let (offset, data, eof) = self
            .execs
            .read(&req.exec_id, stream, max, req.offset)
            .await
            .map_err(status)?;
        Ok(ReadOutputResponse {
            data,
            eof,
            offset,
            ..Default::default()
        })
    }

    async fn write_stdin(
        &self,
        _ctx: &TtrpcContext,
        req: WriteStdinRequest,
    ) -> ttrpc::Result<Empty> {
        self.execs
            .write_stdin(&req.exec_id, &req.data, req.close)
            .await
            .map_err(status)?;
        Ok(Empty::default())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let (state, timed_out) = self.execs.wait(&req.exec_id).await.map_err(status)?;
        let (exit_code, signal) = match state {
            ExitState::Exited(code) => (code, 0),
            ExitState::Signaled(sig) => (-1, sig),
        };
        Ok(WaitResponse {
            exit_code,
            signal,
            timed_out,
            ..Default::default()
        })
    }

    async fn signal(&self, _ctx: &TtrpcContext, req: SignalRequest) -> ttrpc::Result<Empty> {
        self.execs
            .signal(&req.exec_id, req.signal)
            .map_err(status)?;
        Ok(Empty::default())
    }

    async fn copy_in(&self, _ctx: &TtrpcContext, req: CopyRequest) -> ttrpc::Result<ExecResponse> {
        self.copy(req, true)
    }

    async fn copy_out(&self, _ctx: &TtrpcContext, req: CopyRequest) -> ttrpc::Result<ExecResponse> {
        self.copy(req, false)
    }

    async fn resize_tty(&self, _ctx: &TtrpcContext, req: ResizeTtyRequest) -> ttrpc::Result<Empty> {
        let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
        self.execs
            .resize(&req.exec_id, clamp(req.rows), clamp(req.cols))
            .map_err(status)?;
        Ok(Empty::default())
    }

    async fn setup(&self, _ctx: &TtrpcContext, req: SetupRequest) -> ttrpc::Result<Empty> {
        use crate::setup::SetupError;
        // Mounts and ioctls block; the reply waits for them.
        let applied = tokio::task::block_in_place(|| crate::setup::apply(&req, &self.pending_box));
        applied.map(|()| Empty::default()).map_err(|err| {
            let code = match err {
                SetupError::TooMuchEntropy(_) | SetupError::NoRootDisk => Code::INVALID_ARGUMENT,
                SetupError::NotATemplate => Code::FAILED_PRECONDITION,
                _ => Code::INTERNAL,
            };
            Error::RpcStatus(ttrpc::get_status(code, err.to_string()))
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> ttrpc::Result<Empty> {
        let mode = self.shutdown;
        let execs = Arc::clone(&self.execs);
        // Answer first, then act: the caller learns the request was taken, and then sees the
        // VM (or process) end.
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            match mode {
                ShutdownMode::PowerOff => {
                    tokio::task::spawn_blocking(|| crate::init::power_off());
                }
                ShutdownMode::ExitProcess => {
                    execs.kill_all();
                    std::process::exit(0);
                }
            }
        });
        Ok(Empty::default())
    }
}
