//! Applying OCI image layers (tar, optionally gzip- or zstd-compressed) to a root directory:
//! whiteouts and opaque directories, hardlinks, symlinks, device nodes, modes, owners, mtimes
//! and extended attributes. Every path is resolved inside the root, symlinks included, so no
//! entry can write outside it; entries naming `..` or absolute paths are rejected outright.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Symlinks followed while resolving one path, as Linux allows (ELOOP past this).
const MAX_SYMLINK_HOPS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} points outside the image root; the layer is rejected")]
    Escape { entry: String },
    #[error("layer entry {entry:?}: {source}")]
    Entry { entry: String, source: io::Error },
    #[error("reading the layer: {0}")]
    Read(#[from] io::Error),
    #[error("layer entry {entry:?}: too many levels of symbolic links")]
    SymlinkLoop { entry: String },
}

/// Wraps a layer blob in the right decompressor, found by its first bytes.
pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let magic = reader.fill_buf()?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader)?)
    } else {
        Box::new(reader)
    })
}

/// A path inside the layer, as components, or an error when it leaves the root.
fn normalize(name: &Path) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            // "/etc/x" in a layer means "etc/x" of the image, as every runtime reads it.
            Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::Escape {
                    entry: name.display().to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// Resolves `rel` under `root` the way the guest kernel will: symlinks in the parent
/// directories are followed, but absolute targets and `..` are taken relative to the root and
/// can never climb above it. The last component is not followed (it is what gets created).
fn resolve_parent(root: &Path, rel: &Path, entry: &str) -> Result<PathBuf, UnpackError> {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<PathBuf> = rel
        .parent()
        .map(|p| {
            p.components()
                .rev()
                .map(|c| PathBuf::from(c.as_os_str()))
                .collect()
        })
        .unwrap_or_default();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        match part.to_str() {
            Some("..") => {
                resolved.pop();
                continue;
            }
            Some(".") | Some("") | Some("/") => continue,
            _ => {}
        }
        let candidate = resolved.join(&part);
        let full = root.join(&candidate);
        match fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(UnpackError::SymlinkLoop {
                        entry: entry.to_string(),
                    });
                }
                let target = fs::read_link(&full).map_err(|source| UnpackError::Entry {
                    entry: entry.to_string(),
                    source,
                })?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                for c in target.components().rev() {
                    pending.push(PathBuf::from(c.as_os_str()));
                }
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::other("path contains a NUL byte"))
}

