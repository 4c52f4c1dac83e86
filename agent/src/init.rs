//! What the agent does as PID 1 of the box VM: standard descriptors, the pseudo filesystems,
//! the box disk, and powering off.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Where the box disk is mounted; commands run with this as their root.
pub const ROOTFS: &str = "/run/boxlite/rootfs";

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("mounting {what} on {target}: {source}")]
    Mount {
        what: String,
        target: String,
        source: nix::Error,
    },
    #[error("creating {path}: {source}")]
    Mkdir {
        path: String,
        source: std::io::Error,
    },
    #[error("box disk {device} did not appear within {waited:?}")]
    NoDisk { device: String, waited: Duration },
    #[error("volume {tag} cannot be mounted at {path}: {reason}")]
    Volume {
        tag: String,
        path: String,
        reason: String,
    },
}

/// Settings the engine passes on the kernel command line (`boxlite.KEY=VALUE`), typed in the
/// protocol crate so that host and guest agree by construction.
pub use boxlite_protocol::boot::{BootParams, VolumeMount};

/// PID 1 may start with no descriptors at all (console=hvc0 gives none): make 0, 1 and 2
/// point somewhere before anything prints or spawns.
pub fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1 {
            continue;
        }
        let opened = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/console")
            .or_else(|_| {
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
            });
        if let Ok(file) = opened {
            // SAFETY: both descriptors are valid; dup2 onto a free slot has no other effect.
            unsafe { libc::dup2(file.as_raw_fd(), fd) };
        }
    }
}

fn mkdir(path: &Path) -> Result<(), InitError> {
    fs::create_dir_all(path).map_err(|source| InitError::Mkdir {
        path: path.display().to_string(),
        source,
    })
}

fn mount_fs(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), InitError> {
    mkdir(target)?;
    mount(Some(source), target, fstype, flags, data).map_err(|source_err| InitError::Mount {
        what: fstype.unwrap_or(source).to_string(),
        target: target.display().to_string(),
        source: source_err,
    })
}

/// The filesystems every Linux program expects, under `root`.
fn mount_pseudo_filesystems(root: &Path, dev_source: Option<&Path>) -> Result<(), InitError> {
    let nosuid_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    mount_fs(
        "proc",
        &root.join("proc"),
        Some("proc"),
        nosuid_noexec,
        None,
    )?;
    mount_fs(
        "sysfs",
        &root.join("sys"),
        Some("sysfs"),
        nosuid_noexec,
        None,
    )?;
    match dev_source {
        None => mount_fs(
            "devtmpfs",
            &root.join("dev"),
            Some("devtmpfs"),
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        )?,
        Some(dev) => mount_fs(
            &dev.display().to_string(),
            &root.join("dev"),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )?,
    }
    if dev_source.is_none() {
        mount_fs(
            "devpts",
            &root.join("dev/pts"),
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )?;
        mount_fs(
            "shm",
            &root.join("dev/shm"),
            Some("tmpfs"),
            nosuid_noexec,
            Some("mode=1777"),
        )?;
    }
    Ok(())
}

/// Mounts the guest's own /proc, /sys, /dev and /run.
pub fn mount_guest_filesystems() -> Result<(), InitError> {
    mount_pseudo_filesystems(Path::new("/"), None)?;
    mount_fs(
        "tmpfs",
        Path::new("/run"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755"),
    )
}

/// Mounts the box disk, when the engine attached one (then [`mount_box_pseudo_filesystems`]
/// follows). Returns the root commands run in.
pub fn mount_box_disk(params: &BootParams) -> Result<PathBuf, InitError> {
    let Some(device) = &params.root_device else {
        return Ok(PathBuf::from("/"));
    };
    let rootfs = Path::new(ROOTFS);
    // A root shared from the host: `device` is its virtio-fs tag.
    if params.root_fstype.as_deref() == Some("virtiofs") {
        mount_fs(device, rootfs, Some("virtiofs"), MsFlags::empty(), None)?;
        return Ok(rootfs.to_path_buf());
    }
    // virtio-blk probes before init runs, but wait briefly rather than trust the ordering.
    let wait = Duration::from_secs(5);
    let deadline = Instant::now() + wait;
    while !Path::new(device).exists() {
        if Instant::now() > deadline {
            return Err(InitError::NoDisk {
                device: device.clone(),
                waited: wait,
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let fstype = params.root_fstype.as_deref().unwrap_or("ext4");
    // Image bases are made with inode tables left for the kernel to zero lazily; every box
    // would otherwise start a thread zeroing them (tens of MiB through its disk) and reading
    // every block bitmap ahead as it starts. Unzeroed tables are only slower for e2fsck;
    // bitmaps are read when first needed instead.
    let options = (fstype == "ext4").then_some("noinit_itable,no_prefetch_block_bitmaps");
    mount_fs(device, rootfs, Some(fstype), MsFlags::empty(), options)?;
    Ok(rootfs.to_path_buf())
}

/// The box's own /proc and /sys, and the guest's /dev, under the mounted box disk.
pub fn mount_box_pseudo_filesystems(rootfs: &Path) -> Result<(), InitError> {
    mount_pseudo_filesystems(rootfs, Some(Path::new("/dev")))
}

/// Mounts each volume at its path inside `rootfs` (created if missing), read-only where asked.
/// A path through a symlink is refused: the agent is not chrooted, so the link would be
/// followed outside the box.
pub fn mount_volumes(rootfs: &Path, volumes: &[VolumeMount]) -> Result<(), InitError> {
    for volume in volumes {
        let refuse = |reason: String| InitError::Volume {
            tag: volume.tag.clone(),
            path: volume.guest_path.clone(),
            reason,
        };
        let mut target = rootfs.to_path_buf();
        for part in Path::new(&volume.guest_path).components().skip(1) {
            let std::path::Component::Normal(part) = part else {
                return Err(refuse("only plain path components are allowed".into()));
            };
            target.push(part);
            if fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(refuse(format!("{} is a symlink", target.display())));
            }
        }
        let flags = if volume.read_only {
            MsFlags::MS_RDONLY
        } else {
            MsFlags::empty()
        };
        mount_fs(&volume.tag, &target, Some("virtiofs"), flags, None)?;
    }
    Ok(())
}

/// Ends every process, flushes and detaches the box disk, and resets the VM. The engines run
/// the VM so that a reset ends it (QEMU `-no-reboot`, libkrun `reboot=k`): without ACPI a
/// plain power-off would only halt the CPU.
pub fn power_off() -> ! {
    // SAFETY: kill(-1) from PID 1 signals every other process; it touches no memory of ours.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    nix::unistd::sync();
    let rootfs = Path::new(ROOTFS);
    for sub in ["dev/shm", "dev/pts", "dev", "sys", "proc", ""] {
        let _ = umount2(&rootfs.join(sub), MntFlags::MNT_DETACH);
    }
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // reboot only returns on failure; PID 1 must never exit.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Guest uptime in milliseconds, from /proc/uptime.
pub fn uptime_ms() -> u64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|secs| (secs * 1000.0) as u64)
        .unwrap_or(0)
}
