//! Wire definitions shared by the host side and the guest agent, generated at build time from
//! `proto/*.proto` with ttrpc-codegen (pure Rust, no protoc binary), and the kernel command
//! line settings ([`boot`]).

pub mod boot;

/// Includes one generated file as a module; generated code is exempt from our lints.
macro_rules! generated {
    ($(#[$doc:meta])* $name:ident, $file:literal) => {
        $(#[$doc])*
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
        pub mod $name {
            include!(concat!(env!("OUT_DIR"), "/", $file));
        }
    };
}

generated!(
    /// Messages of the agent service (guest agent, relayed by the shim).
    agent,
    "agent.rs"
);
generated!(
    /// ttrpc client and server glue of the agent service.
    agent_ttrpc,
    "agent_ttrpc.rs"
);
generated!(
    /// Messages of the shim service.
    shim,
    "shim.rs"
);
generated!(
    /// ttrpc client and server glue of the shim service.
    shim_ttrpc,
    "shim_ttrpc.rs"
);

/// The vsock port the guest agent listens on.
pub const AGENT_VSOCK_PORT: u32 = 1024;

/// Largest chunk the agent returns from one `ReadOutput` call.
pub const MAX_READ_CHUNK: u32 = 1 << 20;
