//! `NativeExecution` and its streams; `index.js` wraps them as `JsExecution`,
//! `JsExecStdout`/`JsExecStderr` (`next()`: a line, or null at the end) and `JsExecStdin`.

use std::sync::{Arc, Mutex};

use boxlite::{ExecStderr, ExecStdin, ExecStdout, Execution};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::{options, JsResult};

#[napi]
pub struct NativeExecution {
    id: String,
    /// The streams are handed out once; everything else works on clones of the handle.
    handle: Mutex<Execution>,
}

impl NativeExecution {
    pub(crate) fn new(execution: Execution) -> Self {
        Self {
            id: execution.id().clone(),
            handle: Mutex::new(execution),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Execution) -> T) -> T {
        f(&mut self.handle.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

enum Stream {
    Stdout(ExecStdout),
    Stderr(ExecStderr),
}

#[napi]
impl NativeExecution {
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// The stdout stream, once (later: null).
    #[napi]
    pub fn stdout(&self) -> Option<NativeOutput> {
        self.with(|e| e.stdout())
            .map(|s| NativeOutput::new(Stream::Stdout(s)))
    }

    #[napi]
    pub fn stderr(&self) -> Option<NativeOutput> {
        self.with(|e| e.stderr())
            .map(|s| NativeOutput::new(Stream::Stderr(s)))
    }

    /// The stdin writer, once; null for a command started without stdin.
    #[napi]
    pub fn stdin(&self) -> Option<NativeStdin> {
        self.with(|e| e.stdin()).map(|s| NativeStdin {
            inner: Arc::new(tokio::sync::Mutex::new(s)),
        })
    }

    /// JSON `{exitCode, errorMessage, signal, timedOut}` once the command ended.
    #[napi]
    pub async fn wait(&self) -> Result<String> {
        let mut execution = self.with(|e| e.clone_handle());
        Ok(options::exec_end(&execution.wait().await.js()?).to_string())
    }

    #[napi]
    pub async fn kill(&self) -> Result<()> {
        let mut execution = self.with(|e| e.clone_handle());
        execution.kill().await.js()
    }

    #[napi]
    pub async fn signal(&self, signal: i32) -> Result<()> {
        let execution = self.with(|e| e.clone_handle());
        execution.signal(signal).await.js()
    }

    #[napi]
    pub async fn resize_tty(&self, rows: u32, cols: u32) -> Result<()> {
        let execution = self.with(|e| e.clone_handle());
        let size = |n: u32| u16::try_from(n).map_err(|_| crate::invalid(format!("{n} rows/cols")));
        execution.resize_tty(size(rows)?, size(cols)?).await.js()
    }
}

/// One output stream: `next()` gives its next line without the newline, null at the end.
#[napi]
pub struct NativeOutput {
    stream: Arc<tokio::sync::Mutex<Stream>>,
}

impl NativeOutput {
    fn new(stream: Stream) -> Self {
        Self {
            stream: Arc::new(tokio::sync::Mutex::new(stream)),
        }
    }
}

#[napi]
impl NativeOutput {
    #[napi]
    pub async fn next(&self) -> Result<Option<String>> {
        // One reader at a time: the lock also keeps lines in order.
        let mut stream = self.stream.lock().await;
        Ok(match &mut *stream {
            Stream::Stdout(s) => s.next_line().await,
            Stream::Stderr(s) => s.next_line().await,
        })
    }
}

#[napi]
pub struct NativeStdin {
    inner: Arc<tokio::sync::Mutex<ExecStdin>>,
}

#[napi]
impl NativeStdin {
    /// Writes bytes; waits while the box's pipe is full.
    #[napi]
    pub async fn write(&self, data: Buffer) -> Result<()> {
        let data = data.to_vec();
        self.inner.lock().await.write_all(&data).await.js()
    }

    #[napi]
    pub async fn write_string(&self, text: String) -> Result<()> {
        self.inner.lock().await.write_str(&text).await.js()
    }

    /// Sends end-of-file.
    #[napi]
    pub async fn close(&self) -> Result<()> {
        self.inner.lock().await.close().await.js()
    }
}
