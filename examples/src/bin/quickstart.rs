//! rust-sdk.txt's example program, unchanged: see `seed/quickstart.rs`.

#![allow(clippy::uninlined_format_args)]

include!("../../seed/quickstart.rs");
