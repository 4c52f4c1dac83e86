//! Template starts: per VM shape the home keeps a saved VM whose agent booted with no box
//! (`templates/<key>/`: `ram`, guest RAM as a file; `state`, QEMU's device state; `disk`, the
//! placeholder the template's virtio-blk device had). A box of that shape starts by restoring
//! it with its own disk in the placeholder's place, RAM mapped privately from `ram` (so boxes
//! of one template share every page none of them changed), and then the agent mounts the
//! box's disk and takes its identity (`Setup`). Where no template can serve, the box boots
//! and its metrics say why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest;

use super::*;

/// `BOXLITE_TEMPLATES=0` boots every box instead of starting it from its shape's template.
pub const TEMPLATES_ENV: &str = "BOXLITE_TEMPLATES";
/// How long one process waits for another's template build of the same shape.
const BUILD_LOCK_TIMEOUT: Duration = Duration::from_secs(180);
/// Size of the template's placeholder disk.
const PLACEHOLDER_BYTES: u64 = 1 << 20;

/// A template ready to restore.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub ram_file: PathBuf,
    pub state: PathBuf,
}

/// What a saved VM depends on, as text: a template or snapshot restores only into a VM whose
/// shape says the same.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct VmShape {
    pub engine: String,
    pub kernel: String,
    pub initramfs: String,
    pub qemu: String,
    pub host_cpu: String,
    pub cpus: u8,
    pub memory_mib: u32,
    pub network: bool,
}

impl VmShape {
    /// The shape `spec` would have under QEMU on this host.
    pub fn of(spec: &VmSpec) -> Self {
        Self {
            engine: "qemu".into(),
            kernel: file_identity(&spec.kernel),
            initramfs: file_identity(&spec.initramfs),
            qemu: which("qemu-system-x86_64")
                .map(|path| file_identity(&path))
                .unwrap_or_else(|| "missing".into()),
            host_cpu: host_cpu(),
            cpus: spec.cpus,
            memory_mib: spec.memory_mib,
            network: spec.network.is_some(),
        }
    }

