//! Cross-process locks on named files (`flock(2)` through `std::fs::File::lock`), shared or
//! exclusive, held by RAII guards, with timeouts and the holder's pid in error messages.
//!
//! A lock belongs to an open file description: two guards on the same path conflict even
//! within one process, and a lock disappears when its holder dies, so a crashed process never
//! leaves a lock behind. Exclusive holders write their pid into the file for diagnostics.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Any number of shared holders at once, and no exclusive one.
    Shared,
    /// One holder, and no shared ones.
    Exclusive,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("opening lock file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("locking {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is locked{holder}; gave up after {waited:?}", holder = holder_text(*.holder))]
    Timeout {
        path: PathBuf,
        waited: Duration,
        /// The pid of the last exclusive holder, when it recorded one.
        holder: Option<u32>,
    },
}

fn holder_text(holder: Option<u32>) -> String {
    holder
        .map(|pid| format!(" by process {pid}"))
        .unwrap_or_default()
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
    mode: LockMode,
}

impl LockGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> LockMode {
        self.mode
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the file would release the lock too; unlocking first makes the release
        // independent of any descriptor the process may have duplicated.
        let _ = self.file.unlock();
    }
}

/// Takes the lock on `path` (created if missing), waiting up to `timeout`; `None` waits as
/// long as it takes.
pub fn lock(
    path: &Path,
    mode: LockMode,
    timeout: Option<Duration>,
) -> Result<LockGuard, LockError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| LockError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let attempt = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match attempt {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(source)) => {
                return Err(LockError::Lock {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let waited = started.elapsed();
        if timeout.is_some_and(|limit| waited >= limit) {
            return Err(LockError::Timeout {
                path: path.to_path_buf(),
                waited,
                holder: read_holder(&mut file),
            });
        }
        let remaining = timeout
            .map(|limit| limit.saturating_sub(waited))
            .unwrap_or(pause);
        std::thread::sleep(pause.min(remaining).max(Duration::from_micros(100)));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    if mode == LockMode::Exclusive {
        // Best effort: the pid is only for error messages.
        let _ = record_holder(&mut file);
    }
    Ok(LockGuard {
        file,
        path: path.to_path_buf(),
        mode,
    })
}

/// Takes the lock only if it is free right now.
pub fn try_lock(path: &Path, mode: LockMode) -> Result<LockGuard, LockError> {
    lock(path, mode, Some(Duration::ZERO))
}

fn record_holder(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    write!(file, "{}", std::process::id())?;
    file.flush()
}

fn read_holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn exclusive_excludes_everyone_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("box.lock");
        let guard = lock(&path, LockMode::Exclusive, None).unwrap();
        let err = try_lock(&path, LockMode::Exclusive).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains(&format!("by process {}", std::process::id())),
            "{message}"
        );
        assert!(matches!(
            try_lock(&path, LockMode::Shared),
            Err(LockError::Timeout { .. })
        ));
        drop(guard);
        try_lock(&path, LockMode::Exclusive).unwrap();
    }

    #[test]
    fn shared_holders_coexist_and_keep_exclusive_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.lock");
        let a = try_lock(&path, LockMode::Shared).unwrap();
        let b = try_lock(&path, LockMode::Shared).unwrap();
        assert_eq!(a.mode(), LockMode::Shared);
        assert!(try_lock(&path, LockMode::Exclusive).is_err());
        drop(a);
        assert!(try_lock(&path, LockMode::Exclusive).is_err());
        drop(b);
        try_lock(&path, LockMode::Exclusive).unwrap();
    }

    #[test]
    fn a_lock_held_by_another_process_times_out_then_frees_when_it_exits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.lock");
        std::fs::write(&path, "").unwrap();
        // util-linux flock(1) holds the same kind of lock from a separate process.
        let mut holder = Command::new("flock")
            .arg("-x")
            .arg(&path)
            .args(["sleep", "1"])
            .stdout(Stdio::null())
            .spawn()
            .expect("flock(1) from util-linux");
        let deadline = Instant::now() + Duration::from_secs(5);
        while try_lock(&path, LockMode::Exclusive).is_ok() {
            assert!(Instant::now() < deadline, "flock(1) never took the lock");
            std::thread::sleep(Duration::from_millis(5));
        }
        let err = lock(&path, LockMode::Exclusive, Some(Duration::from_millis(50))).unwrap_err();
        assert!(matches!(err, LockError::Timeout { .. }), "{err}");
        // Waiting without a limit returns once the holder is gone.
        let guard = lock(&path, LockMode::Exclusive, None).unwrap();
        holder.wait().unwrap();
        drop(guard);
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let err = try_lock(Path::new("/nonexistent-dir/x.lock"), LockMode::Shared).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.lock"), "{err}");
    }
}
