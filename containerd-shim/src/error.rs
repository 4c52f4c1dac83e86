//! What can go wrong serving containerd, and the gRPC status each becomes: containerd (and
//! the kubelet behind it) branch on the code, and show the message to the operator.

use containerd_shim::protos::ttrpc::{self, Code};

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("invalid OCI spec: {0}")]
    InvalidSpec(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no container {0:?} in this shim (it serves one container per task)")]
    NoContainer(String),
    #[error("container {0:?} already exists in this shim")]
    ContainerExists(String),
    #[error("no process {exec_id:?} in container {id:?}")]
    NoProcess { id: String, exec_id: String },
    #[error("process {0:?} already exists")]
    ProcessExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("boxlite: {0}")]
    Box(#[from] boxlite::BoxliteError),
    #[error("mounting the container's rootfs: {0}")]
    Mount(String),
}

impl ShimError {
    fn code(&self) -> Code {
        match self {
            Self::InvalidSpec(_) | Self::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Self::NoContainer(_) | Self::NoProcess { .. } => Code::NOT_FOUND,
            Self::ContainerExists(_) | Self::ProcessExists(_) => Code::ALREADY_EXISTS,
            Self::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Self::Unimplemented(_) => Code::UNIMPLEMENTED,
            Self::Io { .. } | Self::Box(_) | Self::Mount(_) => Code::INTERNAL,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(err: ShimError) -> Self {
        log::warn!("{err}");
        ttrpc::Error::RpcStatus(ttrpc::get_status(err.code(), err.to_string()))
    }
}
