//! Pause and resume, memory snapshots and forks.
//!
//! A snapshot is a directory `snapshots/NAME/` of the home: `vm.state` (QEMU's saved VM:
//! memory and devices), `disk` (the box disk at the same moment, a qcow2 overlay of the
//! image's base) and `snapshot.json` (what the box was made of and the VM shape it restores
//! into). It is written under `snapshots/.tmp-ID/` and renamed into place whole, so a failed
//! or interrupted save leaves nothing a listing shows.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::templates::VmShape;
use super::*;

const SNAPSHOT_META: &str = "snapshot.json";
use boxlite_shim_api::files::{SNAPSHOT_DISK, SNAPSHOT_STATE};
/// A box created from a snapshot restores this state on its next start, then deletes it.
pub(crate) const PENDING_RESTORE: &str = "restore.state";
/// Below this much free space after a failed save, the failure is a full disk.
const DISK_FULL_MARGIN: u64 = 1 << 20;

/// A saved box.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    /// Unique for the life of the home (a ULID), where a name can be reused after removal.
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The box it was taken of (which may be gone since).
    pub source_id: BoxID,
    pub source_name: Option<String>,
    pub image: String,
    pub cpus: u8,
    pub memory_mib: u32,
    /// Bytes on the host: saved memory and devices plus the disk overlay.
    pub size_bytes: u64,
    /// The size of the box's disk as its guest sees it.
    #[serde(default)]
    pub disk_bytes: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotMeta {
    info: SnapshotInfo,
    options: BoxOptions,
    image_json: String,
    shape: VmShape,
}

fn snapshot_err(err: SnapshotError) -> BoxliteError {
    err.into()
}

impl BoxliteRuntime {
    fn snapshots_dir(&self) -> PathBuf {
        self.inner.home.join("snapshots")
    }

    /// The home's snapshots, oldest first.
    pub fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let dir = self.snapshots_dir();
        let mut list = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(list),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match self.snapshot_meta(&name) {
                Ok(meta) => list.push(meta.info),
                Err(err) => tracing::warn!("snapshot {name}: {err}"),
            }
        }
        list.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
        Ok(list)
    }

    /// One snapshot's description.
    pub fn get_snapshot(&self, name: &str) -> Result<SnapshotInfo> {
        validate_name(name)?;
        Ok(self.snapshot_meta(name)?.info)
    }

    fn snapshot_meta(&self, name: &str) -> Result<SnapshotMeta> {
        let dir = self.snapshots_dir().join(name);
        if !dir.is_dir() {
            return Err(snapshot_err(SnapshotError::NotFound(name.to_string())));
        }
        let damaged = |reason: String| {
            snapshot_err(SnapshotError::Damaged {
                name: name.to_string(),
                reason,
            })
        };
        let bytes = std::fs::read(dir.join(SNAPSHOT_META))
            .map_err(|e| damaged(format!("{SNAPSHOT_META}: {e}")))?;
        let meta: SnapshotMeta =
            serde_json::from_slice(&bytes).map_err(|e| damaged(format!("{SNAPSHOT_META}: {e}")))?;
        for file in [SNAPSHOT_STATE, SNAPSHOT_DISK] {
            if !dir.join(file).is_file() {
                return Err(damaged(format!("{file} is missing")));
            }
        }
        Ok(meta)
    }

    /// Deletes a snapshot. Boxes created from it are not affected.
    pub fn remove_snapshot(&self, name: &str) -> Result<()> {
        validate_name(name)?;
        self.remove_snapshot_dir(name)
    }

    fn remove_snapshot_dir(&self, name: &str) -> Result<()> {
        let dir = self.snapshots_dir().join(name);
        let removed = self.snapshots_dir().join(format!(".removed-{}", new_id()));
        match std::fs::rename(&dir, &removed) {
            Ok(()) => std::fs::remove_dir_all(&removed).map_err(io_err(&removed)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(snapshot_err(SnapshotError::NotFound(name.to_string())))
            }
            Err(e) => Err(io_err(&dir)(e)),
        }
    }

    /// Creates a box from a snapshot and starts it: it continues from the moment the
    /// snapshot was taken (its processes running, its memory and files as they were), with
    /// a clock set to now, fresh entropy, its own name and network. It has the source box's
    /// options but no host port forwards (those ports belong to the source).
    pub async fn create_from_snapshot(
        &self,
        snapshot: &str,
        name: Option<String>,
    ) -> Result<LiteBox> {
        validate_name(snapshot)?;
        self.restore_snapshot(snapshot, name).await
    }

    async fn restore_snapshot(&self, snapshot: &str, name: Option<String>) -> Result<LiteBox> {
        if let Some(name) = &name {
            validate_name(name)?;
            if self.inner.db.get(name)?.is_some() {
                return Err(BoxliteError::AlreadyExists(name.clone()));
            }
        }
        let meta = self.snapshot_meta(snapshot)?;
        let mut options = meta.options.clone();
        options.ports.clear();
        let id = new_id();
        let probe = LiteBox {
            id: id.clone(),
            name: name.clone(),
            runtime: self.clone(),
        };
        let shape =
            VmShape::of(&probe.vm_spec_for(&options, name.as_deref(), &self.box_dir(&id))?);
        if let Some((what, saved, now)) = meta.shape.difference(&shape) {
            return Err(snapshot_err(SnapshotError::Incompatible {
                name: snapshot.to_string(),
                what,
                saved,
                now,
            }));
        }
        let info = configured_info(&id, name.as_deref(), &meta.info.image, &options);
        // The row first: a box directory with a row is never taken for a crash's leftover.
        self.inner.db.insert(&info, &options, &meta.image_json)?;
        let from = self.snapshots_dir().join(snapshot);
        let dir = self.box_dir(&id);
        let placed = std::fs::create_dir_all(&dir).and_then(|()| place_restore(&from, &dir));
        let litebox = LiteBox {
            id: id.clone(),
            name,
            runtime: self.clone(),
        };
        if let Err(err) = placed {
            let _ = self.remove(&id, true).await;
            return Err(io_err(&dir)(err));
        }
        Counters::bump(&self.inner.counters.boxes_created);
        if let Err(err) = litebox.start().await {
            let _ = self.remove(&id, true).await;
            return Err(err);
        }
        Ok(litebox)
    }
}

