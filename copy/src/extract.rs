//! The one extraction core for untrusted tar streams: copies out of (and into) boxes, and OCI
//! image layers. What differs between them is policy, in [`UnpackOptions`]; the code path is
//! the same.
//!
//! Every filesystem operation is relative to a directory file descriptor reached from the
//! destination one component at a time with `O_NOFOLLOW`, so no path is ever resolved by the
//! kernel through a symlink: not one already in the destination, not one an earlier entry
//! created. Files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` after whatever was at their
//! name is unlinked (never written through), directories with `mkdirat`, symlinks with
//! `symlinkat`, and metadata is set on the open descriptor (`fchmod`, `fchown`, `futimens`) or
//! on the name itself (`AT_SYMLINK_NOFOLLOW`). Special files are made and given their mode in a
//! fresh private directory and then renamed into place, since Linux has no chmod that
//! refuses to follow a symlink. With [`ParentSymlinks::FollowInRoot`] (image layers) a symlink
//! in an entry's parent path is followed the way the image's own kernel would follow it, but
//! the walk is done here, component by component, with `..` and absolute targets taken
//! relative to the root, so it can never leave it.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::reader::{Kind, Member, Reader};
use crate::{sys, CopyError, CopyStats};

/// Default [`UnpackOptions::max_entries`]: members in one archive.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// Default [`UnpackOptions::max_extension_bytes`]: one GNU long-name/long-link or PAX header.
pub const DEFAULT_MAX_EXTENSION_BYTES: u64 = 64 * 1024;
/// Default [`UnpackOptions::max_path_bytes`]: Linux's `PATH_MAX`.
pub const DEFAULT_MAX_PATH_BYTES: usize = 4096;
/// [`UnpackOptions::max_total_bytes`] of [`UnpackOptions::oci_layer`]: 64 GiB per layer.
pub const DEFAULT_LAYER_MAX_TOTAL_BYTES: u64 = 64 << 30;
/// Symlinks followed while resolving one parent path, as Linux allows (ELOOP past this).
const MAX_SYMLINK_HOPS: u32 = 40;

/// Where entries land below the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// What [`crate::pack`] writes: the first path component of every entry is the source's
    /// name. The copy is made at the destination, or inside it under that name when the
    /// destination is an existing directory (not a symlink to one). Absolute paths are
    /// refused.
    Copy,
    /// Entries are paths below the destination, an existing directory (an image root). A
    /// leading `/` is dropped ("/etc/x" of a layer is "etc/x" of the image).
    Root,
}

/// What to do with a symlink met in an entry's parent path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentSymlinks {
    /// Refuse the entry ([`CopyError::Escape`]).
    Refuse,
    /// Follow it as if the destination were `/` (as a container runtime applies a layer:
    /// `lib -> usr/lib` then `lib/x` writes `usr/lib/x`); `..` and absolute targets never
    /// climb above the destination. The last component of an entry is never followed.
    FollowInRoot,
}

/// Which symlinks may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SymlinkTargets {
    /// Only relative ones that stay inside the copy: any `..` must lead the target and may not
    /// climb above the copy's top. (Extraction never follows a symlink either way; this keeps
    /// the copy from holding links into the rest of the receiving filesystem.) A copy whose
    /// top entry is itself a symlink is refused: its target is always outside the copy.
    InsideCopy,
    /// Any target (image layers: absolute links are ordinary there).
    Any,
}

/// Which hard links may be created (always with `linkat` relative to directory descriptors,
/// never following a symlink, never to a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardLinks {
    /// None ([`CopyError::HardLink`]).
    Refuse,
    /// Only to a file this same extraction created (and has not replaced since).
    CreatedByThisArchive,
    /// To anything inside the destination (image layers link to lower layers' files).
    AnyInside,
}

