//! The same API without async: every call blocks the calling thread until it is done. The
//! calls run on a runtime this module owns (two worker threads, started on first use), so
//! they work from any thread: a plain `main`, a thread pool, or even a thread of the caller's
//! own async runtime (which is blocked meanwhile, as any blocking call would block it).
//!
//! ```no_run
//! use boxlite::blocking::BoxliteRuntime;
//! use boxlite::{BoxCommand, BoxOptions};
//!
//! let runtime = BoxliteRuntime::with_defaults()?;
//! let b = runtime.create(BoxOptions::default(), Some("sync".to_string()))?;
//! let (stdout, _stderr, result) = b.exec(BoxCommand::new("echo").arg("hi"))?.output()?;
//! assert!(result.success());
//! b.stop()?;
//! # Ok::<(), boxlite::BoxliteError>(())
//! ```

use std::future::Future;
use std::path::Path;
use std::sync::OnceLock;

use crate::runtime::{
    BoxCommand, BoxMetrics, BoxOptions, BoxliteOptions, BoxliteResult, CopyOptions, ExecResult,
    RuntimeMetrics,
};
use crate::{BoxInfo, CopyStats};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("boxlite-blocking")
            .enable_all()
            .build()
            .expect("starting the blocking API's runtime")
    })
}

/// Runs `future` on this module's runtime and waits for it on this thread.
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .expect("the blocking API's runtime dropped a call (it panicked)")
}

/// [`crate::BoxliteRuntime`], blocking.
#[derive(Clone, Debug)]
pub struct BoxliteRuntime(crate::BoxliteRuntime);

impl From<crate::BoxliteRuntime> for BoxliteRuntime {
    fn from(runtime: crate::BoxliteRuntime) -> Self {
        Self(runtime)
    }
}

impl BoxliteRuntime {
    pub fn new(options: BoxliteOptions) -> BoxliteResult<Self> {
        crate::BoxliteRuntime::new(options).map(Self)
    }

    pub fn with_defaults() -> BoxliteResult<Self> {
        crate::BoxliteRuntime::with_defaults().map(Self)
    }

    /// The async runtime underneath, for what only it has.
    pub fn inner(&self) -> &crate::BoxliteRuntime {
        &self.0
    }

    pub fn home(&self) -> &Path {
        self.0.home()
    }

    pub fn create(&self, options: BoxOptions, name: Option<String>) -> BoxliteResult<LiteBox> {
        let rt = self.0.clone();
        block_on(async move { rt.create(options, name).await }).map(LiteBox)
    }

    pub fn get_or_create(
        &self,
        options: BoxOptions,
        name: Option<String>,
    ) -> BoxliteResult<(LiteBox, bool)> {
        let rt = self.0.clone();
        block_on(async move { rt.get_or_create(options, name).await })
            .map(|(b, created)| (LiteBox(b), created))
    }

    pub fn get(&self, id_or_name: &str) -> BoxliteResult<Option<LiteBox>> {
        let (rt, id) = (self.0.clone(), id_or_name.to_string());
        block_on(async move { rt.get(&id).await }).map(|b| b.map(LiteBox))
    }

    pub fn get_info(&self, id_or_name: &str) -> BoxliteResult<Option<BoxInfo>> {
        let (rt, id) = (self.0.clone(), id_or_name.to_string());
        block_on(async move { rt.get_info(&id).await })
    }

    pub fn list_info(&self) -> BoxliteResult<Vec<BoxInfo>> {
        let rt = self.0.clone();
        block_on(async move { rt.list_info().await })
    }

    pub fn exists(&self, id_or_name: &str) -> BoxliteResult<bool> {
        let (rt, id) = (self.0.clone(), id_or_name.to_string());
        block_on(async move { rt.exists(&id).await })
    }

    pub fn remove(&self, id_or_name: &str, force: bool) -> BoxliteResult<()> {
        let (rt, id) = (self.0.clone(), id_or_name.to_string());
        block_on(async move { rt.remove(&id, force).await })
    }

    pub fn metrics(&self) -> RuntimeMetrics {
        let rt = self.0.clone();
        block_on(async move { rt.metrics().await })
    }

    pub fn shutdown(&self, timeout: Option<i32>) -> BoxliteResult<()> {
        let rt = self.0.clone();
        block_on(async move { rt.shutdown(timeout).await })
    }

    pub fn pull_image(&self, image_ref: &str) -> BoxliteResult<()> {
        let (rt, image) = (self.0.clone(), image_ref.to_string());
        block_on(async move { rt.pull_image(&image).await })
    }

    pub fn list_images(&self) -> BoxliteResult<Vec<crate::images::ImageInfo>> {
        self.0.list_images()
    }
}

/// [`crate::LiteBox`], blocking.
#[derive(Clone, Debug)]
pub struct LiteBox(crate::LiteBox);

impl LiteBox {
    /// The async handle underneath.
    pub fn inner(&self) -> &crate::LiteBox {
        &self.0
    }

