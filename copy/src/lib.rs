//! Copying files and trees in and out of boxes as tar streams: [`pack`] on the side that has
//! the source, [`unpack`] on the side that receives it (the host, or the agent's copy helper in
//! the guest). Streams are read and written as they go; no file is ever held in memory.
//!
//! The stream's first path component is the source's own name; [`unpack`] puts that at the
//! destination (or inside it, when the destination is an existing directory) and refuses any
//! entry that would land outside: absolute paths, `..`, a path through a symlink, a symlink
//! pointing outside the copy, hard links.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error(
        "refusing archive entry {entry:?}: {reason}; nothing is written outside the destination"
    )]
    Escape { entry: String, reason: &'static str },
    #[error("the archive is malformed: {0}")]
    Malformed(String),
    #[error("the archive is empty: nothing to copy")]
    Empty,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CopyError + '_ {
    move |source| CopyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub entries: u64,
    /// Bytes of file contents.
    pub bytes: u64,
}

/// Writes `src` (a file, a symlink, or a directory tree; symlinks are kept, not followed) to
/// `out` as a tar stream named after `src`'s last component.
pub fn pack(src: &Path, out: impl Write) -> Result<CopyStats, CopyError> {
    let meta = fs::symlink_metadata(src).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CopyError::Missing(src.to_path_buf())
        } else {
            io(src)(e)
        }
    })?;
    let name = src
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("root"));
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut stats = CopyStats::default();
    if meta.is_dir() {
        add_tree(&mut builder, src, &name, &mut stats)?;
    } else {
        builder.append_path_with_name(src, &name).map_err(io(src))?;
        stats.entries += 1;
        if meta.is_file() {
            stats.bytes += meta.len();
        }
    }
    builder
        .into_inner()
        .map_err(io(src))?
        .flush()
        .map_err(io(src))?;
    Ok(stats)
}

/// Directories first, then their entries in name order (a stable stream for the same tree).
fn add_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    name: &Path,
    stats: &mut CopyStats,
) -> Result<(), CopyError> {
    builder.append_path_with_name(dir, name).map_err(io(dir))?;
    stats.entries += 1;
    let mut children: Vec<_> = fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    children.sort_by_key(|e| e.file_name());
    for child in children {
        let path = child.path();
        let child_name = name.join(child.file_name());
        let meta = fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            add_tree(builder, &path, &child_name, stats)?;
        } else {
            builder
                .append_path_with_name(&path, &child_name)
                .map_err(io(&path))?;
            stats.entries += 1;
            if meta.is_file() {
                stats.bytes += meta.len();
            }
        }
    }
    Ok(())
}

/// The entry's path below the copy's top (empty for the top itself), checked to stay inside.
fn relative_part(entry: &str, path: &Path) -> Result<PathBuf, CopyError> {
    let escape = |reason| CopyError::Escape {
        entry: entry.to_string(),
        reason,
    };
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(escape("it contains `..`")),
            Component::RootDir | Component::Prefix(_) => return Err(escape("it is absolute")),
        }
    }
    if parts.is_empty() {
        return Err(escape("it has no name"));
    }
    Ok(parts[1..].iter().collect())
}