/// Policy and limits for [`crate::unpack_with`]. [`UnpackOptions::copy`] (the `Default`) is
/// for copies; [`UnpackOptions::oci_layer`] for image layers. Adjust fields from either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOptions {
    pub layout: Layout,
    /// [`Layout::Copy`]: the name the archive's top entry must have (what [`crate::pack`]
    /// names the source the caller asked for, [`crate::archive_name`]). A peer naming it
    /// otherwise is refused, so it cannot pick which entry of an existing destination
    /// directory it writes. `None`: any name.
    pub expected_name: Option<OsString>,
    pub parent_symlinks: ParentSymlinks,
    pub symlink_targets: SymlinkTargets,
    pub hard_links: HardLinks,
    /// Create character and block devices and FIFOs; otherwise they are refused with
    /// [`CopyError::SpecialFile`].
    pub allow_special_files: bool,
    /// Keep set-user-ID and set-group-ID bits of non-directories; otherwise they are cleared
    /// (the sticky bit, and a directory's set-group-ID bit, are always kept).
    pub keep_setid_bits: bool,
    /// Give entries the archive's owner and group (failing where that is not permitted);
    /// otherwise they belong to whoever extracts.
    pub preserve_owners: bool,
    /// Set `SCHILY.xattr.*` PAX records as extended attributes on files and directories, best
    /// effort (a filesystem without them loses them, as with `tar --xattrs`).
    pub xattrs: bool,
    /// Interpret OCI whiteouts: `.wh.NAME` removes NAME (never following a symlink, never
    /// outside the destination; `.wh..`, `.wh...` and `.wh.` are refused), `.wh..wh..opq`
    /// empties its directory of what this archive did not create.
    pub whiteouts: bool,
    /// A non-directory entry may replace an existing directory (removed with its contents);
    /// otherwise that is refused with [`CopyError::Conflict`].
    pub replace_directories: bool,
    /// Members in the archive (default [`DEFAULT_MAX_ENTRIES`]).
    pub max_entries: u64,
    /// Bytes of file contents written in all; `None`: no limit.
    pub max_total_bytes: Option<u64>,
    /// Bytes in one GNU long-name, long-link or PAX header, refused before it is read (default
    /// [`DEFAULT_MAX_EXTENSION_BYTES`]).
    pub max_extension_bytes: u64,
    /// Bytes in one entry path or link target (default [`DEFAULT_MAX_PATH_BYTES`]).
    pub max_path_bytes: usize,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self::copy()
    }
}

impl UnpackOptions {
    /// Copies between host and box: nothing outside the copy, no symlink followed or pointing
    /// out, no hard links, no device nodes or FIFOs, set-ID bits cleared, owners not kept, no
    /// limit on total bytes.
    pub fn copy() -> Self {
        UnpackOptions {
            layout: Layout::Copy,
            expected_name: None,
            parent_symlinks: ParentSymlinks::Refuse,
            symlink_targets: SymlinkTargets::InsideCopy,
            hard_links: HardLinks::Refuse,
            allow_special_files: false,
            keep_setid_bits: false,
            preserve_owners: false,
            xattrs: false,
            whiteouts: false,
            replace_directories: false,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_total_bytes: None,
            max_extension_bytes: DEFAULT_MAX_EXTENSION_BYTES,
            max_path_bytes: DEFAULT_MAX_PATH_BYTES,
        }
    }

    /// An OCI image layer applied to a root directory: whiteouts, owners, modes with set-ID
    /// bits, xattrs, device nodes, hard links inside the root, parent symlinks followed inside
    /// the root, at most [`DEFAULT_LAYER_MAX_TOTAL_BYTES`] of file contents.
    pub fn oci_layer() -> Self {
        UnpackOptions {
            layout: Layout::Root,
            expected_name: None,
            parent_symlinks: ParentSymlinks::FollowInRoot,
            symlink_targets: SymlinkTargets::Any,
            hard_links: HardLinks::AnyInside,
            allow_special_files: true,
            keep_setid_bits: true,
            preserve_owners: true,
            xattrs: true,
            whiteouts: true,
            replace_directories: true,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_total_bytes: Some(DEFAULT_LAYER_MAX_TOTAL_BYTES),
            max_extension_bytes: DEFAULT_MAX_EXTENSION_BYTES,
            max_path_bytes: DEFAULT_MAX_PATH_BYTES,
        }
    }
}

/// Unpacks the tar stream `input` at `dest` under `options`. See the module documentation.
pub fn unpack_with(
    input: impl Read,
    dest: &Path,
    options: &UnpackOptions,
) -> Result<CopyStats, CopyError> {
    let (root, dest_name) = open_destination(dest, options.layout)?;
    let mut reader = Reader::new(input, options);
    let mut extractor = Extractor {
        options,
        walker: Walker {
            root,
            follow: options.parent_symlinks == ParentSymlinks::FollowInRoot,
            cache: None,
        },
        top: None,
        dest_name,
        directories: HashMap::new(),
        created: (options.whiteouts || options.hard_links == HardLinks::CreatedByThisArchive)
            .then(HashSet::new),
        stats: CopyStats::default(),
    };
    while let Some(member) = reader.next()? {
        extractor.entry(&mut reader, member)?;
    }
    if options.layout == Layout::Copy && extractor.top.is_none() {
        return Err(CopyError::Empty);
    }
    extractor.finish()
}

