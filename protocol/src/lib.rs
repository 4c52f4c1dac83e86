//! Wire definitions shared by the shim and the guest agent, generated at build time from
//! `proto/*.proto` with ttrpc-codegen (pure Rust, no protoc binary).

/// Messages of the agent service.
#[allow(
    clippy::all,
    nonstandard_style,
    dead_code,
    unknown_lints,
    unused_attributes,
    unused_imports,
    unused_results,
    unused_mut,
    missing_docs
)]
pub mod agent {
    include!(concat!(env!("OUT_DIR"), "/agent.rs"));
}

/// ttrpc client and server glue of the agent service.
#[allow(
    clippy::all,
    nonstandard_style,
    dead_code,
    unknown_lints,
    unused_attributes,
    unused_imports,
    unused_results,
    unused_mut,
    missing_docs
)]
pub mod agent_ttrpc {
    include!(concat!(env!("OUT_DIR"), "/agent_ttrpc.rs"));
}

/// The vsock port the guest agent listens on.
pub const AGENT_VSOCK_PORT: u32 = 1024;

/// Largest chunk the agent returns from one `ReadOutput` call.
pub const MAX_READ_CHUNK: u32 = 1 << 20;
