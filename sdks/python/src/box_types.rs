//! The box types of the core (`boxlite::box_types`) for the Python classes `CodeBox`,
//! `BrowserBox`, `ComputerBox` and `InteractiveBox`. Each native handle is made by a static
//! `create(runtime, options)` and gives its box as `_native.Box` (`litebox()`) for what every
//! box does; `remove()` ends it (dropping the last handle does too).

use std::sync::Arc;
use std::time::Duration;

use boxlite::{
    BoxCommand, BoxliteRuntime, BrowserBox, CodeBox, ComputerBox, ErrorKind, InteractiveBox,
    LiteBox, ScrollDirection,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use pyo3::IntoPyObjectExt;

use crate::bridge::{run, run_with, ForkGuard, Mode};
use crate::convert::{self, box_options_over};
use crate::errors::Failure;
use crate::runtime::{NativeBox, NativeRuntime};

/// A box type's value, shared by the calls in flight and taken by `remove()`.
type Shared<T> = Arc<tokio::sync::RwLock<Option<T>>>;

fn removed(what: &str) -> Failure {
    Failure::Kind(
        ErrorKind::InvalidState,
        format!("this {what} was removed; create a new one"),
    )
}

fn duration(seconds: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|e| crate::errors::invalid(format!("{what} {seconds}: {e}")))
}

/// The parts every native box type has: a handle on the value, its box, its mode.
struct Parts<T> {
    value: ForkGuard<Shared<T>>,
    litebox: ForkGuard<LiteBox>,
    mode: Mode,
}

impl<T: Send + Sync + 'static> Parts<T> {
    fn new(value: T, litebox: LiteBox, mode: Mode) -> Self {
        Self {
            value: ForkGuard::new(Arc::new(tokio::sync::RwLock::new(Some(value)))),
            litebox: ForkGuard::new(litebox),
            mode,
        }
    }

    fn litebox(&self) -> PyResult<NativeBox> {
        Ok(NativeBox::new(self.litebox.get()?.clone(), self.mode))
    }

    fn shared(&self) -> PyResult<Shared<T>> {
        Ok(self.value.get()?.clone())
    }

    /// Removes the box (killing its VM) through the value's own `remove`.
    fn remove<F, Fut>(&self, py: Python<'_>, remove: F) -> PyResult<Py<PyAny>>
    where
        F: FnOnce(T) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = boxlite::BoxliteResult<()>> + Send,
    {
        let shared = self.shared()?;
        run(py, self.mode, async move {
            let taken = shared.write().await.take();
            match taken {
                Some(value) => remove(value).await.map_err(Failure::from),
                None => Ok(()),
            }
        })
    }
}

fn runtime_and_options(
    runtime: &NativeRuntime,
    base: boxlite::BoxOptions,
    options: &Bound<'_, PyDict>,
) -> PyResult<(BoxliteRuntime, boxlite::BoxOptions, Mode)> {
    Ok((
        runtime.inner.get()?.clone(),
        box_options_over(base, options)?,
        runtime.mode,
    ))
}

#[pyclass(module = "boxlite._native", name = "CodeBox", frozen)]
pub struct NativeCodeBox(Parts<CodeBox>);

#[pymethods]
impl NativeCodeBox {
    /// A started box with its interpreter, from `options` over `CodeBox`'s defaults.
    #[staticmethod]
    fn create(
        py: Python<'_>,
        runtime: &NativeRuntime,
        options: &Bound<'_, PyDict>,
    ) -> PyResult<Py<PyAny>> {
        let (runtime, options, mode) =
            runtime_and_options(runtime, CodeBox::default_options(), options)?;
        run(py, mode, async move {
            let code = CodeBox::with_options(&runtime, options)
                .await
                .map_err(Failure::from)?;
            let litebox = code.litebox().clone();
            Ok(NativeCodeBox(Parts::new(code, litebox, mode)))
        })
    }

