//! The public API: `BoxliteRuntime` (a home and its boxes and images), `LiteBox` (one box),
//! `BoxCommand` and `Execution` (one command in a box).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use boxlite_protocol::agent::OutputStream;
pub use boxlite_shim::agent_client::OutputChunk;
use boxlite_shim::agent_client::{AgentError, ExecOptions};
use boxlite_shim::client::{ShimClient, ShimError};
use boxlite_shim::engine::{
    DiskFormat, DiskSpec, EngineKind, NetworkSpec, PortForward, Protocol, SharedDir, VmSpec,
};
use boxlite_shim::launch::{launch, LaunchError};
use boxlite_shim::process::{self, ProcessId};
use boxlite_shim::ShimConfig;

use crate::boxes_db::{now_ms, BoxInfo, BoxRecord, BoxesDb, DbError};
use crate::guest::{GuestAssets, GuestError};
use crate::images::{
    create_box_disk, ImageError, ImageInfo, ImageRunConfig, ImageStore, ProgressFn, PullOptions,
    StoredImage,
};
use crate::options::{validate_name, BoxOptions, BoxliteOptions, NetworkMode, RootfsSpec};
use crate::status::BoxStatus;
pub use boxlite_shim::output_log::{LogLine, LogStream, OutputLogReader};

/// Environment variable naming the home directory.
pub const HOME_ENV: &str = "BOXLITE_HOME";
/// Environment variable naming the shim binary.
pub const SHIM_ENV: &str = "BOXLITE_SHIM";
/// Environment variable choosing the engine of boxes whose options name none: `qemu`,
/// `krun`, or `auto` (the default: krun where built in and usable, else QEMU).
pub const ENGINE_ENV: &str = "BOXLITE_ENGINE";
/// How long `stop` lets the guest power off before the VM is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a start/stop/remove waits for another process working on the same box.
const BOX_LOCK_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum BoxliteError {
    #[error("invalid box options: {0}")]
    InvalidOptions(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("no box {0:?} (see `boxlite ls -a`)")]
    NotFound(String),
    #[error("box {0} is running; stop it first or remove it with force")]
    Running(String),
    #[error("box {id} cannot {action} while it is {status}")]
    WrongState {
        id: String,
        action: &'static str,
        status: BoxStatus,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("image {reference:?} is used by box {box_id}; remove the box first")]
    ImageInUse { reference: String, box_id: String },
    #[error(transparent)]
    Guest(#[from] GuestError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error(transparent)]
    Shim(#[from] ShimError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Lock(#[from] boxlite_lockfile::LockError),
    #[error("host port {ip}:{port}/{protocol} is taken ({source}); pick another host port")]
    PortTaken {
        ip: std::net::Ipv4Addr,
        port: u16,
        protocol: &'static str,
        source: std::io::Error,
    },
    #[error("copying {what}: {message}")]
    Copy { what: String, message: String },
    #[error(transparent)]
    HostCopy(#[from] boxlite_copy::CopyError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The command could not be started in the box (nothing ran).
    #[error("{message}")]
    CannotStart {
        reason: CannotStartReason,
        message: String,
    },
    #[error(
        "home {home} belongs to uid {owner}, not to this user (uid {user}); use a home of your \
         own (BOXLITE_HOME or --home)"
    )]
    HomeNotOwned {
        home: PathBuf,
        owner: u32,
        user: u32,
    },
}

/// Why a command could not be started; `boxlite run`/`exec` exit with 127 for the first and
/// 126 for the others, as docker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CannotStartReason {
    /// No such program in the box.
    NotFound,
    /// The program is there but cannot be executed (permissions, a directory, not a binary).
    NotExecutable,
    /// The working directory does not exist in the box.
    WorkingDir,
}

impl CannotStartReason {
    /// The exit code docker gives for it.
    pub fn exit_code(self) -> u8 {
        match self {
            CannotStartReason::NotFound => 127,
            CannotStartReason::NotExecutable | CannotStartReason::WorkingDir => 126,
        }
    }
}

/// An exec's start failure as the agent reported it, typed where it says the command could
/// not start.
fn exec_start_error(err: AgentError) -> BoxliteError {
    let reason = match &err {
        AgentError::Rpc { code, .. } => match code {
            ttrpc::Code::NOT_FOUND => Some(CannotStartReason::NotFound),
            ttrpc::Code::PERMISSION_DENIED => Some(CannotStartReason::NotExecutable),
            ttrpc::Code::FAILED_PRECONDITION => Some(CannotStartReason::WorkingDir),
            _ => None,
        },
        _ => None,
    };
    match (reason, err) {
        (Some(reason), AgentError::Rpc { message, .. }) => {
            BoxliteError::CannotStart { reason, message }
        }
        (_, err) => err.into(),
    }
}

type Result<T> = std::result::Result<T, BoxliteError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BoxliteError + '_ {
    move |source| BoxliteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

struct Inner {
    /// Execs this runtime started (process-local: boxes outlive processes, counters do not).
    execs_started: std::sync::atomic::AtomicU64,
    home: PathBuf,
    registries: Vec<String>,
    images: ImageStore,
    db: BoxesDb,
}

/// A home directory and everything in it. Cheap to clone; any number of processes may open
/// the same home at once.
#[derive(Clone)]
pub struct BoxliteRuntime {
    inner: Arc<Inner>,
}

