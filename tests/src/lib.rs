//! Shared fixtures of the integration tests: guest assets, a busybox root disk, VM specs.
//!
//! Everything here is real: the box kernel built by scripts/build-kernel.sh, the static agent
//! built by scripts/build-guest.sh, an ext4 image made by mkfs.ext4, qcow2 overlays made by
//! qemu-img. A missing piece fails the test with the command that provides it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub mod bench;
pub mod containerd;

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
        install_busybox(&root);
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

/// Fills `root` with busybox (from Debian's busybox-static) and its applet links.
pub fn install_busybox(root: &Path) {
    let busybox = Path::new("/bin/busybox");
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
}

/// An OCI image layout built with umoci (Debian's package) from busybox, with three tags:
/// - `busybox`: one layer; config Env GREETING=from-image, WorkingDir /srv, Cmd sh.
/// - `layered`: `busybox` plus a layer that deletes /etc/removed (a whiteout), adds a
///   hardlink /etc/hard, a symlink /etc/link to /etc/marker, and /srv/old.
/// - `opaque`: `layered` plus a layer (written here: umoci never emits opaque markers) that
///   makes /srv opaque and adds /srv/fresh, so /srv holds only `fresh`.
/// - `multiarch`: an image index naming `busybox` as linux/arm64 (first) and `opaque` as
///   linux/amd64, so a pull must pick `opaque`.
///
/// Built once per busybox binary and published by rename.
pub fn oci_layout() -> &'static Path {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let bytes = std::fs::read("/bin/busybox")
            .expect("/bin/busybox missing: scripts/setup.sh installs busybox-static");
        let digest = hex::encode(sha2::Sha256::digest(&bytes));
        let layout = scratch_root().join(format!("oci-{}", &digest[..16]));
        if layout.join("index.json").is_file() {
            return layout;
        }
        let work = tempfile::tempdir_in(scratch_root()).expect("tempdir");
        let partial = work.path().join("layout");
        let image = |tag: &str| format!("{}:{tag}", partial.display());
        let umoci = |args: &[&str]| run(Command::new("umoci").args(args));
        umoci(&["init", "--layout", &partial.display().to_string()]);
        umoci(&["new", "--image", &image("busybox")]);
        let bundle = work.path().join("b1");
        umoci(&[
            "unpack",
            "--image",
            &image("busybox"),
            &bundle.display().to_string(),
        ]);
        let rootfs = bundle.join("rootfs");
        install_busybox(&rootfs);
        std::fs::create_dir_all(rootfs.join("srv")).unwrap();
        std::fs::write(rootfs.join("etc/marker"), "marker\n").unwrap();
        std::fs::write(rootfs.join("etc/removed"), "gone in the next layer\n").unwrap();
        umoci(&[
            "repack",
            "--image",
            &image("busybox"),
            &bundle.display().to_string(),
        ]);
        umoci(&[
            "config",
            "--image",
            &image("busybox"),
            "--config.env",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            "--config.env",
            "GREETING=from-image",
            "--config.workingdir",
            "/srv",
            "--config.cmd",
            "sh",
        ]);
        let bundle = work.path().join("b2");
        umoci(&[
            "unpack",
            "--image",
            &image("busybox"),
            &bundle.display().to_string(),
        ]);
        let etc = bundle.join("rootfs/etc");
        std::fs::remove_file(etc.join("removed")).unwrap();
        std::fs::hard_link(etc.join("marker"), etc.join("hard")).unwrap();
        std::os::unix::fs::symlink("marker", etc.join("link")).unwrap();
        std::fs::write(bundle.join("rootfs/srv/old"), "hidden by the next layer\n").unwrap();
        umoci(&[
            "repack",
            "--image",
            &image("layered"),
            &bundle.display().to_string(),
        ]);
        add_opaque_layer(&partial, "layered", "opaque");
        add_index(&partial, "opaque", "busybox", "multiarch");
        // Another test binary may have published it meanwhile; either copy is complete.
        if std::fs::rename(&partial, &layout).is_err() {
            assert!(
                layout.join("index.json").is_file(),
                "publishing {}",
                layout.display()
            );
        }
        layout
    })
}

