//! Unpacking the programs an SDK carries: written to `<cache>/sdk-bin/<content hash>/`
//! before the first box of a process starts. The directory must be the user's own and closed
//! to others (the cache may be a shared one: `BOXLITE_CACHE_DIR`), and a file already there is
//! used only when it holds exactly the embedded bytes; otherwise it is written again, to a
//! temporary name renamed into place, so a concurrent process never runs half a file.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `shim` and `agent` under `cache_dir` (once per content) and returns their paths:
/// `(boxlite-shim, boxlite-agent)`. The error says what failed and what to do.
pub fn unpack(cache_dir: &Path, shim: &[u8], agent: &[u8]) -> Result<(PathBuf, PathBuf), String> {
    // A name for the content; the bytes are compared anyway, so any stable hash serves.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    shim.hash(&mut hasher);
    agent.hash(&mut hasher);
    let dir = cache_dir
        .join("sdk-bin")
        .join(format!("{:016x}", hasher.finish()));
    Ok((
        write_once(&dir, "boxlite-shim", shim)?,
        write_once(&dir, "boxlite-agent", agent)?,
    ))
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
    let uid = fs::metadata("/proc/self")
        .map_err(|e| failed("finding this process's user", e))?
        .uid();
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
