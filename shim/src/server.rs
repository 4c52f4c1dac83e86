//! The shim's ttrpc server: the Shim service (state, stop) and the Agent service relayed to
//! the guest agent, both on `shim.sock` in the box directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use boxlite_protocol::agent::{
    CopyRequest, Empty, ExecRequest, ExecResponse, OutputStream, PingRequest, PingResponse,
    ReadOutputRequest, ReadOutputResponse, ResizeTtyRequest, ShutdownRequest, SignalRequest,
    WaitRequest, WaitResponse, WriteStdinRequest,
};
use boxlite_protocol::shim::{
    AdoptRequest, AdoptResponse, AssignRequest, AssignResponse, LogOutputRequest,
    LogOutputResponse, PauseRequest, PauseResponse, ResumeRequest, ResumeResponse, SnapshotRequest,
    SnapshotResponse, StateRequest, StateResponse, StopRequest, StopResponse,
};
use boxlite_protocol::{agent_ttrpc, shim_ttrpc};
use ttrpc::r#async::TtrpcContext;

use crate::vm::Vm;
use boxlite_shim_api::agent_client::AgentClient;
use boxlite_shim_api::output_log::{LineSplitter, LogStream, OutputLog};

pub use boxlite_shim_api::files;
use files::{SNAPSHOT_DISK, SNAPSHOT_STATE};

/// Relays Agent calls to the guest, passing its answers (errors included) through unchanged,
/// and counts what passes.
pub struct AgentRelay {
    pub agent: agent_ttrpc::AgentClient,
    pub counters: Arc<RelayCounters>,
}

/// What went through a box's relay since its shim started.
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub execs_started: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl RelayCounters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// What the caller of a relayed agent call gets when the relay fails. The relay's call to the
/// guest carries the caller's deadline, so for a call that waits on a command (a long poll of
/// ReadOutput or Wait on a silent command) the relay's own timer usually ends it first: that
/// is the caller's deadline passing (DEADLINE_EXCEEDED: the caller checks the box is alive
/// and polls again), not a guest that stopped answering.
fn relay_err(err: ttrpc::Error) -> ttrpc::Error {
    match err {
        status @ ttrpc::Error::RpcStatus(_) => status,
        ttrpc::Error::Others(message) if message.contains("deadline elapsed") => {
            ttrpc::Error::RpcStatus(ttrpc::get_status(
                ttrpc::Code::DEADLINE_EXCEEDED,
                format!(
                    "the box's guest agent did not answer within the call's deadline: {message}"
                ),
            ))
        }
        other => ttrpc::Error::RpcStatus(ttrpc::get_status(
            ttrpc::Code::UNAVAILABLE,
            format!("the box's guest agent is not answering: {other}"),
        )),
    }
}

/// The caller's deadline, passed on to the guest.
fn ctx(ctx: &TtrpcContext) -> ttrpc::context::Context {
    ttrpc::context::with_timeout(ctx.timeout_nano)
}

#[async_trait]
impl agent_ttrpc::Agent for AgentRelay {
    async fn ping(&self, c: &TtrpcContext, req: PingRequest) -> ttrpc::Result<PingResponse> {
        self.agent.ping(ctx(c), &req).await.map_err(relay_err)
    }
    async fn exec(&self, c: &TtrpcContext, req: ExecRequest) -> ttrpc::Result<ExecResponse> {
        let resp = self.agent.exec(ctx(c), &req).await.map_err(relay_err)?;
        RelayCounters::add(&self.counters.execs_started, 1);
        Ok(resp)
    }
    async fn read_output(
        &self,
        c: &TtrpcContext,
        req: ReadOutputRequest,
    ) -> ttrpc::Result<ReadOutputResponse> {
        let resp = self
            .agent
            .read_output(ctx(c), &req)
            .await
            .map_err(relay_err)?;
        RelayCounters::add(&self.counters.bytes_out, resp.data.len());
        Ok(resp)
    }
    async fn write_stdin(&self, c: &TtrpcContext, req: WriteStdinRequest) -> ttrpc::Result<Empty> {
        let resp = self
            .agent
            .write_stdin(ctx(c), &req)
            .await
            .map_err(relay_err)?;
        RelayCounters::add(&self.counters.bytes_in, req.data.len());
        Ok(resp)
    }
    async fn wait(&self, c: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        self.agent.wait(ctx(c), &req).await.map_err(relay_err)
    }
    async fn signal(&self, c: &TtrpcContext, req: SignalRequest) -> ttrpc::Result<Empty> {
        self.agent.signal(ctx(c), &req).await.map_err(relay_err)
    }
    async fn copy_in(&self, c: &TtrpcContext, req: CopyRequest) -> ttrpc::Result<ExecResponse> {
        let resp = self.agent.copy_in(ctx(c), &req).await.map_err(relay_err)?;
        RelayCounters::add(&self.counters.execs_started, 1);
        Ok(resp)
    }
    async fn copy_out(&self, c: &TtrpcContext, req: CopyRequest) -> ttrpc::Result<ExecResponse> {
        let resp = self.agent.copy_out(ctx(c), &req).await.map_err(relay_err)?;
        RelayCounters::add(&self.counters.execs_started, 1);
        Ok(resp)
    }
    async fn resize_tty(&self, c: &TtrpcContext, req: ResizeTtyRequest) -> ttrpc::Result<Empty> {
        self.agent.resize_tty(ctx(c), &req).await.map_err(relay_err)
    }
    async fn shutdown(&self, c: &TtrpcContext, req: ShutdownRequest) -> ttrpc::Result<Empty> {
        self.agent.shutdown(ctx(c), &req).await.map_err(relay_err)
    }
}