/// Adds to an OCI layout a tag `new_tag` for an image index whose linux/amd64 entry is
/// `amd64_tag` and whose linux/arm64 entry (listed first) is `arm64_tag`.
fn add_index(layout: &Path, amd64_tag: &str, arm64_tag: &str, new_tag: &str) {
    use serde_json::{json, Value};
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = |tag: &str, arch: &str| {
        let mut m = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .expect("tag exists")
            .clone();
        m.as_object_mut().unwrap().remove("annotations");
        m["platform"] = json!({ "architecture": arch, "os": "linux" });
        m
    };
    let image_index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(arm64_tag, "arm64"), entry(amd64_tag, "amd64")],
    });
    let bytes = serde_json::to_vec(&image_index).unwrap();
    let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)));
    std::fs::write(layout.join("blobs/sha256").join(&digest[7..]), &bytes).unwrap();
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": digest,
        "size": bytes.len(),
        "annotations": { "org.opencontainers.image.ref.name": new_tag },
    }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Adds to an OCI layout a tag `new_tag`: the image `from_tag` plus one uncompressed layer
/// holding `srv/.wh..wh..opq` and `srv/fresh`.
fn add_opaque_layer(layout: &Path, from_tag: &str, new_tag: &str) {
    use serde_json::{json, Value};
    let blob_path = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let put_blob = |bytes: &[u8]| -> (String, usize) {
        let digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)));
        std::fs::write(blob_path(&digest), bytes).unwrap();
        (digest, bytes.len())
    };
    let read_json =
        |path: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };

    let mut layer = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    layer
        .append_data(&mut header, "srv/", std::io::empty())
        .unwrap();
    for (name, data) in [("srv/.wh..wh..opq", ""), ("srv/fresh", "fresh\n")] {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        layer
            .append_data(&mut header, name, data.as_bytes())
            .unwrap();
    }
    let layer = layer.into_inner().unwrap();
    let (layer_digest, layer_size) = put_blob(&layer);

    let mut index = read_json(layout.join("index.json"));
    let base = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == from_tag)
        .expect("the base tag exists")
        .clone();
    let mut manifest = read_json(blob_path(base["digest"].as_str().unwrap()));
    let mut config = read_json(blob_path(manifest["config"]["digest"].as_str().unwrap()));
    // Uncompressed, so the diff id is the layer digest.
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!(layer_digest));
    let (config_digest, config_size) = put_blob(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = json!(config_digest);
    manifest["config"]["size"] = json!(config_size);
    manifest["layers"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": layer_digest,
        "size": layer_size,
    }));
    let (manifest_digest, manifest_size) = put_blob(&serde_json::to_vec(&manifest).unwrap());
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": manifest_size,
        "annotations": { "org.opencontainers.image.ref.name": new_tag },
    }));
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// A home for one test, under [`scratch_root`]. When it is dropped, also by a failing test's
/// unwinding, every shim and VMM recorded under it is killed (and waited for) before the
/// directory goes, so no test leaves a VM behind whatever happened to it.
pub struct TestHome {
    dir: tempfile::TempDir,
}

