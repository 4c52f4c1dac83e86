//! virtiofsd, the vhost-user daemon that serves one host directory to a QEMU guest over
//! virtio-fs: one per volume, started before QEMU (which connects to its socket at start-up),
//! ending when QEMU disconnects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{EngineError, SharedDir};

/// Environment variable naming the virtiofsd binary.
pub const VIRTIOFSD_ENV: &str = "BOXLITE_VIRTIOFSD";
/// How long a starting virtiofsd may take to create its socket.
const SOCKET_WAIT: Duration = Duration::from_secs(10);

/// `BOXLITE_VIRTIOFSD`, else the first virtiofsd found in PATH, cargo's bin directory or the
/// distribution's usual places.
pub fn find_binary() -> Result<PathBuf, EngineError> {
    if let Some(path) = std::env::var_os(VIRTIOFSD_ENV) {
        return Ok(PathBuf::from(path));
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("virtiofsd"))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/virtiofsd"));
    }
    candidates.push("/usr/libexec/virtiofsd".into());
    candidates.push("/usr/lib/qemu/virtiofsd".into());
    candidates
        .into_iter()
        .find(|c| c.is_file())
        .ok_or_else(|| EngineError::MissingFile {
            what: "virtiofsd (needed for volumes)",
            path: PathBuf::from("virtiofsd"),
            hint:
                "run scripts/setup.sh (it installs virtiofsd with cargo), or set BOXLITE_VIRTIOFSD",
        })
}

/// The socket of the `index`th volume's daemon.
pub fn socket_path(run_dir: &Path, index: usize) -> PathBuf {
    run_dir.join(format!("{}.sock", SharedDir::tag(index)))
}

/// virtiofsd's arguments for one volume. Read-only volumes are read-only here as well as in
/// the guest's mount. As root the daemon chroots into the directory; otherwise it uses a
/// user namespace.
pub fn args(volume: &SharedDir, socket: &Path, as_root: bool) -> Vec<String> {
    let mut args = vec![
        format!("--socket-path={}", socket.display()),
        format!("--shared-dir={}", volume.host_path.display()),
        format!("--sandbox={}", if as_root { "chroot" } else { "namespace" }),
        "--cache=auto".to_string(),
        // What guest root must not be able to make in a host directory: device nodes
        // (CAP_MKNOD), file capabilities (CAP_SETFCAP), set-id bits on files it does not
        // own or for groups it is not in (CAP_FSETID).
        "--modcaps=-mknod:-setfcap:-fsetid".to_string(),
    ];
    if volume.read_only {
        args.push("--readonly".to_string());
    }
    args
}

/// Waits until a starting daemon's socket exists (QEMU must find it listening).
pub async fn wait_for_socket(
    socket: &Path,
    daemon: &mut tokio::process::Child,
) -> Result<(), String> {
    let deadline = Instant::now() + SOCKET_WAIT;
    while !socket.exists() {
        if let Ok(Some(status)) = daemon.try_wait() {
            return Err(format!("virtiofsd exited ({status}) before listening"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "virtiofsd did not create {} within {SOCKET_WAIT:?}",
                socket.display()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_volume_is_read_only_in_the_daemon_too() {
        let volume = SharedDir {
            host_path: "/srv/data".into(),
            guest_path: "/data".into(),
            read_only: true,
        };
        let args = args(&volume, Path::new("/b/vol0.sock"), true);
        assert_eq!(
            args,
            [
                "--socket-path=/b/vol0.sock",
                "--shared-dir=/srv/data",
                "--sandbox=chroot",
                "--cache=auto",
                "--modcaps=-mknod:-setfcap:-fsetid",
                "--readonly"
            ]
        );
        let rw = SharedDir {
            read_only: false,
            ..volume
        };
        let args = super::args(&rw, Path::new("/b/vol1.sock"), false);
        assert!(args.contains(&"--sandbox=namespace".to_string()));
        assert!(!args.contains(&"--readonly".to_string()));
        assert_eq!(socket_path(Path::new("/b"), 1), Path::new("/b/vol1.sock"));
        assert_eq!(
            rw.mount(1).to_value(),
            "vol1,rw,2f64617461" // "/data"
        );
    }
}
