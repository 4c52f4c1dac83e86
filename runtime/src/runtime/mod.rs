//! The public API: `BoxliteRuntime` (a home and its boxes and images), `LiteBox` (one box),
//! `BoxCommand` and `Execution` (one command in a box), by concern: `litebox` (a box's life),
//! `execution` (commands and their streams), `copy`, `metrics`, `recovery` (boxes whose shim
//! died), `error`, `options` and `security` (what callers ask for).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use boxlite_protocol::agent::OutputStream;
pub use boxlite_shim_api::agent_client::OutputChunk;
use boxlite_shim_api::agent_client::{AgentError, ExecOptions};
use boxlite_shim_api::boot_failure::BootFailure;
use boxlite_shim_api::client::{ShimClient, ShimError};
use boxlite_shim_api::launch::{launch, LaunchError};
use boxlite_shim_api::process::{self, ProcessId};
use boxlite_shim_api::spec::{
    DiskFormat, DiskSpec, EngineKind, NetworkSpec, PortForward, Protocol, SharedDir, VmSpec,
    VmStart,
};
use boxlite_shim_api::ShimConfig;

pub use crate::boxes_db::BoxID;
use crate::boxes_db::{from_ms, now_ms, BoxInfo, BoxRecord, BoxesDb, DbError};
use crate::guest::{GuestAssets, GuestError};
use crate::images::{
    build_ext4, create_box_disk, ImageError, ImageInfo, ImageRunConfig, ImageStore, ProgressFn,
    PullOptions, StoredImage,
};
use crate::status::BoxStatus;
pub use crate::status::{BoxState, ContainerID, LockId};
use boxlite_shim_api::output_log::LineSplitter;
pub use boxlite_shim_api::output_log::{LogLine, LogStream, OutputLogReader};
use options::validate_name;
pub use options::{BoxOptions, BoxliteOptions, NetworkSpec as BoxNetwork, PortSpec, RootfsSpec};

mod copy;
mod error;
mod execution;
mod litebox;
mod metrics;
pub mod options;
mod recovery;
mod security;
mod snapshots;
mod standby;
mod templates;

pub use copy::*;
pub use error::*;
pub use execution::*;
pub use litebox::*;
pub use metrics::*;
pub use options::{
    InvalidArgument, ResourceLimits, SecurityOptions, SecurityOptionsBuilder, VolumeSpec,
};
use recovery::*;
pub use snapshots::SnapshotInfo;
pub use standby::{MAX_STANDBYS, STANDBY_ENV, STANDBY_IDLE_ENV};
pub use templates::TEMPLATES_ENV;

/// Environment variable naming the home directory.
pub const HOME_ENV: &str = "BOXLITE_HOME";
/// Environment variable naming a directory for the runtime's scratch files (image root
/// filesystems unpacked while a base is built); the home's `images/tmp/` when unset.
pub const TMPDIR_ENV: &str = "BOXLITE_TMPDIR";
/// Environment variable naming the shim binary.
pub const SHIM_ENV: &str = "BOXLITE_SHIM";
/// Environment variable choosing the engine of boxes whose options name none: `qemu`,
/// `krun`, or `auto` (the default: krun where built in and usable, else QEMU).
pub const ENGINE_ENV: &str = "BOXLITE_ENGINE";
/// A box's disk in its directory: a qcow2 overlay of its image's base (none for a shared root).
pub(crate) const BOX_DISK: &str = "disk.qcow2";
/// How long `stop` lets the guest power off before the VM is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a start/stop/remove waits for another process working on the same box.
const BOX_LOCK_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) struct Inner {
    /// What this runtime object did (process-local: boxes outlive processes, counters do not).
    pub(crate) counters: Counters,
    pub(crate) home: PathBuf,
    pub(crate) registries: Vec<String>,
    pub(crate) images: ImageStore,
    pub(crate) db: BoxesDb,
    /// Set by `shutdown`: this runtime starts no more standbys.
    pub(crate) shut_down: std::sync::atomic::AtomicBool,
}