impl TestHome {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir_in(scratch_root()).expect("test home"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The processes recorded for the boxes of this home: shims and their VMMs.
    pub fn box_processes(&self) -> Vec<boxlite_shim::process::ProcessId> {
        let files = boxlite_shim::server::files::PID_FILES;
        // Boxes, and standbys (shims with a VM but no box yet).
        subdirs(&self.path().join("boxes"))
            .chain(standby_dirs(self.path()))
            .flat_map(|dir| {
                files
                    .iter()
                    .flat_map(move |file| boxlite_shim::process::read_all(&dir.join(file)))
            })
            .collect()
    }
}

impl Default for TestHome {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestHome {
    fn drop(&mut self) {
        for process in self.box_processes() {
            if !process.kill_and_wait(Duration::from_secs(30)) {
                eprintln!("TestHome: {process:?} survived SIGKILL for 30 s");
            }
        }
    }
}

/// Waits until `condition` holds, checking every 10 ms; panics naming `what` when `limit`
/// passes first. A deadline against hangs, not a speed claim (speed: scripts/bench).
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still not {what} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A fresh box directory with a qcow2 overlay over an ext4 base (busybox by default).
pub struct TestBox {
    pub dir: tempfile::TempDir,
    pub spec: VmSpec,
}

impl TestBox {
    pub fn new() -> Self {
        Self::with_base(busybox_base())
    }

