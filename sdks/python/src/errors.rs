//! The core's errors as the Python exceptions of `boxlite.errors`: one class per error kind
//! (`NotFoundError`, `InvalidStateError`, ...), each with the kind's numeric `code`.
//!
//! Work running on boxlite's I/O threads fails with a [`Failure`], a plain Rust value: the
//! Python exception is made later, on a thread that holds the GIL (the caller's, or the event
//! loop's). Those threads never take the GIL themselves, so none of them can be caught
//! waiting for it while the interpreter shuts down.

use boxlite::{BoxliteError, ErrorKind};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// Why a call failed, before it becomes a Python exception.
#[derive(Debug)]
pub enum Failure {
    Core(BoxliteError),
    Kind(ErrorKind, String),
}

impl From<BoxliteError> for Failure {
    fn from(err: BoxliteError) -> Self {
        Failure::Core(err)
    }
}

impl Failure {
    pub fn into_py(self, py: Python<'_>) -> PyErr {
        let (kind, message) = match self {
            Failure::Core(err) => (err.kind(), err.to_string()),
            Failure::Kind(kind, message) => (kind, message),
        };
        match class_of(py, kind).and_then(|class| class.call1((message.clone(),))) {
            Ok(instance) => PyErr::from_value(instance),
            // Only when the package is damaged: keep the message all the same.
            Err(_) => PyRuntimeError::new_err(format!("{}: {message}", kind.name())),
        }
    }
}

/// For code that holds the GIL already (the calls themselves, never the I/O threads).
impl From<Failure> for PyErr {
    fn from(failure: Failure) -> Self {
        Python::attach(|py| failure.into_py(py))
    }
}

fn class_of(py: Python<'_>, kind: ErrorKind) -> PyResult<Bound<'_, PyAny>> {
    static BY_KIND: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    BY_KIND
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("boxlite.errors")?.getattr("_BY_KIND")?.unbind())
        })?
        .bind(py)
        .get_item(kind.name())
}

/// The core's result as a Python one, where the GIL is held.
pub trait IntoPyResult<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, BoxliteError> {
    fn py(self) -> PyResult<T> {
        self.map_err(|err| Failure::Core(err).into())
    }
}

/// An invalid argument found in this layer, as `InvalidArgumentError`.
pub fn invalid(message: impl Into<String>) -> PyErr {
    Failure::Kind(ErrorKind::InvalidArgument, message.into()).into()
}
