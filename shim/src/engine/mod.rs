//! VMM engines behind one trait. An engine turns a [`VmSpec`] into a running VM and gives a
//! byte stream to the guest agent's vsock port; everything above it is engine-agnostic.

#[cfg(feature = "krun")]
pub mod krun;
pub mod krun_config;
pub mod netfilter;
pub mod passt;
pub mod qemu;
pub mod qmp;
pub mod relay;
pub mod virtiofs;

pub use boxlite_shim_api::spec::*;

use async_trait::async_trait;
use tokio::net::UnixStream;

/// How the VMM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmExit {
    Exited(i32),
    Signaled(i32),
}

impl std::fmt::Display for VmExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VmExit::Exited(code) => write!(f, "exit code {code}"),
            VmExit::Signaled(sig) => write!(f, "killed by signal {sig}"),
        }
    }
}

impl From<std::process::ExitStatus> for VmExit {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => VmExit::Exited(code),
            (None, Some(sig)) => VmExit::Signaled(sig),
            (None, None) => VmExit::Exited(-1),
        }
    }
}

const KRUN_NOT_BUILT_IN: &str =
    "this boxlite-shim was built without it; build with `--features krun`";

/// How a VM ended, once its supervisor publishes it; a supervisor gone without publishing
/// counts as a crash.
pub(crate) async fn published_exit(exit: &tokio::sync::watch::Receiver<Option<VmExit>>) -> VmExit {
    let mut exit = exit.clone();
    let published = exit
        .wait_for(Option::is_some)
        .await
        .map(|state| state.clone());
    published.ok().flatten().unwrap_or(VmExit::Exited(-1))
}

/// In a child between fork and exec: makes `fd` available as `target`, open across exec.
/// Only async-signal-safe calls (dup2, fcntl).
pub(crate) fn inherit_fd(
    fd: std::os::fd::RawFd,
    target: std::os::fd::RawFd,
) -> std::io::Result<()> {
    // SAFETY: dup2 and fcntl on descriptors of this process; no memory is touched.
    let rc = unsafe {
        if fd == target {
            // dup2 onto itself would keep close-on-exec set.
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, target)
        }
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this build of the shim contains the engine.
pub fn built_in(kind: EngineKind) -> bool {
    match kind {
        EngineKind::Qemu => true,
        EngineKind::Krun => cfg!(feature = "krun"),
    }
}

/// The engine for a VM: the one asked for if it can run here, else an error saying why;
/// without a request, krun where it is built in and the host has hardware virtualisation,
/// QEMU otherwise.
pub fn select(
    requested: Option<EngineKind>,
    hardware_virtualization: bool,
) -> Result<EngineKind, EngineError> {
    match requested {
        None if built_in(EngineKind::Krun) && hardware_virtualization => Ok(EngineKind::Krun),
        None | Some(EngineKind::Qemu) => Ok(EngineKind::Qemu),
        Some(EngineKind::Krun) if !built_in(EngineKind::Krun) => Err(EngineError::Unavailable {
            engine: EngineKind::Krun,
            reason: KRUN_NOT_BUILT_IN,
        }),
        Some(EngineKind::Krun) if !hardware_virtualization => Err(EngineError::Unavailable {
            engine: EngineKind::Krun,
            reason: "it needs hardware virtualisation (vmx or svm in /proc/cpuinfo and a \
                     writable /dev/kvm); use the qemu engine on this host",
        }),
        Some(EngineKind::Krun) => Ok(EngineKind::Krun),
    }
}

/// The engine of kind `kind`, ready to start VMs.
pub fn engine(kind: EngineKind) -> Result<Box<dyn Engine>, EngineError> {
    match kind {
        EngineKind::Qemu => Ok(Box::new(qemu::QemuEngine::default())),
        #[cfg(feature = "krun")]
        EngineKind::Krun => Ok(Box::new(krun::KrunEngine)),
        #[cfg(not(feature = "krun"))]
        EngineKind::Krun => Err(EngineError::Unavailable {
            engine: kind,
            reason: KRUN_NOT_BUILT_IN,
        }),
    }
}

/// A VMM that can start VMs.
#[async_trait]
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;

    /// Starts the VM. Returns once the VMM runs; the guest boots on its own after that.
    async fn start(&self, spec: &VmSpec) -> Result<Box<dyn RunningVm>, EngineError>;
}

