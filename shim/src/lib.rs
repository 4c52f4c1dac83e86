//! boxlite-shim: the per-box process that hosts the VMM and talks to the guest agent.
//!
//! - [`engine`]: the `Engine` trait and its engines (QEMU; libkrun with feature `krun`), each
//!   starting a VM from a [`engine::VmSpec`] and handing back a [`engine::RunningVm`].
//! - [`vm`]: boots a VM through an engine and waits for its agent, racing the wait against
//!   the VMM's death so a failed boot is reported at once, with the console's last lines.
//! - [`server`]: the shim process's socket (Shim service + Agent relay); [`console`]: the
//!   guest console, bounded; [`entry`]: the process's one entry point.
//! - the `boxlite-shim` binary (src/main.rs): one process per box.
//!
//! What the runtime shares with the shim (configuration, clients, launching, process
//! identities) is the `boxlite-shim-api` crate, re-exported here under its old paths.

pub mod console;
pub mod engine;
pub mod entry;
pub mod server;
pub mod vm;

pub use boxlite_shim_api::{
    agent_client, boot_failure, client, launch, output_log, process, rotating, ShimConfig,
    StandbyConfig, ADOPT_TIMEOUT,
};