/// Whether a symlink at `link` (relative to the copy's top) pointing at `target` stays inside.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    let mut depth = link.components().count() as i64 - 1;
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Refuses `path` below `top` if an existing part of it (between `top` and the entry itself)
/// is a symlink or not a directory: writing through it could land anywhere.
fn check_parents(entry: &str, top: &Path, rel: &Path) -> Result<(), CopyError> {
    let mut current = top.to_path_buf();
    let parents: Vec<_> = rel.components().collect();
    for component in parents.iter().take(parents.len().saturating_sub(1)) {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(CopyError::Escape {
                    entry: entry.to_string(),
                    reason: "it goes through a symlink",
                })
            }
            Ok(meta) if !meta.is_dir() => {
                return Err(CopyError::Escape {
                    entry: entry.to_string(),
                    reason: "a part of its path is not a directory",
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Recreates what [`pack`] wrote: at `dest`, or inside `dest` under the source's name when
/// `dest` is an existing directory. Modes and mtimes are kept (owners too when run as root).
pub fn unpack(input: impl Read, dest: &Path) -> Result<CopyStats, CopyError> {
    let mut archive = tar::Archive::new(input);
    let mut top: Option<PathBuf> = None;
    let mut stats = CopyStats::default();
    // Directory modes and mtimes are applied last: children would change the mtime, and a
    // read-only directory would refuse them.
    let mut directories: BTreeMap<PathBuf, (u32, u64)> = BTreeMap::new();
    let entries = archive
        .entries()
        .map_err(|e| CopyError::Malformed(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| CopyError::Malformed(e.to_string()))?;
        let raw_path = entry
            .path()
            .map_err(|e| CopyError::Malformed(e.to_string()))?
            .into_owned();
        let name = raw_path.display().to_string();
        let rel = relative_part(&name, &raw_path)?;
        let top = match &top {
            Some(top) => top.clone(),
            None => {
                let first = raw_path
                    .components()
                    .find(|c| matches!(c, Component::Normal(_)))
                    .map(|c| PathBuf::from(c.as_os_str()))
                    .ok_or(CopyError::Empty)?;
                let chosen = if fs::metadata(dest).is_ok_and(|m| m.is_dir())
                    && !fs::symlink_metadata(dest).is_ok_and(|m| m.file_type().is_symlink())
                {
                    dest.join(first)
                } else {
                    dest.to_path_buf()
                };
                top = Some(chosen.clone());
                chosen
            }
        };
        check_parents(&name, &top, &rel)?;
        let target = if rel.as_os_str().is_empty() {
            top.clone()
        } else {
            top.join(&rel)
        };
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644);
        let mtime = header.mtime().unwrap_or(0);
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => fs::remove_file(&target).map_err(io(&target))?,
                    Err(_) => {}
                }
                if !target.is_dir() {
                    fs::create_dir(&target).map_err(io(&target))?;
                }
                directories.insert(target, (mode, mtime));
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| CopyError::Malformed(e.to_string()))?
                    .ok_or_else(|| CopyError::Malformed(format!("symlink {name} has no target")))?;
                if !link_stays_inside(&rel, &link) {
                    return Err(CopyError::Escape {
                        entry: name,
                        reason: "it is a symlink pointing outside the copy",
                    });
                }
                entry.unpack(&target).map_err(io(&target))?;
            }
            tar::EntryType::Link => {
                return Err(CopyError::Escape {
                    entry: name,
                    reason: "hard links are not copied",
                })
            }
            _ => {
                entry.set_preserve_permissions(true);
                entry.set_preserve_mtime(true);
                entry.unpack(&target).map_err(io(&target))?;
                if kind.is_file() {
                    stats.bytes += entry.size();
                }
            }
        }
        stats.entries += 1;
    }
    if top.is_none() {
        return Err(CopyError::Empty);
    }
    for (dir, (mode, mtime)) in directories.iter().rev() {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & 0o7777)).map_err(io(dir))?;
        let time = filetime::FileTime::from_unix_time(*mtime as i64, 0);
        filetime::set_file_mtime(dir, time).map_err(io(dir))?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("sub/deeper")).unwrap();
        fs::write(root.join("a.txt"), b"alpha").unwrap();
        fs::write(root.join("sub/deeper/b.bin"), vec![7u8; 100_000]).unwrap();
        fs::set_permissions(root.join("a.txt"), fs::Permissions::from_mode(0o751)).unwrap();
        symlink("a.txt", root.join("link")).unwrap();
        symlink("../a.txt", root.join("sub/up")).unwrap();
        filetime::set_file_mtime(
            root.join("a.txt"),
            filetime::FileTime::from_unix_time(1_000_000, 0),
        )
        .unwrap();
        fs::set_permissions(root.join("sub"), fs::Permissions::from_mode(0o555)).unwrap();
    }

    fn round_trip(src: &Path, dest: &Path) -> CopyStats {
        let mut stream = Vec::new();
        let packed = pack(src, &mut stream).unwrap();
        let unpacked = unpack(&stream[..], dest).unwrap();
        assert_eq!(packed, unpacked);
        unpacked
    }

    #[test]
    fn a_tree_comes_back_with_modes_mtimes_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("project");
        tree(&src);
        let stats = round_trip(&src, &dir.path().join("copy"));
        assert_eq!(stats.bytes, 100_005);
        let copy = dir.path().join("copy");
        assert_eq!(fs::read(copy.join("a.txt")).unwrap(), b"alpha");
        assert_eq!(
            fs::read(copy.join("sub/deeper/b.bin")).unwrap(),
            vec![7u8; 100_000]
        );
        assert_eq!(
            fs::read_link(copy.join("link")).unwrap(),
            Path::new("a.txt")
        );
        assert_eq!(fs::read(copy.join("sub/up")).unwrap(), b"alpha");
        let meta = fs::metadata(copy.join("a.txt")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o751);
        assert_eq!(
            filetime::FileTime::from_last_modification_time(&meta).unix_seconds(),
            1_000_000
        );
        assert_eq!(
            fs::metadata(copy.join("sub")).unwrap().permissions().mode() & 0o777,
            0o555
        );
        // Into an existing directory: under the source's name.
        let into = dir.path().join("into");
        fs::create_dir(&into).unwrap();
        round_trip(&src, &into);
        assert_eq!(fs::read(into.join("project/a.txt")).unwrap(), b"alpha");
        for d in [&src, &copy, &into.join("project")] {
            fs::set_permissions(d.join("sub"), fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[test]
    fn a_single_file_lands_at_the_destination_or_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("one.txt");
        fs::write(&src, b"1").unwrap();
        round_trip(&src, &dir.path().join("renamed.txt"));
        assert_eq!(fs::read(dir.path().join("renamed.txt")).unwrap(), b"1");
        let into = dir.path().join("d");
        fs::create_dir(&into).unwrap();
        round_trip(&src, &into);
        assert_eq!(fs::read(into.join("one.txt")).unwrap(), b"1");
        let err = pack(&dir.path().join("missing"), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    /// (path, kind, link target) of a hand-made archive entry.
    type RawEntry<'a> = (&'a str, tar::EntryType, &'a str);

    /// A hand-made archive (as a hostile peer would send), one entry per (path, kind, link).
    fn archive(entries: &[RawEntry]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(if kind.is_file() { 1 } else { 0 });
            // Raw names: the tar crate's own setters refuse `..`, a peer need not.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if !link.is_empty() {
                header.set_link_name(link).unwrap();
            }
            header.set_cksum();
            let data: &[u8] = if kind.is_file() { b"x" } else { b"" };
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn entries_that_would_escape_are_refused_and_write_nothing_outside() {
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        let cases: &[(&[RawEntry], &str)] = &[
            (
                &[("t", Directory, ""), ("t/../../evil", Regular, "")],
                "`..`",
            ),
            (&[("/etc/evil", Regular, "")], "absolute"),
            (
                &[("t", Directory, ""), ("t/l", Symlink, "/etc")],
                "outside the copy",
            ),
            (
                &[("t", Directory, ""), ("t/l", Symlink, "../../x")],
                "outside the copy",
            ),
            (
                &[
                    ("t", Directory, ""),
                    ("t/l", Symlink, "."),
                    ("t/l/f", Regular, ""),
                ],
                "through a symlink",
            ),
            (&[("t", Directory, ""), ("t/h", Link, "t/x")], "hard links"),
        ];
        for (entries, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("dest");
            let err = unpack(&archive(entries)[..], &dest).unwrap_err();
            assert!(err.to_string().contains(expected), "{entries:?}: {err}");
            let outside: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n != "dest")
                .collect();
            assert!(outside.is_empty(), "{entries:?} wrote {outside:?}");
        }
        let err = unpack(&[0u8; 1024][..], Path::new("/nonexistent")).unwrap_err();
        assert!(matches!(err, CopyError::Empty), "{err}");
    }
}
