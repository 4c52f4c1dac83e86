//! One process containerd asked for: a container's init or an exec. Its stdio are the FIFOs
//! (or files) containerd handed over; in a box it is one `Execution`, whose output is pumped
//! into those FIFOs and whose end is the process's exit.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use boxlite::{BoxCommand, Execution, LiteBox};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::error::ShimError;
use crate::spec;

/// How long an output FIFO may stay without a reader before the process is refused.
const OUTPUT_OPEN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);
/// How long CloseIO waits for the process's stdin to drain before closing it regardless.
const CLOSE_IO_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// How a process ended, as containerd records it: the exit code, 128 + signal for a kill.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub status: u32,
    pub at: SystemTime,
}

/// The stdio paths containerd gave for a process ("" = not wanted).
#[derive(Debug, Clone, Default)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Created,
    Running,
    Exited,
}

pub struct Process {
    pub exec_id: String,
    pub stdio: Stdio,
    spec: spec::Process,
    /// The running command, for signals, resizes and stdin.
    execution: Mutex<Option<Execution>>,
    exit: watch::Sender<Option<Exit>>,
    started: std::sync::atomic::AtomicBool,
}

impl Process {
    pub fn new(exec_id: &str, stdio: Stdio, spec: spec::Process) -> Arc<Self> {
        Arc::new(Self {
            exec_id: exec_id.to_string(),
            stdio,
            spec,
            execution: Mutex::new(None),
            exit: watch::channel(None).0,
            started: Default::default(),
        })
    }

    pub fn phase(&self) -> Phase {
        if self.exit.borrow().is_some() {
            Phase::Exited
        } else if self.started.load(std::sync::atomic::Ordering::SeqCst) {
            Phase::Running
        } else {
            Phase::Created
        }
    }

    pub fn exit(&self) -> Option<Exit> {
        *self.exit.borrow()
    }

    /// Waits for the end; at once when it has ended.
    pub async fn wait(&self) -> Exit {
        let mut exit = self.exit.subscribe();
        let ended = exit.wait_for(Option::is_some).await;
        // The sender lives in `self`, so the channel cannot close while we wait.
        ended.map(|e| e.expect("waited for Some")).unwrap_or(Exit {
            status: 255,
            at: SystemTime::now(),
        })
    }

    /// Records the end (the first one wins: a kill before start, then a late exit).
    pub fn set_exited(&self, status: u32) -> Option<Exit> {
        let exit = Exit {
            status,
            at: SystemTime::now(),
        };
        let mut first = false;
        self.exit.send_if_modified(|current| {
            first = current.is_none();
            if first {
                *current = Some(exit);
            }
            first
        });
        first.then_some(exit)
    }

    /// Marks a process with no command behind it (a pod sandbox) as running.
    pub fn mark_started(&self) -> Result<(), ShimError> {
        if self.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(ShimError::FailedPrecondition(format!(
                "process {:?} was already started",
                self.exec_id
            )));
        }
        Ok(())
    }

    /// Runs the process in `vm`, its output pumped to its stdio. Returns when it runs; the
    /// returned future resolves with its exit status once it ended and its output is out.
    pub async fn start_in(
        self: &Arc<Self>,
        vm: &LiteBox,
    ) -> Result<impl std::future::Future<Output = u32> + Send + 'static, ShimError> {
        self.mark_started()?;
        let (program, args) = self
            .spec
            .args
            .split_first()
            .ok_or_else(|| ShimError::InvalidSpec("process.args is empty".into()))?;
        // The output files first: a process whose output has nowhere to go is not started.
        let stdout = open_output(&self.stdio.stdout).await?;
        let stderr = open_output(&self.stdio.stderr).await?;
        let mut command = BoxCommand::new(program)
            .args(args.iter().cloned())
            .user(format!("{}:{}", self.spec.user.uid, self.spec.user.gid))
            .tty(self.stdio.terminal)
            .stdin(!self.stdio.stdin.is_empty());
        if !self.spec.cwd.is_empty() {
            command = command.working_dir(&self.spec.cwd);
        }
        for (key, value) in self.spec.env_pairs() {
            command = command.env(key, value);
        }
        let mut execution = vm.exec(command).await?;
        let pumps = [
            pump_output(execution.stdout().map(|s| s.bytes()), stdout),
            pump_output(execution.stderr().map(|s| s.bytes()), stderr),
        ];
        if let Some(stdin) = execution.stdin() {
            pump_stdin(self.stdio.stdin.clone(), stdin);
        }
        *self.execution.lock().expect("poisoned") = Some(execution.clone_handle());
        Ok(async move {
            let result = execution.wait().await;
            for pump in pumps {
                let _ = pump.await;
            }
            match result {
                Ok(r) if r.signal != 0 => 128 + r.signal as u32,
                Ok(r) => r.exit_code as u32,
                Err(err) => {
                    log::warn!("waiting for the process failed: {err}");
                    255
                }
            }
        })
    }

    fn execution(&self) -> Result<Execution, ShimError> {
        self.execution
            .lock()
            .expect("poisoned")
            .as_ref()
            .map(Execution::clone_handle)
            .ok_or_else(|| {
                ShimError::FailedPrecondition(format!("process {:?} is not running", self.exec_id))
            })
    }

    pub async fn signal(&self, signal: u32) -> Result<(), ShimError> {
        Ok(self.execution()?.signal(signal as i32).await?)
    }

    pub async fn resize(&self, width: u32, height: u32) -> Result<(), ShimError> {
        let clamp = |v: u32| v.min(u16::MAX as u32) as u16;
        Ok(self
            .execution()?
            .resize_tty(clamp(height), clamp(width))
            .await?)
    }

    /// containerd closed its end of stdin: what it wrote still reaches the process (the pump
    /// ends at the FIFO's end of file); a pump that does not end soon is cut short.
    pub fn close_stdin(&self) -> Result<(), ShimError> {
        let execution = self.execution()?;
        tokio::spawn(async move {
            tokio::time::sleep(CLOSE_IO_GRACE).await;
            let _ = execution.close_stdin().await;
        });
        Ok(())
    }
}

