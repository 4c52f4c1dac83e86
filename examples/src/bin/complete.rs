//! rust-sdk.txt's example program, unchanged: see `seed/complete.rs`.

#![allow(clippy::uninlined_format_args)]

include!("../../seed/complete.rs");
