//! libboxlite: the C SDK of boxlite, over the `boxlite` runtime crate (here named `boxlite_core`).
//!
//! `api.rs` holds every exported function (the only FFI of this crate); `options.rs` reads
//! the JSON a C caller gives and writes the JSON it gets back; `error.rs` is the error struct
//! and its codes (the core's `ErrorKind` numbers). The header `include/boxlite.h` is generated
//! from these files by cbindgen and checked by `cargo test`.

mod api;
mod error;
mod options;

pub use api::*;
pub use error::{BoxliteErrorCode, CBoxliteError};
