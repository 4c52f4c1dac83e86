//! boxlite-shim: the per-box process that hosts the VMM and talks to the guest agent.
//!
//! - [`engine`]: the `Engine` trait and its engines (QEMU; libkrun with feature `krun`), each
//!   starting a VM from a
//!   [`engine::VmSpec`] and handing back a [`engine::RunningVm`].
//! - [`vm`]: boots a VM through an engine and waits for its agent, racing the wait against
//!   the VMM's death so a failed boot is reported at once, with the console's last lines.
//! - [`agent_client`]: a typed client of the guest agent's ttrpc service.
//! - [`server`], [`client`]: the shim process's socket (Shim service + Agent relay) and its
//!   client; [`process`]: pid + start time identities.
//! - the `boxlite-shim` binary (src/main.rs): one process per box.

pub mod agent_client;
pub mod client;
pub mod console;
pub mod engine;
pub mod entry;
pub mod launch;
pub mod output_log;
pub mod process;
pub mod rotating;
pub mod server;
pub mod vm;

use std::time::Duration;

/// What the runtime tells a shim, in `shim.json` in the box directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShimConfig {
    pub vm: engine::VmSpec,
    /// The engine asked for; `None` picks one for this host (see `EngineKind::select`).
    #[serde(default)]
    pub engine: Option<engine::EngineKind>,
    /// How long the agent may take to answer after the VM starts.
    pub ready_timeout_ms: u64,
    /// The process that starts the box. When set, the shim powers the VM off unless that
    /// process adopts it (the Adopt call, once the box is recorded) before it dies and within
    /// [`ADOPT_TIMEOUT`] of the box being ready.
    #[serde(default)]
    pub launcher: Option<process::ProcessId>,
    /// Power the VM off when the launcher exits, also after adopting the box (a box that is
    /// not detached lives as long as the process that started it).
    #[serde(default)]
    pub stop_with_launcher: bool,
}

/// How long a ready box waits for its launcher to adopt it.
pub const ADOPT_TIMEOUT: Duration = Duration::from_secs(30);

impl ShimConfig {
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_millis(self.ready_timeout_ms)
    }
}
