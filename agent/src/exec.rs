//! Processes started by the agent: spawning, output buffering, stdin, exit collection.
//!
//! One reaper owns `waitpid`: as PID 1 the agent inherits every orphan of the guest, so it
//! must reap them all, and a per-child wait (std's or tokio's) would race with it. Children are
//! registered under the same lock the reaper holds while reaping, so no exit is ever missed.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch, Mutex as AsyncMutex};

/// Bytes read from a pipe in one go, and so the size of one buffered chunk.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks buffered per output stream before the agent stops reading the pipe (4 MiB):
/// past this, the command blocks on write until the caller reads.
const CHUNKS_BUFFERED: usize = 64;
/// PATH given to commands whose environment names none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec id {0:?} is already in use; pick another id")]
    DuplicateId(String),
    #[error("no exec with id {0:?} (it never started, or it ended and was fully read)")]
    UnknownId(String),
    #[error("an exec needs at least a program name in args")]
    EmptyArgs,
    #[error("an argument or environment entry contains a NUL byte")]
    NulByte,
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("working directory {0:?} does not exist in the box (or is not a directory)")]
    WorkingDir(String),
    #[error("exec {0:?} was started without stdin; pass stdin = true to write to it")]
    NoStdin(String),
    #[error("stdin of exec {0:?} is already closed")]
    StdinClosed(String),
    #[error("writing stdin of exec {id:?}: {source}")]
    StdinWrite { id: String, source: std::io::Error },
    #[error(transparent)]
    User(#[from] crate::users::UserError),
    #[error("exec {0:?} has no terminal; start it with tty = true to resize one")]
    NoTty(String),
    #[error("creating a pseudo-terminal: {0}")]
    Pty(nix::Error),
    #[error("signal {0} is not a valid signal number")]
    BadSignal(i32),
    #[error("sending a signal to exec {id:?}: {source}")]
    Kill { id: String, source: nix::Error },
    #[error("exec {id:?}: cannot acknowledge output up to offset {offset}; only {sent_end} bytes were sent")]
    BadOffset {
        id: String,
        offset: u64,
        sent_end: u64,
    },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitState {
    Exited(i32),
    Signaled(i32),
}

/// What a caller asks to run.
pub struct ExecSpec {
    pub id: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub stdin: bool,
    pub user: String,
    /// Run on a pseudo-terminal.
    pub tty: bool,
    /// SIGTERM after this long, SIGKILL [`KILL_GRACE`] later.
    pub timeout: Option<std::time::Duration>,
    /// Run in the agent's own root as the agent's user (the copy helper, which confines
    /// itself), not chrooted into the box.
    pub outside_root: bool,
}

/// Time between the SIGTERM of a timed-out exec and its SIGKILL.
pub const KILL_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Which output stream of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// The caller's view of one output stream: chunks the pump task has read, plus what is left of
/// a chunk a smaller read did not take.
struct OutputReader {
    chunks: mpsc::Receiver<Vec<u8>>,
    leftover: Vec<u8>,
    /// Bytes the last response carried, kept until a reader acknowledges them.
    unacked: Vec<u8>,
    /// Stream offset of `unacked`'s first byte: everything before it was acknowledged.
    acked: u64,
    eof_delivered: bool,
}

impl OutputReader {
    fn new(chunks: mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            chunks,
            leftover: Vec::new(),
            unacked: Vec::new(),
            acked: 0,
            eof_delivered: false,
        }
    }

    /// Drops the unacknowledged bytes before `offset`. An offset at or before what is already
    /// acknowledged is a slower reader's and changes nothing.
    fn acknowledge(&mut self, id: &str, offset: u64) -> Result<(), ExecError> {
        let sent_end = self.acked + self.unacked.len() as u64;
        if offset > sent_end {
            return Err(ExecError::BadOffset {
                id: id.to_string(),
                offset,
                sent_end,
            });
        }
        if offset > self.acked {
            self.unacked.drain(..(offset - self.acked) as usize);
            self.acked = offset;
        }
        Ok(())
    }
}

struct Exec {
    pid: Pid,
    stdin: AsyncMutex<Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>>>,
    /// The terminal's master side, for resizing; `None` without a tty.
    tty: Option<OwnedFd>,
    stdin_requested: bool,
    stdout: AsyncMutex<OutputReader>,
    stderr: AsyncMutex<OutputReader>,
    exit: watch::Receiver<Option<ExitState>>,
    exit_delivered: Mutex<bool>,
    timed_out: std::sync::atomic::AtomicBool,
}

