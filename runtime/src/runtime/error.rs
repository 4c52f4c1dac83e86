//! Errors of the public API.

use super::*;

/// Every error of the public API. One variant per documented error kind ([`ErrorKind`]), so
/// that the C, Python and Node SDKs map them one to one; each carries a typed cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BoxliteError {
    /// Something failed that should not have: a bug.
    #[error("internal error: {0}")]
    Internal(String),
    /// No box (or exec, or image) by that id or name.
    #[error("no box {0:?} (see `boxlite ls -a`)")]
    NotFound(String),
    /// A box of that name exists already.
    #[error("a box named {0:?} already exists")]
    AlreadyExists(String),
    /// The box is not in a state that allows the operation.
    #[error(transparent)]
    InvalidState(#[from] StateError),
    /// An option or argument is wrong; the value says which and why.
    #[error("invalid argument: {0}")]
    InvalidArgument(#[from] InvalidArgument),
    /// The host or home is not set up for this: the message says what to change.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Files, locks and copies on the host.
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A command in the box could not run (or a copy in the box failed).
    #[error(transparent)]
    Execution(#[from] ExecutionError),
    /// The box is stopped: start it first.
    #[error("box {0} is stopped; start it first")]
    Stopped(String),
    /// The VM could not be started or prepared.
    #[error(transparent)]
    Engine(#[from] VmError),
    /// Not supported here or not yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Database(DbError),
    /// Talking to the box's shim or guest agent failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// Saving, restoring, listing or removing a snapshot.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Memory snapshots and forks.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("no snapshot {0:?} (see `boxlite snapshot ls`)")]
    NotFound(String),
    #[error("a snapshot named {0:?} exists already; pick another name or remove it first")]
    Exists(String),
    #[error(
        "snapshot {name:?} cannot be restored here: it was saved with {what} {saved}, and this \
         host would restore it with {now}; restore it where it was taken, or take a new one"
    )]
    Incompatible {
        name: String,
        what: &'static str,
        saved: String,
        now: String,
    },
    #[error("box {id} cannot be snapshotted: {reason}")]
    NotSnapshottable { id: String, reason: String },
    #[error("saving snapshot {name:?} failed, and nothing of it was kept: {message}")]
    Save {
        name: String,
        message: String,
        /// The host's disk is full.
        disk_full: bool,
    },
    #[error("snapshot {name:?} was taken of box {taken_of}, not of box {id}; {hint}")]
    OfAnotherBox {
        name: String,
        id: String,
        taken_of: String,
        hint: &'static str,
    },
    #[error("snapshot {name:?} is damaged ({reason}); remove it")]
    Damaged { name: String, reason: String },
}

/// The documented error kinds, with the numeric codes of the C SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ErrorKind {
    Internal = 1,
    NotFound = 2,
    AlreadyExists = 3,
    InvalidState = 4,
    InvalidArgument = 5,
    Config = 6,
    Storage = 7,
    Image = 8,
    Network = 9,
    Execution = 10,
    Stopped = 11,
    Engine = 12,
    Unsupported = 13,
    Database = 14,
    Portal = 15,
    Rpc = 16,
}

impl ErrorKind {
    /// The kind's name, as the SDKs spell it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Internal => "Internal",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::InvalidState => "InvalidState",
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::Config => "Config",
            ErrorKind::Storage => "Storage",
            ErrorKind::Image => "Image",
            ErrorKind::Network => "Network",
            ErrorKind::Execution => "Execution",
            ErrorKind::Stopped => "Stopped",
            ErrorKind::Engine => "Engine",
            ErrorKind::Unsupported => "Unsupported",
            ErrorKind::Database => "Database",
            ErrorKind::Portal => "Portal",
            ErrorKind::Rpc => "Rpc",
        }
    }

    /// The C SDK's numeric code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl BoxliteError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BoxliteError::Internal(_) => ErrorKind::Internal,
            BoxliteError::NotFound(_) => ErrorKind::NotFound,
            BoxliteError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            BoxliteError::InvalidState(_) => ErrorKind::InvalidState,
            BoxliteError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            BoxliteError::Config(_) => ErrorKind::Config,
            BoxliteError::Storage(_) => ErrorKind::Storage,
            BoxliteError::Image(_) => ErrorKind::Image,
            BoxliteError::Network(_) => ErrorKind::Network,
            BoxliteError::Execution(_) => ErrorKind::Execution,
            BoxliteError::Stopped(_) => ErrorKind::Stopped,
            BoxliteError::Engine(_) => ErrorKind::Engine,
            BoxliteError::Unsupported(_) => ErrorKind::Unsupported,
            BoxliteError::Database(_) => ErrorKind::Database,
            BoxliteError::Rpc(_) => ErrorKind::Rpc,
            BoxliteError::Snapshot(err) => match err {
                SnapshotError::NotFound(_) => ErrorKind::NotFound,
                SnapshotError::Exists(_) => ErrorKind::AlreadyExists,
                SnapshotError::OfAnotherBox { .. } => ErrorKind::InvalidArgument,
                SnapshotError::Incompatible { .. } | SnapshotError::NotSnapshottable { .. } => {
                    ErrorKind::Unsupported
                }
                SnapshotError::Save {
                    disk_full: true, ..
                } => ErrorKind::Storage,
                SnapshotError::Save { .. } => ErrorKind::Engine,
                SnapshotError::Damaged { .. } => ErrorKind::Storage,
            },
        }
    }
}