/// The directory no entry may leave, and (copy into a non-directory) the name the copy gets.
fn open_destination(dest: &Path, layout: Layout) -> Result<(OwnedFd, Option<OsString>), CopyError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CopyError::Io { path, source }
    };
    let dir_flags = libc::O_PATH | libc::O_DIRECTORY;
    if layout == Layout::Root {
        return Ok((sys::open(dest, dir_flags).map_err(io_err(dest))?, None));
    }
    if std::fs::symlink_metadata(dest).is_ok_and(|m| m.is_dir()) {
        let fd = sys::open(dest, dir_flags | libc::O_NOFOLLOW).map_err(io_err(dest))?;
        return Ok((fd, None));
    }
    let name = dest.file_name().ok_or_else(|| CopyError::Io {
        path: dest.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidInput,
            "the destination has no file name to create",
        ),
    })?;
    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let fd = sys::open(parent, dir_flags).map_err(io_err(parent))?;
    Ok((fd, Some(name.to_os_string())))
}

fn fs_err<'a>(entry: &'a str, op: &'static str) -> impl FnOnce(io::Error) -> CopyError + 'a {
    move |source| CopyError::Fs {
        entry: entry.to_string(),
        op,
        source,
    }
}

fn escape(entry: &str, reason: &'static str) -> CopyError {
    CopyError::Escape {
        entry: entry.to_string(),
        reason,
    }
}

fn is_kind(stat: &libc::stat, kind: libc::mode_t) -> bool {
    stat.st_mode & libc::S_IFMT == kind
}

fn errno_is(err: &io::Error, codes: &[i32]) -> bool {
    err.raw_os_error().is_some_and(|code| codes.contains(&code))
}

/// A directory reached from the destination, and its symlink-free path from there.
struct Dir {
    fd: OwnedFd,
    resolved: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Missing {
    Create,
    Report,
}

/// Opens directories below the destination one component at a time.
struct Walker {
    root: OwnedFd,
    follow: bool,
    /// The last parent reached (entries of a tree come directory by directory), dropped as
    /// soon as anything is removed or replaced.
    cache: Option<(Vec<OsString>, Rc<Dir>)>,
}

impl Walker {
    fn invalidate(&mut self) {
        self.cache = None;
    }

    /// The directory at `comps` (single components, no `..`), creating missing ones (mode
    /// 0755 less the umask) or reporting `None`.
    fn dir(
        &mut self,
        entry: &str,
        comps: &[OsString],
        missing: Missing,
    ) -> Result<Option<Rc<Dir>>, CopyError> {
        if let Some((key, dir)) = &self.cache {
            if key.as_slice() == comps {
                return Ok(Some(dir.clone()));
            }
        }
        let Some(dir) = self.walk(entry, comps, missing)? else {
            return Ok(None);
        };
        let dir = Rc::new(dir);
        self.cache = Some((comps.to_vec(), dir.clone()));
        Ok(Some(dir))
    }

    fn walk(
        &self,
        entry: &str,
        comps: &[OsString],
        missing: Missing,
    ) -> Result<Option<Dir>, CopyError> {
        let mut fd = self
            .root
            .try_clone()
            .map_err(fs_err(entry, "opening the destination"))?;
        let mut resolved: Vec<OsString> = Vec::new();
        let mut pending: Vec<OsString> = comps.iter().rev().cloned().collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    // Only from a followed symlink's target: back up, never above the root.
                    resolved.pop();
                    fd = self
                        .open_strict(&resolved)
                        .map_err(fs_err(entry, "resolving a symlink in its path"))?;
                    continue;
                }
                _ => {}
            }
            let name = sys::cstring(&part).map_err(fs_err(entry, "naming a directory"))?;
            let mut made = false;
            loop {
                let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
                match sys::openat(fd.as_fd(), &name, flags, 0) {
                    Ok(next) => {
                        fd = next;
                        resolved.push(part);
                        break;
                    }
                    Err(e) if errno_is(&e, &[libc::ENOENT]) => {
                        if missing == Missing::Report {
                            return Ok(None);
                        }
                        if made {
                            return Err(fs_err(entry, "creating its parent directory")(e));
                        }
                        match sys::mkdirat(fd.as_fd(), &name, 0o755) {
                            Ok(()) => {}
                            Err(e) if errno_is(&e, &[libc::EEXIST]) => {}
                            Err(e) => {
                                return Err(fs_err(entry, "creating its parent directory")(e))
                            }
                        }
                        made = true;
                    }
                    Err(e) if errno_is(&e, &[libc::ELOOP, libc::ENOTDIR]) => {
                        let stat = sys::lstatat(fd.as_fd(), &name)
                            .map_err(fs_err(entry, "inspecting its parent directory"))?;
                        if !is_kind(&stat, libc::S_IFLNK) {
                            return Err(escape(entry, "a part of its path is not a directory"));
                        }
                        if !self.follow {
                            return Err(escape(entry, "it goes through a symlink"));
                        }
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return Err(fs_err(entry, "resolving symlinks in its path")(
                                io::Error::from_raw_os_error(libc::ELOOP),
                            ));
                        }
                        let target = sys::readlinkat(fd.as_fd(), &name)
                            .map_err(fs_err(entry, "reading a symlink in its path"))?;
                        if target.starts_with(b"/") {
                            resolved.clear();
                            fd = self
                                .root
                                .try_clone()
                                .map_err(fs_err(entry, "opening the destination"))?;
                        }
                        for piece in target.split(|b| *b == b'/').rev() {
                            pending.push(OsString::from_vec(piece.to_vec()));
                        }
                        break;
                    }
                    Err(e) => return Err(fs_err(entry, "opening its parent directory")(e)),
                }
            }
        }
        Ok(Some(Dir {
            fd,
            resolved: resolved.iter().collect(),
        }))
    }

    /// The directory at a symlink-free path below the root, following nothing.
    fn open_strict<S: AsRef<OsStr>>(&self, comps: &[S]) -> io::Result<OwnedFd> {
        let mut fd = self.root.try_clone()?;
        for part in comps {
            let name = sys::cstring(part.as_ref())?;
            let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            fd = sys::openat(fd.as_fd(), &name, flags, 0)?;
        }
        Ok(fd)
    }
}