/// Puts snapshot directory `from`'s disk and saved state into box directory `dir`, for the
/// box's next start to restore. The disk is replaced whole (written beside it, then renamed
/// over it), so a failure leaves the old one.
fn place_restore(from: &Path, dir: &Path) -> std::io::Result<()> {
    let disk = dir.join(BOX_DISK);
    let partial = dir.join(format!("{BOX_DISK}.restoring"));
    let placed = std::fs::copy(from.join(SNAPSHOT_DISK), &partial)
        .and_then(|_| std::fs::rename(&partial, &disk));
    if placed.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    placed?;
    // A link when it can be (the state is only read); a copy across filesystems.
    let state = dir.join(PENDING_RESTORE);
    let _ = std::fs::remove_file(&state);
    if std::fs::hard_link(from.join(SNAPSHOT_STATE), &state).is_err() {
        std::fs::copy(from.join(SNAPSHOT_STATE), &state)?;
    }
    Ok(())
}

/// Free bytes on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: statvfs writes a complete struct into `stat` when it returns 0; the path is a
    // NUL-terminated string alive for the call.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: initialised by the successful call above.
    let stat = unsafe { stat.assume_init() };
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.blocks() * 512
        })
        .sum()
}

impl LiteBox {
    /// Stops the box's vCPUs: its processes, memory and devices are kept, nothing runs.
    /// While it is paused, `exec` and copies are refused (resume it first); `stop` and
    /// `remove` work. A no-op on a paused box.
    pub async fn pause(&self) -> Result<()> {
        self.set_paused(true).await
    }

    /// Runs a paused box again, from where it stopped. A no-op on a running box.
    pub async fn resume(&self) -> Result<()> {
        self.set_paused(false).await
    }

    async fn set_paused(&self, pause: bool) -> Result<()> {
        let _lock = self.runtime.lock_box(&self.id).await?;
        let record = self.runtime.refresh(self.record()?)?;
        let (from, to, action) = if pause {
            (BoxStatus::Running, BoxStatus::Paused, "pause")
        } else {
            (BoxStatus::Paused, BoxStatus::Running, "resume")
        };
        if record.info.status == to {
            return Ok(());
        }
        if record.info.status != from {
            return Err(StateError::Wrong {
                id: self.id.clone(),
                action,
                status: record.info.status,
            }
            .into());
        }
        let client = ShimClient::connect(&self.dir()).await?;
        let done = if pause {
            client.pause().await
        } else {
            client.resume().await
        };
        done.map_err(|err| self.shim_refusal(err))?;
        self.runtime
            .inner
            .db
            .transition(&self.id, &[from], to, record.shim)?;
        tracing::info!(box_id = %self.id, "{action}d box");
        Ok(())
    }

    /// A shim's refusal as the error a caller can act on.
    fn shim_refusal(&self, err: ShimError) -> BoxliteError {
        match err {
            ShimError::Refused {
                code: ttrpc::Code::UNIMPLEMENTED,
                message,
                ..
            } => BoxliteError::Unsupported(message),
            other => other.into(),
        }
    }