    fn litebox(&self) -> PyResult<NativeBox> {
        self.0.litebox()
    }

    /// Runs `code`; the result as JSON (stdout, stderr, result, display, error).
    #[pyo3(signature = (code, timeout=None))]
    fn run(&self, py: Python<'_>, code: String, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let timeout = timeout.map(|t| duration(t, "timeout")).transpose()?;
        let shared = self.0.shared()?;
        run(py, self.0.mode, async move {
            let guard = shared.read().await;
            let code_box = guard.as_ref().ok_or_else(|| removed("CodeBox"))?;
            let result = match timeout {
                Some(timeout) => code_box.run_with_timeout(&code, timeout).await,
                None => code_box.run(&code).await,
            }
            .map_err(Failure::from)?;
            Ok(serde_json::to_string(&result).expect("a CodeResult serialises"))
        })
    }

    fn run_script(&self, py: Python<'_>, path: String) -> PyResult<Py<PyAny>> {
        let shared = self.0.shared()?;
        run(py, self.0.mode, async move {
            let guard = shared.read().await;
            let code_box = guard.as_ref().ok_or_else(|| removed("CodeBox"))?;
            let result = code_box.run_script(&path).await.map_err(Failure::from)?;
            Ok(serde_json::to_string(&result).expect("a CodeResult serialises"))
        })
    }

    /// pip's `(stdout, stderr, exit_code, error_message)`.
    fn install_packages(&self, py: Python<'_>, packages: Vec<String>) -> PyResult<Py<PyAny>> {
        let shared = self.0.shared()?;
        run(py, self.0.mode, async move {
            let guard = shared.read().await;
            let code_box = guard.as_ref().ok_or_else(|| removed("CodeBox"))?;
            let names: Vec<&str> = packages.iter().map(String::as_str).collect();
            let out = code_box
                .install_packages(&names)
                .await
                .map_err(Failure::from)?;
            Ok((out.stdout, out.stderr, out.exit_code, out.error_message))
        })
    }

    fn remove(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.0.remove(py, CodeBox::remove)
    }
}

#[pyclass(module = "boxlite._native", name = "BrowserBox", frozen)]
pub struct NativeBrowserBox(Parts<BrowserBox>);

#[pymethods]
impl NativeBrowserBox {
    /// A started box with Chromium answering CDP.
    #[staticmethod]
    fn create(
        py: Python<'_>,
        runtime: &NativeRuntime,
        options: &Bound<'_, PyDict>,
    ) -> PyResult<Py<PyAny>> {
        let (runtime, options, mode) =
            runtime_and_options(runtime, BrowserBox::default_options(), options)?;
        run(py, mode, async move {
            let browser = BrowserBox::with_options(&runtime, options)
                .await
                .map_err(Failure::from)?;
            let litebox = browser.litebox().clone();
            Ok(NativeBrowserBox(Parts::new(browser, litebox, mode)))
        })
    }

    fn litebox(&self) -> PyResult<NativeBox> {
        self.0.litebox()
    }

    /// `(websocket_url, http_url)` of the browser's DevTools endpoint on this host.
    fn endpoints(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let shared = self.0.shared()?;
        run(py, self.0.mode, async move {
            let guard = shared.read().await;
            let browser = guard.as_ref().ok_or_else(|| removed("BrowserBox"))?;
            Ok((browser.endpoint().to_string(), browser.http_endpoint()))
        })
    }

    /// Whether Chromium answers on its DevTools port now.
    fn is_running(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let shared = self.0.shared()?;
        run(py, self.0.mode, async move {
            let guard = shared.read().await;
            let browser = guard.as_ref().ok_or_else(|| removed("BrowserBox"))?;
            Ok(browser.is_running().await)
        })
    }

    /// Starts Chromium again (after a crash); the endpoints change.
    fn restart(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let shared = self.0.shared()?;
        run(py, self.0.mode, async move {
            let mut guard = shared.write().await;
            let browser = guard.as_mut().ok_or_else(|| removed("BrowserBox"))?;
            browser.restart().await.map_err(Failure::from)
        })
    }