/// Why a box is in the wrong state for an operation.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("box {0} is running; stop it first or remove it with force")]
    Running(String),
    #[error("box {0} is paused; resume it first")]
    Paused(String),
    #[error("box {id} cannot {action} while it is {status}")]
    Wrong {
        id: String,
        action: &'static str,
        status: BoxStatus,
    },
    #[error("image {reference:?} is used by box {box_id}; remove the box first")]
    ImageInUse { reference: String, box_id: String },
    #[error("image {reference:?} is used by snapshot {snapshot:?}; remove the snapshot first")]
    ImageInSnapshot { reference: String, snapshot: String },
    #[error("the default runtime is already open; call init_default_runtime before its first use")]
    DefaultRuntimeOpen,
}

/// What is wrong with the host's or home's setup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "home {home} belongs to uid {owner}, not to this user (uid {user}); use a home of your \
         own (BOXLITE_HOME or --home)"
    )]
    HomeNotOwned {
        home: PathBuf,
        owner: u32,
        user: u32,
    },
    #[error("home {0} exists and is not a directory; pick another with BOXLITE_HOME")]
    HomeNotADirectory(PathBuf),
    #[error("{variable}: {message}")]
    Environment {
        variable: &'static str,
        message: String,
    },
}

/// Host files, locks and copies.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] boxlite_lockfile::LockError),
    #[error(transparent)]
    Copy(#[from] boxlite_copy::CopyError),
}

/// The box's network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("host port {ip}:{port}/{protocol} is taken ({source}); pick another host port")]
    PortTaken {
        ip: std::net::Ipv4Addr,
        port: u16,
        protocol: &'static str,
        source: std::io::Error,
    },
}

/// A command or copy in the box.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    /// The command could not be started in the box (nothing ran).
    #[error("{message}")]
    CannotStart {
        reason: CannotStartReason,
        message: String,
    },
    #[error("copying {what}: {message}")]
    Copy { what: String, message: String },
    /// The exec's stdin was not asked for, or was closed.
    #[error("{0}")]
    Stdin(String),
    /// A `CodeBox`'s interpreter could not start, ended, or answered what it should not.
    #[error("the box's Python interpreter: {0}")]
    Interpreter(String),
    /// A `ComputerBox`'s desktop did not come up, or an X tool in it failed.
    #[error("the box's desktop: {0}")]
    Desktop(String),
    /// A `BrowserBox`'s Chromium did not start or answer.
    #[error("the box's browser: {0}")]
    Browser(String),
    /// pip could not install packages in a `CodeBox`.
    #[error("installing {packages}: {message}")]
    Package { packages: String, message: String },
}

/// Starting or preparing the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Guest(#[from] GuestError),
}

/// The box's shim or guest agent.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error(transparent)]
    Shim(#[from] ShimError),
    #[error(transparent)]
    Agent(#[from] AgentError),
}

macro_rules! via {
    ($($from:ty => $mid:ident),* $(,)?) => {
        $(impl From<$from> for BoxliteError {
            fn from(err: $from) -> Self {
                $mid::from(err).into()
            }
        })*
    };
}

via! {
    boxlite_lockfile::LockError => StorageError,
    boxlite_copy::CopyError => StorageError,
    GuestError => VmError,
    ShimError => RpcError,
    AgentError => RpcError,
}

impl From<LaunchError> for BoxliteError {
    /// A shim that says no engine can run here is `Unsupported` (the host cannot do it, the
    /// caller did nothing wrong); every other launch failure is an `Engine` error.
    fn from(err: LaunchError) -> Self {
        match err {
            LaunchError::BootFailed(BootFailure::EngineUnavailable { message }) => {
                BoxliteError::Unsupported(message)
            }
            other => VmError::from(other).into(),
        }
    }
}

impl From<DbError> for BoxliteError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::DuplicateName(name) => BoxliteError::AlreadyExists(name),
            other => BoxliteError::Database(other),
        }
    }
}

/// Why a command could not be started; `boxlite run`/`exec` exit with 127 for the first and
/// 126 for the others, as docker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CannotStartReason {
    /// No such program in the box.
    NotFound,
    /// The program is there but cannot be executed (permissions, a directory, not a binary).
    NotExecutable,
    /// The working directory does not exist in the box.
    WorkingDir,
}

impl CannotStartReason {
    /// The exit code docker gives for it.
    pub fn exit_code(self) -> u8 {
        match self {
            CannotStartReason::NotFound => 127,
            CannotStartReason::NotExecutable | CannotStartReason::WorkingDir => 126,
        }
    }
}

/// An exec's start failure as the agent reported it, typed where it says the command could
/// not start.
pub(crate) fn exec_start_error(err: AgentError) -> BoxliteError {
    let reason = match &err {
        AgentError::Rpc { code, .. } => match code {
            ttrpc::Code::NOT_FOUND => Some(CannotStartReason::NotFound),
            ttrpc::Code::PERMISSION_DENIED => Some(CannotStartReason::NotExecutable),
            ttrpc::Code::FAILED_PRECONDITION => Some(CannotStartReason::WorkingDir),
            _ => None,
        },
        _ => None,
    };
    match (reason, err) {
        (Some(reason), AgentError::Rpc { message, .. }) => {
            ExecutionError::CannotStart { reason, message }.into()
        }
        (_, err) => err.into(),
    }
}

/// The result of every fallible call of the public API.
pub type BoxliteResult<T> = std::result::Result<T, BoxliteError>;
pub(crate) type Result<T> = BoxliteResult<T>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BoxliteError + '_ {
    move |source| {
        StorageError::Io {
            path: path.to_path_buf(),
            source,
        }
        .into()
    }
}