impl BoxliteRuntime {
    pub fn new(options: BoxliteOptions) -> Result<Self> {
        let home = options.home_dir.unwrap_or_else(default_home);
        prepare_home(&home)?;
        for dir in ["boxes", "images", "init", "db", "logs"] {
            std::fs::create_dir_all(home.join(dir)).map_err(io_err(&home))?;
        }
        remove_leftovers_of_removed_boxes(&home.join("boxes"));
        let runtime = Self {
            inner: Arc::new(Inner {
                images: ImageStore::open(&home),
                db: BoxesDb::new(&home.join("db").join("boxes.db")),
                registries: options.image_registries,
                execs_started: std::sync::atomic::AtomicU64::new(0),
                home,
            }),
        };
        runtime.sweep_crash_leftovers();
        Ok(runtime)
    }

    /// The home from `BOXLITE_HOME`, else `~/.boxlite`.
    pub fn with_defaults() -> Result<Self> {
        Self::new(BoxliteOptions::default())
    }

    pub fn home(&self) -> &Path {
        &self.inner.home
    }

    /// What processes that crashed while creating left behind: partial downloads and bases in
    /// `images/tmp/`, box directories without a row. Only when nobody is writing there (each
    /// writer holds a share of a lock the sweep needs whole), so never a create in progress.
    fn sweep_crash_leftovers(&self) {
        self.inner.images.sweep_tmp();
        let boxes = self.inner.home.join("boxes");
        let Ok(_all) = boxlite_lockfile::try_lock(
            &boxes.join(CREATE_LOCK),
            boxlite_lockfile::LockMode::Exclusive,
        ) else {
            return;
        };
        let Ok(records) = self.inner.db.list() else {
            return;
        };
        let known: std::collections::HashSet<String> =
            records.into_iter().map(|r| r.info.id).collect();
        for entry in std::fs::read_dir(&boxes).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || known.contains(&name) || !entry.path().is_dir() {
                continue;
            }
            let removed = boxes.join(format!("{REMOVED_PREFIX}{name}"));
            if std::fs::rename(entry.path(), &removed).is_ok() {
                let _ = std::fs::remove_dir_all(&removed);
            }
        }
    }

    fn box_dir(&self, id: &str) -> PathBuf {
        self.inner.home.join("boxes").join(id)
    }

    /// Creates a box (Configured: persisted, disk made, no VM). Pulls its image if needed.
    pub async fn create(&self, options: BoxOptions, name: Option<&str>) -> Result<LiteBox> {
        options.validate().map_err(BoxliteError::InvalidOptions)?;
        if options.engine.is_none() {
            engine_from_env()?;
        }
        if let Some(name) = name {
            validate_name(name).map_err(BoxliteError::InvalidOptions)?;
            if self.inner.db.get(name)?.is_some() {
                return Err(DbError::DuplicateName(name.to_string()).into());
            }
        }
        let image = self.resolve_image(&options.rootfs).await?;
        let images = self.inner.images.clone();
        let base_image = image.clone();
        let base = tokio::task::spawn_blocking(move || images.ensure_base(&base_image))
            .await
            .expect("base build panicked")?;

        let id = ulid::Ulid::new().to_string();
        let dir = self.box_dir(&id);
        // Until the row exists the directory has none: the share keeps a sweep from taking
        // it for a crash's leftover.
        let creating = boxlite_lockfile::lock(
            &self.inner.home.join("boxes").join(CREATE_LOCK),
            boxlite_lockfile::LockMode::Shared,
            Some(BOX_LOCK_TIMEOUT),
        )?;
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let created = (|| -> Result<()> {
            create_box_disk(&base, &dir.join("disk.qcow2"))?;
            let config =
                serde_json::json!({ "id": id, "name": name, "options": options, "image": image });
            // The options hold environment values, which may be secrets: owner only.
            write_private(
                &dir.join("config.json"),
                &serde_json::to_vec_pretty(&config).expect("config serializes"),
            )
            .map_err(io_err(&dir))?;
            let now = now_ms();
            let info = BoxInfo {
                id: id.clone(),
                name: name.map(str::to_string),
                status: BoxStatus::Configured,
                created_at: now,
                last_updated: now,
                pid: None,
                image: image.reference.clone(),
                cpus: options.cpus,
                memory_mib: options.memory_mib,
                labels: options.labels.clone(),
                engine: None,
            };
            self.inner.db.insert(&info, &options)?;
            Ok(())
        })();
        if let Err(err) = created {
            // Nothing half-made stays behind.
            let _ = std::fs::remove_dir_all(&dir);
            return Err(err);
        }
        drop(creating);
        Ok(LiteBox {
            id,
            name: name.map(str::to_string),
            runtime: self.clone(),
        })
    }

    async fn resolve_image(&self, rootfs: &RootfsSpec) -> Result<StoredImage> {
        match rootfs {
            RootfsSpec::Image(reference) => {
                if let Ok(image) = self.inner.images.image(reference) {
                    return Ok(image);
                }
                Ok(self.pull_image(reference).await?)
            }
            RootfsSpec::Layout { path, tag } => {
                let images = self.inner.images.clone();
                let (path, tag) = (path.clone(), tag.clone());
                Ok(
                    tokio::task::spawn_blocking(move || {
                        images.import_layout(&path, tag.as_deref())
                    })
                    .await
                    .expect("import panicked")?,
                )
            }
        }
    }

    /// Pulls an image (unqualified names go through the runtime's registries in order).
    pub async fn pull_image(&self, reference: &str) -> Result<StoredImage> {
        self.pull_image_with_progress(reference, None).await
    }

    /// `pull_image`, reporting downloaded bytes to `progress` (the CLI draws bars with it).
    pub async fn pull_image_with_progress(
        &self,
        reference: &str,
        progress: Option<ProgressFn>,
    ) -> Result<StoredImage> {
        let options = PullOptions {
            registries: self.inner.registries.clone(),
            progress,
            ..Default::default()
        };
        Ok(self.inner.images.pull(reference, &options).await?.image)
    }

    pub fn list_images(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.inner.images.list_images()?)
    }

    /// Removes a stored image that no box uses.
    pub async fn remove_image(&self, reference: &str) -> Result<()> {
        let image = self.inner.images.image(reference)?;
        for record in self.inner.db.list()? {
            if record.info.image == image.reference {
                return Err(BoxliteError::ImageInUse {
                    reference: reference.to_string(),
                    box_id: record.info.id,
                });
            }
        }
        Ok(self.inner.images.remove_image(reference)?)
    }

    /// The box named or numbered `id_or_name`, its state brought up to date.
    pub async fn get(&self, id_or_name: &str) -> Result<Option<LiteBox>> {
        Ok(self.record(id_or_name)?.map(|r| LiteBox {
            id: r.info.id,
            name: r.info.name,
            runtime: self.clone(),
        }))
    }

    pub async fn get_info(&self, id_or_name: &str) -> Result<Option<BoxInfo>> {
        Ok(self.record(id_or_name)?.map(|r| r.info))
    }

    pub async fn exists(&self, id_or_name: &str) -> Result<bool> {
        Ok(self.inner.db.get(id_or_name)?.is_some())
    }

    pub async fn list_info(&self) -> Result<Vec<BoxInfo>> {
        let records = self.inner.db.list()?;
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            out.push(self.refresh(record)?.info);
        }
        Ok(out)
    }

    /// The box named `name`, created with `options` if there is none.
    pub async fn get_or_create(&self, options: BoxOptions, name: &str) -> Result<LiteBox> {
        if let Some(found) = self.get(name).await? {
            return Ok(found);
        }
        match self.create(options, Some(name)).await {
            // Another process created it meanwhile.
            Err(BoxliteError::Db(DbError::DuplicateName(_))) => self
                .get(name)
                .await?
                .ok_or_else(|| BoxliteError::NotFound(name.to_string())),
            other => other,
        }
    }

    /// Removes a box and its directory. A running box needs `force`, which kills its VM.
    pub async fn remove(&self, id_or_name: &str, force: bool) -> Result<()> {
        let record = self
            .record(id_or_name)?
            .ok_or_else(|| BoxliteError::NotFound(id_or_name.to_string()))?;
        let id = record.info.id.clone();
        // A box whose directory was deleted by hand can still be removed: its lock file needs
        // the directory back for a moment.
        let dir = self.box_dir(&id);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let _lock = self.lock_box(&id).await?;
        let record = self.refresh(
            self.inner
                .db
                .get(&id)?
                .ok_or_else(|| BoxliteError::NotFound(id.clone()))?,
        )?;
        // A damaged row reads as Unknown, but a shim it names may still run.
        let live_shim = record.shim.is_some_and(|s| s.is_alive());
        if record.info.status.is_active() || live_shim {
            if !force {
                return Err(BoxliteError::Running(id));
            }
            if let Some(shim) = record.shim {
                kill_and_wait(&self.box_dir(&id), shim).await;
            }
        }
        let all = [
            BoxStatus::Unknown,
            BoxStatus::Configured,
            BoxStatus::Running,
            BoxStatus::Stopping,
            BoxStatus::Stopped,
        ];
        self.inner.db.delete(&id, &all)?;
        // Renamed away first: a process that looks at the box meanwhile (and might create its
        // lock file again) finds nothing instead of making the directory non-empty again.
        let removed = self
            .inner
            .home
            .join("boxes")
            .join(format!("{REMOVED_PREFIX}{id}"));
        match std::fs::rename(&dir, &removed) {
            Ok(()) => std::fs::remove_dir_all(&removed).map_err(io_err(&removed)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&dir)(e)),
        }
    }

    /// Boxes of the home by status, and execs this runtime started.
    pub async fn metrics(&self) -> Result<RuntimeMetrics> {
        let mut boxes_by_status = std::collections::BTreeMap::new();
        let infos = self.list_info().await?;
        for info in &infos {
            *boxes_by_status
                .entry(info.status.as_str().to_string())
                .or_insert(0) += 1;
        }
        Ok(RuntimeMetrics {
            boxes_total: infos.len(),
            boxes_by_status,
            execs_started: self
                .inner
                .execs_started
                .load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Stops every running box of the home, each given `timeout` to power off before its VM
    /// is killed. Boxes outlive the processes that made them, so nothing else is implied.
    pub async fn shutdown(&self, timeout: Duration) -> Result<()> {
        let mut first_error = None;
        for info in self.list_info().await? {
            if info.status.is_running() {
                let b = LiteBox {
                    id: info.id,
                    name: info.name,
                    runtime: self.clone(),
                };
                if let Err(err) = b.stop_within(timeout).await {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn record(&self, id_or_name: &str) -> Result<Option<BoxRecord>> {
        match self.inner.db.get(id_or_name)? {
            Some(record) => Ok(Some(self.refresh(record)?)),
            None => Ok(None),
        }
    }

    /// A box recorded as running whose shim is gone (crashed, killed, its VMM died, the host
    /// rebooted) is Stopped: whichever process notices first records it, after killing what
    /// is left of the VM. Stale files go too unless another process holds the box's lock (it
    /// is starting, stopping or removing the box and tidies up itself).
    fn refresh(&self, record: BoxRecord) -> Result<BoxRecord> {
        if !record.info.status.is_active() {
            return Ok(record);
        }
        // A row from before boot ids were recorded (or a host without one) is judged by pid and
        // start time alone.
        let this_boot = match (record.shim_boot.as_deref(), self.inner.db.boot_id()) {
            (Some(recorded), Some(now)) => recorded == now,
            _ => true,
        };
        if this_boot && record.shim.is_some_and(|s| s.is_alive()) {
            return Ok(record);
        }
        let id = &record.info.id;
        let dir = self.box_dir(id);
        if let (true, Some(shim)) = (this_boot, record.shim) {
            // Waited for, so that when a caller sees Stopped nothing of the VM runs any more
            // (SIGKILL takes effect after kill(2) returns). Milliseconds, on a rare path.
            for process in kill_box_processes(&dir, shim) {
                process.wait_gone(KILL_WAIT);
            }
        }
        let stopped = self.inner.db.mark_stopped(id, record.shim)?;
        if stopped
            && boxlite_lockfile::try_lock(&dir.join("lock"), boxlite_lockfile::LockMode::Exclusive)
                .is_ok()
        {
            for file in boxlite_shim::server::files::STALE_AFTER_SHIM {
                let _ = std::fs::remove_file(dir.join(file));
            }
        }
        Ok(self.inner.db.get(id)?.unwrap_or(record))
    }

    async fn lock_box(&self, id: &str) -> Result<boxlite_lockfile::LockGuard> {
        let path = self.box_dir(id).join("lock");
        Ok(tokio::task::spawn_blocking(move || {
            boxlite_lockfile::lock(
                &path,
                boxlite_lockfile::LockMode::Exclusive,
                Some(BOX_LOCK_TIMEOUT),
            )
        })
        .await
        .expect("lock task panicked")?)
    }
}

/// In `boxes/`: held shared by every create until its row exists, exclusively by a sweep.
const CREATE_LOCK: &str = ".create.lock";

/// Box directories being deleted are renamed to this prefix + id first.
const REMOVED_PREFIX: &str = ".removed-";

/// Directories a `remove` renamed and then did not finish deleting (its process died).
fn remove_leftovers_of_removed_boxes(boxes: &Path) {
    let Ok(entries) = std::fs::read_dir(boxes) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(REMOVED_PREFIX)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

static DEFAULT_RUNTIME: std::sync::OnceLock<BoxliteRuntime> = std::sync::OnceLock::new();

/// The process-wide runtime, opened with defaults on first use.
///
/// # Panics
/// When the default home cannot be opened; [`try_default_runtime`] returns the error instead.
pub fn default_runtime() -> BoxliteRuntime {
    try_default_runtime().unwrap_or_else(|e| panic!("opening the default boxlite runtime: {e}"))
}

/// The process-wide runtime, opened with defaults on first use.
pub fn try_default_runtime() -> Result<BoxliteRuntime> {
    if let Some(rt) = DEFAULT_RUNTIME.get() {
        return Ok(rt.clone());
    }
    let rt = BoxliteRuntime::with_defaults()?;
    Ok(DEFAULT_RUNTIME.get_or_init(|| rt).clone())
}

/// Sets the process-wide runtime's options; fails if it is already open.
pub fn init_default_runtime(options: BoxliteOptions) -> Result<BoxliteRuntime> {
    let rt = BoxliteRuntime::new(options)?;
    DEFAULT_RUNTIME.set(rt.clone()).map_err(|_| {
        BoxliteError::InvalidOptions("the default runtime is already initialised".into())
    })?;
    Ok(rt)
}

/// Creates the home for this user alone (0700), or checks that an existing one belongs to
/// this user: boxes, their environment and their sockets are in it, and a home another user
/// controls could hand us files and sockets of their choosing.
fn prepare_home(home: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if let Some(parent) = home.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(home) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(home)(e)),
    }
    let meta = std::fs::metadata(home).map_err(io_err(home))?;
    if !meta.is_dir() {
        return Err(BoxliteError::InvalidOptions(format!(
            "home {} exists and is not a directory; pick another with BOXLITE_HOME",
            home.display()
        )));
    }
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(BoxliteError::HomeNotOwned {
            home: home.to_path_buf(),
            owner: meta.uid(),
            user: me,
        });
    }
    Ok(())
}

/// Writes a file only its owner can read (the mode is set at creation, so there is no moment
/// when others could open it), replacing it atomically.
pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn default_home() -> PathBuf {
    std::env::var_os(HOME_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into())).join(".boxlite")
        })
}

/// The VM's network for a box's options; every forwarded host port is checked free first, so
/// that a taken one is reported as such rather than as a VMM that would not start.
fn network_spec(options: &BoxOptions) -> Result<Option<NetworkSpec>> {
    if options.network == NetworkMode::None {
        return Ok(None);
    }
    let mut forwards = Vec::new();
    for port in &options.ports {
        let address = std::net::SocketAddr::from((port.host_ip, port.host_port));
        let free = match port.protocol {
            Protocol::Tcp => std::net::TcpListener::bind(address).map(drop),
            Protocol::Udp => std::net::UdpSocket::bind(address).map(drop),
        };
        free.map_err(|source| BoxliteError::PortTaken {
            ip: port.host_ip,
            port: port.host_port,
            protocol: port.protocol.name(),
            source,
        })?;
        forwards.push(PortForward {
            host_ip: port.host_ip,
            host_port: port.host_port,
            guest_port: port.guest_port,
            protocol: port.protocol,
        });
    }
    Ok(Some(NetworkSpec { forwards }))
}

/// The engine `BOXLITE_ENGINE` asks for; `None` for auto.
fn engine_from_env() -> Result<Option<EngineKind>> {
    match std::env::var(ENGINE_ENV) {
        Err(_) => Ok(None),
        Ok(value) if value.is_empty() || value == "auto" => Ok(None),
        Ok(value) => value.parse().map(Some).map_err(|e: String| {
            BoxliteError::InvalidOptions(format!("{ENGINE_ENV}: {e}, or auto"))
        }),
    }
}

/// `boxlite-shim`: `BOXLITE_SHIM`, else beside the running program.
fn shim_binary() -> PathBuf {
    std::env::var_os(SHIM_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|d| d.join("boxlite-shim")))
                .unwrap_or_else(|| PathBuf::from("boxlite-shim"))
        })
}

