//! Standby VMs: warm VMs kept ready for boxes that have not been asked for yet.
//!
//! Under TCG a template start is short of a fast start because a new QEMU has translated no
//! guest code: the agent's session, mounting the box disk and the first command's fork and
//! exec are all translated anew. With `BOXLITE_STANDBY=N` the home keeps up to N standbys per
//! kind of box (VM shape, image, network, confinement): each restored from its shape's
//! template, with its own fresh box disk mounted and a first command run, its shim serving in
//! `standby/<kind>/<name>/`. A box of that kind, at its first start, takes one: it renames
//! the standby's directory into its own (one rename wins, so two runtimes never take the
//! same standby) and the shim's Assign gives the guest the clock, fresh entropy and the
//! box's hostname. The box then runs on exactly as a box started from the template would.
//! Taking a standby starts another one in its place.
//!
//! A standby nobody takes powers off after `BOXLITE_STANDBY_IDLE_SECS` (600 by default) and
//! removes its directory; `BoxliteRuntime::retire_standbys` ends them all at once. A box that
//! cannot take one (none ready, another kind, not its first start) starts as before; its
//! metrics' `start_mode` says which way it started. Boxes with host port forwards never take
//! one (a standby's passt would hold the ports while it waits).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use boxlite_lockfile::LockMode;

use boxlite_shim_api::files;
use boxlite_shim_api::launch::LaunchOptions;
use boxlite_shim_api::StandbyConfig;
use sha2::Digest;

use super::*;

/// How many standbys the home keeps per kind of box; unset or 0: none.
pub const STANDBY_ENV: &str = "BOXLITE_STANDBY";
/// Seconds a standby waits to be taken before it powers off.
pub const STANDBY_IDLE_ENV: &str = "BOXLITE_STANDBY_IDLE_SECS";
/// At most this many per kind, whatever `BOXLITE_STANDBY` says: each is a running VM.
pub const MAX_STANDBYS: usize = 16;
const DEFAULT_IDLE: Duration = Duration::from_secs(600);
/// A standby's shim writes its pid file within this long of being started (it is the first
/// thing it does); a warming standby without one after it is counted as dead.
const PID_LIMIT: Duration = Duration::from_secs(30);
/// Prefix of a standby's directory while it warms (it is renamed when it is ready).
const WARMING: &str = ".w-";
/// Prefix of a standby's directory once it retired.
const RETIRED: &str = StandbyConfig::RETIRED_PREFIX;
/// Prefix of a standby's directory while a runtime moves it into a box's.
const TAKEN: &str = ".taken-";
/// How long retiring waits for a top-up of a pool under way: it only creates directories and
/// disks and spawns shims.
const TOP_UP_WAIT: Duration = Duration::from_secs(30);

/// Set when the home's filesystem cannot exchange two directories (`RENAME_EXCHANGE`): no
/// standby can be taken there, so none is made.
static CANNOT_EXCHANGE: AtomicBool = AtomicBool::new(false);

/// How many standbys per kind the environment asks for.
pub(crate) fn wanted() -> usize {
    if CANNOT_EXCHANGE.load(Ordering::Relaxed) {
        return 0;
    }
    std::env::var(STANDBY_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(MAX_STANDBYS)
}

fn idle_timeout() -> Duration {
    std::env::var(STANDBY_IDLE_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_IDLE)
}

/// One kind of box standbys are made for: a box takes a standby only of its own kind.
#[derive(Debug, Clone)]
pub(crate) struct StandbyKind {
    key: String,
    /// The standby's VM: the box's, from its template, with paths relative to its directory.
    spec: VmSpec,
    /// The image base the standby's disk is an overlay of.
    base: PathBuf,
    confinement: LaunchOptions,
    ready_timeout: Duration,
}

impl StandbyKind {
    /// The kind of a box whose VM is `box_spec` (to start from a template), whose disk is an
    /// overlay of `base`.
    pub fn of(box_spec: &VmSpec, base: &Path, options: &BoxOptions) -> Self {
        let mut spec = box_spec.clone();
        // Its shim works from inside its directory: its own files by relative paths, all
        // others by absolute ones (a home given by a relative path would otherwise name
        // other places from there).
        spec.run_dir = PathBuf::from(".");
        spec.hostname = None;
        if let Some(disk) = &mut spec.root_disk {
            disk.path = PathBuf::from(BOX_DISK);
        }
        let absolute = |p: &mut PathBuf| {
            if let Ok(path) = std::path::absolute(&*p) {
                *p = path;
            }
        };
        absolute(&mut spec.kernel);
        absolute(&mut spec.initramfs);
        if let VmStart::FromTemplate { ram_file, state } = &mut spec.start {
            absolute(ram_file);
            absolute(state);
        }
        let identity = serde_json::json!({
            "vm": spec,
            "base": super::templates::file_identity(base),
            "security": options.security,
            "engine": "qemu",
            "shim": super::templates::file_identity(&shim_binary()),
        });
        let digest = sha2::Sha256::digest(identity.to_string().as_bytes());
        Self {
            key: hex::encode(&digest[..12]),
            spec,
            base: std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf()),
            confinement: options.security.launch_options(),
            ready_timeout: options.ready_timeout,
        }
    }

    fn pool(&self, home: &Path) -> PathBuf {
        pools(home).join(&self.key)
    }
}