    pub fn id(&self) -> &str {
        self.0.id()
    }

    pub fn name(&self) -> Option<&str> {
        self.0.name()
    }

    pub fn info(&self) -> BoxInfo {
        self.0.info()
    }

    pub fn start(&self) -> BoxliteResult<()> {
        let b = self.0.clone();
        block_on(async move { b.start().await })
    }

    pub fn stop(&self) -> BoxliteResult<()> {
        let b = self.0.clone();
        block_on(async move { b.stop().await })
    }

    pub fn exec(&self, command: BoxCommand) -> BoxliteResult<Execution> {
        let b = self.0.clone();
        block_on(async move { b.exec(command).await }).map(Execution)
    }

    pub fn copy_into(
        &self,
        host_src: impl AsRef<Path>,
        guest_dst: &str,
        opts: CopyOptions,
    ) -> BoxliteResult<CopyStats> {
        let (b, src, dst) = (
            self.0.clone(),
            host_src.as_ref().to_path_buf(),
            guest_dst.to_string(),
        );
        block_on(async move { b.copy_into(src, dst, opts).await })
    }

    pub fn copy_out(
        &self,
        guest_src: &str,
        host_dst: impl AsRef<Path>,
        opts: CopyOptions,
    ) -> BoxliteResult<CopyStats> {
        let (b, src, dst) = (
            self.0.clone(),
            guest_src.to_string(),
            host_dst.as_ref().to_path_buf(),
        );
        block_on(async move { b.copy_out(src, dst, opts).await })
    }

    pub fn metrics(&self) -> BoxliteResult<BoxMetrics> {
        let b = self.0.clone();
        block_on(async move { b.metrics().await })
    }
}

/// [`crate::Execution`], blocking.
#[derive(Debug)]
pub struct Execution(crate::Execution);

impl Execution {
    pub fn id(&self) -> &str {
        self.0.id()
    }

    /// The next bytes of stdout; `None` once it has ended.
    pub fn read_stdout(&self) -> BoxliteResult<Option<Vec<u8>>> {
        let e = self.0.clone_handle();
        block_on(async move { e.read_stdout().await })
    }

    /// The next bytes of stderr; `None` once it has ended.
    pub fn read_stderr(&self) -> BoxliteResult<Option<Vec<u8>>> {
        let e = self.0.clone_handle();
        block_on(async move { e.read_stderr().await })
    }

    pub fn write_stdin(&self, data: &[u8]) -> BoxliteResult<()> {
        let (e, data) = (self.0.clone_handle(), data.to_vec());
        block_on(async move { e.write_stdin(&data).await })
    }

    pub fn close_stdin(&self) -> BoxliteResult<()> {
        let e = self.0.clone_handle();
        block_on(async move { e.close_stdin().await })
    }

    /// Both streams to their end, then the result.
    pub fn output(&self) -> BoxliteResult<(Vec<u8>, Vec<u8>, ExecResult)> {
        let e = self.0.clone_handle();
        block_on(async move { e.output().await })
    }

    pub fn wait(&mut self) -> BoxliteResult<ExecResult> {
        let mut e = self.0.clone_handle();
        block_on(async move { e.wait().await })
    }

    pub fn kill(&mut self) -> BoxliteResult<()> {
        let mut e = self.0.clone_handle();
        block_on(async move { e.kill().await })
    }

    pub fn signal(&self, signal: i32) -> BoxliteResult<()> {
        let e = self.0.clone_handle();
        block_on(async move { e.signal(signal).await })
    }
}

/// [`crate::SimpleBox`], blocking: a started box removed when dropped.
pub struct SimpleBox(Option<crate::SimpleBox>);

impl SimpleBox {
    pub fn new(runtime: &BoxliteRuntime, options: BoxOptions) -> BoxliteResult<Self> {
        let rt = runtime.0.clone();
        block_on(async move { crate::SimpleBox::new(&rt, options).await }).map(|b| Self(Some(b)))
    }

    pub fn id(&self) -> &str {
        self.0.as_ref().expect("present until removed").id()
    }

    /// Runs `program` with `args` and collects its output.
    pub fn exec(&self, program: &str, args: &[&str]) -> BoxliteResult<crate::ExecOutput> {
        let b = self
            .0
            .as_ref()
            .expect("present until removed")
            .litebox()
            .clone();
        let command = BoxCommand::new(program).args(args.iter().copied());
        block_on(async move { crate::simple_box::run_to_completion(&b, command).await })
    }

    /// Removes the box now, reporting what went wrong.
    pub fn remove(mut self) -> BoxliteResult<()> {
        let b = self.0.take().expect("present until removed");
        block_on(async move { b.remove().await })
    }
}

impl Drop for SimpleBox {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            // Dropped on this module's runtime, where the async box's drop removes it on a
            // thread of its own; waited for here, so that a synchronous caller finds it gone.
            let _ = block_on(async move { b.remove().await });
        }
    }
}