/// The Shim service over the box's VM.
pub struct ShimService {
    pub vm: Arc<Vm>,
    pub engine: &'static str,
    pub counters: Arc<RelayCounters>,
    /// Notified (once, keeping the permit) when the launcher adopts the box.
    pub adopted: Arc<tokio::sync::Notify>,
    /// The box's output log, shared by its detached commands.
    pub output_log: Arc<std::sync::Mutex<OutputLog>>,
    /// Pause, resume and snapshot, one at a time; true while the vCPUs are stopped.
    pub paused: tokio::sync::Mutex<bool>,
    /// Mirrors `paused` for State, which must answer while a snapshot holds the lock.
    pub paused_now: AtomicBool,
    /// How the VM started, and why a template could not serve it.
    pub start_mode: &'static str,
    pub template_miss: String,
    /// The box disk, copied into snapshots.
    pub root_disk: Option<PathBuf>,
    /// A standby's way to learn of the box that took it (Assign); `None` for a box's own
    /// shim, and once assigned.
    pub assignment: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Assignment>>>,
}

/// Who owns a standby once a box has taken it (see `ShimConfig::launcher`).
#[derive(Debug, Clone, Copy)]
pub struct Assignment {
    pub launcher: boxlite_shim_api::process::ProcessId,
    pub stop_with_launcher: bool,
}

fn engine_status(err: crate::engine::EngineError) -> ttrpc::Error {
    let code = match err {
        crate::engine::EngineError::Unsupported { .. } => ttrpc::Code::UNIMPLEMENTED,
        _ => ttrpc::Code::INTERNAL,
    };
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, err.to_string()))
}

fn io_status(what: String, err: std::io::Error) -> ttrpc::Error {
    let code = if err.raw_os_error() == Some(libc::ENOSPC) {
        ttrpc::Code::RESOURCE_EXHAUSTED
    } else {
        ttrpc::Code::INTERNAL
    };
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, format!("{what}: {err}")))
}

impl ShimService {
    /// Stops or runs the vCPUs; a no-op when they already are as asked.
    async fn set_paused(&self, pause: bool) -> ttrpc::Result<()> {
        let mut paused = self.paused.lock().await;
        if *paused != pause {
            let done = if pause {
                self.vm.pause().await
            } else {
                self.vm.resume().await
            };
            done.map_err(engine_status)?;
            *paused = pause;
            self.paused_now.store(pause, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Saves state and disk into `dir` with the vCPUs stopped.
    async fn save_snapshot(&self, dir: &Path) -> ttrpc::Result<()> {
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| io_status(format!("snapshot directory {}", dir.display()), e))?;
        let empty = std::fs::read_dir(dir)
            .map_err(|e| io_status(format!("reading {}", dir.display()), e))?
            .next()
            .is_none();
        if !meta.is_dir() || !empty {
            return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("{} must be an empty directory", dir.display()),
            )));
        }
        self.vm
            .save_state(&dir.join(SNAPSHOT_STATE), false)
            .await
            .map_err(engine_status)?;
        if let Some(disk) = &self.root_disk {
            // The VMM flushed the disk when it saved the state; with the vCPUs stopped,
            // nothing writes to it until they run again.
            let (from, to) = (disk.clone(), dir.join(SNAPSHOT_DISK));
            tokio::task::spawn_blocking(move || std::fs::copy(&from, &to))
                .await
                .map_err(|e| io_status("copying the disk".into(), std::io::Error::other(e)))?
                .map_err(|e| io_status(format!("copying {}", disk.display()), e))?;
        }
        Ok(())
    }
}

/// Reads one stream of a detached command into the box's output log until it ends.
async fn log_stream(
    agent: AgentClient,
    log: Arc<std::sync::Mutex<OutputLog>>,
    exec_id: String,
    stream: OutputStream,
) {
    let which = match stream {
        OutputStream::STDOUT => LogStream::Stdout,
        OutputStream::STDERR => LogStream::Stderr,
    };
    let mut lines = LineSplitter::default();
    let write = |line: Vec<u8>| {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(err) = log.write_line(which, &line) {
            // A full host disk loses log lines, never the command's progress.
            tracing::warn!("exec {exec_id}: writing the output log: {err}");
        }
    };
    let drained = agent
        .drain(&exec_id, stream, |chunk| {
            for line in lines.push(chunk) {
                write(line);
            }
        })
        .await;
    if let Some(line) = lines.finish() {
        write(line);
    }
    if let Err(err) = drained {
        eprintln!("boxlite-shim: exec {exec_id}: reading its output for the log: {err}");
    }
}