    /// Saves the running or paused box — memory, devices and disk at one moment — as
    /// snapshot `name` of the home. The vCPUs stop while it is written; a running box runs
    /// on afterwards. Refused for a box that is not running, one with volumes (virtio-fs
    /// state cannot be saved) and under the krun engine.
    pub async fn snapshot(&self, name: &str) -> Result<SnapshotInfo> {
        validate_name(name)?;
        self.save_snapshot(name).await
    }

    async fn save_snapshot(&self, name: &str) -> Result<SnapshotInfo> {
        let snapshots = self.runtime.snapshots_dir();
        let target = snapshots.join(name);
        if target.exists() {
            return Err(snapshot_err(SnapshotError::Exists(name.to_string())));
        }
        let _lock = self.runtime.lock_box(&self.id).await?;
        let record = self.runtime.refresh(self.record()?)?;
        let status = record.info.status;
        if !matches!(status, BoxStatus::Running | BoxStatus::Paused) {
            return Err(StateError::Wrong {
                id: self.id.clone(),
                action: "be snapshotted",
                status,
            }
            .into());
        }
        let not_snapshottable = |reason: &str| {
            snapshot_err(SnapshotError::NotSnapshottable {
                id: self.id.clone(),
                reason: reason.to_string(),
            })
        };
        if !record.options.volumes.is_empty() {
            return Err(not_snapshottable(
                "it has volumes, and virtio-fs state cannot be saved",
            ));
        }
        if matches!(record.options.rootfs, RootfsSpec::SharedPath(_)) {
            return Err(not_snapshottable(
                "its root is a shared host directory, and virtio-fs state cannot be saved",
            ));
        }
        if record.info.engine.as_deref() == Some("krun") {
            return Err(not_snapshottable(
                "it runs under krun (libkrun 1.19 has no API to save a VM)",
            ));
        }
        let spec = self.vm_spec_for(&record.options, record.info.name.as_deref(), &self.dir())?;
        std::fs::create_dir_all(&snapshots).map_err(io_err(&snapshots))?;
        remove_abandoned(&snapshots, ".tmp-", ABANDONED_AFTER);
        let building = snapshots.join(format!(".tmp-{}", new_id()));
        std::fs::create_dir(&building).map_err(io_err(&building))?;
        let failed = |message: String, disk_full: bool| {
            let disk_full =
                disk_full || free_bytes(&building).is_some_and(|free| free < DISK_FULL_MARGIN);
            let _ = std::fs::remove_dir_all(&building);
            snapshot_err(SnapshotError::Save {
                name: name.to_string(),
                message,
                disk_full,
            })
        };
        let client = ShimClient::connect(&self.dir()).await?;
        if let Err(err) = client.snapshot(&building).await {
            return Err(match err {
                ShimError::Refused {
                    code: ttrpc::Code::UNIMPLEMENTED,
                    message,
                    ..
                } => {
                    let _ = std::fs::remove_dir_all(&building);
                    not_snapshottable(&message)
                }
                ShimError::Refused { code, message, .. } => {
                    failed(message, code == ttrpc::Code::RESOURCE_EXHAUSTED)
                }
                other => failed(other.to_string(), false),
            });
        }
        let image = record.info.image.clone();
        let disk_bytes = DiskSpec {
            path: building.join(SNAPSHOT_DISK),
            format: DiskFormat::Qcow2,
            read_only: true,
        }
        .virtual_size()
        .unwrap_or_default();
        let info = SnapshotInfo {
            id: new_id(),
            name: name.to_string(),
            created_at: from_ms(now_ms() as i64),
            source_id: self.id.clone(),
            source_name: record.info.name.clone(),
            image,
            cpus: record.info.cpus,
            memory_mib: record.info.memory_mib,
            size_bytes: dir_size(&building),
            disk_bytes,
        };
        let meta = SnapshotMeta {
            info: info.clone(),
            options: record.options.clone(),
            image_json: record.image_json.clone().unwrap_or_else(|| {
                self.stored_image(&record)
                    .map(|image| serde_json::to_string(&image).expect("image serializes"))
                    .unwrap_or_default()
            }),
            shape: VmShape::of(&spec),
        };
        if let Err(err) = write_private(
            &building.join(SNAPSHOT_META),
            &serde_json::to_vec_pretty(&meta).expect("snapshot meta serializes"),
        ) {
            let full = err.raw_os_error() == Some(libc::ENOSPC);
            return Err(failed(format!("writing {SNAPSHOT_META}: {err}"), full));
        }
        // rename(2) will not replace a directory that has entries: a snapshot of the same
        // name saved meanwhile wins, this one goes.
        if let Err(err) = std::fs::rename(&building, &target) {
            let _ = std::fs::remove_dir_all(&building);
            return Err(if target.exists() {
                snapshot_err(SnapshotError::Exists(name.to_string()))
            } else {
                io_err(&target)(err)
            });
        }
        tracing::info!(box_id = %self.id, snapshot = name, "saved snapshot");
        Ok(info)
    }

