//! The content-addressed blob store: `images/blobs/sha256/<hex>`. A blob becomes visible only
//! after its sha256 matched the digest it was asked for and it reached the disk; it is written
//! under a temporary name first, so a crash or a bad download never leaves a partial blob.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("unsupported digest {0:?}: only sha256:<64 hex digits> is accepted")]
    BadDigest(String),
    #[error("blob {expected} arrived with digest {actual}: it is corrupt or was tampered with, and was discarded")]
    Mismatch { expected: String, actual: String },
    #[error("blob {digest} is {actual} bytes, the manifest says {expected}; it was discarded")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob store I/O at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Lock(#[from] boxlite_lockfile::LockError),
}

/// How long a writer waits for a sweep of `tmp/` to finish (it takes milliseconds).
const TMP_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A share of `tmp/`: held (shared) by everyone writing there, so that a sweep, which needs
/// it exclusively, only ever removes what nobody is writing.
pub fn hold_tmp(images_root: &Path) -> Result<boxlite_lockfile::LockGuard, BlobError> {
    let locks = images_root.join("locks");
    fs::create_dir_all(&locks).map_err(|source| BlobError::Io {
        path: locks.clone(),
        source,
    })?;
    Ok(boxlite_lockfile::lock(
        &locks.join("tmp.lock"),
        boxlite_lockfile::LockMode::Shared,
        Some(TMP_LOCK_TIMEOUT),
    )?)
}

/// Removes what crashed writers left in `tmp/` (partial downloads, half-built bases), if
/// nobody is writing there right now; returns how many entries went.
pub fn sweep_tmp(images_root: &Path) -> usize {
    let Ok(_all) = boxlite_lockfile::try_lock(
        &images_root.join("locks").join("tmp.lock"),
        boxlite_lockfile::LockMode::Exclusive,
    ) else {
        return 0;
    };
    let Ok(entries) = fs::read_dir(images_root.join("tmp")) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let gone = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        removed += usize::from(gone.is_ok());
    }
    removed
}

/// The hex part of a valid `sha256:` digest.
pub fn sha256_hex(digest: &str) -> Result<&str, BlobError> {
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or_else(|| BlobError::BadDigest(digest.to_string()))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(BlobError::BadDigest(digest.to_string()));
    }
    Ok(hex)
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// A store under `root` (`<home>/images`).
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub fn path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        Ok(self
            .root
            .join("blobs")
            .join("sha256")
            .join(sha256_hex(digest)?))
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    pub fn open(&self, digest: &str) -> Result<fs::File, BlobError> {
        let path = self.path(digest)?;
        fs::File::open(&path).map_err(|source| BlobError::Io { path, source })
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(digest)?;
        fs::read(&path).map_err(|source| BlobError::Io { path, source })
    }

    /// Deletes a blob (no error when it is not there).
    pub fn remove(&self, digest: &str) -> Result<(), BlobError> {
        let path = self.path(digest)?;
        match fs::remove_file(&path) {
            Err(source) if source.kind() != io::ErrorKind::NotFound => {
                Err(BlobError::Io { path, source })
            }
            _ => Ok(()),
        }
    }

    /// Copies `data` into the store as `digest`, verifying it on the way. Returns whether the
    /// blob was written (false: it was there already and `data` was not read).
    pub fn put(
        &self,
        digest: &str,
        expected_size: Option<u64>,
        mut data: impl Read,
    ) -> Result<bool, BlobError> {
        let Some(mut writer) = self.writer(digest)? else {
            return Ok(false);
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = data.read(&mut buf).map_err(|source| BlobError::Io {
                path: writer.tmp.path().to_path_buf(),
                source,
            })?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n])?;
        }
        writer.commit(expected_size)?;
        Ok(true)
    }

    /// Starts writing `digest` (for data that arrives in pieces, e.g. from the network);
    /// `None` when the store has it already.
    pub fn writer(&self, digest: &str) -> Result<Option<BlobWriter>, BlobError> {
        let final_path = self.path(digest)?;
        if final_path.is_file() {
            return Ok(None);
        }
        let tmp_dir = self.root.join("tmp");
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BlobError::Io { path, source }
        };
        fs::create_dir_all(&tmp_dir).map_err(io_err(&tmp_dir))?;
        fs::create_dir_all(final_path.parent().expect("blob path has a parent"))
            .map_err(io_err(&final_path))?;
        let tmp_share = hold_tmp(&self.root)?;
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&tmp_dir)
            .map_err(io_err(&tmp_dir))?;
        Ok(Some(BlobWriter {
            tmp,
            hasher: Sha256::new(),
            size: 0,
            digest: digest.to_string(),
            final_path,
            _tmp_share: tmp_share,
        }))
    }
}

/// A blob being written: hashed as it goes, visible only after [`BlobWriter::commit`]. Dropped
/// without a commit, it leaves nothing behind.
pub struct BlobWriter {
    /// Dropped after `tmp` (fields drop in order): the file is gone before a sweep may run.
    tmp: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
    digest: String,
    final_path: PathBuf,
    _tmp_share: boxlite_lockfile::LockGuard,
}

impl BlobWriter {
    pub fn write(&mut self, data: &[u8]) -> Result<(), BlobError> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        self.tmp.write_all(data).map_err(|source| BlobError::Io {
            path: self.tmp.path().to_path_buf(),
            source,
        })
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Verifies digest (and size, when known) and publishes the blob.
    pub fn commit(self, expected_size: Option<u64>) -> Result<(), BlobError> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        if actual != self.digest {
            return Err(BlobError::Mismatch {
                expected: self.digest,
                actual,
            });
        }
        if let Some(expected) = expected_size.filter(|e| *e != self.size) {
            return Err(BlobError::SizeMismatch {
                digest: self.digest,
                expected,
                actual: self.size,
            });
        }
        self.tmp
            .as_file()
            .sync_all()
            .map_err(|source| BlobError::Io {
                path: self.tmp.path().to_path_buf(),
                source,
            })?;
        // Two writers of one blob race harmlessly: both verified the same bytes.
        self.tmp
            .persist(&self.final_path)
            .map_err(|e| BlobError::Io {
                path: self.final_path.clone(),
                source: e.error,
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    #[test]
    fn a_verified_blob_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let digest = digest_of(b"layer");
        assert!(store.put(&digest, Some(5), &b"layer"[..]).unwrap());
        assert!(!store.put(&digest, Some(5), &b"never read"[..]).unwrap());
        assert_eq!(store.read(&digest).unwrap(), b"layer");
    }

    #[test]
    fn corrupt_data_never_becomes_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(dir.path());
        let digest = digest_of(b"the real thing");
        let err = store
            .put(&digest, None, &b"something else"[..])
            .unwrap_err();
        assert!(matches!(err, BlobError::Mismatch { .. }));
        assert!(err.to_string().contains(&digest));
        assert!(!store.contains(&digest));
        let err = store
            .put(&digest, Some(3), &b"the real thing"[..])
            .unwrap_err();
        assert!(matches!(err, BlobError::SizeMismatch { .. }));
        assert!(!store.contains(&digest));
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "partial files left behind"
        );
    }

    #[test]
    fn digests_are_checked_before_any_path_is_built() {
        let store = BlobStore::new(Path::new("/nonexistent"));
        for bad in [
            "md5:abc",
            "sha256:../../etc/passwd",
            "sha256:ABCDEF",
            "sha256:",
        ] {
            assert!(
                matches!(store.path(bad), Err(BlobError::BadDigest(_))),
                "{bad}"
            );
        }
    }
}