struct Extractor<'o> {
    options: &'o UnpackOptions,
    walker: Walker,
    /// [`Layout::Copy`]: the archive's name for its top entry, once seen.
    top: Option<OsString>,
    /// [`Layout::Copy`] into a non-directory: the name the copy gets instead.
    dest_name: Option<OsString>,
    /// Directory modes and mtimes by resolved path, set last: a read-only directory would
    /// refuse its children, and creating them changes its mtime.
    directories: HashMap<PathBuf, (u32, i64)>,
    /// Resolved paths this extraction created (for opaque whiteouts and hard-link policy).
    created: Option<HashSet<PathBuf>>,
    stats: CopyStats,
}

impl Extractor<'_> {
    /// An archive path as components below the destination; `None` for the root itself
    /// ([`Layout::Root`]). `first` is true for an entry's own path (which may name the top),
    /// false for a hard link's target.
    fn map(
        &mut self,
        raw: &[u8],
        entry: &str,
        first: bool,
    ) -> Result<Option<Vec<OsString>>, CopyError> {
        if raw.contains(&0) {
            return Err(CopyError::Malformed(format!(
                "the path {entry:?} contains a NUL byte"
            )));
        }
        if raw.starts_with(b"/") && self.options.layout == Layout::Copy {
            return Err(escape(entry, "it is absolute"));
        }
        let mut comps = Vec::new();
        for part in raw.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => return Err(escape(entry, "it contains `..`")),
                _ => comps.push(OsString::from_vec(part.to_vec())),
            }
        }
        if self.options.layout == Layout::Root {
            return Ok((!comps.is_empty()).then_some(comps));
        }
        let Some(first_name) = comps.first().cloned() else {
            return Err(escape(entry, "it has no name"));
        };
        match &self.top {
            Some(top) if *top != first_name => {
                return Err(escape(entry, "it is not inside the copy's top entry"))
            }
            Some(_) => {}
            None if !first => return Err(escape(entry, "it is not inside the copy")),
            None => {
                if let Some(expected) = &self.options.expected_name {
                    if *expected != first_name {
                        return Err(escape(
                            entry,
                            "the copy's top entry is not named after the source that was asked for",
                        ));
                    }
                }
                self.top = Some(first_name.clone());
            }
        }
        comps[0] = self.dest_name.clone().unwrap_or(first_name);
        Ok(Some(comps))
    }

    /// Components of the destination path above the part that counts as "inside the copy".
    fn outside_len(&self) -> usize {
        match self.options.layout {
            Layout::Copy => 1,
            Layout::Root => 0,
        }
    }

    fn note_created(&mut self, path: PathBuf) {
        if let Some(created) = &mut self.created {
            created.insert(path);
        }
    }

    fn mode(&self, member: &Member) -> u32 {
        let mut mode = member.mode & 0o7777;
        if !self.options.keep_setid_bits && member.kind != Kind::Directory {
            mode &= !(libc::S_ISUID | libc::S_ISGID);
        }
        mode
    }

    fn owner(&self, member: &Member, entry: &str) -> Result<Option<(u32, u32)>, CopyError> {
        if !self.options.preserve_owners {
            return Ok(None);
        }
        let id = |value: u64| {
            u32::try_from(value).map_err(|_| {
                CopyError::Malformed(format!("{entry:?} has an owner id past 32 bits"))
            })
        };
        Ok(Some((id(member.uid)?, id(member.gid)?)))
    }

    fn set_xattrs(&self, fd: BorrowedFd<'_>, member: &Member) {
        if !self.options.xattrs {
            return;
        }
        for (name, value) in &member.xattrs {
            if let Ok(name) = CString::new(name.clone()) {
                // Best effort, as documented on `UnpackOptions::xattrs`.
                let _ = sys::fsetxattr(fd, &name, value);
            }
        }
    }

    /// Clears the way for a new non-directory at `name`: whatever is there is unlinked (a
    /// symlink is removed, never followed), a directory only where the options allow.
    fn make_room(&mut self, entry: &str, dir: &Dir, name: &CStr) -> Result<(), CopyError> {
        let stat = match sys::lstatat(dir.fd.as_fd(), name) {
            Ok(stat) => stat,
            Err(e) if errno_is(&e, &[libc::ENOENT]) => return Ok(()),
            Err(e) => return Err(fs_err(entry, "inspecting what is at its path")(e)),
        };
        self.walker.invalidate();
        if is_kind(&stat, libc::S_IFDIR) {
            if !self.options.replace_directories {
                return Err(CopyError::Conflict {
                    entry: entry.to_string(),
                    reason: "a directory of that name is already there, and only a directory \
                             is merged into one; remove it or copy elsewhere",
                });
            }
            remove_tree(dir.fd.as_fd(), name)
                .map_err(fs_err(entry, "removing the directory it replaces"))
        } else {
            sys::unlinkat(dir.fd.as_fd(), name, false)
                .map_err(fs_err(entry, "removing what it replaces"))
        }
    }

    fn entry<R: Read>(&mut self, reader: &mut Reader<R>, member: Member) -> Result<(), CopyError> {
        let entry = member.display();
        let entry = entry.as_str();
        self.stats.entries += 1;
        let Some(path) = self.map(&member.path, entry, true)? else {
            return Ok(()); // the root itself
        };
        let Some((name, parent)) = path.split_last() else {
            return Ok(());
        };
        let c_name = sys::cstring(name).map_err(fs_err(entry, "naming it"))?;

        if self.options.whiteouts && self.whiteout(entry, parent, name.as_bytes())? {
            return Ok(());
        }
        if member.kind == Kind::HardLink {
            return self.hard_link(entry, &member, parent, &c_name);
        }
        if matches!(
            member.kind,
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo
        ) && !self.options.allow_special_files
        {
            return Err(CopyError::SpecialFile {
                entry: entry.to_string(),
                kind: match member.kind {
                    Kind::CharDevice => "character device",
                    Kind::BlockDevice => "block device",
                    _ => "FIFO",
                },
            });
        }
        if member.kind == Kind::Symlink {
            self.check_symlink(entry, &member, path.len())?;
        }
        if member.kind == Kind::File {
            let total = self.stats.bytes.saturating_add(member.size);
            if let Some(max) = self.options.max_total_bytes {
                if total > max {
                    return Err(CopyError::LimitExceeded {
                        limit: "max_total_bytes",
                        value: max,
                    });
                }
            }
        }

        let dir = self
            .walker
            .dir(entry, parent, Missing::Create)?
            .ok_or_else(|| escape(entry, "its parent directory could not be made"))?;
        let resolved = dir.resolved.join(name);
        let mode = self.mode(&member);
        let owner = self.owner(&member, entry)?;
        match member.kind {
            Kind::Directory => {
                let existing = match sys::lstatat(dir.fd.as_fd(), &c_name) {
                    Ok(stat) => Some(stat),
                    Err(e) if errno_is(&e, &[libc::ENOENT]) => None,
                    Err(e) => return Err(fs_err(entry, "inspecting what is at its path")(e)),
                };
                let is_dir = existing.is_some_and(|s| is_kind(&s, libc::S_IFDIR));
                if existing.is_some() && !is_dir {
                    self.walker.invalidate();
                    sys::unlinkat(dir.fd.as_fd(), &c_name, false)
                        .map_err(fs_err(entry, "removing what it replaces"))?;
                }
                if !is_dir {
                    sys::mkdirat(dir.fd.as_fd(), &c_name, 0o700)
                        .map_err(fs_err(entry, "creating the directory"))?;
                }
                // Opened only when needed: its mode and mtime are set at the end.
                if owner.is_some() || (self.options.xattrs && !member.xattrs.is_empty()) {
                    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
                    let fd = sys::openat(dir.fd.as_fd(), &c_name, flags, 0)
                        .map_err(fs_err(entry, "opening the directory"))?;
                    if let Some((uid, gid)) = owner {
                        sys::fchown(fd.as_fd(), uid, gid)
                            .map_err(fs_err(entry, "setting its owner"))?;
                    }
                    self.set_xattrs(fd.as_fd(), &member);
                }
                self.directories
                    .insert(resolved.clone(), (mode, member.mtime));
            }
            Kind::File => {
                self.make_room(entry, &dir, &c_name)?;
                let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
                let fd = sys::openat(dir.fd.as_fd(), &c_name, flags, 0o600)
                    .map_err(fs_err(entry, "creating the file"))?;
                let mut file = File::from(fd);
                reader
                    .copy_to(&mut file)?
                    .map_err(fs_err(entry, "writing the file"))?;
                let fd = file.as_fd();
                if let Some((uid, gid)) = owner {
                    sys::fchown(fd, uid, gid).map_err(fs_err(entry, "setting its owner"))?;
                }
                // After chown, which clears set-ID bits.
                sys::fchmod(fd, mode).map_err(fs_err(entry, "setting its mode"))?;
                self.set_xattrs(fd, &member);
                sys::futimens(fd, member.mtime).map_err(fs_err(entry, "setting its mtime"))?;
                self.stats.bytes += member.size;
            }
            Kind::Symlink => {
                let target = member.link.as_deref().unwrap_or_default();
                let target = CString::new(target).map_err(|_| {
                    CopyError::Malformed(format!("the symlink target of {entry:?} has a NUL byte"))
                })?;
                self.make_room(entry, &dir, &c_name)?;
                sys::symlinkat(&target, dir.fd.as_fd(), &c_name)
                    .map_err(fs_err(entry, "creating the symlink"))?;
                if let Some((uid, gid)) = owner {
                    sys::lchownat(dir.fd.as_fd(), &c_name, uid, gid)
                        .map_err(fs_err(entry, "setting its owner"))?;
                }
                sys::lutimensat(dir.fd.as_fd(), &c_name, member.mtime)
                    .map_err(fs_err(entry, "setting its mtime"))?;
            }
            Kind::CharDevice | Kind::BlockDevice | Kind::Fifo => {
                let file_type = match member.kind {
                    Kind::CharDevice => libc::S_IFCHR,
                    Kind::BlockDevice => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                self.make_room(entry, &dir, &c_name)?;
                staged(dir.fd.as_fd(), &c_name, |stage, node| {
                    sys::mknodat(stage, node, file_type | 0o600, member.major, member.minor)?;
                    if let Some((uid, gid)) = owner {
                        sys::lchownat(stage, node, uid, gid)?;
                    }
                    sys::fchmodat_private(stage, node, mode)?;
                    sys::lutimensat(stage, node, member.mtime)
                })
                .map_err(fs_err(entry, "creating the special file"))?;
            }
            Kind::HardLink => unreachable!("hard links are handled above"),
        }
        self.note_created(resolved);
        Ok(())
    }

    fn check_symlink(&self, entry: &str, member: &Member, len: usize) -> Result<(), CopyError> {
        let target = member.link.as_deref().unwrap_or_default();
        if target.is_empty() {
            return Err(CopyError::Malformed(format!(
                "the symlink {entry:?} has no target"
            )));
        }
        if self.options.symlink_targets == SymlinkTargets::Any {
            return Ok(());
        }
        // The depth of the link's directory inside the copy (negative: outside it).
        let depth = len as i64 - 1 - self.outside_len() as i64;
        if !stays_inside(depth, target) {
            return Err(escape(entry, "it is a symlink pointing outside the copy"));
        }
        Ok(())
    }

    /// Handles a whiteout name; `false` when `name` is not one.
    fn whiteout(
        &mut self,
        entry: &str,
        parent: &[OsString],
        name: &[u8],
    ) -> Result<bool, CopyError> {
        let Some(hidden) = name.strip_prefix(b".wh.") else {
            return Ok(false);
        };
        if name == b".wh..wh..opq" {
            let Some(dir) = self.walker.dir(entry, parent, Missing::Report)? else {
                return Ok(true);
            };
            self.walker.invalidate();
            let children = sys::list_dir(dir.fd.as_fd())
                .map_err(fs_err(entry, "listing the opaque directory"))?;
            for child in children {
                let path = dir.resolved.join(OsStr::from_bytes(child.as_bytes()));
                if self.created.as_ref().is_some_and(|c| c.contains(&path)) {
                    continue;
                }
                remove_tree(dir.fd.as_fd(), &child)
                    .map_err(fs_err(entry, "emptying the opaque directory"))?;
            }
            return Ok(true);
        }
        if hidden.starts_with(b".wh.") {
            return Ok(true); // other AUFS metadata (.wh..wh.plnk, ...): nothing to apply
        }
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(escape(entry, "it is a whiteout of `.`, `..` or nothing"));
        }
        let Some(dir) = self.walker.dir(entry, parent, Missing::Report)? else {
            return Ok(true); // nothing there to hide
        };
        self.walker.invalidate();
        let hidden = sys::cstring(OsStr::from_bytes(hidden)).map_err(fs_err(entry, "naming it"))?;
        remove_tree(dir.fd.as_fd(), &hidden)
            .map_err(fs_err(entry, "removing the whited-out path"))?;
        Ok(true)
    }

    fn hard_link(
        &mut self,
        entry: &str,
        member: &Member,
        parent: &[OsString],
        name: &CStr,
    ) -> Result<(), CopyError> {
        let raw_target = member.link.as_deref().unwrap_or_default();
        let target_display = String::from_utf8_lossy(raw_target).into_owned();
        let refuse = |reason| CopyError::HardLink {
            entry: entry.to_string(),
            target: target_display.clone(),
            reason,
        };
        if self.options.hard_links == HardLinks::Refuse {
            return Err(refuse(
                "hard links are not copied (UnpackOptions::hard_links is Refuse)",
            ));
        }
        if raw_target.is_empty() {
            return Err(refuse("it has no target"));
        }
        let target = self
            .map(raw_target, entry, false)?
            .ok_or_else(|| refuse("it links to the root directory"))?;
        let Some((target_name, target_parent)) = target.split_last() else {
            return Err(refuse("it links to the root directory"));
        };
        let target_dir = self
            .walker
            .dir(entry, target_parent, Missing::Report)?
            .ok_or_else(|| refuse("its target does not exist"))?;
        let target_resolved = target_dir.resolved.join(target_name);
        if self.options.hard_links == HardLinks::CreatedByThisArchive
            && !self
                .created
                .as_ref()
                .is_some_and(|c| c.contains(&target_resolved))
        {
            return Err(refuse("its target was not created by this archive"));
        }
        let target_name = sys::cstring(target_name).map_err(fs_err(entry, "naming its target"))?;
        let dir = self
            .walker
            .dir(entry, parent, Missing::Create)?
            .ok_or_else(|| escape(entry, "its parent directory could not be made"))?;
        let resolved = dir.resolved.join(OsStr::from_bytes(name.to_bytes()));
        if resolved == target_resolved {
            return Err(refuse("it links to itself"));
        }
        self.make_room(entry, &dir, name)?;
        sys::linkat(target_dir.fd.as_fd(), &target_name, dir.fd.as_fd(), name)
            .map_err(fs_err(entry, "creating the hard link"))?;
        self.note_created(resolved);
        Ok(())
    }

    /// Directory modes and mtimes, deepest first; a directory a later entry replaced is
    /// skipped.
    fn finish(self) -> Result<CopyStats, CopyError> {
        let mut directories: Vec<_> = self.directories.into_iter().collect();
        directories.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, (mode, mtime)) in directories {
            let entry = path.display().to_string();
            let comps: Vec<&OsStr> = path.iter().collect();
            let Some((name, parent)) = comps.split_last() else {
                continue;
            };
            let gone = [libc::ENOENT, libc::ENOTDIR, libc::ELOOP];
            let parent = match self.walker.open_strict(parent) {
                Ok(fd) => fd,
                Err(e) if errno_is(&e, &gone) => continue,
                Err(e) => return Err(fs_err(&entry, "reopening its parent directory")(e)),
            };
            let name = sys::cstring(name).map_err(fs_err(&entry, "naming it"))?;
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
            let fd = match sys::openat(parent.as_fd(), &name, flags, 0) {
                Ok(fd) => fd,
                Err(e) if errno_is(&e, &gone) => continue,
                Err(e) => return Err(fs_err(&entry, "reopening the directory")(e)),
            };
            sys::fchmod(fd.as_fd(), mode).map_err(fs_err(&entry, "setting its mode"))?;
            sys::futimens(fd.as_fd(), mtime).map_err(fs_err(&entry, "setting its mtime"))?;
        }
        Ok(self.stats)
    }
}

