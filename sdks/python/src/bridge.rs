//! Running the core's futures for Python: awaited from asyncio (a Python future of the running
//! loop) or blocked on with the GIL released (the sync API, which therefore also works in a
//! thread whose event loop runs).
//!
//! The I/O threads never take the GIL: an async call's outcome is left in its event loop's
//! [`Completions`] inbox and an eventfd wakes the loop, whose thread settles the future. (A
//! thread waiting for the GIL while the interpreter exits is ended by Python with
//! `pthread_exit`, which would abort the process.)
//!
//! After `os.fork()` the child has none of the parent's threads: the tokio runtime is made
//! anew for the child's pid, and handles made before the fork refuse with a clear error
//! (see [`ForkGuard`]) instead of touching the parent's connections and locks.

use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCFunction;

use crate::errors::Failure;
use pyo3::IntoPyObjectExt;

/// The tokio runtime of this process (made again after a fork).
static TOKIO: Mutex<Option<(u32, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);

pub fn tokio() -> PyResult<Arc<tokio::runtime::Runtime>> {
    let pid = std::process::id();
    let mut slot = TOKIO.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, runtime)) = slot.as_ref() {
        if *owner == pid {
            return Ok(runtime.clone());
        }
    }
    // The parent's runtime has no threads here; dropping it would wait for them forever.
    if let Some(parent) = slot.take() {
        std::mem::forget(parent);
    }
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("boxlite-py")
            .enable_all()
            .build()
            .map_err(|e| PyRuntimeError::new_err(format!("starting boxlite's I/O threads: {e}")))?,
    );
    *slot = Some((pid, runtime.clone()));
    Ok(runtime)
}

/// A value that belongs to the process that made it. Used from a forked child it refuses
/// (the parent's database connections and box locks are not the child's to use), and dropped
/// there it is forgotten rather than closed under the parent's feet.
pub struct ForkGuard<T> {
    pid: u32,
    value: Option<T>,
}

impl<T> ForkGuard<T> {
    pub fn new(value: T) -> Self {
        Self {
            pid: std::process::id(),
            value: Some(value),
        }
    }

    pub fn get(&self) -> Result<&T, Failure> {
        if self.pid != std::process::id() {
            return Err(Failure::Kind(
                boxlite::ErrorKind::InvalidState,
                format!(
                    "this boxlite object was made in process {} before os.fork(); the child \
                 process {} cannot use it: create a new runtime in the child \
                 (boxlite.Boxlite(options) or boxlite.Boxlite.default())",
                    self.pid,
                    std::process::id()
                ),
            ));
        }
        Ok(self.value.as_ref().expect("taken only by drop"))
    }

    pub fn get_mut(&mut self) -> Result<&mut T, Failure> {
        self.get()?;
        Ok(self.value.as_mut().expect("taken only by drop"))
    }
}

impl<T> Drop for ForkGuard<T> {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            std::mem::forget(self.value.take());
        }
    }
}

/// Whether a handle's calls return awaitables or block.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Async,
    Blocking,
}

impl Mode {
    pub fn from_blocking(blocking: bool) -> Self {
        if blocking {
            Mode::Blocking
        } else {
            Mode::Async
        }
    }
}

/// Runs `future`: in [`Mode::Blocking`] to its end with the GIL released, returning its value
/// as an awaitable that is done already; in [`Mode::Async`] as a task, returning an asyncio
/// future of the running loop. Cancelling that future aborts the task.
pub fn run<F, T>(py: Python<'_>, mode: Mode, future: F) -> PyResult<Py<PyAny>>
where
    F: Future<Output = Result<T, Failure>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    run_with(py, mode, future, |py, value| value.into_py_any(py))
}

