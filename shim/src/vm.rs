//! Booting a VM and waiting for its agent, and shutting it down again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use boxlite_protocol::agent::PingResponse;

use crate::agent_client::{AgentClient, AgentError};
use crate::boot_failure::BootFailure;
use crate::console::{ConsolePump, CONSOLE_MAX_FILE_BYTES};
use crate::engine::{console_tail, Engine, EngineError, RunningVm, VmExit, VmSpec, VmStart};
use crate::process::{write_all, ProcessId};
use crate::server::files;

/// Console lines quoted in boot errors.
const CONSOLE_TAIL_LINES: usize = 20;
/// Pause between attempts to reach an agent that is not listening yet.
const RETRY_PAUSE: Duration = Duration::from_millis(5);
/// How long one boot-time Ping may go unanswered before it is sent again. A channel may take
/// a request before the agent has opened its end (virtio-serial keeps it; vsock refuses).
const PING_ATTEMPT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("the VM could not be started: {0}")]
    Engine(#[from] EngineError),
    #[error("the VM exited ({exit}) before its agent answered; last console (and VMM) lines:\n{console}")]
    VmExited { exit: VmExit, console: String },
    #[error("the agent did not answer within {waited:?} (the ready timeout); the VM was stopped; last console (and VMM) lines:\n{console}")]
    ReadyTimeout { waited: Duration, console: String },
    #[error("making the console FIFO {path}: {source}")]
    Console {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl From<BootError> for BootFailure {
    fn from(err: BootError) -> Self {
        match err {
            BootError::Engine(e @ EngineError::Unavailable { .. }) => {
                BootFailure::EngineUnavailable {
                    message: e.to_string(),
                }
            }
            BootError::Engine(e) => BootFailure::Engine {
                message: e.to_string(),
            },
            BootError::VmExited { exit, console } => BootFailure::VmExited {
                exit: exit.to_string(),
                console,
            },
            BootError::ReadyTimeout { waited, console } => BootFailure::ReadyTimeout {
                waited_ms: waited.as_millis().try_into().unwrap_or(u64::MAX),
                console,
            },
            e @ BootError::Console { .. } => BootFailure::Setup {
                message: e.to_string(),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShutdownError {
    #[error("asking the agent to shut down failed, so the VM was killed: {0}")]
    Agent(#[from] AgentError),
    #[error("the VM did not end within {0:?} of the shutdown request, so it was killed")]
    Timeout(Duration),
}

/// Where a boot's time went.
#[derive(Debug, Clone, Copy)]
pub struct BootTimings {
    /// From asking the engine to start to the agent's first answer.
    pub spawn_to_ready: Duration,
    /// Guest uptime when the agent began serving, as the guest reports it.
    pub guest_ready_at: Duration,
}

/// A booted VM whose agent has answered.
pub struct Vm {
    running: Box<dyn RunningVm>,
    agent: AgentClient,
    /// Copies the console into its bounded log while the VM runs.
    console: tokio::sync::Mutex<ConsolePump>,
    console_log: PathBuf,
    timings: BootTimings,
    agent_version: String,
}

impl Vm {
    /// Starts a VM and waits up to `ready_timeout` for its agent. Fails as soon as the VMM
    /// exits, and stops the VM on timeout: a failed boot leaves no process behind.
    pub async fn boot(
        engine: &dyn Engine,
        spec: &VmSpec,
        ready_timeout: Duration,
    ) -> Result<Vm, BootError> {
        let started = Instant::now();
        // Before the VMM, which opens the console FIFO as it starts.
        let mut console = ConsolePump::start(
            &spec.console_pipe(),
            spec.console_log(),
            CONSOLE_MAX_FILE_BYTES,
        )
        .map_err(|source| BootError::Console {
            path: spec.console_pipe(),
            source,
        })?;
        let running = engine.start(spec).await?;
        record_vmm_processes(spec, running.as_ref());
        let console_log = spec.console_log();
        let deadline = tokio::time::Instant::now() + ready_timeout;

        enum Outcome {
            Ready(AgentClient, PingResponse),
            Exited(VmExit),
            TimedOut,
        }
        let connect = async {
            loop {
                match running.connect_agent().await {
                    Ok(stream) => {
                        let client = AgentClient::new(stream);
                        loop {
                            match client.ping(PING_ATTEMPT).await {
                                Ok(ping) => return (client, ping),
                                Err(err) => {
                                    tracing::debug!(after = ?started.elapsed(), %err, "agent ping");
                                    // Refused or closed: the agent is not listening yet;
                                    // reconnect. A timeout: ask again on this session.
                                    if !matches!(err, AgentError::Timeout { .. }) {
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(err) => {
                        tracing::debug!(after = ?started.elapsed(), %err, "agent connect")
                    }
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        };
        let outcome = tokio::select! {
            (client, ping) = connect => Outcome::Ready(client, ping),
            exit = running.wait_exit() => Outcome::Exited(exit),
            _ = tokio::time::sleep_until(deadline) => Outcome::TimedOut,
        };
        if let Outcome::Ready(agent, _) = &outcome {
            if spec.start.restores() {
                // Within what is left of the ready timeout: on a loaded host mounting the box
                // disk can take long, and booting instead would take longer still.
                let left = deadline
                    .saturating_duration_since(tokio::time::Instant::now())
                    .max(MIN_SETUP_TIMEOUT);
                let setup_started = Instant::now();
                let set_up = set_up_restored(agent, spec, left).await;
                tracing::info!(
                    answered_after = ?(setup_started - started),
                    took = ?setup_started.elapsed(),
                    since_spawn = ?started.elapsed(),
                    "set up the restored guest"
                );
                if let Err(err) = set_up {
                    running.kill().await;
                    console.finish().await;
                    return Err(BootError::Engine(EngineError::Failed {
                        engine: running.kind(),
                        message: format!("setting up the restored guest: {err}"),
                    }));
                }
            }
        }
        match outcome {
            Outcome::Ready(agent, ping) => Ok(Vm {
                running,
                agent,
                console: tokio::sync::Mutex::new(console),
                console_log,
                timings: BootTimings {
                    spawn_to_ready: started.elapsed(),
                    guest_ready_at: Duration::from_millis(ping.ready_at_ms),
                },
                agent_version: ping.agent_version,
            }),
            Outcome::Exited(exit) => {
                console.finish().await;
                Err(BootError::VmExited {
                    exit,
                    console: spec.diagnostics(CONSOLE_TAIL_LINES),
                })
            }
            Outcome::TimedOut => {
                running.kill().await;
                console.finish().await;
                Err(BootError::ReadyTimeout {
                    waited: ready_timeout,
                    console: spec.diagnostics(CONSOLE_TAIL_LINES),
                })
            }
        }
    }

    pub fn agent(&self) -> &AgentClient {
        &self.agent
    }

    pub fn agent_version(&self) -> &str {
        &self.agent_version
    }

    pub fn timings(&self) -> BootTimings {
        self.timings
    }

    /// Host pids of the VMM and its helpers.
    pub fn pids(&self) -> Vec<u32> {
        self.running.pids()
    }

    pub fn console_tail(&self, lines: usize) -> String {
        console_tail(&self.console_log, lines)
    }

    /// Resolves when the VM ends by itself (or is killed from outside).
    pub async fn wait_exit(&self) -> VmExit {
        self.running.wait_exit().await
    }

    /// Once the VM has ended: copies the last of its console into the log.
    pub async fn finish_console(&self) {
        self.console.lock().await.finish().await;
    }

    /// Asks the agent to power off and waits up to `timeout` for the VM to end; kills it when
    /// the agent cannot be asked or the VM does not end in time. The VM is gone either way.
    pub async fn shutdown(&self, timeout: Duration) -> Result<VmExit, ShutdownError> {
        if let Err(err) = self.agent.shutdown(timeout).await {
            self.running.kill().await;
            return Err(err.into());
        }
        match tokio::time::timeout(timeout, self.running.wait_exit()).await {
            Ok(exit) => Ok(exit),
            Err(_) => {
                self.running.kill().await;
                Err(ShutdownError::Timeout(timeout))
            }
        }
    }

    /// Ends the VM at once.
    pub async fn kill(&self) -> VmExit {
        self.running.kill().await
    }

    pub async fn pause(&self) -> Result<(), EngineError> {
        self.running.pause().await
    }

    pub async fn resume(&self) -> Result<(), EngineError> {
        self.running.resume().await
    }

    /// With the VM paused: saves its state (see [`RunningVm::save_state`]).
    pub async fn save_state(&self, path: &Path, ram_shared: bool) -> Result<(), EngineError> {
        self.running.save_state(path, ram_shared).await
    }
}

/// The least time the agent of a restored VM gets to set itself up (mounting the box disk).
const MIN_SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Entropy handed to each restored guest.
const SETUP_ENTROPY: usize = 64;

/// Gives a restored guest the clock, fresh entropy and its name, and a template's agent the
/// box's boot parameters.
async fn set_up_restored(
    agent: &AgentClient,
    spec: &VmSpec,
    timeout: Duration,
) -> Result<(), String> {
    let mut req = identity_request(spec.hostname.as_deref().unwrap_or_default())?;
    if matches!(spec.start, VmStart::FromTemplate { .. }) {
        req.boot_params = spec.boot_params().to_cmdline_words().join(" ");
        if let Some(disk) = &spec.root_disk {
            req.root_disk_bytes = disk.virtual_size().map_err(|e| e.to_string())?;
        }
    }
    agent.setup(req, timeout).await.map_err(|e| e.to_string())
}

/// Gives a running guest that was restored earlier (a standby taken for a box) the clock,
/// fresh entropy and `hostname`: no two boxes of one template share them.
pub async fn refresh_identity(
    agent: &AgentClient,
    hostname: &str,
    timeout: Duration,
) -> Result<(), String> {
    let req = identity_request(hostname)?;
    agent.setup(req, timeout).await.map_err(|e| e.to_string())
}

/// A Setup request with the host's time, fresh entropy and `hostname` (empty: kept).
fn identity_request(hostname: &str) -> Result<boxlite_protocol::agent::SetupRequest, String> {
    let mut entropy = vec![0u8; SETUP_ENTROPY];
    // SAFETY: getrandom writes at most `entropy.len()` bytes into the buffer it is given.
    let got = unsafe { libc::getrandom(entropy.as_mut_ptr().cast(), entropy.len(), 0) };
    if got != entropy.len() as isize {
        return Err(format!(
            "reading the host's entropy: {}",
            std::io::Error::last_os_error()
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    Ok(boxlite_protocol::agent::SetupRequest {
        unix_time_ns: now.as_nanos().try_into().unwrap_or(i64::MAX),
        entropy,
        hostname: hostname.to_string(),
        ..Default::default()
    })
}

/// Writes `vmm.pid` (see [`files::VMM_PID`]) so that a VMM outliving its shim can be found.
/// Best effort: without the file, PR_SET_PDEATHSIG still takes the VMM down with the shim.
fn record_vmm_processes(spec: &VmSpec, running: &dyn RunningVm) {
    let owner = ProcessId::current();
    let ids: Vec<ProcessId> = owner
        .into_iter()
        .chain(running.pids().into_iter().filter_map(ProcessId::of))
        .collect();
    if let Err(err) = write_all(&spec.run_dir.join(files::VMM_PID), &ids) {
        tracing::warn!("recording the VMM's pids: {err}");
    }
}