/// Whether a symlink in a directory `depth` levels below the copy's top, pointing at
/// `target`, resolves inside the copy: relative, every `..` leading, and no more of them than
/// `depth`. (`a/../..`-style targets are refused outright: through another symlink `a`, a
/// lexical check of them proves nothing.)
fn stays_inside(depth: i64, target: &[u8]) -> bool {
    if depth < 0 || target.starts_with(b"/") {
        return false;
    }
    let mut ups = 0;
    let mut leading = true;
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if leading => ups += 1,
            b".." => return false,
            _ => leading = false,
        }
    }
    ups <= depth
}

/// Removes `name` in `dir` and, if it is a directory, everything below it, without following
/// any symlink (a symlink is unlinked itself). Iterative, so a deep tree cannot overflow the
/// stack; it holds one descriptor per level.
fn remove_tree(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    let stat = match sys::lstatat(dir, name) {
        Ok(stat) => stat,
        Err(e) if errno_is(&e, &[libc::ENOENT]) => return Ok(()),
        Err(e) => return Err(e),
    };
    if !is_kind(&stat, libc::S_IFDIR) {
        return sys::unlinkat(dir, name, false);
    }
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let open = |parent: BorrowedFd<'_>, name: &CStr| -> io::Result<(OwnedFd, Vec<CString>)> {
        let fd = sys::openat(parent, name, flags, 0)?;
        let children = sys::list_dir(fd.as_fd())?;
        Ok((fd, children))
    };
    // (directory, its children still to remove, its own name in its parent)
    let (fd, children) = open(dir, name)?;
    let mut stack = vec![(fd, children, name.to_owned())];
    while let Some((fd, children, _)) = stack.last_mut() {
        if let Some(child) = children.pop() {
            let stat = match sys::lstatat(fd.as_fd(), &child) {
                Ok(stat) => stat,
                Err(e) if errno_is(&e, &[libc::ENOENT]) => continue,
                Err(e) => return Err(e),
            };
            if is_kind(&stat, libc::S_IFDIR) {
                let (sub, grandchildren) = open(fd.as_fd(), &child)?;
                stack.push((sub, grandchildren, child));
            } else {
                sys::unlinkat(fd.as_fd(), &child, false)?;
            }
            continue;
        }
        let Some((fd, _, own_name)) = stack.pop() else {
            break;
        };
        drop(fd);
        let parent = stack.last().map(|(fd, _, _)| fd.as_fd()).unwrap_or(dir);
        sys::unlinkat(parent, &own_name, true)?;
    }
    Ok(())
}

