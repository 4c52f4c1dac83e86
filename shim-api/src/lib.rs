//! What the boxlite runtime and a box's shim share, and nothing of the VMM: the shim's
//! configuration (`ShimConfig`, `spec::VmSpec`), the box directory's files, the clients of the
//! shim and of the guest agent, starting a shim (`launch`), process identities, and the
//! bounded logs both sides read and write. The engines (QEMU, libkrun) live in the
//! `boxlite-shim` crate only, so a program that embeds the runtime links none of them.

pub mod agent_client;
pub mod boot_failure;
pub mod client;
pub mod launch;
pub mod network_policy;
pub mod output_log;
pub mod process;
pub mod rotating;
pub mod spec;

/// Files of a running box in its directory.
pub mod files {
    /// The shim's configuration, written by the runtime (never on argv).
    pub const CONFIG: &str = "shim.json";
    /// The ttrpc socket; it exists only while the VM runs and its agent answers.
    pub const SOCKET: &str = "shim.sock";
    /// "PID START_TIME" of the shim.
    pub const PID: &str = "shim.pid";
    /// The shim's own stdout and stderr.
    pub const LOG: &str = "shim.log";
    /// Why the VM could not boot (`boot_failure::BootFailure` as JSON), written before the
    /// shim exits with failure.
    pub const BOOT_ERROR: &str = "shim.error";
    /// The shim, then each VMM process it started, one "PID START_TIME" per line: whoever
    /// finds the shim dead kills what is left of its VM (when the first line is that shim).
    pub const VMM_PID: &str = "vmm.pid";
    /// The files that name a box's processes.
    pub const PID_FILES: [&str; 2] = [PID, VMM_PID];
    /// A snapshot directory's saved VM (memory and devices), written by the shim.
    pub const SNAPSHOT_STATE: &str = "vm.state";
    /// A snapshot directory's copy of the box disk, written by the shim.
    pub const SNAPSHOT_DISK: &str = "disk";
    /// Files that mean nothing once the shim is gone.
    pub const STALE_AFTER_SHIM: [&str; 3] = [SOCKET, PID, VMM_PID];
}

use std::time::Duration;

/// What the runtime tells a shim, in `shim.json` in the box directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ShimConfig {
    pub vm: spec::VmSpec,
    /// The engine asked for; `None` picks one for this host (the shim's `engine::select`).
    #[serde(default)]
    pub engine: Option<spec::EngineKind>,
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
    /// Why the runtime did not start this VM from a template (reported by `State`).
    #[serde(default)]
    pub template_miss: Option<String>,
    /// Set for a standby: a VM started ahead of any box, which a runtime later takes for one
    /// (see [`StandbyConfig`]). Its spec's paths are relative to the shim's directory, which
    /// moves when the standby is published and again when a box takes it.
    #[serde(default)]
    pub standby: Option<StandbyConfig>,
}

/// How a standby VM waits for a box. Once its VM is warm the shim renames its directory to
/// `publish_as`, where a runtime finds it; a runtime takes it by renaming it on into a box's
/// directory (one rename wins) and calling Assign. A standby nobody takes within
/// `idle_timeout_ms` moves itself out of sight (a rename too, so that it is either taken or
/// retired, never both), powers off and removes its directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StandbyConfig {
    pub publish_as: std::path::PathBuf,
    pub idle_timeout_ms: u64,
}

impl StandbyConfig {
    /// The name a standby published as `name` retires under, beside it in its pool: hidden
    /// (a leading dot) from runtimes looking for standbys to take.
    pub fn retired_name(name: &str) -> String {
        format!("{}{name}", Self::RETIRED_PREFIX)
    }

    pub const RETIRED_PREFIX: &'static str = ".retired-";
}

/// How long the guest of a standby taken for a box gets to take on the box's identity
/// (Assign); the caller's deadline for Assign is longer.
pub const ASSIGN_SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a ready box waits for its launcher to adopt it.
pub const ADOPT_TIMEOUT: Duration = Duration::from_secs(30);

impl ShimConfig {
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_millis(self.ready_timeout_ms)
    }
}