/// Every live exec, and the reaper's table of children waiting for their exit status.
pub struct ExecTable {
    root: PathBuf,
    execs: Mutex<HashMap<String, Arc<Exec>>>,
    children: Mutex<HashMap<Pid, watch::Sender<Option<ExitState>>>>,
}

impl ExecTable {
    /// Commands run with `root` as their root directory ("/" runs them in the agent's own root).
    pub fn new(root: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            root,
            execs: Mutex::new(HashMap::new()),
            children: Mutex::new(HashMap::new()),
        })
    }

    /// Starts reaping children on SIGCHLD. Must run before the first spawn.
    pub fn start_reaper(self: &Arc<Self>) -> std::io::Result<()> {
        let mut sigchld = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())?;
        let table = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                table.reap();
                if sigchld.recv().await.is_none() {
                    return;
                }
            }
        });
        Ok(())
    }

    fn reap(&self) {
        let mut children = self.children.lock().expect("children lock poisoned");
        loop {
            let (pid, state) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitState::Exited(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitState::Signaled(sig as i32)),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            if let Some(tx) = children.remove(&pid) {
                let _ = tx.send(Some(state));
            }
        }
    }

    /// Starts the agent's copy helper (`boxlite-agent --copy-in|--copy-out ROOT PATH`) as exec
    /// `id`: a tar stream on its stdin is unpacked at `path` in the box, or `path` is packed
    /// to its stdout.
    pub fn spawn_copy(
        self: &Arc<Self>,
        id: String,
        into_box: bool,
        path: &str,
    ) -> Result<u32, ExecError> {
        let mode = if into_box { "--copy-in" } else { "--copy-out" };
        self.spawn(ExecSpec {
            id,
            args: vec![
                "/proc/self/exe".to_string(),
                mode.to_string(),
                self.root.display().to_string(),
                path.to_string(),
            ],
            env: Vec::new(),
            working_dir: "/".to_string(),
            stdin: into_box,
            user: String::new(),
            tty: false,
            timeout: None,
            outside_root: true,
        })
    }

    pub fn spawn(self: &Arc<Self>, spec: ExecSpec) -> Result<u32, ExecError> {
        let program = spec.args.first().ok_or(ExecError::EmptyArgs)?.clone();
        let mut execs = self.execs.lock().expect("execs lock poisoned");
        if execs.contains_key(&spec.id) {
            return Err(ExecError::DuplicateId(spec.id));
        }

        let root = CString::new(self.root.as_os_str().as_encoded_bytes())
            .map_err(|_| ExecError::NulByte)?;
        let workdir = if spec.working_dir.is_empty() {
            "/"
        } else {
            &spec.working_dir
        };
        // Checked here so that the error names the directory; in the child a failed chdir
        // would read like a missing program.
        if !spec.outside_root && !self.root.join(workdir.trim_start_matches('/')).is_dir() {
            return Err(ExecError::WorkingDir(workdir.to_string()));
        }
        let workdir = CString::new(workdir).map_err(|_| ExecError::NulByte)?;
        let chroot_needed = !spec.outside_root && self.root != Path::new("/");
        let identity = crate::users::resolve(&self.root, &spec.user)?;
        // SAFETY: geteuid/getegid only read the process's credentials.
        let switch_user = !spec.outside_root
            && (identity.uid != unsafe { libc::geteuid() }
                || identity.gid != unsafe { libc::getegid() });
        let (uid, gid) = (identity.uid, identity.gid);

        let pty = if spec.tty {
            Some(nix::pty::openpty(None, None).map_err(ExecError::Pty)?)
        } else {
            None
        };
        let spawn_err = |source: std::io::Error| ExecError::Spawn {
            program: program.clone(),
            source,
        };
        let mut command = Command::new(&program);
        command.args(&spec.args[1..]).env_clear();
        match &pty {
            Some(pty) => {
                let slave = || pty.slave.try_clone().map(Stdio::from).map_err(spawn_err);
                command.stdin(slave()?).stdout(slave()?).stderr(slave()?);
            }
            None => {
                command
                    .stdin(if spec.stdin {
                        Stdio::piped()
                    } else {
                        Stdio::null()
                    })
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
        }
        let with_tty = spec.tty;
        if !spec.env.iter().any(|e| e.starts_with("PATH=")) {
            command.env("PATH", DEFAULT_PATH);
        }
        if !spec.env.iter().any(|e| e.starts_with("HOME=")) {
            command.env("HOME", &identity.home);
        }
        for entry in &spec.env {
            match entry.split_once('=') {
                Some((key, value)) => command.env(key, value),
                None => command.env(entry, ""),
            };
        }
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (chroot, setgroups, setgid, setuid, chdir, setsid) on
        // data prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                if chroot_needed && libc::chroot(root.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if switch_user
                    && (libc::setgroups(1, &gid) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::chdir(workdir.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Own session: signals sent to the agent's group never reach commands, and a
                // command's children can be found by session later.
                libc::setsid();
                // The terminal on fds 0-2 becomes the session's controlling terminal.
                if with_tty && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }

        // The reaper holds this lock while it calls waitpid, so the child cannot be reaped
        // (and its status lost) before it is registered.
        let mut children = self.children.lock().expect("children lock poisoned");
        let mut child = command.spawn().map_err(|source| ExecError::Spawn {
            program: program.clone(),
            source,
        })?;
        let pid = Pid::from_raw(child.id() as i32);
        let (exit_tx, exit_rx) = watch::channel(None);
        children.insert(pid, exit_tx);
        drop(children);
        // Our copies of the terminal's slave side must go, or its output never ends.
        drop(command);

        type Writer = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;
        let (stdin, stdout, stderr, tty): (
            Option<Writer>,
            OutputReader,
            OutputReader,
            Option<OwnedFd>,
        ) = match pty {
            Some(pty) => {
                drop(pty.slave);
                // One descriptor of the master each for writing and reading, one kept for
                // resizing.
                let open_master = || {
                    pty.master
                        .try_clone()
                        .map(std::fs::File::from)
                        .and_then(crate::fdio::FdStream::new)
                        .map_err(spawn_err)
                };
                let input: Writer = Box::new(open_master()?);
                let output = pump(open_master()?);
                (Some(input), output, finished_stream(), Some(pty.master))
            }
            None => {
                let stdin = match child.stdin.take() {
                    Some(s) => Some(Box::new(
                        pipe::Sender::from_owned_fd(s.into()).map_err(spawn_err)?,
                    ) as Writer),
                    None => None,
                };
                let out = pipe::Receiver::from_owned_fd(
                    child.stdout.take().expect("stdout was piped").into(),
                );
                let err = pipe::Receiver::from_owned_fd(
                    child.stderr.take().expect("stderr was piped").into(),
                );
                (
                    stdin,
                    pump(out.map_err(spawn_err)?),
                    pump(err.map_err(spawn_err)?),
                    None,
                )
            }
        };
        let exec = Arc::new(Exec {
            pid,
            stdin: AsyncMutex::new(stdin),
            tty,
            stdin_requested: spec.stdin || spec.tty,
            stdout: AsyncMutex::new(stdout),
            stderr: AsyncMutex::new(stderr),
            exit: exit_rx,
            exit_delivered: Mutex::new(false),
            timed_out: std::sync::atomic::AtomicBool::new(false),
        });
        if let Some(timeout) = spec.timeout {
            tokio::spawn(enforce_timeout(Arc::clone(&exec), timeout));
        }
        execs.insert(spec.id, exec);
        Ok(pid.as_raw() as u32)
    }

    fn get(&self, id: &str) -> Result<Arc<Exec>, ExecError> {
        self.execs
            .lock()
            .expect("execs lock poisoned")
            .get(id)
            .cloned()
            .ok_or_else(|| ExecError::UnknownId(id.to_string()))
    }

    /// Up to `max` bytes of one stream from its first unacknowledged byte, waiting until there
    /// is something to return; first acknowledges (drops) the bytes before offset `ack`.
    /// Returns the offset of the first byte, the bytes, and whether the stream has ended (then
    /// with no bytes).
    pub async fn read(
        &self,
        id: &str,
        stream: Stream,
        max: usize,
        ack: u64,
    ) -> Result<(u64, Vec<u8>, bool), ExecError> {
        let exec = self.get(id)?;
        let mut reader = match stream {
            Stream::Stdout => exec.stdout.lock().await,
            Stream::Stderr => exec.stderr.lock().await,
        };
        reader.acknowledge(id, ack)?;
        let max = max.max(1);
        if !reader.unacked.is_empty() {
            // The previous response was not acknowledged: its reader may be gone. Send again.
            let n = reader.unacked.len().min(max);
            return Ok((reader.acked, reader.unacked[..n].to_vec(), false));
        }
        let mut data = std::mem::take(&mut reader.leftover);
        if data.is_empty() {
            match reader.chunks.recv().await {
                Some(chunk) => data = chunk,
                None => {
                    reader.eof_delivered = true;
                    let end = reader.acked;
                    drop(reader);
                    self.release_if_done(id, &exec).await;
                    return Ok((end, Vec::new(), true));
                }
            }
        }
        while data.len() < max {
            match reader.chunks.try_recv() {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(_) => break,
            }
        }
        if data.len() > max {
            reader.leftover = data.split_off(max);
        }
        reader.unacked.clone_from(&data);
        Ok((reader.acked, data, false))
    }

    pub async fn write_stdin(&self, id: &str, data: &[u8], close: bool) -> Result<(), ExecError> {
        let exec = self.get(id)?;
        if !exec.stdin_requested {
            return Err(ExecError::NoStdin(id.to_string()));
        }
        let mut stdin = exec.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err(ExecError::StdinClosed(id.to_string()));
        };
        if !data.is_empty() {
            if let Err(source) = pipe.write_all(data).await {
                *stdin = None;
                return Err(ExecError::StdinWrite {
                    id: id.to_string(),
                    source,
                });
            }
        }
        if close {
            // A terminal is not closed but told: its EOF character ends the input.
            if exec.tty.is_some() {
                let _ = pipe.write_all(&[0x04]).await;
            }
            *stdin = None;
        }
        Ok(())
    }

    /// Sets the window size of an exec's terminal.
    pub fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), ExecError> {
        let exec = self.get(id)?;
        let Some(master) = &exec.tty else {
            return Err(ExecError::NoTty(id.to_string()));
        };
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
            return Err(ExecError::Pty(nix::Error::last()));
        }
        Ok(())
    }

    /// How the exec ended, and whether its timeout ended it.
    pub async fn wait(&self, id: &str) -> Result<(ExitState, bool), ExecError> {
        let exec = self.get(id)?;
        let mut exit = exec.exit.clone();
        let state = exit
            .wait_for(Option::is_some)
            .await
            .map(|s| s.expect("waited for Some"))
            .map_err(|_| ExecError::UnknownId(id.to_string()))?;
        *exec.exit_delivered.lock().expect("exit lock poisoned") = true;
        self.release_if_done(id, &exec).await;
        Ok((
            state,
            exec.timed_out.load(std::sync::atomic::Ordering::SeqCst),
        ))
    }

    pub fn signal(&self, id: &str, signal: i32) -> Result<(), ExecError> {
        let exec = self.get(id)?;
        let sig = Signal::try_from(signal).map_err(|_| ExecError::BadSignal(signal))?;
        if exec.exit.borrow().is_some() {
            return Ok(());
        }
        kill(exec.pid, sig).map_err(|source| ExecError::Kill {
            id: id.to_string(),
            source,
        })
    }

    /// Forgets an exec once its exit and both streams' ends have been handed out.
    async fn release_if_done(&self, id: &str, exec: &Arc<Exec>) {
        if !*exec.exit_delivered.lock().expect("exit lock poisoned") {
            return;
        }
        let Ok(out) = exec.stdout.try_lock() else {
            return;
        };
        let Ok(err) = exec.stderr.try_lock() else {
            return;
        };
        if out.eof_delivered && err.eof_delivered {
            self.execs.lock().expect("execs lock poisoned").remove(id);
        }
    }

    /// Kills every process this table started (used on shutdown).
    pub fn kill_all(&self) {
        let children = self.children.lock().expect("children lock poisoned");
        for pid in children.keys() {
            let _ = kill(*pid, Signal::SIGKILL);
        }
    }
}