fn pools(home: &Path) -> PathBuf {
    // Absolute: a standby's shim is told where to publish itself, from inside its directory.
    std::path::absolute(home)
        .unwrap_or_else(|_| home.to_path_buf())
        .join("standby")
}

/// Makes a ready standby of `kind` the contents of `box_dir`; false when none is ready. The
/// caller holds the box's lock (`box_dir/lock`, the directory's only entry before its first
/// start) and then assigns the standby, or kills it if that fails.
///
/// A standby is claimed by renaming it within its pool (one rename wins, so two runtimes never
/// take the same standby), gets a hard link to the box's lock file, and is then exchanged with
/// the box directory in one step (`RENAME_EXCHANGE`): whoever opens `box_dir/lock` at any
/// moment finds the lock this process holds.
pub(crate) fn take(home: &Path, kind: &StandbyKind, box_dir: &Path) -> bool {
    let pool = kind.pool(home);
    let Ok(entries) = std::fs::read_dir(&pool) else {
        return false;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // A dead one is left to the next sweep: taking it would cost a failed Assign.
        if name.starts_with('.') || live_shim(&entry.path()).is_none() {
            continue;
        }
        let taken = pool.join(format!("{TAKEN}{name}"));
        if std::fs::rename(entry.path(), &taken).is_err() {
            // Taken by another runtime, or retired, just now: try the next.
            continue;
        }
        let swapped = std::fs::hard_link(box_dir.join("lock"), taken.join("lock"))
            .and_then(|()| exchange(&taken, box_dir));
        return match swapped {
            Ok(()) => {
                // The box's directory as it was: only the lock's other name.
                let _ = std::fs::remove_dir_all(&taken);
                true
            }
            Err(err) => {
                tracing::warn!("taking the standby {}: {err}", taken.display());
                // EXDEV: the box directories and the pools are on different filesystems
                // (a symbolic link or mount in the home).
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EINVAL | libc::EOPNOTSUPP | libc::EXDEV)
                ) {
                    tracing::warn!(
                        "the home cannot exchange a standby's directory with a box's: no standbys"
                    );
                    CANNOT_EXCHANGE.store(true, Ordering::Relaxed);
                }
                retire(&taken);
                false
            }
        };
    }
    false
}

