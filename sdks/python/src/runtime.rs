//! `_native.Runtime` and `_native.Box`: a home and its boxes. Every method that waits
//! returns an awaitable, or blocks with the GIL released on a handle made with
//! `blocking=True` (the sync API).

use std::sync::Mutex;
use std::time::Duration;

use boxlite::{BoxCommand, BoxliteRuntime, LiteBox};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::bridge::{self, run, run_with, ForkGuard, Mode};
use crate::convert;
use crate::errors::{Failure, IntoPyResult};
use crate::execution::NativeExecution;

/// The default runtime of this process (`Boxlite.default()`), made again after a fork.
static DEFAULT: Mutex<Option<(u32, BoxliteRuntime)>> = Mutex::new(None);

#[pyclass(module = "boxlite._native", name = "Runtime", frozen)]
pub struct NativeRuntime {
    pub(crate) inner: ForkGuard<BoxliteRuntime>,
    pub(crate) mode: Mode,
}

fn open(py: Python<'_>, options: boxlite::BoxliteOptions) -> PyResult<BoxliteRuntime> {
    crate::install::ensure()?;
    let tokio = bridge::tokio()?;
    let runtime = py
        .detach(|| {
            let _context = tokio.enter();
            BoxliteRuntime::new(options)
        })
        .py()?;
    // The home's logs/boxlite.log and RUST_LOG, once per process (unless the program has a
    // tracing subscriber of its own).
    static LOGGING: std::sync::Once = std::sync::Once::new();
    LOGGING.call_once(|| {
        boxlite::logging::install(runtime.home(), "warn");
    });
    Ok(runtime)
}

#[pymethods]
impl NativeRuntime {
    #[new]
    #[pyo3(signature = (home_dir=None, image_registries=Vec::new(), blocking=false))]
    fn new(
        py: Python<'_>,
        home_dir: Option<String>,
        image_registries: Vec<String>,
        blocking: bool,
    ) -> PyResult<Self> {
        let runtime = open(py, convert::runtime_options(home_dir, image_registries))?;
        Ok(Self {
            inner: ForkGuard::new(runtime),
            mode: Mode::from_blocking(blocking),
        })
    }

    /// The process's default runtime (home from `BOXLITE_HOME`, else `~/.boxlite`).
    #[staticmethod]
    #[pyo3(signature = (blocking=false))]
    fn default(py: Python<'_>, blocking: bool) -> PyResult<Self> {
        let runtime = default_runtime(py, None)?;
        Ok(Self {
            inner: ForkGuard::new(runtime),
            mode: Mode::from_blocking(blocking),
        })
    }

    /// Sets the default runtime's options; refused once the default exists in this process.
    #[staticmethod]
    #[pyo3(signature = (home_dir=None, image_registries=Vec::new()))]
    fn init_default(
        py: Python<'_>,
        home_dir: Option<String>,
        image_registries: Vec<String>,
    ) -> PyResult<()> {
        default_runtime(
            py,
            Some(convert::runtime_options(home_dir, image_registries)),
        )
        .map(drop)
    }

    /// The same runtime, its calls blocking (`true`) or awaitable.
    fn with_mode(&self, blocking: bool) -> PyResult<Self> {
        Ok(Self {
            inner: ForkGuard::new(self.inner.get()?.clone()),
            mode: Mode::from_blocking(blocking),
        })
    }

    #[getter]
    fn home_dir(&self) -> PyResult<String> {
        Ok(self.inner.get()?.home().display().to_string())
    }

    #[pyo3(signature = (options, name=None))]
    fn create(
        &self,
        py: Python<'_>,
        options: &Bound<'_, PyDict>,
        name: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let options = convert::box_options(options)?;
        let (runtime, mode) = (self.inner.get()?.clone(), self.mode);
        run(py, mode, async move {
            let litebox = runtime.create(options, name).await.map_err(Failure::from)?;
            Ok(NativeBox::new(litebox, mode))
        })
    }

    fn get(&self, py: Python<'_>, id_or_name: String) -> PyResult<Py<PyAny>> {
        let (runtime, mode) = (self.inner.get()?.clone(), self.mode);
        run(py, mode, async move {
            let found = runtime.get(&id_or_name).await.map_err(Failure::from)?;
            Ok(found.map(|b| NativeBox::new(b, mode)))
        })
    }