    /// This box's snapshots (taken of it, kept in the home), oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let mut all = self.runtime.list_snapshots()?;
        all.retain(|s| s.source_id == self.id);
        Ok(all)
    }

    /// Removes snapshot `name` of this box. One taken of another box is refused: remove it
    /// through the runtime ([`BoxliteRuntime::remove_snapshot`]) instead.
    pub fn remove_snapshot(&self, name: &str) -> Result<()> {
        self.own_snapshot(name, "remove it through the runtime or its own box")?;
        self.runtime.remove_snapshot_dir(name)
    }

    /// Snapshot `name`'s record, when it was taken of this box.
    fn own_snapshot(&self, name: &str, hint: &'static str) -> Result<SnapshotMeta> {
        validate_name(name)?;
        let meta = self.runtime.snapshot_meta(name)?;
        if meta.info.source_id != self.id {
            return Err(snapshot_err(SnapshotError::OfAnotherBox {
                name: name.to_string(),
                id: self.id.clone(),
                taken_of: meta.info.source_id,
                hint,
            }));
        }
        Ok(meta)
    }

    /// Puts this box back to snapshot `snapshot`, taken of this box earlier: a running or
    /// paused box is powered off (what happened since is lost), its disk and memory are
    /// replaced by the snapshot's, and it runs on from the moment the snapshot was taken
    /// (its processes still running, the clock set to now). The snapshot is kept. Refused
    /// for a snapshot of another box (create a box from it instead) and under another
    /// kernel, engine or VM shape.
    pub async fn restore(&self, snapshot: &str) -> Result<()> {
        let meta = self.own_snapshot(
            snapshot,
            "a box goes back only to its own snapshots; create a new box from this one instead",
        )?;
        // Checked before the box is powered off: a refusal leaves it as it was.
        let dir = self.dir();
        let record = self.record()?;
        let spec = self.vm_spec_for(&record.options, record.info.name.as_deref(), &dir)?;
        if let Some((what, saved, now)) = meta.shape.difference(&VmShape::of(&spec)) {
            return Err(snapshot_err(SnapshotError::Incompatible {
                name: snapshot.to_string(),
                what,
                saved,
                now,
            }));
        }
        self.power_off(STOP_TIMEOUT).await?;
        {
            let _lock = self.runtime.lock_box(&self.id).await?;
            let status = self.runtime.refresh(self.record()?)?.info.status;
            if !status.can_start() {
                // Started again by someone else since it was powered off.
                return Err(StateError::Wrong {
                    id: self.id.clone(),
                    action: "be restored",
                    status,
                }
                .into());
            }
            let from = self.runtime.snapshots_dir().join(snapshot);
            place_restore(&from, &dir).map_err(io_err(&dir))?;
        }
        self.start().await?;
        tracing::info!(box_id = %self.id, snapshot, "restored box");
        Ok(())
    }

    /// A second box, `name`, that continues from this moment of this one: its processes
    /// still running, its files and memory identical; independent afterwards. This box runs
    /// on (or stays paused). Same limits as [`LiteBox::snapshot`].
    pub async fn fork(&self, name: &str) -> Result<LiteBox> {
        validate_name(name)?;
        if self.runtime.inner.db.get(name)?.is_some() {
            return Err(BoxliteError::AlreadyExists(name.to_string()));
        }
        // Not a valid snapshot name, so never listed, never taken by a user's snapshot.
        let hidden = format!(".fork-{}", new_id());
        self.save_snapshot(&hidden).await?;
        let forked = self
            .runtime
            .restore_snapshot(&hidden, Some(name.to_string()))
            .await;
        if let Err(err) = self.runtime.remove_snapshot_dir(&hidden) {
            tracing::warn!("removing the fork's snapshot {hidden}: {err}");
        }
        forked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_work_directories_abandoned_long_ago_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let id_at = |ms: u64| ulid::Ulid::from_parts(ms, 7).to_string();
        let hours_ago = now_ms() - 2 * ABANDONED_AFTER.as_millis() as u64;
        let old = dir.path().join(format!(".tmp-{}", id_at(hours_ago)));
        let old_short = dir.path().join(format!(".b{}", &id_at(hours_ago)[..16]));
        let current = dir.path().join(format!(".tmp-{}", new_id()));
        let kept = dir.path().join("a-snapshot");
        for d in [&old, &old_short, &current, &kept] {
            std::fs::create_dir(d).unwrap();
        }
        remove_abandoned(dir.path(), ".tmp-", ABANDONED_AFTER);
        remove_abandoned(dir.path(), ".b", ABANDONED_AFTER);
        assert!(!old.exists() && !old_short.exists());
        assert!(current.exists() && kept.exists());
    }
}
