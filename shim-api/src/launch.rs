//! Starting a box's shim process: detached from its creator (own session, no terminal,
//! output to `shim.log`), configured through `shim.json`, and watched until it serves its
//! socket or fails, in which case its own account of the failure is returned.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::boot_failure::BootFailure;
use crate::client::ShimClient;
use crate::files;
use crate::process::ProcessId;
use crate::ShimConfig;

/// Pause between looks at a starting shim.
const POLL: Duration = Duration::from_millis(5);
/// Time a shim gets on top of its VM's ready timeout to start and to report.
const START_MARGIN: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("writing {path}: {source}")]
    Config {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the shim {shim}: {source} (set BOXLITE_SHIM or install boxlite-shim beside the program)")]
    Spawn {
        shim: PathBuf,
        source: std::io::Error,
    },
    #[error("the box did not start: {0}")]
    BootFailed(#[from] BootFailure),
    #[error("the shim neither served its socket nor exited within {0:?}; it was killed")]
    Timeout(Duration),
}

/// How the shim process is confined when it starts (the VMM and helpers inherit it).
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    /// (RLIMIT_*, limit) pairs, soft and hard, set before the shim runs.
    pub rlimits: Vec<(i32, u64)>,
    /// Close every descriptor but 0-2 before the shim runs, whatever the caller leaked.
    pub close_fds: bool,
    /// The shim's whole environment, instead of the caller's.
    pub env: Option<Vec<(String, String)>>,
}

/// A shim that is serving its box.
pub struct Launched {
    pub process: ProcessId,
    pub client: ShimClient,
    /// The engine the shim chose ("qemu", "krun").
    pub engine: String,
}

/// Writes `config` into `box_dir` and starts `shim` there, detached, without waiting for it.
pub fn spawn(
    shim: &Path,
    box_dir: &Path,
    config: &ShimConfig,
    confinement: &LaunchOptions,
) -> Result<std::process::Child, LaunchError> {
    let config_path = box_dir.join(files::CONFIG);
    let json = serde_json::to_vec_pretty(config).expect("shim config serializes");
    std::fs::write(&config_path, json).map_err(|source| LaunchError::Config {
        path: config_path,
        source,
    })?;
    for stale in [files::SOCKET, files::BOOT_ERROR, files::PID] {
        let _ = std::fs::remove_file(box_dir.join(stale));
    }
    let log_path = box_dir.join(files::LOG);
    let log = std::fs::File::create(&log_path).map_err(|source| LaunchError::Config {
        path: log_path.clone(),
        source,
    })?;
    let log2 = log.try_clone().map_err(|source| LaunchError::Config {
        path: log_path,
        source,
    })?;

    let mut command = Command::new(shim);
    command
        .arg(box_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    if let Some(env) = &confinement.env {
        command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    let rlimits = confinement.rlimits.clone();
    let close_fds = confinement.close_fds;
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (setsid, setrlimit, close_range) on data prepared before the fork. setsid
    // detaches the shim from our session and terminal so that it outlives us and no signal
    // meant for our process group reaches it.
    unsafe {
        command.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for &(resource, limit) in &rlimits {
                let value = libc::rlimit {
                    rlim_cur: limit as libc::rlim_t,
                    rlim_max: limit as libc::rlim_t,
                };
                if libc::setrlimit(resource as _, &value) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // Descriptors the embedding program left without CLOEXEC: closed on exec. (std
            // sets 0-2 up for the child after this closure only through dup2, which clears
            // the flag on them.)
            if close_fds
                && libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().map_err(|source| LaunchError::Spawn {
        shim: shim.to_path_buf(),
        source,
    })
}

/// Starts `shim` for the box in `box_dir` and waits until the box is ready.
pub async fn launch(
    shim: &Path,
    box_dir: &Path,
    config: &ShimConfig,
    confinement: &LaunchOptions,
) -> Result<Launched, LaunchError> {
    let mut child = spawn(shim, box_dir, config, confinement)?;
    let pid = child.id();
    let process = ProcessId::of(pid);
    // Reap the shim whenever it ends, so it never lingers as a zombie of ours.
    let (exited_tx, mut exited) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = exited_tx.send(child.wait().ok());
    });

    let deadline = tokio::time::Instant::now() + config.ready_timeout() + START_MARGIN;
    loop {
        if let Ok(client) = ShimClient::connect(box_dir).await {
            if let Ok(state) = client.state().await {
                let process = process.ok_or_else(|| BootFailure::Setup {
                    message: "the shim vanished while it started".into(),
                })?;
                return Ok(Launched {
                    process,
                    client,
                    engine: state.engine,
                });
            }
        }
        if let Ok(status) = exited.try_recv() {
            let failure = BootFailure::read(box_dir).unwrap_or_else(|| BootFailure::Setup {
                message: format!(
                    "the shim exited ({status:?}) without saying why; see {}",
                    box_dir.join(files::LOG).display()
                ),
            });
            return Err(failure.into());
        }
        if tokio::time::Instant::now() > deadline {
            // SAFETY: kill only sends a signal; the pid is our unreaped child, so it is ours.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            return Err(LaunchError::Timeout(config.ready_timeout() + START_MARGIN));
        }
        tokio::time::sleep(POLL).await;
    }
}
