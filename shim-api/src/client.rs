//! A connection to a box's shim: the Shim service and the relayed Agent service, over one
//! ttrpc connection to `shim.sock`.

use std::path::Path;
use std::time::Duration;

use boxlite_protocol::shim::{
    AdoptRequest, AssignRequest, LogOutputRequest, PauseRequest, ResumeRequest, SnapshotRequest,
    SnapshotResponse, StateRequest, StateResponse, StopRequest,
};
use boxlite_protocol::shim_ttrpc;
use tokio::net::UnixStream;

use crate::agent_client::AgentClient;
use crate::files;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("cannot reach the shim at {path}: {source} (is the box running?)")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("shim {method}: {message}")]
    Rpc {
        method: &'static str,
        message: String,
    },
    /// The shim answered with an error status: `code` says what kind.
    #[error("{message}")]
    Refused {
        method: &'static str,
        code: ttrpc::Code,
        message: String,
    },
}

fn refused(method: &'static str) -> impl FnOnce(ttrpc::Error) -> ShimError {
    move |err| match err {
        ttrpc::Error::RpcStatus(status) => ShimError::Refused {
            method,
            code: status.code(),
            message: status.message().to_string(),
        },
        other => ShimError::Rpc {
            method,
            message: other.to_string(),
        },
    }
}

/// How long saving a VM's state may take (its RAM written to disk).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a shim may take to answer a call that does not wait on the guest.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// What a Stop may take on top of the guest's own power-off time (killing the VMM).
const STOP_MARGIN: Duration = Duration::from_secs(10);

fn deadline(limit: Duration) -> ttrpc::context::Context {
    ttrpc::context::with_timeout(limit.as_nanos().min(i64::MAX as u128) as i64)
}

#[derive(Clone)]
pub struct ShimClient {
    shim: shim_ttrpc::ShimClient,
    agent: AgentClient,
}

impl ShimClient {
    /// Connects to the shim of the box in `box_dir`.
    pub async fn connect(box_dir: &Path) -> Result<Self, ShimError> {
        let path = box_dir.join(files::SOCKET);
        let connect = UnixStream::connect(&path);
        let stream = match tokio::time::timeout(CALL_TIMEOUT, connect).await {
            Ok(connected) => connected,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {CALL_TIMEOUT:?}"),
            )),
        }
        .map_err(|source| ShimError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        let client = ttrpc::r#async::Client::new(stream.into());
        Ok(Self {
            shim: shim_ttrpc::ShimClient::new(client.clone()),
            agent: AgentClient::from_ttrpc(client),
        })
    }

    /// The box's agent, relayed by the shim.
    pub fn agent(&self) -> &AgentClient {
        &self.agent
    }

    pub async fn state(&self) -> Result<StateResponse, ShimError> {
        self.shim
            .state(deadline(CALL_TIMEOUT), &StateRequest::new())
            .await
            .map_err(|e| ShimError::Rpc {
                method: "State",
                message: e.to_string(),
            })
    }

    /// Tells the shim that its launcher has recorded it as the box's (see `ShimConfig::launcher`).
    pub async fn adopt(&self) -> Result<(), ShimError> {
        self.shim
            .adopt(deadline(CALL_TIMEOUT), &AdoptRequest::new())
            .await
            .map(drop)
            .map_err(|e| ShimError::Rpc {
                method: "Adopt",
                message: e.to_string(),
            })
    }

    /// Makes the standby VM served here the box whose directory it now is (see
    /// `StandbyConfig`), owned by `launcher` as `ShimConfig::launcher` would be.
    pub async fn assign(
        &self,
        hostname: &str,
        launcher: crate::process::ProcessId,
        stop_with_launcher: bool,
    ) -> Result<(), ShimError> {
        let req = AssignRequest {
            hostname: hostname.to_string(),
            launcher_pid: launcher.pid,
            launcher_start_time: launcher.start_time,
            stop_with_launcher,
            ..Default::default()
        };
        self.shim
            .assign(deadline(crate::ASSIGN_SETUP_TIMEOUT + CALL_TIMEOUT), &req)
            .await
            .map(drop)
            .map_err(refused("Assign"))
    }

    /// Has the shim read exec `exec_id`'s output into the box's output log from now on.
    pub async fn log_output(&self, exec_id: &str) -> Result<(), ShimError> {
        let req = LogOutputRequest {
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        self.shim
            .log_output(deadline(CALL_TIMEOUT), &req)
            .await
            .map(drop)
            .map_err(|e| ShimError::Rpc {
                method: "LogOutput",
                message: e.to_string(),
            })
    }

    /// Stops the box's VM (killing it after `timeout`); returns whether it powered off cleanly.
    /// Gives up when the shim has not answered `timeout` plus a margin later (a stopped or
    /// hung shim): the caller then kills it.
    pub async fn stop(&self, timeout: Duration) -> Result<bool, ShimError> {
        let req = StopRequest {
            timeout_ms: timeout.as_millis() as u64,
            ..Default::default()
        };
        let resp = self
            .shim
            .stop(deadline(timeout + STOP_MARGIN), &req)
            .await
            .map_err(|e| ShimError::Rpc {
                method: "Stop",
                message: e.to_string(),
            })?;
        Ok(resp.clean)
    }

    /// Stops the VM's vCPUs (memory, devices and processes kept).
    pub async fn pause(&self) -> Result<(), ShimError> {
        self.shim
            .pause(deadline(CALL_TIMEOUT), &PauseRequest::new())
            .await
            .map(drop)
            .map_err(refused("Pause"))
    }

    /// Runs the VM's vCPUs again.
    pub async fn resume(&self) -> Result<(), ShimError> {
        self.shim
            .resume(deadline(CALL_TIMEOUT), &ResumeRequest::new())
            .await
            .map(drop)
            .map_err(refused("Resume"))
    }

    /// Saves the VM's state and disk into the empty directory `dir`.
    pub async fn snapshot(&self, dir: &Path) -> Result<SnapshotResponse, ShimError> {
        let req = SnapshotRequest {
            dir: dir.display().to_string(),
            ..Default::default()
        };
        self.shim
            .snapshot(deadline(SNAPSHOT_TIMEOUT), &req)
            .await
            .map_err(refused("Snapshot"))
    }
}
