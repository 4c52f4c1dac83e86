//! What the language SDKs (`sdks/python`, `sdks/node`) share about the programs they carry:
//! [`build_programs`] for their build scripts (the shim and the static agent, built and put
//! where `include_bytes!` finds them), and [`unpack`] for the running library (the first
//! runtime of a process writes them to disk, once per content). No dependencies, so build
//! scripts can use it.

mod build_programs;
mod unpack;

pub use build_programs::build_programs;
pub use unpack::unpack;