    #[pyo3(signature = (options, name=None))]
    fn get_or_create(
        &self,
        py: Python<'_>,
        options: &Bound<'_, PyDict>,
        name: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let options = convert::box_options(options)?;
        let (runtime, mode) = (self.inner.get()?.clone(), self.mode);
        run(py, mode, async move {
            let (litebox, created) = runtime
                .get_or_create(options, name)
                .await
                .map_err(Failure::from)?;
            Ok((NativeBox::new(litebox, mode), created))
        })
    }

    fn get_info(&self, py: Python<'_>, id_or_name: String) -> PyResult<Py<PyAny>> {
        let runtime = self.inner.get()?.clone();
        run_with(
            py,
            self.mode,
            async move { runtime.get_info(&id_or_name).await.map_err(Failure::from) },
            |py, info| match info {
                Some(info) => Ok(convert::box_info(py, &info)?.into_any().unbind()),
                None => Ok(py.None()),
            },
        )
    }

    fn list_info(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let runtime = self.inner.get()?.clone();
        run_with(
            py,
            self.mode,
            async move { runtime.list_info().await.map_err(Failure::from) },
            |py, infos| {
                let list = PyList::empty(py);
                for info in &infos {
                    list.append(convert::box_info(py, info)?)?;
                }
                Ok(list.into_any().unbind())
            },
        )
    }

    /// Standbys of the home ready to be taken by a box's first start (`BOXLITE_STANDBY`).
    fn standbys_ready(&self) -> PyResult<usize> {
        Ok(self.inner.get()?.standbys_ready())
    }

    /// Powers every standby of the home off; returns how many were running.
    fn retire_standbys(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let runtime = self.inner.get()?.clone();
        run(py, self.mode, async move {
            Ok::<_, Failure>(runtime.retire_standbys().await)
        })
    }

    /// Every snapshot of the home, oldest first.
    fn list_snapshots(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let runtime = self.inner.get()?.clone();
        run_with(
            py,
            self.mode,
            async move { runtime.list_snapshots().map_err(Failure::from) },
            |py, list| convert::snapshot_list(py, &list),
        )
    }

    fn remove_snapshot(&self, py: Python<'_>, name: String) -> PyResult<Py<PyAny>> {
        let runtime = self.inner.get()?.clone();
        run(py, self.mode, async move {
            runtime.remove_snapshot(&name).map_err(Failure::from)
        })
    }

    /// A new box from snapshot `snapshot`, started: it continues from that moment.
    #[pyo3(signature = (snapshot, name=None))]
    fn create_from_snapshot(
        &self,
        py: Python<'_>,
        snapshot: String,
        name: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let (runtime, mode) = (self.inner.get()?.clone(), self.mode);
        run(py, mode, async move {
            let litebox = runtime
                .create_from_snapshot(&snapshot, name)
                .await
                .map_err(Failure::from)?;
            Ok(NativeBox::new(litebox, mode))
        })
    }

    #[pyo3(signature = (id_or_name, force=false))]
    fn remove(&self, py: Python<'_>, id_or_name: String, force: bool) -> PyResult<Py<PyAny>> {
        let runtime = self.inner.get()?.clone();
        run(py, self.mode, async move {
            runtime
                .remove(&id_or_name, force)
                .await
                .map_err(Failure::from)
        })
    }

    fn metrics(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let runtime = self.inner.get()?.clone();
        run_with(
            py,
            self.mode,
            async move { Ok(runtime.metrics().await) },
            |py, m| Ok(convert::runtime_metrics(py, &m)?.into_any().unbind()),
        )
    }

    #[pyo3(signature = (timeout=None))]
    fn shutdown(&self, py: Python<'_>, timeout: Option<i32>) -> PyResult<Py<PyAny>> {
        let runtime = self.inner.get()?.clone();
        run(py, self.mode, async move {
            runtime.shutdown(timeout).await.map_err(Failure::from)
        })
    }

    fn pull_image(&self, py: Python<'_>, reference: String) -> PyResult<Py<PyAny>> {
        let runtime = self.inner.get()?.clone();
        run(py, self.mode, async move {
            runtime.pull_image(&reference).await.map_err(Failure::from)
        })
    }

    /// `[(reference, manifest_digest, size, pulled_at)]`.
    fn list_images(&self) -> PyResult<Vec<(String, String, u64, u64)>> {
        Ok(self
            .inner
            .get()?
            .list_images()
            .py()?
            .into_iter()
            .map(|i| (i.reference, i.manifest_digest, i.size, i.pulled_at))
            .collect())
    }