/// Empties a box directory a standby was taken into and could not serve (its shim ended
/// first), but for the box's lock, which the caller holds: the box then starts as usual.
pub(crate) fn clear_box_dir(box_dir: &Path) {
    for entry in std::fs::read_dir(box_dir).into_iter().flatten().flatten() {
        if entry.file_name() == "lock" {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(err) = removed {
            tracing::warn!("clearing {}: {err}", path.display());
        }
    }
}

/// Swaps two directories' names atomically (renameat2 with RENAME_EXCHANGE).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call, which reads them
    // and touches no other memory.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Ends the standby whose directory is `dir` at once (its shim and the VMM it recorded) and
/// removes the directory.
fn retire(dir: &Path) {
    if let Some(shim) = live_shim(dir) {
        kill_box_processes(dir, shim);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Tops `kind`'s pool up to [`wanted`] standbys: removes dead ones, and starts the missing
/// ones without waiting for them. Another process topping up the same pool makes this one
/// return at once; `shut_down` set (the runtime shut down) makes it start no more. Blocking
/// (file work and process starts).
pub(crate) fn refill(home: &Path, kind: &StandbyKind, shut_down: &AtomicBool) {
    let wanted = wanted();
    if wanted == 0 {
        return;
    }
    let pool = kind.pool(home);
    if let Err(err) = std::fs::create_dir_all(&pool) {
        tracing::warn!("standby pool {}: {err}", pool.display());
        return;
    }
    let Ok(_lock) = boxlite_lockfile::try_lock(&pool.with_extension("lock"), LockMode::Exclusive)
    else {
        return;
    };
    let have = sweep(&pool);
    for _ in have..wanted {
        // Checked under the pool's lock, which retiring takes too: what a top-up started
        // before a shutdown is retired by it, and none starts after.
        if shut_down.load(Ordering::SeqCst) {
            return;
        }
        if let Err(err) = start_one(&pool, kind) {
            tracing::warn!("starting a standby in {}: {err}", pool.display());
            return;
        }
    }
}

/// Removes the pool's dead standbys; returns how many are ready or warming.
fn sweep(pool: &Path) -> usize {
    let mut alive = 0;
    for entry in std::fs::read_dir(pool).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let shim = ProcessId::read(&path.join(files::PID));
        let running = shim.is_some_and(|p| p.is_alive());
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        // A warming standby's shim may not have written its pid yet; one with no shim.json
        // was never started (its starter was killed first).
        let starting = name.starts_with(WARMING)
            && shim.is_none()
            && path.join(files::CONFIG).is_file()
            && age < PID_LIMIT;
        if running || starting {
            // A retired one removes its directory as it ends.
            alive += usize::from(!name.starts_with(RETIRED));
        } else {
            remove_dead(&path, &name);
        }
    }
    alive
}

/// Removes a dead standby's directory, once it is this process's to remove.
fn remove_dead(path: &Path, name: &str) {
    if let Some(retired) = retire_entry(path, name) {
        let _ = std::fs::remove_dir_all(&retired);
    }
}

/// Moves the pool entry `path` (named `name`) out of reach of takers, under its retired name;
/// returns where it is now, or `None` when someone else moved it first (it is theirs).
///
/// Whatever is removed or killed must be retired first: a directory is removed entry by
/// entry through a handle that follows it, so removing one that a runtime is exchanging with
/// a box's directory at that moment would empty the box's directory, its lock included.
fn retire_entry(path: &Path, name: &str) -> Option<PathBuf> {
    if name.starts_with(RETIRED) {
        return Some(path.to_path_buf());
    }
    let bare = name
        .strip_prefix(WARMING)
        .or_else(|| name.strip_prefix(TAKEN))
        .unwrap_or(name);
    let retired = path.with_file_name(StandbyConfig::retired_name(bare));
    std::fs::rename(path, &retired).ok().map(|()| retired)
}

/// Starts one standby of `kind` in a new directory of `pool`.
fn start_one(pool: &Path, kind: &StandbyKind) -> std::result::Result<(), String> {
    let id = new_id();
    let name = format!("{}{}", &id[..10], &id[id.len() - 6..]);
    let dir = pool.join(format!("{WARMING}{name}"));
    std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let started = (|| {
        create_box_disk(&kind.base, &dir.join(BOX_DISK)).map_err(|e| e.to_string())?;
        let config = ShimConfig {
            vm: kind.spec.clone(),
            engine: Some(EngineKind::Qemu),
            ready_timeout_ms: kind.ready_timeout.as_millis() as u64,
            launcher: None,
            stop_with_launcher: false,
            template_miss: None,
            standby: Some(StandbyConfig {
                publish_as: pool.join(&name),
                idle_timeout_ms: idle_timeout().as_millis() as u64,
            }),
        };
        let mut child =
            boxlite_shim_api::launch::spawn(&shim_binary(), &dir, &config, &kind.confinement)
                .map_err(|e| e.to_string())?;
        // Reaped whenever it ends; it outlives this process otherwise (its own session).
        std::thread::spawn(move || child.wait());
        Ok(())
    })();
    if started.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    started
}

/// Every entry of every pool of the home: (its path, its name).
fn all_entries(home: &Path) -> Vec<(PathBuf, String)> {
    let entries = |dir: PathBuf| std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries(pools(home))
        .flat_map(|pool| entries(pool.path()))
        .map(|entry| {
            (
                entry.path(),
                entry.file_name().to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// Ends every standby of the home: each is moved out of its pool first, so that no box takes
/// it meanwhile. Returns how many were running.
async fn retire_all(home: &Path) -> usize {
    let pools_of = home.to_path_buf();
    // Held until every standby is retired: no top-up (in any process) starts one meanwhile.
    let _pool_locks = tokio::task::spawn_blocking(move || lock_pools(&pools_of))
        .await
        .unwrap_or_default();
    let mut shims = Vec::new();
    for (path, name) in all_entries(home) {
        let Some(retired) = retire_entry(&path, &name) else {
            continue;
        };
        match live_shim(&retired) {
            Some(shim) => shims.push((retired, shim)),
            None => {
                let _ = std::fs::remove_dir_all(&retired);
            }
        }
    }
    let count = shims.len();
    for (dir, shim) in shims {
        kill_and_wait(&dir, shim).await;
        let _ = std::fs::remove_dir_all(&dir);
    }
    count
}

/// Takes the lock of every pool of the home, each waiting for a top-up under way there to end
/// ([`TOP_UP_WAIT`] at most), so that what it started is seen by whoever retires standbys.
fn lock_pools(home: &Path) -> Vec<boxlite_lockfile::LockGuard> {
    std::fs::read_dir(pools(home))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|pool| {
            let lock = pool.path().with_extension("lock");
            boxlite_lockfile::lock(&lock, LockMode::Exclusive, Some(TOP_UP_WAIT))
                .inspect_err(|err| tracing::warn!("retiring standbys: {err}"))
                .ok()
        })
        .collect()
}

/// The standbys of the home that are ready to be taken, all kinds.
fn ready(home: &Path) -> usize {
    all_entries(home)
        .into_iter()
        .filter(|(path, name)| !name.starts_with('.') && live_shim(path).is_some())
        .count()
}

impl BoxliteRuntime {
    /// Standbys of this home ready to be taken by a box (see `BOXLITE_STANDBY`), all kinds.
    pub fn standbys_ready(&self) -> usize {
        ready(&self.inner.home)
    }

    /// Powers off every standby of this home (ready or warming) and removes them; returns
    /// how many were running. Boxes already started from one are not touched. New ones are
    /// started again by the next box that takes or misses one while `BOXLITE_STANDBY` is set.
    pub async fn retire_standbys(&self) -> usize {
        retire_all(&self.inner.home).await
    }
}
