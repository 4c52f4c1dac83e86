//! Applying OCI image layers (tar, optionally gzip- or zstd-compressed) to a root directory:
//! whiteouts and opaque directories, hardlinks, symlinks, device nodes, modes, owners, mtimes
//! and extended attributes. The extraction itself is `boxlite_copy`'s hardened core (the same
//! one that receives copies out of boxes) under [`UnpackOptions::oci_layer`]: every operation
//! is relative to a directory descriptor walked from the root without letting the kernel
//! follow a symlink, symlinks in parent paths are resolved inside the root (as the image's
//! own kernel will), whiteouts never follow symlinks, and extension headers, entry counts and
//! total bytes are bounded.

use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use boxlite_copy::{CopyError, UnpackOptions};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the layer: {0}")]
    Read(#[from] io::Error),
    /// The layer was refused (an entry escaping the root, a limit, a malformed archive) or an
    /// entry could not be written.
    #[error(transparent)]
    Extract(#[from] CopyError),
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

/// Applies one (decompressed) layer to `root`.
pub fn apply_layer(root: &Path, layer: impl Read) -> Result<(), UnpackError> {
    boxlite_copy::unpack_with(layer, root, &UnpackOptions::oci_layer())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
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
        assert!(
            matches!(err, UnpackError::Extract(CopyError::Escape { .. })),
            "{err}"
        );

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
        assert!(
            matches!(err, UnpackError::Extract(CopyError::Escape { .. })),
            "{err}"
        );
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

    /// Lower-layer files the whiteout tests check survive.
    fn lower(root: &Path) {
        let layer = Layer::new()
            .file("a/one", "1")
            .file("a/two", "2")
            .file("top", "t")
            .bytes();
        apply_layer(root, &layer[..]).unwrap();
    }

    #[test]
    fn whiteouts_of_dot_and_dotdot_are_refused() {
        for name in ["a/.wh..", "a/.wh...", ".wh...", ".wh.."] {
            let outer = tempfile::tempdir().unwrap();
            let root = outer.path().join("rootfs");
            fs::create_dir(&root).unwrap();
            fs::write(outer.path().join("neighbour"), "n").unwrap();
            lower(&root);
            let result = apply_layer(&root, &Layer::new().file(name, "").bytes()[..]);
            assert!(result.is_err(), "{name}: {result:?}");
            assert_eq!(read(&root, "a/one"), "1", "{name}");
            assert_eq!(read(&root, "top"), "t", "{name}");
            assert_eq!(read(outer.path(), "neighbour"), "n", "{name}");
        }
    }

    #[test]
    fn an_opaque_marker_still_works_and_whiteouts_never_follow_symlinks() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("rootfs");
        fs::create_dir(&root).unwrap();
        let host = outer.path().join("host");
        fs::create_dir(&host).unwrap();
        fs::write(host.join("precious"), "p").unwrap();
        lower(&root);
        let links = Layer::new()
            .link(
                tar::EntryType::Symlink,
                "tohost",
                &host.display().to_string(),
            )
            .link(tar::EntryType::Symlink, "toa", "a")
            .bytes();
        apply_layer(&root, &links[..]).unwrap();
        // Whiting out a symlink removes the link, not what it points at.
        let upper = Layer::new()
            .file(".wh.tohost", "")
            .file(".wh.toa", "")
            .bytes();
        apply_layer(&root, &upper[..]).unwrap();
        assert!(fs::symlink_metadata(root.join("tohost")).is_err());
        assert!(fs::symlink_metadata(root.join("toa")).is_err());
        assert_eq!(read(&host, "precious"), "p");
        assert_eq!(read(&root, "a/one"), "1");
        // An opaque marker under a link to a host directory never touches the host.
        let links = Layer::new()
            .link(
                tar::EntryType::Symlink,
                "tohost",
                &host.display().to_string(),
            )
            .bytes();
        apply_layer(&root, &links[..]).unwrap();
        let opaque = Layer::new().file("tohost/.wh..wh..opq", "").bytes();
        let _ = apply_layer(&root, &opaque[..]);
        assert_eq!(read(&host, "precious"), "p");
        // And the plain opaque marker keeps working.
        apply_layer(&root, &Layer::new().file("a/.wh..wh..opq", "").bytes()[..]).unwrap();
        assert_eq!(fs::read_dir(root.join("a")).unwrap().count(), 0);
    }

    #[test]
    fn huge_pax_and_long_name_headers_are_refused() {
        for ext in [b'L', b'x'] {
            let root = tempfile::tempdir().unwrap();
            let mut builder = tar::Builder::new(Vec::new());
            let mut h = Layer::header(tar::EntryType::new(ext), 0o644, 0);
            let data = if ext == b'x' {
                let body = format!(" path={}\n", "a".repeat((1 << 20) - 20));
                format!("{}{body}", body.len() + 8).into_bytes()
            } else {
                vec![b'a'; 1 << 20]
            };
            h.set_size(data.len() as u64);
            h.as_old_mut().name[..4].copy_from_slice(b"long");
            h.set_cksum();
            builder.append(&h, &data[..]).unwrap();
            let mut f = Layer::header(tar::EntryType::Regular, 0o644, 1);
            builder.append_data(&mut f, "short", &b"x"[..]).unwrap();
            let err = apply_layer(root.path(), &builder.into_inner().unwrap()[..]).unwrap_err();
            assert!(err.to_string().contains("max_extension_bytes"), "{err}");
        }
    }

    #[test]
    fn layers_keep_device_nodes_setuid_bits_and_owners() {
        use std::os::unix::fs::FileTypeExt;
        let root = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut dev = Layer::header(tar::EntryType::Char, 0o666, 0);
        dev.set_device_major(1).unwrap();
        dev.set_device_minor(3).unwrap();
        builder
            .append_data(&mut dev, "dev/null", io::empty())
            .unwrap();
        let mut suid = Layer::header(tar::EntryType::Regular, 0o4755, 1);
        builder.append_data(&mut suid, "bin/su", &b"x"[..]).unwrap();
        apply_layer(root.path(), &builder.into_inner().unwrap()[..]).unwrap();
        let null = fs::symlink_metadata(root.path().join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(
            (null.rdev(), null.mode() & 0o7777),
            (libc::makedev(1, 3), 0o666)
        );
        assert_eq!((null.uid(), null.mtime()), (1000, 1_600_000_000));
        let su = fs::metadata(root.path().join("bin/su")).unwrap();
        assert_eq!(
            (su.mode() & 0o7777, su.uid(), su.gid()),
            (0o4755, 1000, 1000)
        );
    }
}
