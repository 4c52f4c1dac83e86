//! A connection to a box's shim: the Shim service and the relayed Agent service, over one
//! ttrpc connection to `shim.sock`.

use std::path::Path;
use std::time::Duration;

use boxlite_protocol::shim::{StateRequest, StateResponse, StopRequest};
use boxlite_protocol::shim_ttrpc;
use tokio::net::UnixStream;

use crate::agent_client::AgentClient;
use crate::server::files;

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
        let stream = UnixStream::connect(&path)
            .await
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
            .state(
                ttrpc::context::with_timeout(Duration::from_secs(10).as_nanos() as i64),
                &StateRequest::new(),
            )
            .await
            .map_err(|e| ShimError::Rpc {
                method: "State",
                message: e.to_string(),
            })
    }

    /// Stops the box's VM (killing it after `timeout`); returns whether it powered off cleanly.
    pub async fn stop(&self, timeout: Duration) -> Result<bool, ShimError> {
        let req = StopRequest {
            timeout_ms: timeout.as_millis() as u64,
            ..Default::default()
        };
        let resp = self
            .shim
            .stop(ttrpc::context::Context::default(), &req)
            .await
            .map_err(|e| ShimError::Rpc {
                method: "Stop",
                message: e.to_string(),
            })?;
        Ok(resp.clean)
    }
}