/// Applies one (decompressed) layer to `root`.
pub fn apply_layer(root: &Path, layer: impl Read) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(layer);
    // Paths created by this layer: an opaque marker hides only what lower layers left.
    let mut created: HashSet<PathBuf> = HashSet::new();
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw_name = entry.path()?.into_owned();
        let display = raw_name.display().to_string();
        let err = |source: io::Error| UnpackError::Entry {
            entry: display.clone(),
            source,
        };
        let rel = normalize(&raw_name)?;
        let Some(file_name) = rel.file_name().map(|n| n.to_string_lossy().into_owned()) else {
            continue; // the root itself
        };
        let parent = resolve_parent(root, &rel, &display)?;

        if file_name == OPAQUE_MARKER {
            if let Ok(children) = fs::read_dir(&parent) {
                for child in children.flatten() {
                    if !created.contains(&child.path()) {
                        remove_any(&child.path()).map_err(err)?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            remove_any(&parent.join(hidden)).map_err(err)?;
            continue;
        }

        fs::create_dir_all(&parent).map_err(err)?;
        let target = parent.join(&file_name);
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(err)? & 0o7777;
        // Blank owner fields read as root, as Go's archive/tar (and so Docker) reads them.
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        let mtime = header.mtime().unwrap_or(0) as i64;

        let existing = fs::symlink_metadata(&target).ok();
        let keep_existing_dir = kind.is_dir() && existing.as_ref().is_some_and(|m| m.is_dir());
        if existing.is_some() && !keep_existing_dir {
            remove_any(&target).map_err(err)?;
        }

        match kind {
            tar::EntryType::Directory => {
                if !keep_existing_dir {
                    fs::create_dir(&target).map_err(err)?;
                }
                dir_times.push((target.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut file = fs::File::create(&target).map_err(err)?;
                io::copy(&mut entry, &mut file).map_err(err)?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(err)?
                    .ok_or_else(|| err(io::Error::other("symlink without a target")))?;
                symlink(link.as_ref(), &target).map_err(err)?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(err)?
                    .ok_or_else(|| err(io::Error::other("hardlink without a target")))?;
                let link_rel = normalize(&link)?;
                let link_parent = resolve_parent(root, &link_rel, &display)?;
                let source = link_parent.join(link_rel.file_name().unwrap_or_default());
                fs::hard_link(&source, &target).map_err(err)?;
                created.insert(target);
                continue; // a hardlink shares its source's metadata
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let path = cstring(&target).map_err(err)?;
                // SAFETY: `path` is a valid NUL-terminated string; mknod reads nothing else.
                let rc = unsafe {
                    libc::mknod(path.as_ptr(), file_type | mode, libc::makedev(major, minor))
                };
                if rc != 0 {
                    return Err(err(io::Error::last_os_error()));
                }
            }
            // pax/GNU extension headers are consumed by the tar reader; anything else (sockets
            // are never archived) is skipped.
            _ => continue,
        }

        std::os::unix::fs::lchown(&target, Some(uid), Some(gid)).map_err(err)?;
        if kind != tar::EntryType::Symlink {
            fs::set_permissions(&target, fs::Permissions::from_mode(mode)).map_err(err)?;
        }
        if let Ok(Some(extensions)) = entry.pax_extensions() {
            for ext in extensions.flatten() {
                if let (Ok(key), value) = (ext.key(), ext.value_bytes()) {
                    if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                        set_xattr(&target, name, value);
                    }
                }
            }
        }
        if kind != tar::EntryType::Directory {
            set_mtime(&target, mtime);
        }
        created.insert(target);
    }
    // Directory mtimes last: creating their children changed them.
    for (dir, mtime) in dir_times.iter().rev() {
        set_mtime(dir, *mtime);
    }
    Ok(())
}

/// Best effort: a filesystem without xattr support loses them, as with `tar --xattrs`.
fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let (Ok(path), Ok(name)) = (cstring(path), CString::new(name)) else {
        return;
    };
    // SAFETY: both strings are NUL-terminated and `value` is a valid slice for its length.
    unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
}

fn set_mtime(path: &Path, mtime: i64) {
    let Ok(path) = cstring(path) else { return };
    let time = libc::timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = [time, time];
    // SAFETY: `path` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Builds a real tar archive in memory.
    struct Layer(tar::Builder<Vec<u8>>);

    impl Layer {
        fn new() -> Self {
            Layer(tar::Builder::new(Vec::new()))
        }
        fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(size);
            h.set_uid(1000);
            h.set_gid(1000);
            h.set_mtime(1_600_000_000);
            h
        }
        fn dir(mut self, path: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
            self.0.append_data(&mut h, path, io::empty()).unwrap();
            self
        }
        fn file(mut self, path: &str, data: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, 0o640, data.len() as u64);
            self.0.append_data(&mut h, path, data.as_bytes()).unwrap();
            self
        }
        fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Self {
            let mut h = Self::header(kind, 0o777, 0);
            self.0.append_link(&mut h, path, target).unwrap();
            self
        }
        /// Writes a raw name the tar crate's safe API refuses (`..`, absolute).
        fn raw_file(mut self, path: &str) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, 0o644, 1);
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            self.0.append(&h, &b"x"[..]).unwrap();
            self
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().unwrap()
        }
    }

    fn read(root: &Path, rel: &str) -> String {
        fs::read_to_string(root.join(rel)).unwrap()
    }

    #[test]
    fn files_dirs_links_and_metadata_are_kept() {
        let root = tempfile::tempdir().unwrap();
        let layer = Layer::new()
            .dir("etc")
            .file("etc/hostname", "box\n")
            .link(tar::EntryType::Symlink, "etc/alias", "hostname")
            .link(tar::EntryType::Link, "etc/hard", "etc/hostname")
            .bytes();
        apply_layer(root.path(), &layer[..]).unwrap();
        let r = root.path();
        assert_eq!(read(r, "etc/alias"), "box\n");
        assert_eq!(
            fs::read_link(r.join("etc/alias")).unwrap(),
            Path::new("hostname")
        );
        let file = fs::metadata(r.join("etc/hostname")).unwrap();
        assert_eq!(file.mode() & 0o7777, 0o640);
        assert_eq!((file.uid(), file.gid()), (1000, 1000));
        assert_eq!(file.mtime(), 1_600_000_000);
        assert_eq!(fs::metadata(r.join("etc/hard")).unwrap().ino(), file.ino());
        assert_eq!(fs::metadata(r.join("etc")).unwrap().mtime(), 1_600_000_000);
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_layers_only() {
        let root = tempfile::tempdir().unwrap();
        let lower = Layer::new()
            .file("a/old", "1")
            .file("a/kept", "1")
            .file("b/gone", "1")
            .file("b/also-gone", "1")
            .file("c", "1")
            .bytes();
        apply_layer(root.path(), &lower[..]).unwrap();
        // The opaque marker comes after a new file in the same dir: that file must survive.
        let upper = Layer::new()
            .file("a/.wh.old", "")
            .file("b/new", "2")
            .file("b/.wh..wh..opq", "")
            .file(".wh.c", "")
            .bytes();
        apply_layer(root.path(), &upper[..]).unwrap();
        let r = root.path();
        assert!(!r.join("a/old").exists());
        assert_eq!(read(r, "a/kept"), "1");
        let mut b: Vec<String> = fs::read_dir(r.join("b"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        b.sort();
        assert_eq!(b, ["new"]);
        assert!(!r.join("c").exists());
        assert!(!r.join("a/.wh.old").exists() && !r.join("b/.wh..wh..opq").exists());
    }

    #[test]
    fn a_later_file_replaces_a_directory_and_the_reverse() {
        let root = tempfile::tempdir().unwrap();
        apply_layer(
            root.path(),
            &Layer::new().file("x/inner", "1").file("y", "1").bytes()[..],
        )
        .unwrap();
        apply_layer(
            root.path(),
            &Layer::new().file("x", "file now").dir("y").bytes()[..],
        )
        .unwrap();
        assert_eq!(read(root.path(), "x"), "file now");
        assert!(root.path().join("y").is_dir());
    }

    #[test]
    fn entries_that_escape_the_root_are_rejected() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let err = apply_layer(
            root.path(),
            &Layer::new().raw_file("../escaped").bytes()[..],
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::Escape { .. }), "{err}");

        // A symlink to an absolute host path is followed inside the root, never on the host.
        let evil = Layer::new()
            .link(
                tar::EntryType::Symlink,
                "hostdir",
                &outside.path().display().to_string(),
            )
            .file("hostdir/planted", "x")
            .link(tar::EntryType::Symlink, "up", "../../../../..")
            .file("up/planted2", "x")
            .bytes();
        apply_layer(root.path(), &evil[..]).unwrap();
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "wrote outside the root"
        );
        assert!(root
            .path()
            .join(outside.path().strip_prefix("/").unwrap())
            .join("planted")
            .is_file());
        assert!(root.path().join("planted2").is_file());
        assert!(!root.path().parent().unwrap().join("planted2").exists());

        // A hardlink to a file outside the root is refused.
        let err = apply_layer(
            root.path(),
            &Layer::new()
                .link(tar::EntryType::Link, "h", "../../etc/passwd")
                .bytes()[..],
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
    }

    #[test]
    fn blank_owner_fields_read_as_root() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_size(2);
        builder.append_data(&mut h, "f", &b"hi"[..]).unwrap();
        let root = tempfile::tempdir().unwrap();
        apply_layer(root.path(), &builder.into_inner().unwrap()[..]).unwrap();
        let meta = fs::metadata(root.path().join("f")).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (0, 0, 0o600)
        );
    }

    #[test]
    fn gzip_and_zstd_layers_are_recognised() {
        use std::io::Write;
        let plain = Layer::new().file("f", "hello").bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        for blob in [plain.clone(), gz, zst] {
            let root = tempfile::tempdir().unwrap();
            apply_layer(root.path(), decompress(&blob[..]).unwrap()).unwrap();
            assert_eq!(read(root.path(), "f"), "hello");
        }
    }
}
