//! `_native.Execution` and its streams: a command running in a box. Output is read line by
//! line as the reader asks (the box holds what is not read yet, so a slow reader slows the
//! command instead of filling memory here); stdin is written with the box's backpressure.

use std::sync::{Arc, Mutex};

use boxlite::{ExecStderr, ExecStdin, ExecStdout, Execution};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::bridge::{run, ForkGuard, Mode};
use crate::convert;
use crate::errors::Failure;

#[pyclass(module = "boxlite._native", name = "Execution", frozen)]
pub struct NativeExecution {
    id: String,
    /// The streams are handed out once; everything else works on clones of the handle.
    handle: ForkGuard<Mutex<Execution>>,
    mode: Mode,
}

impl NativeExecution {
    pub fn new(execution: Execution, mode: Mode) -> Self {
        Self {
            id: execution.id().clone(),
            handle: ForkGuard::new(Mutex::new(execution)),
            mode,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Execution) -> T) -> PyResult<T> {
        let mut execution = self.handle.get()?.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&mut execution))
    }
}

#[pymethods]
impl NativeExecution {
    #[getter]
    fn id(&self) -> String {
        self.id.clone()
    }

    /// The stdout stream, once (later calls: None).
    fn stdout(&self) -> PyResult<Option<NativeOutput>> {
        let stream = self.with(|e| e.stdout())?;
        Ok(stream.map(|s| NativeOutput::new(Stream::Stdout(s), self.mode)))
    }

    /// The stderr stream, once (later calls: None).
    fn stderr(&self) -> PyResult<Option<NativeOutput>> {
        let stream = self.with(|e| e.stderr())?;
        Ok(stream.map(|s| NativeOutput::new(Stream::Stderr(s), self.mode)))
    }

    /// The stdin writer, once; None for a command started without stdin.
    fn stdin(&self) -> PyResult<Option<NativeStdin>> {
        let stdin = self.with(|e| e.stdin())?;
        Ok(stdin.map(|s| NativeStdin {
            inner: Arc::new(tokio::sync::Mutex::new(ForkGuard::new(s))),
            mode: self.mode,
        }))
    }

    /// `(exit_code, error_message, signal, timed_out)` once the command ended.
    fn wait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut execution = self.with(|e| e.clone_handle())?;
        run(py, self.mode, async move {
            Ok(convert::exec_end(
                execution.wait().await.map_err(Failure::from)?,
            ))
        })
    }

    fn kill(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let mut execution = self.with(|e| e.clone_handle())?;
        run(py, self.mode, async move {
            execution.kill().await.map_err(Failure::from)
        })
    }

    fn signal(&self, py: Python<'_>, signal: i32) -> PyResult<Py<PyAny>> {
        let execution = self.with(|e| e.clone_handle())?;
        run(py, self.mode, async move {
            execution.signal(signal).await.map_err(Failure::from)
        })
    }

    fn resize_tty(&self, py: Python<'_>, rows: u16, cols: u16) -> PyResult<Py<PyAny>> {
        let execution = self.with(|e| e.clone_handle())?;
        run(py, self.mode, async move {
            execution
                .resize_tty(rows, cols)
                .await
                .map_err(Failure::from)
        })
    }
}

enum Stream {
    Stdout(ExecStdout),
    Stderr(ExecStderr),
}

impl Stream {
    async fn next_line(&mut self) -> Option<String> {
        match self {
            Stream::Stdout(s) => s.next_line().await,
            Stream::Stderr(s) => s.next_line().await,
        }
    }
}

/// One output stream: `next_line()` gives the next line without its newline, None at the
/// end.
#[pyclass(module = "boxlite._native", name = "Output", frozen)]
pub struct NativeOutput {
    stream: Arc<tokio::sync::Mutex<ForkGuard<Stream>>>,
    mode: Mode,
}

impl NativeOutput {
    fn new(stream: Stream, mode: Mode) -> Self {
        Self {
            stream: Arc::new(tokio::sync::Mutex::new(ForkGuard::new(stream))),
            mode,
        }
    }
}

#[pymethods]
impl NativeOutput {
    fn next_line(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let stream = self.stream.clone();
        run(py, self.mode, async move {
            let mut guard = stream.lock().await;
            // Only one reader at a time: the lock also keeps lines in order.
            Ok(guard.get_mut()?.next_line().await)
        })
    }
}

#[pyclass(module = "boxlite._native", name = "Stdin", frozen)]
pub struct NativeStdin {
    inner: Arc<tokio::sync::Mutex<ForkGuard<ExecStdin>>>,
    mode: Mode,
}

#[pymethods]
impl NativeStdin {
    /// Writes bytes (or a str as UTF-8); waits while the box's pipe is full.
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let data: Vec<u8> = match data.cast::<PyBytes>() {
            Ok(bytes) => bytes.as_bytes().to_vec(),
            Err(_) => data.extract::<String>()?.into_bytes(),
        };
        let inner = self.inner.clone();
        run(py, self.mode, async move {
            let mut guard = inner.lock().await;
            guard
                .get_mut()?
                .write_all(&data)
                .await
                .map_err(Failure::from)
        })
    }

    /// Sends end-of-file.
    fn close(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let inner = self.inner.clone();
        run(py, self.mode, async move {
            let mut guard = inner.lock().await;
            guard.get_mut()?.close().await.map_err(Failure::from)
        })
    }
}