/// A started VM, owned by whoever started it.
#[async_trait]
pub trait RunningVm: Send + Sync {
    /// Opens a stream to the guest agent's port. Fails while the guest is not listening yet.
    async fn connect_agent(&self) -> std::io::Result<UnixStream>;

    /// Resolves once the VMM has exited and every helper process of the VM is gone.
    async fn wait_exit(&self) -> VmExit;

    /// Ends the VMM and its helpers now and waits until they are gone.
    async fn kill(&self) -> VmExit;

    /// Host process ids of the VMM and its helpers, for diagnostics and leak checks.
    fn pids(&self) -> Vec<u32>;

    /// Stops the vCPUs; memory and devices are kept.
    async fn pause(&self) -> Result<(), EngineError> {
        Err(no_saved_state(self.kind(), "pause a VM"))
    }

    /// Runs the vCPUs again.
    async fn resume(&self) -> Result<(), EngineError> {
        Err(no_saved_state(self.kind(), "resume a VM"))
    }

    /// With the VM paused: writes its device state to `path`, and its RAM too unless
    /// `ram_shared` (RAM in a shared file, saved by being that file: templates). The VM stays
    /// paused; its disks are flushed.
    async fn save_state(
        &self,
        _path: &std::path::Path,
        _ram_shared: bool,
    ) -> Result<(), EngineError> {
        Err(no_saved_state(self.kind(), "save a VM's state"))
    }

    fn kind(&self) -> EngineKind;
}

pub(crate) fn no_saved_state(engine: EngineKind, what: &'static str) -> EngineError {
    EngineError::Unsupported {
        engine,
        what,
        reason: "libkrun 1.19 has no API to pause, save or restore a VM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtualization_flags_need_vmx_or_svm() {
        assert!(cpu_has_virtualization_flags("flags\t\t: fpu vme vmx sse\n"));
        assert!(cpu_has_virtualization_flags(
            "processor: 0\nflags\t\t: fpu svm\n"
        ));
        // kvm-pvm: /dev/kvm exists, but the CPU has neither flag.
        assert!(!cpu_has_virtualization_flags(
            "flags\t\t: fpu vme hypervisor sse4_2\n"
        ));
        assert!(!cpu_has_virtualization_flags("vmx flags\t: ept vpid\n"));
    }

    #[test]
    fn engine_selection_follows_the_request_the_build_and_the_host() {
        let krun = cfg!(feature = "krun");
        let auto = if krun {
            EngineKind::Krun
        } else {
            EngineKind::Qemu
        };
        assert_eq!(select(None, true).unwrap(), auto);
        assert_eq!(select(None, false).unwrap(), EngineKind::Qemu);
        for hw in [true, false] {
            assert_eq!(
                select(Some(EngineKind::Qemu), hw).unwrap(),
                EngineKind::Qemu
            );
        }
        let err = select(Some(EngineKind::Krun), false).unwrap_err();
        let expected = if krun {
            "hardware virtualisation"
        } else {
            "--features krun"
        };
        assert!(err.to_string().contains(expected), "{err}");
        assert_eq!(select(Some(EngineKind::Krun), true).is_ok(), krun);
        assert_eq!("krun".parse::<EngineKind>(), Ok(EngineKind::Krun));
        assert_eq!("qemu".parse::<EngineKind>(), Ok(EngineKind::Qemu));
        assert!("kvm"
            .parse::<EngineKind>()
            .unwrap_err()
            .contains("qemu or krun"));
        assert_eq!(
            serde_json::to_string(&EngineKind::Krun).unwrap(),
            "\"krun\""
        );
    }

    #[test]
    fn console_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        std::fs::write(&log, "a\nb\nc\nd\n").unwrap();
        assert_eq!(console_tail(&log, 2), "c\nd");
        assert!(console_tail(&dir.path().join("missing"), 2).contains("could not be read"));
    }
}