/// How long a SIGKILLed shim or VMM may take to be gone before we give up waiting on it.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Waits up to `limit` for a process to be gone; returns whether it is.
async fn wait_gone(process: ProcessId, limit: Duration) -> bool {
    tokio::task::spawn_blocking(move || process.wait_gone(limit))
        .await
        .unwrap_or_else(|_| !process.is_alive())
}

/// SIGKILL to a box's shim and to the VMM processes it recorded in `vmm.pid` (only when the
/// file is that shim's), so that nothing of the box survives even if PR_SET_PDEATHSIG did not
/// fire. Returns what was recorded, for waiting on.
fn kill_box_processes(dir: &Path, shim: ProcessId) -> Vec<ProcessId> {
    shim.kill();
    let mut recorded =
        boxlite_shim::process::read_all(&dir.join(boxlite_shim::server::files::VMM_PID));
    if recorded.first() != Some(&shim) {
        recorded.clear();
    }
    for vmm in recorded.iter().skip(1) {
        vmm.kill();
    }
    if recorded.is_empty() {
        recorded.push(shim);
    }
    recorded
}

/// Kills a box's processes (see [`kill_box_processes`]) and waits until they are gone.
async fn kill_and_wait(dir: &Path, shim: ProcessId) {
    for process in kill_box_processes(dir, shim) {
        wait_gone(process, KILL_WAIT).await;
    }
}

