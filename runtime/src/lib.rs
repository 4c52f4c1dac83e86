//! boxlite: an embeddable micro-VM sandbox runtime.
//!
//! [`BoxliteRuntime`] opens a home (`~/.boxlite`); [`LiteBox`] is one box in it, created from
//! an OCI image and run by a shim process of its own; [`BoxCommand`] runs in it as an
//! [`Execution`]. Modules: [`images`] (pulls, blob store, bases, box disks), [`guest`] (box
//! kernel and initramfs), [`status`], [`options`], [`logging`] (the home's `logs/`), and
//! `boxes_db` (db/boxes.db).

pub mod blocking;
pub mod box_types;
pub mod boxes_db;
pub mod guest;
pub mod images;
pub mod logging;
pub mod runtime;
mod simple_box;
mod sqlite;
pub mod status;

pub use box_types::{
    BrowserBox, CodeBox, CodeError, CodeResult, ComputerBox, InteractiveBox, Screenshot,
    ScrollDirection,
};
pub use boxes_db::{BoxID, BoxInfo};
pub use boxlite_copy::{CopyError, CopyStats};
pub use boxlite_shim_api::boot_failure::BootFailure;
pub use boxlite_shim_api::spec::EngineKind;
pub use options::{
    BoxOptions, BoxliteOptions, InvalidArgument, IpNet, NetworkMode, NetworkPolicy, NetworkSpec,
    PortSpec, Protocol, ResourceLimits, RootfsSpec, SecurityOptions, SecurityOptionsBuilder,
    VolumeSpec,
};
pub use runtime::options;
pub use runtime::{
    default_runtime, init_default_runtime, try_default_runtime, BoxCommand, BoxMetrics,
    BoxliteError, BoxliteResult, BoxliteRuntime, CannotStartReason, ConfigError, CopyOptions,
    ErrorKind, ExecResult, ExecStderr, ExecStdin, ExecStdout, Execution, ExecutionError,
    ExecutionId, LiteBox, LogLine, LogStream, NetworkError, OutputChunk, OutputLogReader, RpcError,
    RuntimeMetrics, SnapshotError, SnapshotInfo, StateError, StorageError, VmError, ENGINE_ENV,
    HOME_ENV, MAX_STANDBYS, SHIM_ENV, STANDBY_ENV, STANDBY_IDLE_ENV, TEMPLATES_ENV, TMPDIR_ENV,
};
pub use simple_box::{ExecOutput, SimpleBox};
pub use status::{BoxState, BoxStatus, ContainerID, LockId};