    fn remove(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.0.remove(py, BrowserBox::remove)
    }
}

#[pyclass(module = "boxlite._native", name = "ComputerBox", frozen)]
pub struct NativeComputerBox(Parts<ComputerBox>);

/// Runs one desktop action on the `ComputerBox` of `$shared`.
macro_rules! desktop {
    ($self:ident, $py:ident, |$computer:ident| $body:expr) => {{
        let shared = $self.0.shared()?;
        run($py, $self.0.mode, async move {
            let guard = shared.read().await;
            let $computer = guard.as_ref().ok_or_else(|| removed("ComputerBox"))?;
            $body.await.map_err(Failure::from)
        })
    }};
}

#[pymethods]
impl NativeComputerBox {
    /// A started box with its desktop ready, the screen `width`×`height`.
    #[staticmethod]
    fn create(
        py: Python<'_>,
        runtime: &NativeRuntime,
        options: &Bound<'_, PyDict>,
        width: u32,
        height: u32,
    ) -> PyResult<Py<PyAny>> {
        let (runtime, options, mode) =
            runtime_and_options(runtime, ComputerBox::default_options(), options)?;
        run(py, mode, async move {
            let computer = ComputerBox::with_options(&runtime, options, (width, height))
                .await
                .map_err(Failure::from)?;
            let litebox = computer.litebox().clone();
            Ok(NativeComputerBox(Parts::new(computer, litebox, mode)))
        })
    }

    fn litebox(&self) -> PyResult<NativeBox> {
        self.0.litebox()
    }

    fn wait_until_ready(&self, py: Python<'_>, timeout: f64) -> PyResult<Py<PyAny>> {
        let timeout = duration(timeout, "timeout")?;
        desktop!(self, py, |c| c.wait_until_ready(timeout))
    }

    /// `(png_bytes, width, height)`.
    fn screenshot(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let shared = self.0.shared()?;
        run_with(
            py,
            self.0.mode,
            async move {
                let guard = shared.read().await;
                let computer = guard.as_ref().ok_or_else(|| removed("ComputerBox"))?;
                computer.screenshot().await.map_err(Failure::from)
            },
            |py, shot| (PyBytes::new(py, &shot.png), shot.width, shot.height).into_py_any(py),
        )
    }

    fn mouse_move(&self, py: Python<'_>, x: u32, y: u32) -> PyResult<Py<PyAny>> {
        desktop!(self, py, |c| c.mouse_move(x, y))
    }

    fn left_click(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        desktop!(self, py, |c| c.left_click())
    }

    fn right_click(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        desktop!(self, py, |c| c.right_click())
    }

    fn middle_click(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        desktop!(self, py, |c| c.middle_click())
    }

    fn double_click(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        desktop!(self, py, |c| c.double_click())
    }

    fn triple_click(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        desktop!(self, py, |c| c.triple_click())
    }

    fn left_click_drag(
        &self,
        py: Python<'_>,
        start_x: u32,
        start_y: u32,
        end_x: u32,
        end_y: u32,
    ) -> PyResult<Py<PyAny>> {
        desktop!(self, py, |c| c
            .left_click_drag((start_x, start_y), (end_x, end_y)))
    }

    fn cursor_position(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        desktop!(self, py, |c| c.cursor_position())
    }

    fn r#type(&self, py: Python<'_>, text: String) -> PyResult<Py<PyAny>> {
        desktop!(self, py, |c| c.r#type(&text))
    }

    fn key(&self, py: Python<'_>, keys: String) -> PyResult<Py<PyAny>> {
        desktop!(self, py, |c| c.key(&keys))
    }