/// [`run`], with the value turned into Python by `convert`, on a thread holding the GIL.
pub fn run_with<F, T, C>(py: Python<'_>, mode: Mode, future: F, convert: C) -> PyResult<Py<PyAny>>
where
    F: Future<Output = Result<T, Failure>> + Send + 'static,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let runtime = tokio()?;
    match mode {
        Mode::Blocking => {
            let value = py
                .detach(|| runtime.block_on(future))
                .map_err(|f| f.into_py(py))?;
            // An awaitable that is done already: one Python layer serves both APIs (the sync
            // one drives its coroutines, which then never suspend).
            Ok(python_helper(py, &READY, "Ready")?
                .call1((convert(py, value)?,))?
                .unbind())
        }
        Mode::Async => {
            let event_loop = asyncio(py)?.call_method0("get_running_loop")?;
            let completions = python_helper(py, &COMPLETIONS, "completions")?
                .call1((&event_loop,))?
                .cast_into::<Completions>()?;
            let py_future = event_loop.call_method0("create_future")?;
            let inbox = completions.get().inbox.clone();
            let settle_this = py_future.clone().unbind();
            // The task touches no Python object: it leaves the outcome in the loop's inbox,
            // and the loop's thread turns it into the future's result (`Completions::drain`).
            let task = runtime.spawn(async move {
                let outcome = future.await;
                inbox.deliver(
                    settle_this,
                    Box::new(move |py: Python<'_>| match outcome {
                        Ok(value) => convert(py, value),
                        Err(failure) => Err(failure.into_py(py)),
                    }),
                );
            });
            // Cancelled (or finished) on the Python side: the task is not needed any more.
            let abort = task.abort_handle();
            let on_done = PyCFunction::new_closure(py, None, None, move |_args, _kwargs| {
                abort.abort();
            })?;
            py_future.call_method1("add_done_callback", (on_done,))?;
            Ok(py_future.unbind())
        }
    }
}

/// Turns an outcome into the future's value, on the loop's thread.
type Settle = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// Outcomes waiting for their event loop, and the eventfd that wakes it.
pub struct Inbox {
    pending: Mutex<Vec<(Py<PyAny>, Settle)>>,
    wake: OwnedFd,
}

impl Inbox {
    fn deliver(&self, future: Py<PyAny>, settle: Settle) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((future, settle));
        let one: u64 = 1;
        // SAFETY: the eventfd is open for as long as `self` lives; eight bytes from a u64
        // are what an eventfd write takes. A full counter (EAGAIN) means a wake-up is
        // pending already.
        unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// `_native.Completions`: one per event loop (made by `boxlite._bridge.completions`, which
/// registers `fd` with `loop.add_reader(fd, drain)`).
#[pyclass(module = "boxlite._native", name = "Completions", frozen)]
pub struct Completions {
    inbox: Arc<Inbox>,
}

#[pymethods]
impl Completions {
    #[new]
    fn new() -> PyResult<Self> {
        // SAFETY: eventfd has no memory preconditions; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(PyRuntimeError::new_err(format!(
                "making an eventfd for the event loop: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Self {
            inbox: Arc::new(Inbox {
                pending: Mutex::new(Vec::new()),
                // SAFETY: `fd` was just opened and is owned by nothing else.
                wake: unsafe { OwnedFd::from_raw_fd(fd) },
            }),
        })
    }

    #[getter]
    fn fd(&self) -> i32 {
        self.inbox.wake.as_raw_fd()
    }

    /// Settles every future whose outcome arrived (called by the loop when `fd` is readable).
    fn drain(&self, py: Python<'_>) -> PyResult<()> {
        let mut counter = 0u64;
        // SAFETY: reads eight bytes into a u64 from the eventfd `self` owns; EAGAIN (nothing
        // to read) is fine.
        unsafe {
            libc::read(
                self.inbox.wake.as_raw_fd(),
                (&mut counter as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        let arrived =
            std::mem::take(&mut *self.inbox.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let settle = python_helper(py, &SETTLE, "settle")?;
        for (future, outcome) in arrived {
            let (ok, value) = match outcome(py) {
                Ok(value) => (true, value),
                Err(err) => (false, err.into_value(py).into_any()),
            };
            settle.call1((future, ok, value))?;
        }
        Ok(())
    }
}

static SETTLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static READY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static COMPLETIONS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `boxlite._bridge.NAME`: `settle(future, ok, value)` sets the result or exception of a
/// future still pending; `Ready(value)` is an awaitable done already; `completions(loop)` is
/// the loop's [`Completions`].
fn python_helper<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("boxlite._bridge")?.getattr(name)?.unbind())
    })
    .map(|f| f.bind(py))
}

fn asyncio(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static ASYNCIO: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    ASYNCIO
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("asyncio")?.into_any().unbind())
        })
        .map(|m| m.bind(py))
}