type Output = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

/// A process's stdout or stderr: a FIFO that containerd (or ctr) already reads, or a
/// `file://` log; `None` when not wanted.
async fn open_output(path: &str) -> Result<Option<Output>, ShimError> {
    if path.is_empty() {
        return Ok(None);
    }
    let io_err = |source| ShimError::Io {
        what: format!("opening the output {path:?}"),
        source,
    };
    if let Some(file) = path.strip_prefix("file://") {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .await
            .map_err(io_err)?;
        return Ok(Some(Box::new(file)));
    }
    if path.contains("://") {
        return Err(ShimError::Unimplemented(format!(
            "output URI {path:?}: only FIFO paths and file:// logs are supported"
        )));
    }
    if !Path::new(path).is_absolute() {
        return Err(ShimError::InvalidArgument(format!(
            "output path {path:?} is not absolute"
        )));
    }
    // containerd's side opens its reading end asynchronously (ctr returns from creating the
    // FIFOs before its open(2) ran): until it has, opening the writing end fails with ENXIO.
    let deadline = tokio::time::Instant::now() + OUTPUT_OPEN_DEADLINE;
    loop {
        match tokio::net::unix::pipe::OpenOptions::new().open_sender(path) {
            Ok(fifo) => return Ok(Some(Box::new(fifo))),
            Err(err)
                if err.raw_os_error() == Some(libc::ENXIO)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            Err(err) => return Err(io_err(err)),
        }
    }
}

/// Copies a stream of output chunks into `to` until either ends; closing `to` at the end is
/// what tells the reader (ctr, CRI's log) that the output is complete.
fn pump_output(
    from: Option<futures::stream::BoxStream<'static, boxlite::BoxliteResult<Vec<u8>>>>,
    to: Option<Output>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut from) = from else { return };
        let mut to = to;
        while let Some(chunk) = from.next().await {
            let Ok(chunk) = chunk else { break };
            if let Some(out) = to.as_mut() {
                // A reader gone (EPIPE) stops the copy, but the stream is still drained so
                // the command is never blocked on output nobody reads.
                if out.write_all(&chunk).await.is_err() {
                    to = None;
                }
            }
        }
        if let Some(mut out) = to {
            let _ = out.shutdown().await;
        }
    })
}

/// Feeds the stdin FIFO to the process until its writer closes it. The FIFO is opened
/// read-only and blocking, on a thread: the open waits for containerd's writer, so an early
/// read cannot mistake "no writer yet" for the end of input.
fn pump_stdin(path: String, mut stdin: boxlite::ExecStdin) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        use std::io::Read;
        let Ok(mut fifo) = std::fs::File::open(&path) else {
            return;
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match fifo.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if stdin.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = stdin.close().await;
    });
}
