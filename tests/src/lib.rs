//! Shared fixtures of the integration tests: guest assets, a busybox root disk, VM specs.
//!
//! Everything here is real: the box kernel built by scripts/build-kernel.sh, the static agent
//! built by scripts/build-guest.sh, an ext4 image made by mkfs.ext4, qcow2 overlays made by
//! qemu-img. A missing piece fails the test with the command that provides it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use boxlite::guest::GuestAssets;
use boxlite_shim::engine::{DiskFormat, DiskSpec, VmSpec};
use sha2::Digest;

/// How long tests let a TCG boot take before calling it failed. Generous: CI machines are
/// loaded, and a failing boot is reported at once anyway (VMM death is raced, not waited out).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// Scratch space under target/, kept short because unix socket paths must fit in 107 bytes.
pub fn scratch_root() -> PathBuf {
    let dir = workspace_root().join("target").join("t");
    std::fs::create_dir_all(&dir).expect("creating target/t");
    dir
}

/// The static agent built by scripts/build-guest.sh (or $BOXLITE_AGENT).
pub fn agent_binary() -> PathBuf {
    let path = std::env::var_os(boxlite::guest::AGENT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root().join("target/x86_64-unknown-linux-gnu/release/boxlite-agent")
        });
    assert!(
        path.is_file(),
        "guest agent missing at {}: run scripts/build-guest.sh (scripts/test.sh does)",
        path.display()
    );
    path
}

pub fn guest_assets() -> &'static GuestAssets {
    static ASSETS: OnceLock<GuestAssets> = OnceLock::new();
    ASSETS.get_or_init(|| {
        GuestAssets::prepare(&scratch_root().join("home"), None, Some(agent_binary()))
            .unwrap_or_else(|e| panic!("{e}"))
    })
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An ext4 image holding busybox (from Debian's busybox-static) with its applet links, shared
/// read-only by every test VM (each writes to its own qcow2 overlay). Named by the busybox
/// binary's hash and published by rename, so concurrent test binaries build it at most once
/// each and never see half an image.
pub fn busybox_base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let busybox = Path::new("/bin/busybox");
        let bytes = std::fs::read(busybox)
            .expect("/bin/busybox missing: scripts/setup.sh installs busybox-static");
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        let image = scratch_root().join(format!("busybox-{}.ext4", &digest[..16]));
        if image.is_file() {
            return image;
        }
        let dir = tempfile::tempdir_in(scratch_root()).expect("tempdir");
        let root = dir.path().join("root");
        for sub in ["bin", "etc", "tmp", "root", "proc", "sys", "dev", "run"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        let list = Command::new(busybox)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
            }
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        let partial = dir.path().join("busybox.ext4");
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-E", "root_owner=0:0", "-d"])
            .arg(&root)
            .arg(&partial)
            .arg("256M"));
        std::fs::rename(&partial, &image).expect("publishing the busybox image");
        image
    })
}

/// A fresh box directory with a qcow2 overlay over the busybox base.
pub struct TestBox {
    pub dir: tempfile::TempDir,
    pub spec: VmSpec,
}

impl TestBox {
    pub fn new() -> Self {
        let assets = guest_assets();
        let dir = tempfile::Builder::new()
            .prefix("b")
            .tempdir_in(scratch_root())
            .expect("box dir");
        let disk = dir.path().join("disk.qcow2");
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(busybox_base())
            .arg(&disk));
        let spec = VmSpec {
            kernel: assets.kernel.clone(),
            initramfs: assets.initramfs.clone(),
            cpus: 1,
            memory_mib: 256,
            root_disk: Some(DiskSpec {
                path: disk,
                format: DiskFormat::Qcow2,
                read_only: false,
            }),
            agent_port: boxlite_protocol::AGENT_VSOCK_PORT,
            run_dir: dir.path().to_path_buf(),
            extra_cmdline: Vec::new(),
        };
        Self { dir, spec }
    }
}

impl Default for TestBox {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a host process still exists (zombies included).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}