/// One box of a runtime.
#[derive(Clone)]
pub struct LiteBox {
    id: String,
    name: Option<String>,
    runtime: BoxliteRuntime,
}

impl LiteBox {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The box's output log (commands whose output was sent there with
    /// [`Execution::send_output_to_log`]): everything kept, or its last `tail` lines. Keep the
    /// reader and call `read_new` on it to follow what is written after.
    pub fn logs(&self, tail: Option<usize>) -> Result<(Vec<LogLine>, OutputLogReader)> {
        let dir = self.dir();
        let mut reader = OutputLogReader::new(&dir);
        let lines = reader.read_all(tail).map_err(io_err(&dir))?;
        Ok((lines, reader))
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn dir(&self) -> PathBuf {
        self.runtime.box_dir(&self.id)
    }

    fn record(&self) -> Result<BoxRecord> {
        self.runtime
            .record(&self.id)?
            .ok_or_else(|| BoxliteError::NotFound(self.id.clone()))
    }

    pub async fn info(&self) -> Result<BoxInfo> {
        Ok(self.record()?.info)
    }

    /// The options the box was created with.
    pub async fn options(&self) -> Result<BoxOptions> {
        Ok(self.record()?.options)
    }

    /// Boots the box; a no-op when it runs already.
    pub async fn start(&self) -> Result<()> {
        if self.record()?.info.status.is_running() {
            return Ok(());
        }
        let _lock = self.runtime.lock_box(&self.id).await?;
        let record = self.record()?;
        let status = record.info.status;
        if status.is_running() {
            return Ok(());
        }
        if !status.can_start() {
            return Err(BoxliteError::WrongState {
                id: self.id.clone(),
                action: "start",
                status,
            });
        }
        let assets = GuestAssets::prepare(&self.runtime.inner.home, None, None)?;
        let dir = self.dir();
        let config = ShimConfig {
            vm: VmSpec {
                kernel: assets.kernel,
                initramfs: assets.initramfs,
                cpus: record.options.cpus,
                memory_mib: record.options.memory_mib,
                root_disk: Some(DiskSpec {
                    path: dir.join("disk.qcow2"),
                    format: DiskFormat::Qcow2,
                    read_only: false,
                }),
                agent_port: boxlite_protocol::AGENT_VSOCK_PORT,
                run_dir: dir.clone(),
                // Names are [a-zA-Z0-9_.-] (validate_name), safe on the command line; a hostname
                // holds 64 bytes at most.
                extra_cmdline: vec![format!(
                    "boxlite.hostname={}",
                    record
                        .info
                        .name
                        .as_deref()
                        .unwrap_or(&self.id.to_lowercase())
                        .chars()
                        .take(63)
                        .collect::<String>()
                )],
                network: network_spec(&record.options)?,
                volumes: record
                    .options
                    .volumes
                    .iter()
                    .map(|v| SharedDir {
                        host_path: v.host_path.clone(),
                        guest_path: v.guest_path.clone(),
                        read_only: v.read_only,
                    })
                    .collect(),
            },
            ready_timeout_ms: record.options.ready_timeout.as_millis() as u64,
            engine: match record.options.engine {
                Some(engine) => Some(engine),
                None => engine_from_env()?,
            },
            // Until this process records the box as Running and adopts the shim, the shim
            // powers the VM off if this process dies (or this future is dropped for good).
            launcher: ProcessId::current(),
        };
        let launched = launch(&shim_binary(), &dir, &config).await?;
        // Only shown by inspect: a failure to note it must not fail the start.
        let _ = self
            .runtime
            .inner
            .db
            .record_engine(&self.id, &launched.engine);
        let recorded = self.runtime.inner.db.transition(
            &self.id,
            &[status],
            BoxStatus::Running,
            Some(launched.process),
        );
        match recorded {
            Ok((_, true)) => Ok(launched.client.adopt().await?),
            // The row changed under us (removed by force, say): a VM nobody records must not
            // keep running.
            Ok((found, false)) => {
                kill_and_wait(&dir, launched.process).await;
                Err(match found {
                    None => BoxliteError::NotFound(self.id.clone()),
                    Some(status) => BoxliteError::WrongState {
                        id: self.id.clone(),
                        action: "start",
                        status,
                    },
                })
            }
            Err(err) => {
                kill_and_wait(&dir, launched.process).await;
                Err(err.into())
            }
        }
    }

    /// Powers the box off (killing it after 10 s); it can be started again.
    pub async fn stop(&self) -> Result<()> {
        self.stop_within(STOP_TIMEOUT).await
    }

    /// Powers the box off, killing it after `timeout`.
    pub async fn stop_within(&self, timeout: Duration) -> Result<()> {
        let _lock = self.runtime.lock_box(&self.id).await?;
        let record = self.record()?;
        if !record.info.status.can_stop() {
            return Ok(());
        }
        self.runtime.inner.db.transition(
            &self.id,
            &[BoxStatus::Running],
            BoxStatus::Stopping,
            record.shim,
        )?;
        if let Ok(client) = ShimClient::connect(&self.dir()).await {
            let _ = client.stop(timeout).await;
        }
        if let Some(shim) = record.shim {
            // The shim exits once its VM is gone; make sure of it.
            if !wait_gone(shim, Duration::from_secs(2)).await {
                kill_and_wait(&self.dir(), shim).await;
            }
        }
        self.runtime.inner.db.transition(
            &self.id,
            &[BoxStatus::Stopping],
            BoxStatus::Stopped,
            None,
        )?;
        Ok(())
    }

    /// Runs a command, starting the box first if needed.
    pub async fn exec(&self, command: BoxCommand) -> Result<Execution> {
        self.start().await?;
        let record = self.record()?;
        let run = self.image_config();

        let mut env = run.env.clone();
        let mut set = |key: &str, value: &str| {
            env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
            env.push(format!("{key}={value}"));
        };
        for (k, v) in record.options.env.iter().chain(&command.env) {
            set(k, v);
        }
        let options = ExecOptions {
            args: command.args,
            env,
            working_dir: command
                .working_dir
                .or(record.options.working_dir)
                .unwrap_or(run.working_dir),
            stdin: command.stdin,
            user: command.user.unwrap_or(run.user),
            timeout: command.timeout,
            tty: command.tty,
        };
        let client = ShimClient::connect(&self.dir()).await?;
        let id = ulid::Ulid::new().to_string();
        client
            .agent()
            .exec(&id, &options)
            .await
            .map_err(exec_start_error)?;
        self.runtime
            .inner
            .execs_started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Execution::new(id, client))
    }