    fn scroll(
        &self,
        py: Python<'_>,
        x: u32,
        y: u32,
        direction: String,
        amount: u32,
    ) -> PyResult<Py<PyAny>> {
        let direction: ScrollDirection = direction
            .parse()
            .map_err(|e: boxlite::InvalidArgument| Failure::Core(e.into()))?;
        desktop!(self, py, |c| c.scroll(x, y, direction, amount))
    }

    fn get_screen_size(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        desktop!(self, py, |c| c.get_screen_size())
    }

    fn remove(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.0.remove(py, ComputerBox::remove)
    }
}

#[pyclass(module = "boxlite._native", name = "InteractiveBox", frozen)]
pub struct NativeInteractiveBox(Parts<tokio::sync::Mutex<InteractiveBox>>);

/// Runs one terminal action on the `InteractiveBox` of `$shared`.
macro_rules! terminal {
    ($self:ident, $py:ident, |$shell:ident| $body:expr) => {{
        let shared = $self.0.shared()?;
        run($py, $self.0.mode, async move {
            let guard = shared.read().await;
            #[allow(unused_mut)]
            let mut $shell = guard
                .as_ref()
                .ok_or_else(|| removed("InteractiveBox"))?
                .lock()
                .await;
            $body.await.map_err(Failure::from)
        })
    }};
}

#[pymethods]
impl NativeInteractiveBox {
    /// A started box running `shell` on a terminal.
    #[staticmethod]
    fn create(
        py: Python<'_>,
        runtime: &NativeRuntime,
        options: &Bound<'_, PyDict>,
        shell: String,
    ) -> PyResult<Py<PyAny>> {
        let (runtime, options, mode) =
            runtime_and_options(runtime, boxlite::BoxOptions::default(), options)?;
        run(py, mode, async move {
            let interactive = InteractiveBox::with_shell(&runtime, options, BoxCommand::new(shell))
                .await
                .map_err(Failure::from)?;
            let litebox = interactive.litebox().clone();
            Ok(NativeInteractiveBox(Parts::new(
                tokio::sync::Mutex::new(interactive),
                litebox,
                mode,
            )))
        })
    }

    fn litebox(&self) -> PyResult<NativeBox> {
        self.0.litebox()
    }

    fn write(&self, py: Python<'_>, data: Vec<u8>) -> PyResult<Py<PyAny>> {
        terminal!(self, py, |shell| shell.write(&data))
    }

    /// The next terminal output as bytes; None once the shell ended and all was read.
    fn read(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let shared = self.0.shared()?;
        run_with(
            py,
            self.0.mode,
            async move {
                let guard = shared.read().await;
                let mut shell = guard
                    .as_ref()
                    .ok_or_else(|| removed("InteractiveBox"))?
                    .lock()
                    .await;
                shell.read().await.map_err(Failure::from)
            },
            |py, data| match data {
                Some(data) => Ok(PyBytes::new(py, &data).into_any().unbind()),
                None => Ok(py.None()),
            },
        )
    }

    fn read_until(&self, py: Python<'_>, pattern: String, timeout: f64) -> PyResult<Py<PyAny>> {
        let timeout = duration(timeout, "timeout")?;
        terminal!(self, py, |shell| shell.read_until(&pattern, timeout))
    }

    fn resize(&self, py: Python<'_>, rows: u16, cols: u16) -> PyResult<Py<PyAny>> {
        terminal!(self, py, |shell| shell.resize(rows, cols))
    }

    /// `(exit_code, error_message, signal, timed_out)` once the shell ended.
    fn wait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let shared = self.0.shared()?;
        run(py, self.0.mode, async move {
            let guard = shared.read().await;
            let mut shell = guard
                .as_ref()
                .ok_or_else(|| removed("InteractiveBox"))?
                .lock()
                .await;
            Ok(convert::exec_end(
                shell.wait().await.map_err(Failure::from)?,
            ))
        })
    }

    fn remove(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.0
            .remove(py, |shell: tokio::sync::Mutex<InteractiveBox>| {
                shell.into_inner().remove()
            })
    }
}
