//! boxlite-shim: the per-box process that hosts the VMM and talks to the guest agent.
//!
//! - [`engine`]: the `Engine` trait and its engines (QEMU today), each starting a VM from a
//!   [`engine::VmSpec`] and handing back a [`engine::RunningVm`].
//! - [`vm`]: boots a VM through an engine and waits for its agent, racing the wait against
//!   the VMM's death so a failed boot is reported at once, with the console's last lines.
//! - [`agent_client`]: a typed client of the guest agent's ttrpc service.

pub mod agent_client;
pub mod engine;
pub mod vm;