    /// The first thing that differs from `other`: (what, this, other).
    pub fn difference(&self, other: &VmShape) -> Option<(&'static str, String, String)> {
        let fields: [(&'static str, String, String); 8] = [
            ("the engine", self.engine.clone(), other.engine.clone()),
            ("the kernel", self.kernel.clone(), other.kernel.clone()),
            (
                "the initramfs",
                self.initramfs.clone(),
                other.initramfs.clone(),
            ),
            ("QEMU", self.qemu.clone(), other.qemu.clone()),
            (
                "the host CPU",
                self.host_cpu.clone(),
                other.host_cpu.clone(),
            ),
            ("vCPUs", self.cpus.to_string(), other.cpus.to_string()),
            (
                "memory (MiB)",
                self.memory_mib.to_string(),
                other.memory_mib.to_string(),
            ),
            (
                "a network",
                self.network.to_string(),
                other.network.to_string(),
            ),
        ];
        fields.into_iter().find(|(_, a, b)| a != b)
    }

    fn key(&self) -> String {
        let json = serde_json::to_vec(self).expect("shape serializes");
        hex::encode(&sha2::Sha256::digest(json)[..12])
    }
}

/// Path, size and modification time: changes when the file is rebuilt or another is used,
/// without hashing tens of MiB on every start.
pub(crate) fn file_identity(path: &Path) -> String {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match std::fs::metadata(&canonical) {
        Ok(meta) => {
            use std::os::unix::fs::MetadataExt;
            format!(
                "{} ({} bytes, mtime {}.{:09})",
                canonical.display(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec()
            )
        }
        Err(_) => format!("{} (missing)", canonical.display()),
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// The host CPU's model and clock: TCG guests take the host's TSC rate at boot.
fn host_cpu() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split(':').nth(1))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "{}, {} MHz, {}",
        field("model name"),
        field("cpu MHz"),
        if boxlite_shim_api::spec::hardware_virtualization_usable() {
            "kvm"
        } else {
            "tcg"
        }
    )
}

/// Why a box of `options`/`spec` cannot start from a template, if it cannot.
pub(crate) fn unsuitable(options: &BoxOptions, spec: &VmSpec) -> Option<String> {
    if std::env::var(TEMPLATES_ENV).is_ok_and(|v| v == "0") {
        return Some(format!("{TEMPLATES_ENV}=0"));
    }
    let engine = match options.engine {
        Some(engine) => Some(engine),
        None => engine_from_env().ok().flatten(),
    };
    match engine {
        Some(EngineKind::Krun) => {
            return Some("the krun engine cannot restore a VM (libkrun 1.19 has no API)".into())
        }
        Some(EngineKind::Qemu) => {}
        // Unasked, a host with hardware virtualisation may get krun.
        None if boxlite_shim_api::spec::hardware_virtualization_usable() => {
            return Some("the engine is chosen by the shim on this host (krun or qemu)".into())
        }
        None => {}
    }
    if spec.root_disk.is_none() {
        return Some(
            "the box's root is a shared host directory (virtio-fs state cannot be saved)".into(),
        );
    }
    if !spec.volumes.is_empty() {
        return Some("the box has volumes (virtio-fs state cannot be saved)".into());
    }
    None
}

/// The template for `spec`'s shape, built now if the home has none yet (one process builds,
/// the others wait for it). An error is the reason none can serve.
pub(crate) async fn ensure(
    home: &Path,
    spec: &VmSpec,
    ready_timeout: Duration,
) -> std::result::Result<Template, String> {
    let shape = VmShape::of(spec);
    let root = home.join("templates");
    let dir = root.join(shape.key());
    let template = Template {
        ram_file: dir.join("ram"),
        state: dir.join("state"),
    };
    if template.state.is_file() {
        return Ok(template);
    }
    std::fs::create_dir_all(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    let lock_path = root.join(format!("{}.lock", shape.key()));
    let _lock = {
        let lock_path = lock_path.clone();
        tokio::task::spawn_blocking(move || {
            boxlite_lockfile::lock(
                &lock_path,
                boxlite_lockfile::LockMode::Exclusive,
                Some(BUILD_LOCK_TIMEOUT),
            )
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
    };
    if template.state.is_file() {
        return Ok(template);
    }
    // Its own directory: a builder whose process was killed may still be running (its shim
    // outlives it until the VM is saved) and must not write into this one. Named by the id's
    // time and the end of its random part: short (the build's sockets live in it), and old
    // ones are known by their name.
    remove_abandoned(&root, ".b", ABANDONED_AFTER);
    let id = new_id();
    let building = root.join(format!(".b{}{}", &id[..10], &id[id.len() - 6..]));
    let built = build(&building, spec, &shape, ready_timeout).await;
    let renamed = built.and_then(|()| {
        std::fs::rename(&building, &dir).map_err(|e| format!("keeping the template: {e}"))
    });
    if let Err(err) = renamed {
        let _ = std::fs::remove_dir_all(&building);
        return Err(format!("building the template failed: {err}"));
    }
    tracing::info!(template = %dir.display(), "built a VM template");
    remove_outdated(&root, &shape);
    Ok(template)
}

/// Deletes the templates of `current`'s VM size made with another kernel, agent, QEMU or CPU:
/// no box will start from them again. Boxes running from one keep its RAM file mapped, which
/// keeps the file's pages alive until they end, so this is safe while they run.
fn remove_outdated(root: &Path, current: &VmShape) {
    let key = current.key();
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == key || name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let Ok(json) = std::fs::read(entry.path().join("shape.json")) else {
            continue;
        };
        let Ok(shape) = serde_json::from_slice::<VmShape>(&json) else {
            continue;
        };
        let same_size = (shape.cpus, shape.memory_mib, shape.network)
            == (current.cpus, current.memory_mib, current.network);
        if same_size {
            tracing::info!(template = %entry.path().display(), "removing an outdated VM template");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Boots a template VM of `spec`'s shape in `dir` and saves it there.
async fn build(
    dir: &Path,
    spec: &VmSpec,
    shape: &VmShape,
    ready_timeout: Duration,
) -> std::result::Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let placeholder = dir.join("disk");
    std::fs::File::create(&placeholder)
        .and_then(|file| file.set_len(PLACEHOLDER_BYTES))
        .map_err(|e| format!("making the placeholder disk: {e}"))?;
    write_private(
        &dir.join("shape.json"),
        &serde_json::to_vec_pretty(shape).expect("shape serializes"),
    )
    .map_err(|e| format!("writing shape.json: {e}"))?;
    let vm = VmSpec {
        kernel: spec.kernel.clone(),
        initramfs: spec.initramfs.clone(),
        cpus: spec.cpus,
        memory_mib: spec.memory_mib,
        root_disk: Some(DiskSpec {
            path: placeholder,
            format: DiskFormat::Raw,
            read_only: false,
        }),
        agent_port: spec.agent_port,
        run_dir: dir.to_path_buf(),
        extra_cmdline: Vec::new(),
        hostname: None,
        network: spec.network.as_ref().map(|_| Default::default()),
        volumes: Vec::new(),
        start: VmStart::BuildTemplate {
            ram_file: dir.join("ram"),
            state: dir.join("state"),
        },
    };
    let config = ShimConfig {
        vm,
        engine: Some(EngineKind::Qemu),
        ready_timeout_ms: ready_timeout.as_millis() as u64,
        launcher: None,
        stop_with_launcher: false,
        template_miss: None,
        standby: None,
    };
    run_shim_to_end(dir, &config, ready_timeout + Duration::from_secs(60)).await
}

/// Runs a shim that ends by itself (a template build) and reports how it went.
async fn run_shim_to_end(
    dir: &Path,
    config: &ShimConfig,
    limit: Duration,
) -> std::result::Result<(), String> {
    use boxlite_shim_api::files;
    let json = serde_json::to_vec_pretty(config).expect("shim config serializes");
    write_private(&dir.join(files::CONFIG), &json).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join(files::LOG)).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(shim_binary())
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", shim_binary().display()))?;
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.map_err(|e| e.to_string())?,
        Err(_) => {
            let _ = child.kill().await;
            return Err(format!("the template VM was not saved within {limit:?}"));
        }
    };
    if status.success() && dir.join("state").is_file() {
        return Ok(());
    }
    Err(match BootFailure::read(dir) {
        Some(failure) => failure.to_string(),
        None => format!(
            "the shim ended with {status}; see {}",
            dir.join(files::LOG).display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> VmShape {
        VmShape {
            engine: "qemu".into(),
            kernel: "/k/vmlinux (1 bytes, mtime 1.0)".into(),
            initramfs: "/h/init/initramfs-ab.cpio (2 bytes, mtime 1.0)".into(),
            qemu: "/usr/bin/qemu-system-x86_64 (3 bytes, mtime 1.0)".into(),
            host_cpu: "cpu, 2400 MHz, tcg".into(),
            cpus: 1,
            memory_mib: 256,
            network: true,
        }
    }

    #[test]
    fn any_difference_in_shape_is_named_and_changes_the_key() {
        let a = shape();
        assert_eq!(a.difference(&shape()), None);
        assert_eq!(a.key(), shape().key());
        let mut b = shape();
        b.kernel = "/other/vmlinux (1 bytes, mtime 2.0)".into();
        let (what, saved, now) = a.difference(&b).unwrap();
        assert_eq!(what, "the kernel");
        assert!(saved.starts_with("/k/") && now.starts_with("/other/"));
        assert_ne!(a.key(), b.key());
        let mut c = shape();
        c.memory_mib = 512;
        assert_eq!(a.difference(&c).unwrap().0, "memory (MiB)");
        let mut d = shape();
        d.network = false;
        assert_eq!(a.difference(&d).unwrap().0, "a network");
    }

    #[test]
    fn a_file_identity_changes_when_the_file_does() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vmlinux");
        std::fs::write(&file, b"one").unwrap();
        let before = file_identity(&file);
        std::fs::write(&file, b"other").unwrap();
        assert_ne!(before, file_identity(&file));
        assert!(file_identity(&dir.path().join("missing")).ends_with("(missing)"));
    }
}
