//! A fresh directory tree for one fuzz run to extract into, laid out so that a write outside
//! the destination is caught afterwards:
//!
//! ```text
//! $TMPDIR/boxlite-fuzz-XXXX/      top      nothing may appear, vanish or change here,
//!   l1/l2/                                 nor in l1, l2
//!     area/                                holds dest and outside, nothing else
//!       outside/secret                     bait: must stay exactly as it was
//!       dest/                              the destination (absent, or an image root)
//! ```
//!
//! The image root holds lower-layer files for whiteouts and hard links to act on, and
//! symlinks pointing out of it (`up -> ../outside`, `abs -> /…/area/outside`, `dotdot -> ..`):
//! an extractor that ever let the kernel follow one would write into the bait. The levels
//! above `area` catch a `..` that climbs further. Changes are seen in the ctime and mtime of
//! the bait and the directories above (a chmod, chown, xattr, link or rename changes a
//! ctime), so the check needs no listing of the whole filesystem.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What the destination is before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// Not there: a copy creates it.
    Absent,
    /// A directory like an image root after a first layer, with symlinks pointing out.
    ImageRoot,
}

/// The metadata a write through a link, a chmod or a chown would change.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> Stamp {
        let m = fs::symlink_metadata(path)
            .unwrap_or_else(|e| panic!("{} vanished: {e}", path.display()));
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            nlink: m.nlink(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// Without the times and size: for `area`, where the destination is created or removed.
    fn identity(&self) -> (u64, u64, u32, u32, u32) {
        (self.dev, self.ino, self.mode, self.uid, self.gid)
    }
}

const SECRET: &[u8] = b"the bait outside the destination\n";

pub struct Sandbox {
    top: PathBuf,
    pub area: PathBuf,
    pub dest: PathBuf,
    pub outside: PathBuf,
    /// Paths that must not change at all, with their metadata before the run.
    frozen: Vec<(PathBuf, Stamp)>,
    area_stamp: Stamp,
}

fn names(dir: &Path) -> BTreeSet<OsString> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").file_name())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<OsString> {
    items.iter().map(OsString::from).collect()
}

impl Sandbox {
    pub fn new(dest: Dest) -> Sandbox {
        let top = tempfile::Builder::new()
            .prefix("boxlite-fuzz-")
            .tempdir()
            .expect("creating a temporary directory (is $TMPDIR writable?)")
            .keep();
        let area = top.join("l1/l2/area");
        let outside = area.join("outside");
        fs::create_dir_all(&outside).expect("creating the sandbox");
        fs::write(outside.join("secret"), SECRET).expect("writing the bait");
        fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o644))
            .expect("chmod the bait");
        let dest_path = area.join("dest");
        match dest {
            Dest::Absent => {}
            Dest::ImageRoot => image_root(&dest_path, &outside),
        }
        let frozen = [
            top.clone(),
            top.join("l1"),
            top.join("l1/l2"),
            outside.clone(),
            outside.join("secret"),
        ]
        .into_iter()
        .map(|path| {
            let stamp = Stamp::of(&path);
            (path, stamp)
        })
        .collect();
        let area_stamp = Stamp::of(&area);
        Sandbox {
            top,
            area,
            dest: dest_path,
            outside,
            frozen,
            area_stamp,
        }
    }

    /// Panics if anything outside the destination was created, removed or changed.
    pub fn check(&self) {
        assert_eq!(
            names(&self.top),
            set(&["l1"]),
            "something was written in top"
        );
        assert_eq!(names(&self.top.join("l1")), set(&["l2"]), "written in l1");
        assert_eq!(
            names(&self.top.join("l1/l2")),
            set(&["area"]),
            "written in l2"
        );
        let in_area = names(&self.area);
        assert!(
            in_area == set(&["outside"]) || in_area == set(&["dest", "outside"]),
            "something besides the destination was written next to it: {in_area:?}"
        );
        assert_eq!(
            Stamp::of(&self.area).identity(),
            self.area_stamp.identity(),
            "the directory holding the destination was changed"
        );
        assert_eq!(
            names(&self.outside),
            set(&["secret"]),
            "the bait directory changed"
        );
        for (path, before) in &self.frozen {
            assert_eq!(
                &Stamp::of(path),
                before,
                "{} was changed by an extraction into {}",
                path.display(),
                self.dest.display()
            );
        }
        let secret = fs::read(self.outside.join("secret")).expect("reading the bait");
        assert_eq!(secret, SECRET, "the bait's contents changed");
    }
}

/// A small image root: lower-layer files and directories, and symlinks leading out of it.
fn image_root(root: &Path, outside: &Path) {
    fs::create_dir_all(root.join("usr/lib")).expect("creating the image root");
    fs::create_dir_all(root.join("etc")).expect("creating the image root");
    fs::create_dir_all(root.join("opaque/sub")).expect("creating the image root");
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("writing");
    fs::write(root.join("usr/lib/libc.so"), "lower").expect("writing");
    fs::write(root.join("opaque/sub/keep"), "lower").expect("writing");
    symlink("usr/lib", root.join("lib")).expect("symlink");
    symlink("../outside", root.join("up")).expect("symlink");
    symlink(outside, root.join("abs")).expect("symlink");
    symlink("..", root.join("dotdot")).expect("symlink");
    symlink("../outside/secret", root.join("secret")).expect("symlink");
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if fs::remove_dir_all(&self.top).is_ok() {
            return;
        }
        // An archive may leave directories without write or search permission (a layer may
        // chmod the root itself); as someone other than root they cannot be emptied until
        // they are given it back. Never through a symlink.
        loosen(&self.top);
        if let Err(err) = fs::remove_dir_all(&self.top) {
            eprintln!("fuzz sandbox: leaving {}: {err}", self.top.display());
        }
    }
}

fn loosen(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            loosen(&entry.path());
        }
    }
}