    /// What the box's image says about running it (env, workdir, user, entrypoint, cmd).
    pub fn image_config(&self) -> ImageRunConfig {
        let config: serde_json::Value = std::fs::read(self.dir().join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        serde_json::from_value::<StoredImage>(config["image"].clone())
            .map(|image| image.run)
            .unwrap_or_default()
    }

    /// The running box's VM: CPU use over a 200 ms sample, memory, boot timings.
    pub async fn metrics(&self) -> Result<BoxMetrics> {
        if !self.record()?.info.status.is_running() {
            return Err(BoxliteError::WrongState {
                id: self.id.clone(),
                action: "report metrics",
                status: self.info().await?.status,
            });
        }
        let state = ShimClient::connect(&self.dir()).await?.state().await?;
        let ticks =
            |pids: &[u32]| -> u64 { pids.iter().filter_map(|p| process::cpu_ticks(*p)).sum() };
        let before = ticks(&state.vmm_pids);
        let sample = Duration::from_millis(200);
        tokio::time::sleep(sample).await;
        let used = ticks(&state.vmm_pids).saturating_sub(before);
        // SAFETY: sysconf only reads a constant of the system.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Ok(BoxMetrics {
            cpu_percent: used as f64 / hz / sample.as_secs_f64() * 100.0,
            memory_bytes: state
                .vmm_pids
                .iter()
                .filter_map(|p| process::rss_bytes(*p))
                .sum(),
            guest_boot_duration_ms: state.guest_ready_at_ms,
            spawn_to_ready_ms: state.spawn_to_ready_ms,
            shim_pid: state.shim_pid,
            engine: state.engine,
            execs_started: state.execs_started,
            bytes_in: state.bytes_in,
            bytes_out: state.bytes_out,
        })
    }

    /// Copies `host_src` (a file or a tree; symlinks kept) to `guest_dest` in the box, which
    /// becomes the copy, or holds it under the source's name when it is an existing directory.
    /// Streamed as tar (modes and mtimes kept); entries that would land outside `guest_dest`
    /// are refused by the box. Starts the box if needed.
    pub async fn copy_into(
        &self,
        host_src: impl AsRef<Path>,
        guest_dest: &str,
    ) -> Result<boxlite_copy::CopyStats> {
        let host_src = host_src.as_ref().to_path_buf();
        let what = format!(
            "{} into box {} at {guest_dest}",
            host_src.display(),
            self.id
        );
        std::fs::symlink_metadata(&host_src).map_err(io_err(&host_src))?;
        let execution = self.start_copy(true, guest_dest).await?;
        let agent = execution.client.agent();

        let (tx, mut rx) = tokio::sync::mpsc::channel(COPY_CHUNKS_IN_FLIGHT);
        let packer = tokio::task::spawn_blocking(move || {
            boxlite_copy::pack(&host_src, ChunkWriter::new(tx))
        });
        let mut write_error = None;
        while let Some(chunk) = rx.recv().await {
            if let Err(err) = agent.write_stdin(&execution.id, &chunk, false).await {
                // The box stopped reading (it refused an entry, say): its own account below.
                write_error = Some(err);
                break;
            }
        }
        drop(rx);
        let packed = packer.await.expect("pack task panicked");
        let _ = agent.write_stdin(&execution.id, &[], true).await;
        let (_, stderr, result) = execution.output().await?;
        // A host-side failure (an unreadable file) is the cause of whatever the box then
        // says about the cut-short stream.
        let packed = packed?;
        if result.exit_code != 0 || result.signal != 0 {
            return Err(BoxliteError::Copy {
                what,
                message: String::from_utf8_lossy(&stderr).trim().to_string(),
            });
        }
        if let Some(err) = write_error {
            return Err(err.into());
        }
        Ok(packed)
    }

    /// Copies `guest_src` (a file or a tree) out of the box to `host_dest`, which becomes the
    /// copy, or holds it under the source's name when it is an existing directory. Entries
    /// that would land outside `host_dest` are refused here. Starts the box if needed.
    pub async fn copy_out(
        &self,
        guest_src: &str,
        host_dest: impl AsRef<Path>,
    ) -> Result<boxlite_copy::CopyStats> {
        let host_dest = host_dest.as_ref().to_path_buf();
        let what = format!(
            "{guest_src} out of box {} to {}",
            self.id,
            host_dest.display()
        );
        let execution = self.start_copy(false, guest_src).await?;

        // The box names the stream's top entry; it must be the source asked for, or a hostile
        // guest could pick which entry of an existing `host_dest` directory it overwrites.
        let options = boxlite_copy::UnpackOptions {
            expected_name: Some(boxlite_copy::archive_name(Path::new(guest_src)).into()),
            ..boxlite_copy::UnpackOptions::copy()
        };
        let (tx, rx) = tokio::sync::mpsc::channel(COPY_CHUNKS_IN_FLIGHT);
        let unpacker = tokio::task::spawn_blocking(move || {
            boxlite_copy::unpack_with(ChunkReader::new(rx), &host_dest, &options)
        });
        let mut refused = false;
        while let Some(chunk) = execution.read_stdout().await? {
            if tx.send(chunk).await.is_err() {
                // The unpacker gave up (an entry escaping the destination, say): stop the box's
                // side and report the unpacker's reason.
                refused = true;
                let _ = execution.kill(libc::SIGKILL).await;
                break;
            }
        }
        drop(tx);
        let unpacked = unpacker.await.expect("unpack task panicked");
        let (_, stderr, result) = execution.output().await?;
        if !refused && (result.exit_code != 0 || result.signal != 0) {
            return Err(BoxliteError::Copy {
                what,
                message: String::from_utf8_lossy(&stderr).trim().to_string(),
            });
        }
        Ok(unpacked?)
    }

    async fn start_copy(&self, into_box: bool, guest_path: &str) -> Result<Execution> {
        if !guest_path.starts_with('/') {
            return Err(BoxliteError::InvalidOptions(format!(
                "{guest_path:?} is not an absolute path in the box"
            )));
        }
        self.start().await?;
        let client = ShimClient::connect(&self.dir()).await?;
        let id = ulid::Ulid::new().to_string();
        client.agent().copy(&id, into_box, guest_path).await?;
        Ok(Execution::new(id, client))
    }

    /// Re-attaches to an exec started earlier, by any process, by its id.
    pub async fn attach(&self, exec_id: &str) -> Result<Execution> {
        let client = ShimClient::connect(&self.dir()).await?;
        Ok(Execution::new(exec_id.to_string(), client))
    }
}

