//! A private containerd (Debian's package) for the shim v2 tests and benchmark: its own root,
//! state and sockets in a temporary directory, our runtime registered as
//! `io.containerd.boxlite.v1` (and as CRI's `boxlite` handler), its boxes in a [`TestHome`].
//! Dropping it kills containerd, every shim it started and every VM of the home.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{agent_binary, build_bins, oci_layout, scratch_root, TestHome};

/// The runtime type containerd knows our shim by.
pub const RUNTIME: &str = "io.containerd.boxlite.v1";
/// The test image, as `ctr image import --base-name` names the layout's `busybox` tag.
pub const IMAGE: &str = "localhost/busybox:busybox";
/// Longest any one `ctr` call may take (a VM boots under TCG inside it).
const CTR_TIMEOUT: Duration = Duration::from_secs(180);

pub struct Containerd {
    dir: tempfile::TempDir,
    daemon: Child,
    pub home: TestHome,
    /// The CNI bridge this instance's pods are on, removed at drop.
    bridge: Option<String>,
}

/// `containerd-shim-boxlite-v1` and `boxlite-shim` of this checkout, built fresh once per
/// test binary (release builds for the benchmark, which is built optimised itself); returns
/// their directory.
pub fn shim_bin_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        build_bins(
            &["containerd-shim-boxlite", "boxlite-shim"],
            !cfg!(debug_assertions),
        )
    })
}

impl Containerd {
    /// Starts containerd and waits (with a deadline) until it answers. CRI has no CNI
    /// network: pods use the node's.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// [`Containerd::start`] with a CNI network for CRI pods: a bridge (Debian's
    /// containernetworking-plugins) named `bridge`, pods in `subnet` (a /24), without NAT.
    pub fn start_with_cni_bridge(bridge: &str, subnet: &str) -> Self {
        Self::start_with(Some((bridge, subnet)))
    }

    fn start_with(cni: Option<(&str, &str)>) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the containerd tests need root: containerd mounts snapshots and keeps shim \
             sockets in /run/containerd"
        );
        let dir = tempfile::Builder::new()
            .prefix("ctrd")
            .tempdir_in(scratch_root())
            .expect("containerd dir");
        let home = TestHome::new();
        let d = dir.path().display();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  disable_cgroup = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    # A runtimes table replaces the built-in runc entry: the default must name ours.
    default_runtime_name = "boxlite"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.boxlite]
      runtime_type = "{RUNTIME}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"#
        );
        if let Some((bridge, subnet)) = cni {
            let conf_dir = dir.path().join("cni");
            std::fs::create_dir_all(&conf_dir).expect("creating the CNI config directory");
            let network = serde_json::json!({
                "cniVersion": "0.4.0",
                "name": bridge,
                "plugins": [{
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "subnet": subnet,
                        // A default route via the bridge, as pod networks have.
                        "routes": [{ "dst": "0.0.0.0/0" }],
                        "dataDir": dir.path().join("cni-ipam").display().to_string(),
                    },
                }],
            });
            std::fs::write(conf_dir.join("10-test.conflist"), network.to_string())
                .expect("writing the CNI config");
        }
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).expect("writing containerd's config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log");
        // containerd finds `containerd-shim-boxlite-v1` (and it `boxlite-shim`) on its PATH.
        let path = format!(
            "{}:{}",
            shim_bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(&config_path)
            .env("PATH", path)
            .env(boxlite::HOME_ENV, home.path())
            .env(boxlite::guest::AGENT_ENV, agent_binary())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting containerd: scripts/setup.sh installs Debian's containerd");
        let containerd = Self {
            dir,
            daemon,
            home,
            bridge: cni.map(|(bridge, _)| bridge.to_string()),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !containerd.ctr_output(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within 60 s; its log:\n{}",
                containerd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        containerd
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` against this containerd, bounded by a deadline (`timeout` kills a hung one).
    pub fn ctr_output(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg(CTR_TIMEOUT.as_secs().to_string())
            .arg("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running ctr")
    }

    /// `ctr ARGS` that must succeed; its stdout.
    pub fn ctr(&self, args: &[&str]) -> String {
        let output = self.ctr_output(args);
        assert!(
            output.status.success(),
            "ctr {args:?} failed ({}): {}\ncontainerd's log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Imports the test layout (busybox) into `namespace` as [`IMAGE`] and its other tags.
    pub fn import_test_image(&self, namespace: &str) {
        let archive = self.dir.path().join("busybox.tar");
        if !archive.is_file() {
            let status = Command::new("tar")
                .arg("-C")
                .arg(oci_layout())
                .arg("-cf")
                .arg(&archive)
                .arg(".")
                .status()
                .expect("running tar");
            assert!(status.success(), "archiving the OCI layout failed");
        }
        let archive = archive.to_string_lossy().into_owned();
        self.ctr(&[
            "-n",
            namespace,
            "image",
            "import",
            "--base-name",
            "localhost/busybox",
            &archive,
        ]);
    }

    /// The shims containerd started for this instance that are still alive.
    pub fn live_shims(&self) -> Vec<u32> {
        let address = self.socket().to_string_lossy().into_owned();
        processes_whose_cmdline_has(&["containerd-shim", &address])
    }

    /// The rootfs containerd prepared for task `id` (the bundle's `rootfs`).
    pub fn task_rootfs(&self, namespace: &str, id: &str) -> PathBuf {
        self.dir
            .path()
            .join("state/io.containerd.runtime.v2.task")
            .join(namespace)
            .join(id)
            .join("rootfs")
    }

    /// Boxes in the home: one per running container (a pod's sandbox has none).
    pub fn box_count(&self) -> usize {
        std::fs::read_dir(self.home.path().join("boxes"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .count()
    }

    /// Waits (with a deadline) until no shim of ours and no VM of the home is left.
    pub fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let shims = self.live_shims();
            let vms: Vec<_> = self
                .home
                .box_processes()
                .into_iter()
                .filter(|p| crate::process_exists(p.pid))
                .collect();
            if shims.is_empty() && vms.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "left running after delete: shims {shims:?}, box processes {vms:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(self.box_count(), 0, "a box directory is left in the home");
    }
}

/// Pids of processes whose command line contains every one of `needles`.
fn processes_whose_cmdline_has(needles: &[&str]) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            needles.iter().all(|n| cmdline.contains(n)).then_some(pid)
        })
        .collect()
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Shims first (their VMs power off with them), then containerd; the home's drop
        // kills whatever VM is left.
        for pid in self.live_shims() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        if let Some(bridge) = &self.bridge {
            let _ = Command::new("ip").args(["link", "del", bridge]).status();
        }
        // Snapshot mounts under the root would keep the directory from going.
        let root = self.dir.path().to_string_lossy().into_owned();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut targets: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|t| t.starts_with(&root))
                .collect();
            targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for target in targets {
                let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}
