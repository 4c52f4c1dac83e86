//! Copying files and trees in and out of boxes as tar streams: [`pack`] on the side that has
//! the source, [`unpack`] on the side that receives it (the host, or the agent's copy helper in
//! the guest). Streams are read and written as they go; no file is ever held in memory.
//!
//! The stream's first path component is the source's own name; [`unpack`] puts that at the
//! destination (or inside it, when the destination is an existing directory) and refuses any
//! entry that would land outside: absolute paths, `..`, a path through a symlink, a symlink
//! pointing outside the copy, hard links, device nodes and FIFOs; set-ID bits are cleared.
//!
//! The same hardened core ([`unpack_with`], module [`extract`]) applies OCI image layers, with
//! the policy differences expressed in [`UnpackOptions`].

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub mod extract;
mod reader;
mod sys;

pub use extract::{
    unpack_with, HardLinks, Layout, ParentSymlinks, SymlinkTargets, UnpackOptions,
    DEFAULT_LAYER_MAX_TOTAL_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_EXTENSION_BYTES,
    DEFAULT_MAX_PATH_BYTES,
};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} does not exist")]
    Missing(PathBuf),
    /// An entry whose path or link would reach outside the destination, or is not a
    /// well-formed path inside it.
    #[error(
        "refusing archive entry {entry:?}: {reason}; nothing is written outside the destination"
    )]
    Escape { entry: String, reason: &'static str },
    /// A hard link the options do not allow.
    #[error("refusing hard link {entry:?} -> {target:?}: {reason}")]
    HardLink {
        entry: String,
        target: String,
        reason: &'static str,
    },
    /// A character or block device or a FIFO, without `UnpackOptions::allow_special_files`.
    #[error(
        "refusing archive entry {entry:?}: it is a {kind}; device nodes and FIFOs are only \
         created when UnpackOptions::allow_special_files is set"
    )]
    SpecialFile { entry: String, kind: &'static str },
    /// An entry that would replace something the options say to keep.
    #[error("refusing archive entry {entry:?}: {reason}")]
    Conflict { entry: String, reason: &'static str },
    /// A member of a kind this extractor does not handle (sparse files, unknown types).
    #[error(
        "archive entry {entry:?} is a {what}, which is not supported; repack the archive \
         without it"
    )]
    Unsupported { entry: String, what: String },
    /// The archive went past one of the limits in `UnpackOptions`; `limit` is the field.
    #[error(
        "the archive goes past the limit on {}: UnpackOptions::{limit} is {value}; extraction \
         stopped there (raise that limit if an archive this large is expected and trusted)",
        describe_limit(limit)
    )]
    LimitExceeded { limit: &'static str, value: u64 },
    /// A filesystem operation on an entry failed.
    #[error("archive entry {entry:?}: {op}: {source}")]
    Fs {
        entry: String,
        op: &'static str,
        source: std::io::Error,
    },
    /// The stream itself could not be read (the peer went away, a decompressor failed).
    #[error("reading the archive: {0}")]
    Read(#[source] std::io::Error),
    #[error("the archive is malformed: {0}")]
    Malformed(String),
    #[error("the archive is empty: nothing to copy")]
    Empty,
}

fn describe_limit(limit: &str) -> &'static str {
    match limit {
        "max_entries" => "entries in one archive",
        "max_total_bytes" => "bytes of file contents in one archive",
        "max_extension_bytes" => "bytes in one GNU long-name, long-link or PAX header",
        "max_path_bytes" => "bytes in one entry path or link target",
        _ => "archive size",
    }
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

/// The name [`pack`] gives `src` in its stream (its last component, or `root` for `/`): what
/// a receiver passes as [`UnpackOptions::expected_name`].
pub fn archive_name(src: &Path) -> PathBuf {
    src.file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("root"))
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
    let name = archive_name(src);
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

/// Recreates what [`pack`] wrote: at `dest`, or inside `dest` under the source's name when
/// `dest` is an existing directory. Modes (less set-ID bits) and mtimes are kept; owners are
/// not. The policy is [`UnpackOptions::copy`]; see [`unpack_with`] for others.
pub fn unpack(input: impl Read, dest: &Path) -> Result<CopyStats, CopyError> {
    unpack_with(input, dest, &UnpackOptions::copy())
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

    // ---- hostile archives (regressions) ----

    /// One raw header, as a hostile peer writes it: any name, kind, mode, link and data.
    fn raw(
        builder: &mut tar::Builder<Vec<u8>>,
        path: &str,
        kind: tar::EntryType,
        mode: u32,
        link: &str,
        data: &[u8],
    ) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(1_000_000);
        let name = &mut header.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        if !link.is_empty() {
            let field = &mut header.as_old_mut().linkname;
            field[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }

    /// Everything in `dir` but `dest`: what an unpack into `dir/dest` must never create.
    fn outside(dir: &Path) -> Vec<std::ffi::OsString> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "dest")
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_top_symlink_to_dot_cannot_carry_later_entries_outside() {
        use tar::EntryType::{Regular, Symlink};
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Symlink, 0o777, ".", b"");
        raw(&mut b, "t/escaped", Regular, 0o644, "", b"x");
        let result = unpack(&b.into_inner().unwrap()[..], &dest);
        assert!(result.is_err(), "{result:?}");
        assert!(outside(dir.path()).is_empty(), "{:?}", outside(dir.path()));
    }

    #[test]
    fn a_top_symlink_to_a_sibling_cannot_carry_later_entries_there() {
        use tar::EntryType::{Regular, Symlink};
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sibling")).unwrap();
        let dest = dir.path().join("dest");
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Symlink, 0o777, "sibling", b"");
        raw(&mut b, "t/planted", Regular, 0o644, "", b"x");
        let result = unpack(&b.into_inner().unwrap()[..], &dest);
        assert!(result.is_err(), "{result:?}");
        assert_eq!(fs::read_dir(dir.path().join("sibling")).unwrap().count(), 0);
    }

    #[test]
    fn a_top_symlink_inside_an_existing_directory_is_checked_too() {
        use tar::EntryType::{Regular, Symlink};
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Symlink, 0o777, ".", b"");
        raw(&mut b, "t/through", Regular, 0o644, "", b"x");
        let result = unpack(&b.into_inner().unwrap()[..], &dest);
        assert!(result.is_err(), "{result:?}");
        assert!(!dest.join("through").exists());
    }

    #[test]
    fn copies_strip_setuid_and_setgid_bits() {
        use std::os::unix::fs::MetadataExt;
        use tar::EntryType::{Directory, Regular};
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Directory, 0o755, "", b"");
        raw(&mut b, "t/suid", Regular, 0o4755, "", b"x");
        raw(&mut b, "t/sgid", Regular, 0o2755, "", b"x");
        raw(&mut b, "t/sticky", Regular, 0o1755, "", b"x");
        unpack(&b.into_inner().unwrap()[..], &dest).unwrap();
        assert_eq!(
            fs::metadata(dest.join("suid")).unwrap().mode() & 0o7777,
            0o755
        );
        assert_eq!(
            fs::metadata(dest.join("sgid")).unwrap().mode() & 0o7777,
            0o755
        );
        assert_eq!(
            fs::metadata(dest.join("sticky")).unwrap().mode() & 0o7777,
            0o1755
        );
    }

    #[test]
    fn copies_refuse_fifos_and_device_nodes() {
        use tar::EntryType::{Char, Directory, Fifo};
        for (kind, what) in [(Fifo, "FIFO"), (Char, "device")] {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("dest");
            let mut b = tar::Builder::new(Vec::new());
            raw(&mut b, "t", Directory, 0o755, "", b"");
            raw(&mut b, "t/special", kind, 0o666, "", b"");
            let err = unpack(&b.into_inner().unwrap()[..], &dest).unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
            assert!(fs::symlink_metadata(dest.join("special")).is_err());
        }
    }

    #[test]
    fn huge_long_name_and_pax_headers_are_refused_before_being_read() {
        use tar::EntryType::Regular;
        let kind = tar::EntryType::new;
        for (ext, name) in [
            (b'L', "././@LongLink"),
            (b'K', "././@LongLink"),
            (b'x', "pax"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("dest");
            let mut b = tar::Builder::new(Vec::new());
            let mut big = vec![b'a'; 1 << 20];
            if ext == b'x' {
                // One syntactically valid record of about 1 MiB.
                let body = format!(" path={}\n", "a".repeat((1 << 20) - 20));
                big = format!("{}{body}", body.len() + 8).into_bytes();
            }
            raw(&mut b, name, kind(ext), 0o644, "", &big);
            raw(&mut b, "t", Regular, 0o644, "", b"x");
            let err = unpack(&b.into_inner().unwrap()[..], &dest).unwrap_err();
            assert!(err.to_string().contains("max_extension_bytes"), "{err}");
            assert!(
                matches!(
                    err,
                    CopyError::LimitExceeded {
                        limit: "max_extension_bytes",
                        ..
                    }
                ),
                "{err}"
            );
            assert!(outside(dir.path()).is_empty() && !dest.exists());
        }
    }

    fn bytes(b: tar::Builder<Vec<u8>>) -> Vec<u8> {
        b.into_inner().unwrap()
    }

    #[test]
    fn pre_existing_symlinks_in_the_destination_are_never_followed() {
        use tar::EntryType::{Directory, Regular};
        let dir = tempfile::tempdir().unwrap();
        let outside_dir = dir.path().join("outside");
        fs::create_dir(&outside_dir).unwrap();
        fs::write(outside_dir.join("victim"), "precious").unwrap();
        let dest = dir.path().join("dest");
        fs::create_dir_all(dest.join("t")).unwrap();
        symlink(&outside_dir, dest.join("t/sub")).unwrap();
        symlink(outside_dir.join("victim"), dest.join("t/f")).unwrap();

        // Through a symlink in the parent path: refused.
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Directory, 0o755, "", b"");
        raw(&mut b, "t/sub/planted", Regular, 0o644, "", b"x");
        let err = unpack(&bytes(b)[..], &dest).unwrap_err();
        assert!(err.to_string().contains("through a symlink"), "{err}");

        // At the entry's own name: the link is replaced, its target untouched.
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Directory, 0o755, "", b"");
        raw(&mut b, "t/f", Regular, 0o644, "", b"new");
        unpack(&bytes(b)[..], &dest).unwrap();
        assert_eq!(fs::read(dest.join("t/f")).unwrap(), b"new");
        assert!(!fs::symlink_metadata(dest.join("t/f")).unwrap().is_symlink());
        assert_eq!(fs::read(outside_dir.join("victim")).unwrap(), b"precious");
        assert_eq!(fs::read_dir(&outside_dir).unwrap().count(), 1);

        // A destination that is itself a symlink is replaced, not written through.
        let link_dest = dir.path().join("linkdest");
        symlink(&outside_dir, &link_dest).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Directory, 0o755, "", b"");
        raw(&mut b, "t/x", Regular, 0o644, "", b"x");
        unpack(&bytes(b)[..], &link_dest).unwrap();
        assert!(link_dest.join("x").is_file());
        assert!(!fs::symlink_metadata(&link_dest).unwrap().is_symlink());
        assert_eq!(fs::read_dir(&outside_dir).unwrap().count(), 1);
    }

    #[test]
    fn symlinks_to_dot_dot_and_entries_outside_the_top_are_refused() {
        use tar::EntryType::{Directory, Regular, Symlink};
        let cases: &[(&[RawEntry], &str)] = &[
            (
                &[("t", Directory, ""), ("t/up", Symlink, "..")],
                "outside the copy",
            ),
            (
                &[
                    ("t", Directory, ""),
                    ("t/d", Directory, ""),
                    ("t/d/x", Symlink, "a/../.."),
                ],
                "outside the copy",
            ),
            (&[("t", Symlink, "..")], "outside the copy"),
            (
                &[("t", Directory, ""), ("u/x", Regular, "")],
                "not inside the copy's top entry",
            ),
            (
                &[("t", Regular, ""), ("t/x", Regular, "")],
                "not a directory",
            ),
        ];
        for (entries, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let err = unpack(&archive(entries)[..], &dir.path().join("dest")).unwrap_err();
            assert!(err.to_string().contains(expected), "{entries:?}: {err}");
            assert!(outside(dir.path()).is_empty(), "{entries:?}");
        }
    }

    #[test]
    fn the_peer_cannot_choose_another_name_than_the_one_asked_for() {
        use tar::EntryType::Regular;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join(".bashrc"), "mine").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, ".bashrc", Regular, 0o644, "", b"evil");
        let options = UnpackOptions {
            expected_name: Some(archive_name(Path::new("/data/report.txt")).into()),
            ..UnpackOptions::copy()
        };
        let err = unpack_with(&bytes(b)[..], &dest, &options).unwrap_err();
        assert!(err.to_string().contains("named after the source"), "{err}");
        assert_eq!(fs::read(dest.join(".bashrc")).unwrap(), b"mine");
        assert_eq!(archive_name(Path::new("/")), Path::new("root"));
    }

    #[test]
    fn limits_stop_the_archive_and_name_themselves() {
        use tar::EntryType::{Directory, Regular};
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Directory, 0o755, "", b"");
        for i in 0..5 {
            raw(&mut b, &format!("t/{i}"), Regular, 0o644, "", b"12345");
        }
        let stream = bytes(b);

        let few = UnpackOptions {
            max_entries: 3,
            ..UnpackOptions::copy()
        };
        let err = unpack_with(&stream[..], &dir.path().join("a"), &few).unwrap_err();
        assert!(
            matches!(
                err,
                CopyError::LimitExceeded {
                    limit: "max_entries",
                    value: 3
                }
            ),
            "{err}"
        );
        assert!(
            err.to_string().contains("UnpackOptions::max_entries is 3"),
            "{err}"
        );
        assert!(!dir.path().join("a/3").exists());

        let small = UnpackOptions {
            max_total_bytes: Some(12),
            ..UnpackOptions::copy()
        };
        let err = unpack_with(&stream[..], &dir.path().join("b"), &small).unwrap_err();
        assert!(
            matches!(
                err,
                CopyError::LimitExceeded {
                    limit: "max_total_bytes",
                    value: 12
                }
            ),
            "{err}"
        );
        assert!(dir.path().join("b/1").is_file() && !dir.path().join("b/2").exists());

        // A long name past max_path_bytes (but within max_extension_bytes).
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("t/{}", "d/".repeat(2100));
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(Directory);
        b.append_data(&mut h, &long, std::io::empty()).unwrap();
        let err = unpack(&bytes(b)[..], &dir.path().join("c")).unwrap_err();
        assert!(err.to_string().contains("max_path_bytes"), "{err}");

        // Defaults are documented constants.
        let copy = UnpackOptions::default();
        assert_eq!(copy.max_entries, DEFAULT_MAX_ENTRIES);
        assert_eq!(copy.max_total_bytes, None);
        assert_eq!(
            UnpackOptions::oci_layer().max_total_bytes,
            Some(DEFAULT_LAYER_MAX_TOTAL_BYTES)
        );
    }

    #[test]
    fn pax_records_and_long_names_are_applied() {
        use tar::EntryType::{Directory, Regular};
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Directory, 0o755, "", b"");
        // PAX path and size override the header (whose size field says 0, as Go writes it
        // for files past 8 GiB).
        let long = format!("t/{}", "n".repeat(200));
        b.append_pax_extensions([
            ("path", long.as_bytes()),
            ("size", &b"5"[..]),
            ("mtime", &b"1234567.75"[..]),
        ])
        .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(Regular);
        h.set_mode(0o600);
        h.set_size(0);
        h.as_old_mut().name[..5].copy_from_slice(b"t/xxx");
        h.set_cksum();
        b.append(&h, &b"hello"[..]).unwrap();
        // And a GNU long name for the next one.
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(
            &mut h,
            format!("t/{}/{}", "g".repeat(150), "h".repeat(150)),
            &b"ok"[..],
        )
        .unwrap();
        let dest = dir.path().join("dest");
        let stats = unpack(&bytes(b)[..], &dest).unwrap();
        assert_eq!(
            stats,
            CopyStats {
                entries: 3,
                bytes: 7
            }
        );
        let file = dest.join("n".repeat(200));
        assert_eq!(fs::read(&file).unwrap(), b"hello");
        let mtime = filetime::FileTime::from_last_modification_time(&fs::metadata(&file).unwrap());
        assert_eq!(mtime.unix_seconds(), 1_234_567);
        // (Its missing parent directory is made on the way.)
        let deep = dest.join("g".repeat(150)).join("h".repeat(150));
        assert_eq!(fs::read(deep).unwrap(), b"ok");
    }

    #[test]
    fn hard_links_only_where_the_options_allow() {
        use std::os::unix::fs::MetadataExt;
        use tar::EntryType::{Directory, Link, Regular};
        let options = UnpackOptions {
            hard_links: HardLinks::CreatedByThisArchive,
            ..UnpackOptions::copy()
        };
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Directory, 0o755, "", b"");
        raw(&mut b, "t/a", Regular, 0o644, "", b"a");
        raw(&mut b, "t/h", Link, 0o644, "t/a", b"");
        unpack_with(&bytes(b)[..], &dest, &options).unwrap();
        let ino = |p: &str| fs::metadata(dest.join(p)).unwrap().ino();
        assert_eq!(ino("t/a"), ino("t/h"));

        // To a file that was already there: refused.
        fs::write(dest.join("t/pre"), "pre").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Directory, 0o755, "", b"");
        raw(&mut b, "t/h2", Link, 0o644, "t/pre", b"");
        let err = unpack_with(&bytes(b)[..], &dest, &options).unwrap_err();
        assert!(matches!(err, CopyError::HardLink { .. }), "{err}");
        assert!(
            err.to_string().contains("not created by this archive"),
            "{err}"
        );
        // Through a symlink, or outside: refused before any lookup.
        for target in ["t/../../x", "/etc/passwd", "other/x"] {
            let mut b = tar::Builder::new(Vec::new());
            raw(&mut b, "t", Directory, 0o755, "", b"");
            raw(&mut b, "t/h3", Link, 0o644, target, b"");
            assert!(
                unpack_with(&bytes(b)[..], &dest, &options).is_err(),
                "{target}"
            );
        }
        assert!(!dest.join("t/h2").exists() && !dest.join("t/h3").exists());
    }

    #[test]
    fn special_files_and_setid_bits_when_allowed() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        use tar::EntryType::{Directory, Fifo, Regular};
        let options = UnpackOptions {
            allow_special_files: true,
            keep_setid_bits: true,
            ..UnpackOptions::copy()
        };
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Directory, 0o755, "", b"");
        raw(&mut b, "t/pipe", Fifo, 0o666, "", b"");
        raw(&mut b, "t/suid", Regular, 0o4755, "", b"x");
        unpack_with(&bytes(b)[..], &dest, &options).unwrap();
        let pipe = fs::symlink_metadata(dest.join("pipe")).unwrap();
        assert!(pipe.file_type().is_fifo());
        // The exact mode, whatever the umask.
        assert_eq!(pipe.mode() & 0o7777, 0o666);
        assert_eq!(pipe.mtime(), 1_000_000);
        assert_eq!(
            fs::metadata(dest.join("suid")).unwrap().mode() & 0o7777,
            0o4755
        );
        // No staging directory is left behind.
        let mut names: Vec<_> = fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["pipe", "suid"]);
    }

    #[test]
    fn a_directory_is_not_replaced_by_a_file_in_a_copy() {
        use tar::EntryType::{Directory, Regular};
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        fs::create_dir_all(dest.join("t/keep")).unwrap();
        fs::write(dest.join("t/keep/inner"), "i").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Directory, 0o755, "", b"");
        raw(&mut b, "t/keep", Regular, 0o644, "", b"x");
        let err = unpack(&bytes(b)[..], &dest).unwrap_err();
        assert!(matches!(err, CopyError::Conflict { .. }), "{err}");
        assert_eq!(fs::read(dest.join("t/keep/inner")).unwrap(), b"i");
    }

    #[test]
    fn malformed_and_unsupported_archives_are_refused() {
        use tar::EntryType::{Directory, Regular};
        let dir = tempfile::tempdir().unwrap();
        // Truncated in the middle of a file.
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "t", Directory, 0o755, "", b"");
        raw(&mut b, "t/f", Regular, 0o644, "", &[1u8; 2000]);
        let stream = bytes(b);
        let err = unpack(&stream[..1024 + 700], &dir.path().join("a")).unwrap_err();
        assert!(matches!(err, CopyError::Malformed(_)), "{err}");
        // A bad checksum.
        let mut bad = stream.clone();
        bad[0] ^= 1;
        let err = unpack(&bad[..], &dir.path().join("b")).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        // GNU sparse files and unknown types.
        for flag in [b'S', b'V', b'Z'] {
            let mut b = tar::Builder::new(Vec::new());
            raw(&mut b, "t", tar::EntryType::new(flag), 0o644, "", b"");
            let err = unpack(&bytes(b)[..], &dir.path().join("c")).unwrap_err();
            assert!(matches!(err, CopyError::Unsupported { .. }), "{err}");
        }
        // Bytes that are no archive at all.
        let err = unpack(&[b'x'; 700][..], &dir.path().join("d")).unwrap_err();
        assert!(matches!(err, CopyError::Malformed(_)), "{err}");
    }

    #[test]
    fn a_layer_follows_parent_symlinks_inside_its_root_only() {
        use tar::EntryType::{Directory, Regular, Symlink};
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir(&root).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "usr/lib", Directory, 0o755, "", b"");
        raw(&mut b, "lib", Symlink, 0o777, "usr/lib", b"");
        raw(&mut b, "lib/libx.so", Regular, 0o644, "", b"x");
        raw(&mut b, "up", Symlink, 0o777, "../../../..", b"");
        raw(&mut b, "up/at-root", Regular, 0o644, "", b"r");
        raw(&mut b, "abs", Symlink, 0o777, "/usr/../usr/lib", b"");
        raw(&mut b, "abs/via-abs", Regular, 0o644, "", b"a");
        unpack_with(&bytes(b)[..], &root, &UnpackOptions::oci_layer()).unwrap();
        assert_eq!(fs::read(root.join("usr/lib/libx.so")).unwrap(), b"x");
        assert_eq!(fs::read(root.join("at-root")).unwrap(), b"r");
        assert_eq!(fs::read(root.join("usr/lib/via-abs")).unwrap(), b"a");
        let names: Vec<_> = fs::read_dir(outer.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["root"]);

        // A loop ends in an error, not a hang.
        let mut b = tar::Builder::new(Vec::new());
        raw(&mut b, "a", Symlink, 0o777, "b", b"");
        raw(&mut b, "b", Symlink, 0o777, "a", b"");
        raw(&mut b, "a/x", Regular, 0o644, "", b"x");
        let err = unpack_with(&bytes(b)[..], &root, &UnpackOptions::oci_layer()).unwrap_err();
        assert!(err.to_string().contains("symlinks"), "{err}");
    }
}