    /// A box whose disk is a qcow2 overlay over `base` (an ext4 image).
    pub fn with_base(base: &Path) -> Self {
        let assets = guest_assets();
        let dir = tempfile::Builder::new()
            .prefix("b")
            .tempdir_in(scratch_root())
            .expect("box dir");
        let disk = dir.path().join("disk.qcow2");
        boxlite::images::create_box_disk(base, &disk).unwrap_or_else(|e| panic!("{e}"));
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
            hostname: None,
            network: None,
            volumes: Vec::new(),
            start: Default::default(),
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

/// A real OCI registry (Debian's `docker-registry`) on 127.0.0.1 at a free port, storing
/// into a temporary directory; stopped when dropped.
pub struct TestRegistry {
    child: std::process::Child,
    pub port: u16,
    pub storage: tempfile::TempDir,
}

impl TestRegistry {
    pub fn start() -> Self {
        let storage = tempfile::tempdir_in(scratch_root()).expect("registry dir");
        let port = free_port();
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry: scripts/setup.sh installs it");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("docker-registry did not listen on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            storage,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes `tag` of an OCI layout to `repo:tag` with skopeo (every image of an index).
    pub fn push(&self, layout: &Path, tag: &str, repo: &str) {
        self.push_as(layout, tag, &format!("{repo}:{tag}"));
    }

    /// Pushes the layout's image `tag` as `target` ("repo:tag"), e.g. as `alpine:latest` for
    /// code that names that image.
    pub fn push_as(&self, layout: &Path, tag: &str, target: &str) {
        run(Command::new("skopeo").args([
            "--insecure-policy",
            "copy",
            "--all",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{}/{target}", self.host()),
        ]));
    }

    /// The registry's file holding a blob, for tests that damage it.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        self.storage
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// The engine the VM suites that go through shim processes run on: `BOXLITE_ENGINE` (as the
/// runtime reads it), else what this host picks. (vm_boot and vm_image test the QEMU engine
/// itself, in the test process; libkrun cannot run there: it ends its process with the VM.)
pub fn test_engine_kind() -> boxlite_shim::engine::EngineKind {
    let requested = std::env::var(boxlite::ENGINE_ENV)
        .ok()
        .filter(|v| !v.is_empty() && v != "auto")
        .map(|v| {
            v.parse()
                .unwrap_or_else(|e| panic!("{}: {e}", boxlite::ENGINE_ENV))
        });
    boxlite_shim::engine::select(
        requested,
        boxlite_shim::engine::hardware_virtualization_usable(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Builds the binaries of `packages` (with the krun engine in `boxlite-shim` when this
/// crate has it), optimised when `release`; returns the target directory holding them.
pub fn build_bins(packages: &[&str], release: bool) -> PathBuf {
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(workspace_root())
        .args(["build", "--quiet", "--bins"]);
    for package in packages {
        build.args(["-p", package]);
    }
    if release {
        build.arg("--release");
    }
    if cfg!(feature = "krun") {
        build.args(["--features", "boxlite-shim/krun"]);
    }
    run(&mut build);
    workspace_root()
        .join("target")
        .join(if release { "release" } else { "debug" })
}

/// The `boxlite` CLI and `boxlite-shim` of this checkout, built fresh (once per test binary)
/// so a CLI test never runs stale code. Returns the directory holding both.
pub fn cli_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = build_bins(&["boxlite-cli", "boxlite-shim"], false);
        assert!(dir.join("boxlite").is_file() && dir.join("boxlite-shim").is_file());
        dir
    })
}

/// The python image of `scripts/build-images.sh python`, for the CodeBox tests.
pub fn python_layout() -> &'static Path {
    image_layout("python")
}

/// The image `name` of `scripts/build-images.sh` (debootstrap, built on first use and cached
/// by a hash of its inputs): python, browser or desktop. Built one at a time.
pub fn image_layout(name: &str) -> &'static Path {
    static LAYOUTS: std::sync::Mutex<Vec<(String, &'static Path)>> =
        std::sync::Mutex::new(Vec::new());
    let mut layouts = LAYOUTS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = layouts.iter().find(|(n, _)| n == name) {
        return path;
    }
    let output = Command::new(workspace_root().join("scripts/build-images.sh"))
        .arg(name)
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running scripts/build-images.sh");
    assert!(
        output.status.success(),
        "scripts/build-images.sh {name} failed"
    );
    let stdout = String::from_utf8(output.stdout).expect("a path");
    let path: &'static Path = Box::leak(
        PathBuf::from(stdout.lines().last().expect("the layout's path")).into_boxed_path(),
    );
    layouts.push((name.to_string(), path));
    path
}

/// Options for a box from the test layout's image `tag`, sized for TCG test runs. Detached
/// and kept when stopped (the tests check what happens across processes and restarts); the
/// defaults (`auto_remove`, not detached) have tests of their own.
pub fn layout_box_options(tag: &str) -> boxlite::BoxOptions {
    let mut options = boxlite::BoxOptions::with_rootfs(boxlite::RootfsSpec::Layout {
        path: oci_layout().to_path_buf(),
        tag: Some(tag.into()),
    });
    options.memory_mib = Some(256);
    options.ready_timeout = READY_TIMEOUT;
    options.detach = true;
    options.auto_remove = false;
    options
}

/// A runtime on `home` whose boxes run `shim` and the agent under test (not whatever is
/// installed). Tests call it through [`test_runtime!`], which names their own `test_shim`.
pub fn runtime_with_shim(home: &Path, shim: &str) -> boxlite::BoxliteRuntime {
    std::env::set_var(boxlite::SHIM_ENV, shim);
    std::env::set_var(boxlite::guest::AGENT_ENV, agent_binary());
    boxlite::BoxliteRuntime::new(boxlite::BoxliteOptions {
        home_dir: home.to_path_buf(),
        ..Default::default()
    })
    .unwrap()
}

/// The directories in `dir` (none if it is missing).
fn subdirs(dir: &Path) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
}

/// The standbys' directories of `home` (`BOXLITE_STANDBY`): ready, warming or retiring
/// (`standby/<kind>/<name>`).
pub fn standby_dirs(home: &Path) -> Vec<PathBuf> {
    subdirs(&home.join("standby"))
        .flat_map(|kind| subdirs(&kind))
        .collect()
}

/// `test_runtime!(home)`: [`runtime_with_shim`] with the calling test's `test_shim` binary.
#[macro_export]
macro_rules! test_runtime {
    ($home:expr) => {
        $crate::runtime_with_shim($home, env!("CARGO_BIN_EXE_test_shim"))
    };
}

/// Runs `sh -c script` in a box: its exit code and its stdout followed by its stderr.
pub async fn sh(b: &boxlite::LiteBox, script: &str) -> (i32, String) {
    let (stdout, stderr, result) = b
        .exec(boxlite::BoxCommand::new("sh").args(["-c", script]))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&stdout).into_owned() + &String::from_utf8_lossy(&stderr);
    (result.exit_code, text)
}