/// Makes a node with `build` inside a fresh private directory in `dir` (mode 0700, owned by
/// this process's user, so no one else can swap what is in it for a symlink or a hard link
/// to something else between creating the node and setting its mode and owner), then renames
/// it to `name` in `dir`.
fn staged(
    dir: BorrowedFd<'_>,
    name: &CStr,
    build: impl FnOnce(BorrowedFd<'_>, &CStr) -> io::Result<()>,
) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut attempts = 0;
    let private = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let private = CString::new(format!(".boxlite-unpack.{}.{n}", std::process::id()))
            .map_err(|_| io::Error::other("a staging directory name has a NUL byte"))?;
        match sys::mkdirat(dir, &private, 0o700) {
            Ok(()) => break private,
            Err(e) if errno_is(&e, &[libc::EEXIST]) && attempts < 16 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    let node = c"node";
    let result = (|| {
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
        let stage = sys::openat(dir, &private, flags, 0)?;
        let stat = sys::fstat(stage.as_fd())?;
        if stat.st_uid != sys::geteuid() || stat.st_mode & 0o077 != 0 {
            return Err(io::Error::other(
                "the private staging directory was replaced while in use",
            ));
        }
        let made =
            build(stage.as_fd(), node).and_then(|()| sys::renameat(stage.as_fd(), node, dir, name));
        if made.is_err() {
            let _ = sys::unlinkat(stage.as_fd(), node, false);
        }
        made
    })();
    let _ = sys::unlinkat(dir, &private, true);
    result
}

#[cfg(test)]
mod tests {
    use super::stays_inside;

    #[test]
    fn symlink_targets_inside_the_copy() {
        assert!(stays_inside(0, b"a.txt"));
        assert!(stays_inside(0, b"."));
        assert!(stays_inside(1, b"../a.txt"));
        assert!(stays_inside(2, b"./../../x/y"));
        assert!(!stays_inside(0, b"../x"));
        assert!(!stays_inside(-1, b"x"));
        assert!(!stays_inside(3, b"/etc"));
        assert!(!stays_inside(3, b"a/../b"));
    }
}