    fn remove_image(&self, py: Python<'_>, reference: String) -> PyResult<Py<PyAny>> {
        let runtime = self.inner.get()?.clone();
        run(py, self.mode, async move {
            runtime
                .remove_image(&reference)
                .await
                .map_err(Failure::from)
        })
    }
}

fn default_runtime(
    py: Python<'_>,
    options: Option<boxlite::BoxliteOptions>,
) -> PyResult<BoxliteRuntime> {
    let pid = std::process::id();
    let mut slot = DEFAULT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((owner, runtime)) = slot.as_ref() {
        if *owner == pid {
            if options.is_some() {
                return Err(Failure::Kind(
                    boxlite::ErrorKind::InvalidState,
                    "the default runtime exists already in this process: call \
                     Boxlite.init_default before the first Boxlite.default()"
                        .into(),
                )
                .into());
            }
            return Ok(runtime.clone());
        }
    }
    // A default made before a fork belongs to the parent.
    if let Some(parent) = slot.take() {
        std::mem::forget(parent);
    }
    let runtime = open(py, options.unwrap_or_default())?;
    *slot = Some((pid, runtime.clone()));
    Ok(runtime)
}

#[pyclass(module = "boxlite._native", name = "Box", frozen)]
pub struct NativeBox {
    pub(crate) inner: ForkGuard<LiteBox>,
    pub(crate) mode: Mode,
}

impl NativeBox {
    pub fn new(litebox: LiteBox, mode: Mode) -> Self {
        Self {
            inner: ForkGuard::new(litebox),
            mode,
        }
    }
}

/// A command as the Python `exec` calls give it.
#[allow(clippy::too_many_arguments)]
pub fn command(
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    tty: bool,
    user: Option<String>,
    timeout: Option<f64>,
    cwd: Option<String>,
    stdin: bool,
) -> PyResult<BoxCommand> {
    let mut command = BoxCommand::new(program).args(args).tty(tty).stdin(stdin);
    for (key, value) in env {
        command = command.env(key, value);
    }
    if let Some(user) = user {
        command = command.user(user);
    }
    if let Some(cwd) = cwd {
        command = command.working_dir(cwd);
    }
    if let Some(seconds) = timeout {
        let timeout = Duration::try_from_secs_f64(seconds)
            .map_err(|e| crate::errors::invalid(format!("timeout {seconds}: {e}")))?;
        command = command.timeout(timeout);
    }
    Ok(command)
}

#[pymethods]
impl NativeBox {
    #[getter]
    fn id(&self) -> PyResult<String> {
        Ok(self.inner.get()?.id().to_string())
    }

    #[getter]
    fn name(&self) -> PyResult<Option<String>> {
        Ok(self.inner.get()?.name().map(str::to_string))
    }

