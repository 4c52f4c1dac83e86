//! boxlite: an embeddable micro-VM sandbox runtime.
//!
//! [`BoxliteRuntime`] opens a home (`~/.boxlite`); [`LiteBox`] is one box in it, created from
//! an OCI image and run by a shim process of its own; [`BoxCommand`] runs in it as an
//! [`Execution`]. Modules: [`images`] (pulls, blob store, bases, box disks), [`guest`] (box
//! kernel and initramfs), [`status`], [`options`], and `boxes_db` (db/boxes.db).

pub mod boxes_db;
pub mod guest;
pub mod images;
pub mod options;
mod runtime;
mod sqlite;
pub mod status;

pub use boxes_db::BoxInfo;
pub use boxlite_copy::{CopyError, CopyStats};
pub use boxlite_shim::engine::EngineKind;
pub use options::{
    BoxOptions, BoxliteOptions, NetworkMode, PortSpec, Protocol, RootfsSpec, VolumeSpec,
};
pub use runtime::{
    default_runtime, init_default_runtime, try_default_runtime, BoxCommand, BoxMetrics,
    BoxliteError, BoxliteRuntime, CannotStartReason, ExecResult, Execution, LiteBox, LogLine,
    LogStream, OutputChunk, OutputLogReader, RuntimeMetrics, ENGINE_ENV, HOME_ENV, SHIM_ENV,
};
pub use status::BoxStatus;
