//! The krun engine: libkrun runs the VM inside the shim process, on a thread of its own
//! (`krun_start_enter` never returns while the VM runs), beside the shim's ttrpc server. The
//! agent is reached over vsock through a unix socket libkrun listens on; the console goes to
//! the box's console log; the network is passt's; volumes are libkrun's virtio-fs. Needs
//! hardware KVM.
//!
//! The VM's life is the process's: when the guest powers off, libkrun `_exit`s the shim, and
//! the only way to kill the VM is to end the process (see [`KrunVm::kill`]).

mod ffi;

use std::time::Duration;

use async_trait::async_trait;
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::krun_config::KrunConfig;
use super::{published_exit, Engine, EngineError, EngineKind, RunningVm, VmExit, VmSpec};

/// How long a killed VM's process may linger before it is ended from a watchdog thread.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// The libkrun engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct KrunEngine;

fn failed(err: ffi::KrunError) -> EngineError {
    EngineError::Failed {
        engine: EngineKind::Krun,
        message: err.to_string(),
    }
}

fn configure(config: &KrunConfig) -> Result<ffi::Context, ffi::KrunError> {
    let ctx = ffi::Context::new()?;
    ctx.set_vm_config(config.cpus, config.memory_mib)?;
    ctx.set_kernel(
        &config.kernel,
        config.kernel_format,
        &config.initramfs,
        &config.cmdline,
    )?;
    for disk in &config.disks {
        ctx.add_disk(&disk.block_id, &disk.path, disk.format, disk.read_only)?;
    }
    ctx.use_plain_vsock()?;
    ctx.listen_vsock_port(config.agent_port, &config.agent_socket)?;
    for (tag, path, read_only) in &config.shared_dirs {
        ctx.add_virtiofs(tag, path, *read_only)?;
    }
    ctx.set_console_output(&config.console_pipe)?;
    Ok(ctx)
}

#[async_trait]
impl Engine for KrunEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Krun
    }

    async fn start(&self, spec: &VmSpec) -> Result<Box<dyn RunningVm>, EngineError> {
        if spec.start != super::VmStart::Boot {
            return Err(super::no_saved_state(
                EngineKind::Krun,
                "start a VM from saved state",
            ));
        }
        let config = KrunConfig::from_spec(spec)?;
        std::fs::create_dir_all(&spec.run_dir).map_err(|source| EngineError::Io {
            path: spec.run_dir.clone(),
            source,
        })?;
        // libkrun refuses to listen on a path that exists.
        let _ = std::fs::remove_file(&config.agent_socket);
        let ctx = configure(&config).map_err(failed)?;
        // The network: passt on the other end of a socket pair (it ends with the VM: it dies
        // with this process, and quits once libkrun's end closes).
        let passt = match &spec.network {
            Some(network) => {
                let (passt, fd) = super::passt::start(network, &spec.run_dir)?;
                ctx.set_passt_fd(fd).map_err(failed)?;
                Some(passt)
            }
            None => None,
        };

        let (exit_tx, exit_rx) = watch::channel(None);
        std::thread::Builder::new()
            .name("krun-vmm".into())
            .spawn(move || {
                let err = ctx.start_enter();
                tracing::error!("libkrun: {err}");
                let _ = exit_tx.send(Some(VmExit::Exited(-1)));
            })
            .map_err(|source| EngineError::Spawn {
                program: "the libkrun VMM thread".into(),
                source,
                hint: "the shim is out of threads or memory",
            })?;
        Ok(Box::new(KrunVm {
            agent_socket: config.agent_socket,
            exit: exit_rx,
            passt,
        }))
    }
}

/// A VM running on a thread of this process.
pub struct KrunVm {
    agent_socket: std::path::PathBuf,
    exit: watch::Receiver<Option<VmExit>>,
    passt: Option<tokio::process::Child>,
}

#[async_trait]
impl RunningVm for KrunVm {
    fn kind(&self) -> EngineKind {
        EngineKind::Krun
    }

    async fn connect_agent(&self) -> std::io::Result<UnixStream> {
        UnixStream::connect(&self.agent_socket).await
    }

    /// Resolves only if libkrun gave up before the VM ran: a VM that ran ends the process.
    async fn wait_exit(&self) -> VmExit {
        published_exit(&self.exit).await
    }

    /// The VM can only end with this process. The shim's callers of `kill` return and exit
    /// right after (writing their reason first); a watchdog makes sure the process ends even
    /// if they do not.
    async fn kill(&self) -> VmExit {
        let _ = std::thread::Builder::new()
            .name("krun-kill".into())
            .spawn(|| {
                std::thread::sleep(KILL_GRACE);
                eprintln!("boxlite-shim: the VM was killed; ending the process that runs it");
                std::process::exit(137);
            });
        VmExit::Signaled(libc::SIGKILL)
    }

    fn pids(&self) -> Vec<u32> {
        std::iter::once(std::process::id())
            .chain(self.passt.as_ref().and_then(|p| p.id()))
            .collect()
    }
}