/// SIGTERM once `timeout` has passed, SIGKILL after [`KILL_GRACE`] more; nothing if the
/// process ends first.
async fn enforce_timeout(exec: Arc<Exec>, timeout: std::time::Duration) {
    let mut exit = exec.exit.clone();
    let ended = |exit: &mut watch::Receiver<Option<ExitState>>| {
        let mut exit = exit.clone();
        async move {
            let _ = exit.wait_for(Option::is_some).await;
        }
    };
    if tokio::time::timeout(timeout, ended(&mut exit))
        .await
        .is_ok()
    {
        return;
    }
    exec.timed_out
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = kill(exec.pid, Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, ended(&mut exit))
        .await
        .is_ok()
    {
        return;
    }
    let _ = kill(exec.pid, Signal::SIGKILL);
}

/// A stream that has already ended (stderr of a terminal exec).
fn finished_stream() -> OutputReader {
    let (_, rx) = mpsc::channel(1);
    OutputReader::new(rx)
}

/// Reads a pipe or terminal into a bounded channel until EOF (a terminal reports EIO once
/// its last writer is gone, which also ends it); the channel's bound is the backpressure.
fn pump(mut pipe: impl tokio::io::AsyncRead + Send + Unpin + 'static) -> OutputReader {
    let (tx, rx) = mpsc::channel(CHUNKS_BUFFERED);
    tokio::spawn(async move {
        loop {
            let mut chunk = vec![0u8; CHUNK_BYTES];
            match pipe.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    OutputReader::new(rx)
}