/// Chunks between a copy's tar stream and the box: at most this many (of [`COPY_CHUNK`]) wait,
/// so host memory stays bounded whatever the size of the copy.
const COPY_CHUNKS_IN_FLIGHT: usize = 4;
const COPY_CHUNK: usize = 256 * 1024;

/// A `Write` for a blocking tar packer that hands full chunks to the async side.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn new(tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(COPY_CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(COPY_CHUNK));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the box stopped reading")
        })
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(COPY_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == COPY_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A `Read` for a blocking tar unpacker, fed chunks by the async side.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChunkReader {
    fn new(rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A running box's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxMetrics {
    /// CPU used by the VMM, in percent of one core (can exceed 100 with several vCPUs).
    pub cpu_percent: f64,
    /// Resident memory of the VMM process(es), guest RAM it touched included.
    pub memory_bytes: u64,
    /// Guest uptime when its agent began serving.
    pub guest_boot_duration_ms: u64,
    /// From starting the VMM to the agent's first answer.
    pub spawn_to_ready_ms: u64,
    pub shim_pid: u32,
    pub engine: String,
    /// Since this boot, by any process: execs and copies started, bytes written to their
    /// stdin, bytes of their output handed to readers.
    pub execs_started: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A runtime's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeMetrics {
    pub boxes_total: usize,
    pub boxes_by_status: std::collections::BTreeMap<String, usize>,
    /// Execs started through this runtime object.
    pub execs_started: u64,
}

/// A command to run in a box.
#[derive(Debug, Clone, Default)]
pub struct BoxCommand {
    args: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: Option<String>,
    user: Option<String>,
    timeout: Option<Duration>,
    stdin: bool,
    tty: bool,
}

impl BoxCommand {
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            args: vec![program.into()],
            ..Default::default()
        }
    }
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
    /// SIGTERM after this long, SIGKILL 2 s later; `wait` then reports `timed_out`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Runs the command on a pseudo-terminal: its output arrives on stdout, stdin is open.
    pub fn tty(mut self, tty: bool) -> Self {
        self.tty = tty;
        self
    }

    /// Gives the command a stdin pipe (else it reads /dev/null).
    pub fn stdin(mut self, piped: bool) -> Self {
        self.stdin = piped;
        self
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecResult {
    /// The exit code, or -1 when a signal ended the command.
    pub exit_code: i32,
    /// The signal that ended it, 0 when it exited.
    pub signal: i32,
    pub timed_out: bool,
}

/// A command running in a box. Output is kept in the box until read, by this or any other
/// process that attaches by [`Execution::id`]: up to 4 MiB per stream wait in the box (then the
/// command's writes block until someone reads), and a read is acknowledged by the next one, so
/// a reader killed mid-read loses nothing (see [`Execution::read_stdout_chunk`]).
pub struct Execution {
    id: String,
    client: ShimClient,
    /// Stream offsets this handle (and its clones) have read up to: stdout, stderr.
    positions: Arc<[std::sync::atomic::AtomicU64; 2]>,
}

impl Execution {
    fn new(id: String, client: ShimClient) -> Self {
        Self {
            id,
            client,
            positions: Arc::default(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sends the command's output to the box's output log ([`LiteBox::logs`]) from now on:
    /// the box's shim reads it, so the command never blocks on output nobody reads (what
    /// `boxlite run -d` does). This and other handles read nothing more of it; `wait` still
    /// gives the exit code.
    pub async fn send_output_to_log(&self) -> Result<()> {
        Ok(self.client.log_output(&self.id).await?)
    }

    /// The next bytes of stdout this handle has not seen; `None` once it has ended.
    pub async fn read_stdout(&self) -> Result<Option<Vec<u8>>> {
        self.read_new(OutputStream::STDOUT).await
    }

    /// The next bytes of stderr this handle has not seen; `None` once it has ended.
    pub async fn read_stderr(&self) -> Result<Option<Vec<u8>>> {
        self.read_new(OutputStream::STDERR).await
    }

    /// The next stdout bytes with their offset in the stream. After re-attaching, the first
    /// chunk may start before the end of what a dead reader received: bytes it never
    /// acknowledged are sent again rather than lost, and the offset says where they belong.
    pub async fn read_stdout_chunk(&self) -> Result<Option<OutputChunk>> {
        self.read_chunk(OutputStream::STDOUT).await
    }

    /// [`Execution::read_stdout_chunk`] for stderr.
    pub async fn read_stderr_chunk(&self) -> Result<Option<OutputChunk>> {
        self.read_chunk(OutputStream::STDERR).await
    }

    fn position(&self, stream: OutputStream) -> &std::sync::atomic::AtomicU64 {
        &self.positions[stream as usize]
    }

    async fn read_chunk(&self, stream: OutputStream) -> Result<Option<OutputChunk>> {
        use std::sync::atomic::Ordering;
        let from = self.position(stream).load(Ordering::Acquire);
        let chunk = self.client.agent().read(&self.id, stream, from).await?;
        if let Some(chunk) = &chunk {
            self.position(stream)
                .fetch_max(chunk.end(), Ordering::AcqRel);
        }
        Ok(chunk)
    }

    async fn read_new(&self, stream: OutputStream) -> Result<Option<Vec<u8>>> {
        loop {
            let seen = self
                .position(stream)
                .load(std::sync::atomic::Ordering::Acquire);
            let Some(mut chunk) = self.read_chunk(stream).await? else {
                return Ok(None);
            };
            let skip = seen.saturating_sub(chunk.offset) as usize;
            if skip < chunk.data.len() {
                chunk.data.drain(..skip);
                return Ok(Some(chunk.data));
            }
        }
    }

    pub async fn write_stdin(&self, data: &[u8]) -> Result<()> {
        Ok(self
            .client
            .agent()
            .write_stdin(&self.id, data, false)
            .await?)
    }

    pub async fn close_stdin(&self) -> Result<()> {
        Ok(self.client.agent().write_stdin(&self.id, &[], true).await?)
    }

    /// A second handle on the same exec (one reads while another resizes or signals).
    pub fn clone_handle(&self) -> Execution {
        Execution {
            id: self.id.clone(),
            client: self.client.clone(),
            positions: Arc::clone(&self.positions),
        }
    }

    /// Sets the window size of a tty exec.
    pub async fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        Ok(self.client.agent().resize(&self.id, rows, cols).await?)
    }

    pub async fn kill(&self, signal: i32) -> Result<()> {
        Ok(self.client.agent().signal(&self.id, signal).await?)
    }

    /// Waits for the end; read the output first (or concurrently), it is kept until read.
    pub async fn wait(&self) -> Result<ExecResult> {
        let status = self.client.agent().wait(&self.id).await?;
        Ok(ExecResult {
            exit_code: status.code,
            signal: status.signal,
            timed_out: status.timed_out,
        })
    }

    /// Reads both streams to their end (from where this handle is), then waits:
    /// (stdout, stderr, result).
    pub async fn output(&self) -> Result<(Vec<u8>, Vec<u8>, ExecResult)> {
        let drain = |stream| async move {
            let mut all = Vec::new();
            while let Some(data) = self.read_new(stream).await? {
                all.extend_from_slice(&data);
            }
            Ok::<_, BoxliteError>(all)
        };
        let (stdout, stderr) =
            tokio::join!(drain(OutputStream::STDOUT), drain(OutputStream::STDERR));
        Ok((stdout?, stderr?, self.wait().await?))
    }
}