/// A home directory and everything in it. Cheap to clone; any number of processes may open
/// the same home at once.
#[derive(Clone)]
pub struct BoxliteRuntime {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for BoxliteRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxliteRuntime")
            .field("home", &self.inner.home)
            .finish()
    }
}

impl BoxliteRuntime {
    pub fn new(options: BoxliteOptions) -> Result<Self> {
        let home = options.home_dir;
        prepare_home(&home)?;
        for dir in ["boxes", "images", "init", "db", "logs"] {
            let dir = home.join(dir);
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let runtime = Self {
            inner: Arc::new(Inner {
                images: ImageStore::open(&home).with_scratch(scratch_dir_from_env()?),
                db: BoxesDb::new(&home.join("db").join("boxes.db")),
                registries: options.image_registries,
                counters: Counters::default(),
                shut_down: Default::default(),
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

    /// What processes that crashed left behind, in one pass over `boxes/`: directories a
    /// `remove` renamed away and did not finish deleting; box directories without a row (a
    /// create that died), only when nobody is creating (each create holds a share of a lock
    /// the sweep needs whole); partial downloads and bases in `images/tmp/`, likewise.
    pub(crate) fn sweep_crash_leftovers(&self) {
        self.inner.images.sweep_tmp();
        let boxes = self.inner.home.join("boxes");
        let mut candidates = Vec::new();
        for entry in std::fs::read_dir(&boxes).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(REMOVED_PREFIX) {
                let _ = std::fs::remove_dir_all(entry.path());
            } else if !name.starts_with('.') && entry.path().is_dir() {
                candidates.push(name);
            }
        }
        // A home whose boxes never started has no directory to check: no database read.
        if candidates.is_empty() {
            return;
        }
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
        for name in candidates.iter().filter(|name| !known.contains(*name)) {
            let _ = self.delete_box_dir(name);
        }
    }

    pub(crate) fn box_dir(&self, id: &str) -> PathBuf {
        self.inner.home.join("boxes").join(id)
    }

    /// Creates a box (Configured: persisted, disk made, no VM). Pulls its image if needed.
    pub async fn create(&self, options: BoxOptions, name: Option<String>) -> Result<LiteBox> {
        options.validate()?;
        if options.engine.is_none() {
            engine_from_env()?;
        }
        if let Some(name) = &name {
            validate_name(name)?;
            if self.inner.db.get(name)?.is_some() {
                return Err(BoxliteError::AlreadyExists(name.clone()));
            }
        }
        // A prepared root filesystem gets an ext4 image of its own in the box directory; an
        // image's base is shared by every box of it.
        let (image, shared_base) = match &options.rootfs {
            RootfsSpec::RootfsPath(path) => (StoredImage::from_rootfs_path(path), None),
            RootfsSpec::SharedPath(path) => {
                (StoredImage::from_rootfs_path(&path.to_string_lossy()), None)
            }
            rootfs => {
                let image = self.resolve_image(rootfs).await?;
                let images = self.inner.images.clone();
                let base_image = image.clone();
                let base = tokio::task::spawn_blocking(move || images.ensure_base(&base_image))
                    .await
                    .expect("base build panicked")?;
                (image, Some(base))
            }
        };

        let id = new_id();
        let info = configured_info(&id, name.as_deref(), &image.reference, &options);
        let image_json = serde_json::to_string(&image).expect("image serializes");
        match (shared_base, &options.rootfs) {
            // A box of an image is a row until it first starts: its directory and disk are
            // made then (`LiteBox::start`), so creating and removing a box that never ran
            // touches nothing but the database.
            // A shared root is the box's disk: nothing is made until the box starts.
            (Some(_), _) | (None, RootfsSpec::SharedPath(_)) => {
                self.inner.db.insert(&info, &options, &image_json)?
            }
            (None, RootfsSpec::RootfsPath(path)) => {
                let dir = self.box_dir(&id);
                // Until the row exists the directory has none: the share keeps a sweep from
                // taking it for a crash's leftover.
                let creating = boxlite_lockfile::lock(
                    &self.inner.home.join("boxes").join(CREATE_LOCK),
                    boxlite_lockfile::LockMode::Shared,
                    Some(BOX_LOCK_TIMEOUT),
                )?;
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                let (from, to) = (PathBuf::from(path), dir.join(ROOTFS_IMAGE));
                let created = tokio::task::spawn_blocking(move || build_ext4(&from, &to))
                    .await
                    .expect("rootfs build panicked")
                    .map_err(BoxliteError::from)
                    .and_then(|()| Ok(self.inner.db.insert(&info, &options, &image_json)?));
                if let Err(err) = created {
                    // Nothing half-made stays behind.
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(err);
                }
                drop(creating);
            }
            (None, _) => unreachable!("only a rootfs path has no shared base"),
        }
        Counters::bump(&self.inner.counters.boxes_created);
        tracing::info!(box_id = %id, name = ?name, image = %image.reference, "created box");
        Ok(LiteBox {
            id,
            name,
            runtime: self.clone(),
        })
    }

    pub(crate) async fn resolve_image(&self, rootfs: &RootfsSpec) -> Result<StoredImage> {
        match rootfs {
            RootfsSpec::Image(reference) => {
                if let Ok(image) = self.inner.images.image(reference) {
                    return Ok(image);
                }
                self.pull_image_with_progress(reference, None).await
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
            RootfsSpec::RootfsPath(path) => Ok(StoredImage::from_rootfs_path(path)),
            RootfsSpec::SharedPath(path) => {
                Ok(StoredImage::from_rootfs_path(&path.to_string_lossy()))
            }
        }
    }

    /// Pulls an image (unqualified names go through the runtime's registries in order) into
    /// the home's store, so that boxes of it start without a download.
    pub async fn pull_image(&self, image_ref: &str) -> Result<()> {
        self.pull_image_with_progress(image_ref, None)
            .await
            .map(drop)
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

    /// Removes a stored image that no box and no snapshot uses (a snapshot's disk is an
    /// overlay on the image's base).
    pub async fn remove_image(&self, reference: &str) -> Result<()> {
        let image = self.inner.images.image(reference)?;
        for record in self.inner.db.list()? {
            if record.info.image == image.reference {
                return Err(StateError::ImageInUse {
                    reference: reference.to_string(),
                    box_id: record.info.id,
                }
                .into());
            }
        }
        if let Some(snapshot) = self
            .list_snapshots()?
            .into_iter()
            .find(|s| s.image == image.reference)
        {
            return Err(StateError::ImageInSnapshot {
                reference: reference.to_string(),
                snapshot: snapshot.name,
            }
            .into());
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

    /// The box named `name`, or a new one made with `options`; `true` when it was created.
    /// Any number of processes may race on one name: one box results, and every caller
    /// gets it. Without a name, always a new box.
    pub async fn get_or_create(
        &self,
        options: BoxOptions,
        name: Option<String>,
    ) -> Result<(LiteBox, bool)> {
        let Some(name) = name else {
            return Ok((self.create(options, None).await?, true));
        };
        if let Some(found) = self.get(&name).await? {
            return Ok((found, false));
        }
        match self.create(options, Some(name.clone())).await {
            // Another process created it meanwhile.
            Err(BoxliteError::AlreadyExists(_)) => Ok((
                self.get(&name)
                    .await?
                    .ok_or_else(|| BoxliteError::NotFound(name.clone()))?,
                false,
            )),
            other => other.map(|b| (b, true)),
        }
    }

    /// Removes a box and its directory. A running box needs `force`, which kills its VM.
    pub async fn remove(&self, id_or_name: &str, force: bool) -> Result<()> {
        let record = self
            .record(id_or_name)?
            .ok_or_else(|| BoxliteError::NotFound(id_or_name.to_string()))?;
        let id = record.info.id.clone();
        let dir = self.box_dir(&id);
        // A box that never started is only a row: deleting it while it is still Configured
        // is the whole removal (a start racing with this fails its compare-and-set).
        if record.info.status == BoxStatus::Configured
            && !dir.exists()
            && self.inner.db.delete(&id, &[BoxStatus::Configured])?
        {
            return Ok(());
        }
        // The box lock; a box whose directory was deleted by hand gets it back for a moment.
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
                return Err(StateError::Running(id).into());
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
        tracing::info!(box_id = %id, force, "removed box");
        self.delete_box_dir(&id)
    }

    /// Deletes a box's directory, its row gone. Renamed away first: a process that looks at
    /// the box meanwhile (and might create its lock file again) finds nothing instead of
    /// making the directory non-empty again.
    pub(crate) fn delete_box_dir(&self, id: &str) -> Result<()> {
        let dir = self.box_dir(id);
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

    /// Stops every running box of the home, each given `timeout` seconds (default 10; a
    /// negative value waits as long as it takes) to power off before its VM is killed.
    /// Boxes with `auto_remove` are removed, as by [`LiteBox::stop`]. The home's standbys
    /// (`BOXLITE_STANDBY`) are retired first, so that no VM of the home is left running, and
    /// this runtime starts no standby afterwards (boxes it starts still may take one).
    pub async fn shutdown(&self, timeout: Option<i32>) -> Result<()> {
        self.inner
            .shut_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.retire_standbys().await;
        let timeout = match timeout {
            None => STOP_TIMEOUT,
            Some(seconds) if seconds < 0 => Duration::from_secs(u64::from(u32::MAX)),
            Some(seconds) => Duration::from_secs(seconds as u64),
        };
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

    pub(crate) fn record(&self, id_or_name: &str) -> Result<Option<BoxRecord>> {
        match self.inner.db.get(id_or_name)? {
            Some(record) => Ok(Some(self.refresh(record)?)),
            None => Ok(None),
        }
    }

    /// A box recorded as running whose shim is gone (crashed, killed, its VMM died, the host
    /// rebooted) is Stopped: whichever process notices first records it, after killing what
    /// is left of the VM. Stale files go too unless another process holds the box's lock (it
    /// is starting, stopping or removing the box and tidies up itself).
    pub(crate) fn refresh(&self, record: BoxRecord) -> Result<BoxRecord> {
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
        tracing::warn!(box_id = %id, shim = ?record.shim, this_boot, "the box's shim is gone: recovering");
        if let (true, Some(shim)) = (this_boot, record.shim) {
            // Waited for, so that when a caller sees Stopped nothing of the VM runs any more
            // (SIGKILL takes effect after kill(2) returns). Milliseconds, on a rare path.
            for process in kill_box_processes(&dir, shim) {
                process.wait_gone(KILL_WAIT);
            }
        }
        let stopped = self.inner.db.mark_stopped(id, record.shim)?;
        let lock = stopped
            .then(|| {
                boxlite_lockfile::try_lock(&dir.join("lock"), boxlite_lockfile::LockMode::Exclusive)
                    .ok()
            })
            .flatten();
        if let Some(_lock) = lock {
            for file in boxlite_shim_api::files::STALE_AFTER_SHIM {
                let _ = std::fs::remove_file(dir.join(file));
            }
            // Its VM ended without `stop` (its starter exited, it crashed): a box that asked
            // to be removed when stopped goes now.
            if record.options.auto_remove && self.inner.db.delete(id, &[BoxStatus::Stopped])? {
                self.delete_box_dir(id)?;
                let mut gone = record;
                gone.info.status = BoxStatus::Stopped;
                gone.shim = None;
                return Ok(gone);
            }
        }
        Ok(self.inner.db.get(id)?.unwrap_or(record))
    }

    pub(crate) async fn lock_box(&self, id: &str) -> Result<boxlite_lockfile::LockGuard> {
        // A box that never started has no directory yet: its lock file makes it.
        let dir = self.box_dir(id);
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join("lock");
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

/// The ext4 image of a box made from a prepared root filesystem, in its directory.
pub(crate) const ROOTFS_IMAGE: &str = "rootfs.ext4";

/// In `boxes/`: held shared by every create until its row exists, exclusively by a sweep.
pub(crate) const CREATE_LOCK: &str = ".create.lock";

/// Box directories being deleted are renamed to this prefix + id first.
pub(crate) const REMOVED_PREFIX: &str = ".removed-";

static DEFAULT_RUNTIME: std::sync::OnceLock<BoxliteRuntime> = std::sync::OnceLock::new();

impl BoxliteRuntime {
    /// The process-wide runtime, opened with defaults on first use.
    ///
    /// # Panics
    /// When the default home cannot be opened: [`BoxliteRuntime::init_default_runtime`] or
    /// [`BoxliteRuntime::with_defaults`] return the error instead.
    pub fn default_runtime() -> &'static Self {
        if let Some(rt) = DEFAULT_RUNTIME.get() {
            return rt;
        }
        let rt = Self::with_defaults()
            .unwrap_or_else(|e| panic!("opening the default boxlite runtime: {e}"));
        DEFAULT_RUNTIME.get_or_init(|| rt)
    }

    /// The process-wide runtime if it has been opened.
    pub fn try_default_runtime() -> Option<&'static Self> {
        DEFAULT_RUNTIME.get()
    }

    /// Opens the process-wide runtime with `options`; fails if it is already open.
    pub fn init_default_runtime(options: BoxliteOptions) -> Result<()> {
        let rt = Self::new(options)?;
        DEFAULT_RUNTIME
            .set(rt)
            .map_err(|_| StateError::DefaultRuntimeOpen.into())
    }
}

/// [`BoxliteRuntime::default_runtime`].
pub fn default_runtime() -> &'static BoxliteRuntime {
    BoxliteRuntime::default_runtime()
}

/// [`BoxliteRuntime::try_default_runtime`].
pub fn try_default_runtime() -> Option<&'static BoxliteRuntime> {
    BoxliteRuntime::try_default_runtime()
}

/// [`BoxliteRuntime::init_default_runtime`].
pub fn init_default_runtime(options: BoxliteOptions) -> Result<()> {
    BoxliteRuntime::init_default_runtime(options)
}

/// Creates the home for this user alone (0700), or checks that an existing one belongs to
/// this user: boxes, their environment and their sockets are in it, and a home another user
/// controls could hand us files and sockets of their choosing.
pub(crate) fn prepare_home(home: &Path) -> Result<()> {
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
        return Err(ConfigError::HomeNotADirectory(home.to_path_buf()).into());
    }
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(ConfigError::HomeNotOwned {
            home: home.to_path_buf(),
            owner: meta.uid(),
            user: me,
        }
        .into());
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

/// `BOXLITE_HOME`, else `~/.boxlite`.
pub fn default_home() -> PathBuf {
    std::env::var_os(HOME_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into())).join(".boxlite")
        })
}

/// The VM's network for a box's options; every forwarded host port is checked free first, so
/// that a taken one is reported as such rather than as a VMM that would not start.
pub(crate) fn network_spec(options: &BoxOptions) -> Result<Option<NetworkSpec>> {
    if options.network == options::NetworkSpec::None {
        return Ok(None);
    }
    let mut forwards = Vec::new();
    for port in &options.ports {
        let host_port = port.effective_host_port();
        let address = std::net::SocketAddr::from((port.host_ip, host_port));
        let free = match port.protocol {
            Protocol::Tcp => std::net::TcpListener::bind(address).map(drop),
            Protocol::Udp => std::net::UdpSocket::bind(address).map(drop),
        };
        free.map_err(|source| {
            BoxliteError::from(NetworkError::PortTaken {
                ip: port.host_ip,
                port: host_port,
                protocol: port.protocol.name(),
                source,
            })
        })?;
        forwards.push(PortForward {
            host_ip: port.host_ip,
            host_port,
            guest_port: port.guest_port,
            protocol: port.protocol,
        });
    }
    Ok(Some(NetworkSpec {
        forwards,
        policy: options.network_policy.clone(),
    }))
}

/// The directory `BOXLITE_TMPDIR` names, checked; `None` when unset or empty.
fn scratch_dir_from_env() -> Result<Option<PathBuf>> {
    let Some(dir) = std::env::var_os(TMPDIR_ENV).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let dir = PathBuf::from(dir);
    if !dir.is_absolute() || !dir.is_dir() {
        return Err(ConfigError::Environment {
            variable: TMPDIR_ENV,
            message: format!(
                "{} is not an existing directory given by its absolute path; create it or \
                 unset {TMPDIR_ENV}",
                dir.display()
            ),
        }
        .into());
    }
    Ok(Some(dir))
}

/// A new id (a ULID) for a box or an exec. Its random part comes from the kernel each time:
/// processes forked from one another start with the same user-space generator state (the
/// Python SDK's `multiprocessing` children made the same exec id in the same millisecond),
/// and an id must be unique across every process of a home.
pub(crate) fn new_id() -> String {
    let mut random = [0u8; 16];
    // SAFETY: getrandom writes at most `random.len()` bytes into `random`, which it owns.
    let read = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
    if read != random.len() as isize {
        // No kernel randomness (a seccomp filter, an old kernel): the pid still tells forked
        // processes apart.
        let fallback = ulid::Ulid::new().random() ^ u128::from(std::process::id());
        random = fallback.to_le_bytes();
    }
    ulid::Ulid::from_parts(now_ms(), u128::from_le_bytes(random)).to_string()
}

/// A snapshot save or template build still under way after this long was left by a process
/// that was killed (a save gives up after ten minutes, a build after its ready timeout).
pub(crate) const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// Removes the directories in `dir` named `prefix` + the start of an id from [`new_id`] (its
/// first 10 characters, the time it was made) that were made over `older_than` ago: work
/// directories left by a process that was killed before it could remove its own.
pub(crate) fn remove_abandoned(dir: &Path, prefix: &str, older_than: Duration) {
    let now = now_ms();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(made) = name
            .strip_prefix(prefix)
            .and_then(|id| id.get(..10))
            .and_then(|time| ulid::Ulid::from_string(&format!("{time}0000000000000000")).ok())
            .map(|id| id.timestamp_ms())
        else {
            continue;
        };
        if now.saturating_sub(made) > older_than.as_millis() as u64 {
            tracing::info!(dir = %entry.path().display(), "removing an abandoned work directory");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The engine `BOXLITE_ENGINE` asks for; `None` for auto.
pub(crate) fn engine_from_env() -> Result<Option<EngineKind>> {
    match std::env::var(ENGINE_ENV) {
        Err(_) => Ok(None),
        Ok(value) if value.is_empty() || value == "auto" => Ok(None),
        Ok(value) => value.parse().map(Some).map_err(|e: String| {
            ConfigError::Environment {
                variable: ENGINE_ENV,
                message: format!("{e}, or auto"),
            }
            .into()
        }),
    }
}

/// The shim a program carries with it (an SDK unpacks its own), set once per process.
static INSTALLED_SHIM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Tells the runtime where this program's own `boxlite-shim` is: used unless `BOXLITE_SHIM`
/// names another. For programs whose executable is not beside a shim (the Python and Node
/// SDKs, whose executable is the interpreter). The first call wins.
pub fn set_installed_shim(path: PathBuf) {
    let _ = INSTALLED_SHIM.set(path);
}

/// `boxlite-shim`: `BOXLITE_SHIM`, else the program's own ([`set_installed_shim`]), else
/// beside the running program.
pub(crate) fn shim_binary() -> PathBuf {
    std::env::var_os(SHIM_ENV)
        .map(PathBuf::from)
        .or_else(|| INSTALLED_SHIM.get().cloned())
        .unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|d| d.join("boxlite-shim")))
                .unwrap_or_else(|| PathBuf::from("boxlite-shim"))
        })
}

/// The row of a box just created: Configured, made now, no VM yet.
pub(crate) fn configured_info(
    id: &str,
    name: Option<&str>,
    image: &str,
    options: &BoxOptions,
) -> BoxInfo {
    let now = from_ms(now_ms() as i64);
    BoxInfo {
        id: id.to_string(),
        name: name.map(str::to_string),
        status: BoxStatus::Configured,
        created_at: now,
        last_updated: now,
        pid: None,
        image: image.to_string(),
        cpus: options.effective_cpus(),
        memory_mib: options.effective_memory_mib(),
        labels: options.labels.clone().into_iter().collect(),
        engine: None,
    }
}