    /// What the home's database says about the box now.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let litebox = self.inner.get()?.clone();
        let info = py.detach(move || litebox.info());
        convert::box_info(py, &info)
    }

    fn start(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let litebox = self.inner.get()?.clone();
        run(py, self.mode, async move {
            litebox.start().await.map_err(Failure::from)
        })
    }

    fn stop(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let litebox = self.inner.get()?.clone();
        run(py, self.mode, async move {
            litebox.stop().await.map_err(Failure::from)
        })
    }

    #[pyo3(signature = (command, args=Vec::new(), env=Vec::new(), tty=false, user=None, timeout=None, cwd=None, stdin=true))]
    #[allow(clippy::too_many_arguments)]
    fn exec(
        &self,
        py: Python<'_>,
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        tty: bool,
        user: Option<String>,
        timeout: Option<f64>,
        cwd: Option<String>,
        stdin: bool,
    ) -> PyResult<Py<PyAny>> {
        let command = self::command(command, args, env, tty, user, timeout, cwd, stdin)?;
        let (litebox, mode) = (self.inner.get()?.clone(), self.mode);
        run(py, mode, async move {
            let execution = litebox.exec(command).await.map_err(Failure::from)?;
            Ok(NativeExecution::new(execution, mode))
        })
    }

    /// Runs a command to its end: `(stdout, stderr, (exit_code, error_message, signal,
    /// timed_out))`, output decoded as UTF-8 (invalid bytes replaced).
    #[pyo3(signature = (command, args=Vec::new(), env=Vec::new(), user=None, timeout=None, cwd=None))]
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        py: Python<'_>,
        command: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        user: Option<String>,
        timeout: Option<f64>,
        cwd: Option<String>,
    ) -> PyResult<Py<PyAny>> {
        let command = self::command(command, args, env, false, user, timeout, cwd, false)?;
        let litebox = self.inner.get()?.clone();
        run(py, self.mode, async move {
            let execution = litebox.exec(command).await.map_err(Failure::from)?;
            let (stdout, stderr, result) = execution.output().await.map_err(Failure::from)?;
            Ok((
                String::from_utf8_lossy(&stdout).into_owned(),
                String::from_utf8_lossy(&stderr).into_owned(),
                convert::exec_end(result),
            ))
        })
    }

    /// A command started earlier (by any process), by its id.
    fn attach(&self, py: Python<'_>, execution_id: String) -> PyResult<Py<PyAny>> {
        let (litebox, mode) = (self.inner.get()?.clone(), self.mode);
        run(py, mode, async move {
            let execution = litebox.attach(&execution_id).await.map_err(Failure::from)?;
            Ok(NativeExecution::new(execution, mode))
        })
    }

    #[pyo3(signature = (host_path, guest_path, options=None))]
    fn copy_in(
        &self,
        py: Python<'_>,
        host_path: String,
        guest_path: String,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let options = convert::copy_options(options)?;
        let litebox = self.inner.get()?.clone();
        run(py, self.mode, async move {
            litebox
                .copy_into(&host_path, &guest_path, options)
                .await
                .map_err(Failure::from)
                .map(drop)
        })
    }

    #[pyo3(signature = (guest_path, host_path, options=None))]
    fn copy_out(
        &self,
        py: Python<'_>,
        guest_path: String,
        host_path: String,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let options = convert::copy_options(options)?;
        let litebox = self.inner.get()?.clone();
        run(py, self.mode, async move {
            litebox
                .copy_out(&guest_path, &host_path, options)
                .await
                .map_err(Failure::from)
                .map(drop)
        })
    }

    fn pause(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let litebox = self.inner.get()?.clone();
        run(py, self.mode, async move {
            litebox.pause().await.map_err(Failure::from)
        })
    }

    fn resume(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let litebox = self.inner.get()?.clone();
        run(py, self.mode, async move {
            litebox.resume().await.map_err(Failure::from)
        })
    }

    /// Saves the running or paused box (memory, devices, disk) as snapshot `name`.
    fn snapshot_create(&self, py: Python<'_>, name: String) -> PyResult<Py<PyAny>> {
        let litebox = self.inner.get()?.clone();
        run_with(
            py,
            self.mode,
            async move { litebox.snapshot(&name).await.map_err(Failure::from) },
            |py, info| Ok(convert::snapshot_info(py, &info)?.into_any().unbind()),
        )
    }

    /// This box's snapshots, oldest first.
    fn snapshots(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let litebox = self.inner.get()?.clone();
        run_with(
            py,
            self.mode,
            async move { litebox.snapshots().map_err(Failure::from) },
            |py, list| convert::snapshot_list(py, &list),
        )
    }

    fn snapshot_remove(&self, py: Python<'_>, name: String) -> PyResult<Py<PyAny>> {
        let litebox = self.inner.get()?.clone();
        run(py, self.mode, async move {
            litebox.remove_snapshot(&name).map_err(Failure::from)
        })
    }

    /// Puts the box back to its snapshot `name`; it runs on from that moment.
    fn snapshot_restore(&self, py: Python<'_>, name: String) -> PyResult<Py<PyAny>> {
        let litebox = self.inner.get()?.clone();
        run(py, self.mode, async move {
            litebox.restore(&name).await.map_err(Failure::from)
        })
    }

    /// A second box, `name`, continuing from this moment of this one.
    fn fork(&self, py: Python<'_>, name: String) -> PyResult<Py<PyAny>> {
        let (litebox, mode) = (self.inner.get()?.clone(), self.mode);
        run(py, mode, async move {
            let forked = litebox.fork(&name).await.map_err(Failure::from)?;
            Ok(NativeBox::new(forked, mode))
        })
    }

    fn metrics(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let litebox = self.inner.get()?.clone();
        run_with(
            py,
            self.mode,
            async move { litebox.metrics().await.map_err(Failure::from) },
            |py, m| Ok(convert::box_metrics(py, &m)?.into_any().unbind()),
        )
    }
}