#[async_trait]
impl shim_ttrpc::Shim for ShimService {
    async fn state(&self, _c: &TtrpcContext, _req: StateRequest) -> ttrpc::Result<StateResponse> {
        let timings = self.vm.timings();
        Ok(StateResponse {
            shim_pid: std::process::id(),
            vmm_pids: self.vm.pids(),
            engine: self.engine.to_string(),
            agent_version: self.vm.agent_version().to_string(),
            spawn_to_ready_ms: timings.spawn_to_ready.as_millis() as u64,
            guest_ready_at_ms: timings.guest_ready_at.as_millis() as u64,
            execs_started: self.counters.execs_started.load(Ordering::Relaxed),
            bytes_in: self.counters.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.counters.bytes_out.load(Ordering::Relaxed),
            paused: self.paused_now.load(Ordering::Relaxed),
            start_mode: self.start_mode.to_string(),
            template_miss: self.template_miss.clone(),
            ..Default::default()
        })
    }

    async fn assign(&self, _c: &TtrpcContext, req: AssignRequest) -> ttrpc::Result<AssignResponse> {
        let refuse =
            |code, message: String| ttrpc::Error::RpcStatus(ttrpc::get_status(code, message));
        let Some(assigned) = self
            .assignment
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            return Err(refuse(
                ttrpc::Code::FAILED_PRECONDITION,
                "this shim serves a box already (it is not a standby, or it was assigned)".into(),
            ));
        };
        if req.hostname.len() > 64 {
            return Err(refuse(
                ttrpc::Code::INVALID_ARGUMENT,
                format!(
                    "a hostname holds 64 bytes at most, not {}",
                    req.hostname.len()
                ),
            ));
        }
        crate::vm::refresh_identity(
            self.vm.agent(),
            &req.hostname,
            boxlite_shim_api::ASSIGN_SETUP_TIMEOUT,
        )
        .await
        .map_err(|e| refuse(ttrpc::Code::INTERNAL, format!("setting the box up: {e}")))?;
        let assignment = Assignment {
            launcher: boxlite_shim_api::process::ProcessId {
                pid: req.launcher_pid,
                start_time: req.launcher_start_time,
            },
            stop_with_launcher: req.stop_with_launcher,
        };
        // The receiver is gone only while the shim ends (the VM stopped): say so.
        assigned.send(assignment).map_err(|_| {
            refuse(
                ttrpc::Code::UNAVAILABLE,
                "the standby is shutting down".into(),
            )
        })?;
        Ok(AssignResponse::default())
    }

    async fn adopt(&self, _c: &TtrpcContext, _req: AdoptRequest) -> ttrpc::Result<AdoptResponse> {
        self.adopted.notify_one();
        Ok(AdoptResponse::default())
    }

    async fn log_output(
        &self,
        _c: &TtrpcContext,
        req: LogOutputRequest,
    ) -> ttrpc::Result<LogOutputResponse> {
        for stream in [OutputStream::STDOUT, OutputStream::STDERR] {
            tokio::spawn(log_stream(
                self.vm.agent().clone(),
                Arc::clone(&self.output_log),
                req.exec_id.clone(),
                stream,
            ));
        }
        Ok(LogOutputResponse::default())
    }

    async fn pause(&self, _c: &TtrpcContext, _req: PauseRequest) -> ttrpc::Result<PauseResponse> {
        self.set_paused(true).await?;
        Ok(PauseResponse::default())
    }

    async fn resume(
        &self,
        _c: &TtrpcContext,
        _req: ResumeRequest,
    ) -> ttrpc::Result<ResumeResponse> {
        self.set_paused(false).await?;
        Ok(ResumeResponse::default())
    }

    async fn snapshot(
        &self,
        _c: &TtrpcContext,
        req: SnapshotRequest,
    ) -> ttrpc::Result<SnapshotResponse> {
        let paused = self.paused.lock().await;
        let started = std::time::Instant::now();
        if !*paused {
            self.vm.pause().await.map_err(engine_status)?;
        }
        let saved = self.save_snapshot(Path::new(&req.dir)).await;
        // A running VM runs again whether or not the save worked.
        let resumed = if *paused {
            Ok(())
        } else {
            self.vm.resume().await.map_err(engine_status)
        };
        let paused_ms = started.elapsed().as_millis() as u64;
        saved?;
        resumed?;
        Ok(SnapshotResponse {
            paused_ms,
            ..Default::default()
        })
    }

    async fn stop(&self, _c: &TtrpcContext, req: StopRequest) -> ttrpc::Result<StopResponse> {
        let timeout = Duration::from_millis(req.timeout_ms.max(1));
        // A paused guest cannot power itself off.
        if std::mem::take(&mut *self.paused.lock().await) {
            let _ = self.vm.resume().await;
            self.paused_now.store(false, Ordering::Relaxed);
        }
        let clean = self.vm.shutdown(timeout).await.is_ok();
        Ok(StopResponse {
            clean,
            ..Default::default()
        })
    }
}
