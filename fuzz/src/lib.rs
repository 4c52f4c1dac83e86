//! Helpers shared by the fuzz targets in `fuzz_targets/` and the corpus writer in `examples/`.
//!
//! - [`sandbox`]: a fresh directory tree per run to extract into, with bait outside the
//!   destination, and the check that the bait was not touched.
//! - [`agent`]: the guest agent's pure parsing modules. The agent is a binary crate with no
//!   library target, so its source files are compiled in here as they are; nothing is copied.
//! - [`proto`]: protobuf decoding with a round-trip check.
//! - [`netfilter`]: the shim's network filter, compiled in from its source file (the shim
//!   crate would bring both VMM engines along).

pub mod proto;
pub mod sandbox;

#[allow(dead_code, clippy::all)]
pub mod agent;

#[path = "../../shim/src/engine/netfilter.rs"]
pub mod netfilter;

/// Splits the selector byte off an input: which message or file the rest is.
pub fn selector(data: &[u8], choices: u8) -> Option<(u8, &[u8])> {
    let (&first, rest) = data.split_first()?;
    Some((first % choices, rest))
}
