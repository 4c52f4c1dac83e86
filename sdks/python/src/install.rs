//! The shim and the guest agent travel inside this extension (see build.rs). The first
//! runtime of a process writes them, once per content, to
//! `<cache>/sdk-bin/<sha256 prefix>/` (`<cache>`: `BOXLITE_CACHE_DIR`, else
//! `~/.cache/boxlite`) and tells the core to use them. `BOXLITE_SHIM` and `BOXLITE_AGENT`
//! still name others.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use boxlite::ErrorKind;
use pyo3::PyResult;
use sha2::{Digest, Sha256};

use crate::errors::Failure;

static SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/boxlite-shim"));
static AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/boxlite-agent"));

static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// Writes the binaries where the core looks for them, once per process.
pub fn ensure() -> PyResult<()> {
    INSTALLED
        .get_or_init(|| {
            let dir = bin_dir();
            let shim = write_once(&dir, "boxlite-shim", SHIM)?;
            let agent = write_once(&dir, "boxlite-agent", AGENT)?;
            boxlite::runtime::set_installed_shim(shim);
            boxlite::guest::set_installed_agent(agent);
            Ok(())
        })
        .clone()
        .map_err(|message| Failure::Kind(ErrorKind::Config, message).into())
}

fn bin_dir() -> PathBuf {
    let mut digest = Sha256::new();
    digest.update(SHIM);
    digest.update(AGENT);
    let hash = hex::encode(digest.finalize());
    boxlite::guest::cache_dir()
        .join("sdk-bin")
        .join(&hash[..16])
}

/// `dir/name` holding `bytes`: written to a temporary name and renamed, so a concurrent
/// process never runs half a file. A file already there is used only when the directory is
/// this user's own and closed to others, and the file holds exactly `bytes` (the cache
/// directory may be a shared one: `BOXLITE_CACHE_DIR`).
fn write_once(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let path = dir.join(name);
    let failed = |what: &str, e: std::io::Error| {
        format!(
            "unpacking boxlite's {name} into {}: {what}: {e} (set BOXLITE_CACHE_DIR to a \
             directory of your own)",
            dir.display()
        )
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| failed("creating the directory", e))?;
    let meta = fs::symlink_metadata(dir).map_err(|e| failed("checking the directory", e))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is not a directory of this user closed to others: boxlite will not run \
             programs from it (set BOXLITE_CACHE_DIR to a directory of your own)",
            dir.display()
        ));
    }
    if fs::read(&path).is_ok_and(|existing| existing == bytes) {
        return Ok(path);
    }
    let tmp = dir.join(format!(".{name}.{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(&tmp)
        .map_err(|e| failed("creating", e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| failed("writing", e))?;
    drop(file);
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o700))
        .map_err(|e| failed("setting its mode", e))?;
    fs::rename(&tmp, &path).map_err(|e| failed("renaming", e))?;
    Ok(path)
}
