//! copy_into / copy_out through a real box: trees with symlinks, modes and mtimes come back
//! identical; a large file comes back with the same checksum; entries that would escape the
//! destination are refused on either side and write nothing outside it.

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use boxlite::BoxliteError;
use boxlite_tests::{layout_box_options, scratch_root, sh, test_runtime, TestHome};
use sha2::{Digest, Sha256};

/// Size of the large-file round trip (BOXLITE_COPY_TEST_MIB overrides; the 1 GiB is
/// what scripts/bench measures, see docs/PERFORMANCE.md).
fn large_file_mib() -> u64 {
    std::env::var("BOXLITE_COPY_TEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Every entry below `root`: (relative path, kind + mode + mtime + content digest or target).
fn describe(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let what = if meta.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            format!("dir {:o} {}", meta.mode() & 0o7777, meta.mtime())
        } else {
            let digest = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
            format!("file {:o} {} {digest}", meta.mode() & 0o7777, meta.mtime())
        };
        out.push((rel, what));
    }
    out.sort();
    out
}

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("src/nested")).unwrap();
    std::fs::write(root.join("README"), b"a project\n").unwrap();
    std::fs::write(root.join("src/main.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        root.join("src/main.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("src/nested/data"), vec![42u8; 300_000]).unwrap();
    symlink("src/main.sh", root.join("run")).unwrap();
    symlink("../README", root.join("src/readme")).unwrap();
    std::fs::set_permissions(
        root.join("src/nested"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_trees_go_in_and_come_back_identical() {
    let home = TestHome::new();
    let work = tempfile::tempdir_in(scratch_root()).unwrap();
    let rt = test_runtime!(home.path());
    let b = rt
        .create(layout_box_options("busybox"), None)
        .await
        .unwrap();

    // A tree with symlinks, modes and mtimes.
    let tree = work.path().join("project");
    make_tree(&tree);
    let stats = b
        .copy_into(&tree, "/srv/project", boxlite::CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(stats.entries, 8);
    let (code, listing) = sh(&b, "cat /srv/project/run /srv/project/src/readme").await;
    assert_eq!(
        (code, listing.as_str()),
        (0, "#!/bin/sh\necho hi\na project\n")
    );
    let back = work.path().join("back");
    b.copy_out("/srv/project", &back, boxlite::CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(describe(&back), describe(&tree));
    // Into an existing directory: under the source's name.
    let into = work.path().join("into");
    std::fs::create_dir(&into).unwrap();
    b.copy_out("/srv/project", &into, boxlite::CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(describe(&into.join("project")), describe(&tree));

    // A large file: same bytes back, streamed.
    let mib = large_file_mib();
    let big = work.path().join("big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let mut block = [0u8; 1 << 20];
        for i in 0..mib {
            for (j, byte) in block.iter_mut().enumerate() {
                *byte = (i as usize * 31 + j * 7) as u8;
            }
            f.write_all(&block).unwrap();
        }
    }
    b.copy_into(&big, "/big.bin", boxlite::CopyOptions::default())
        .await
        .unwrap();
    let (_, sum) = sh(&b, "sha256sum /big.bin").await;
    let digest = |p: &Path| {
        let mut hasher = Sha256::new();
        std::io::copy(&mut std::fs::File::open(p).unwrap(), &mut hasher).unwrap();
        hex::encode(hasher.finalize())
    };
    let expected = digest(&big);
    assert!(sum.starts_with(&expected), "{sum}");
    let big_back = work.path().join("big.back");
    let stats = b
        .copy_out("/big.bin", &big_back, boxlite::CopyOptions::default())
        .await
        .unwrap();
    assert_eq!(stats.bytes, mib << 20);
    assert_eq!(digest(&big_back), expected);
    std::fs::remove_file(&big_back).unwrap();
    sh(&b, "rm /big.bin").await;

    // Escapes, both ways: refused with a clear error, nothing written outside.
    let evil = work.path().join("evil");
    std::fs::create_dir(&evil).unwrap();
    symlink("/etc/passwd", evil.join("passwd")).unwrap();
    let err = b
        .copy_into(&evil, "/srv/evil", boxlite::CopyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BoxliteError::Execution(boxlite::ExecutionError::Copy { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("symlink pointing outside"),
        "{err}"
    );
    let (_, listing) = sh(&b, "ls /srv; ls -l /etc/passwd").await;
    assert!(!listing.contains("evil/passwd"), "{listing}");

    sh(&b, "mkdir -p /srv/out && ln -s /etc /srv/out/etc-link").await;
    let out_dest = work.path().join("out");
    let err = b
        .copy_out("/srv/out", &out_dest, boxlite::CopyOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, BoxliteError::Storage(boxlite::StorageError::Copy(_))),
        "{err}"
    );
    assert!(
        err.to_string().contains("symlink pointing outside"),
        "{err}"
    );
    assert!(!work.path().join("etc").exists());

    // Bad paths and missing sources.
    let err = b
        .copy_into(&tree, "relative/path", boxlite::CopyOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not an absolute path"), "{err}");
    let err = b
        .copy_out(
            "/no/such/file",
            work.path().join("x"),
            boxlite::CopyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("/no/such/file does not exist"),
        "{err}"
    );
    assert!(!work.path().join("x").exists());
    let err = b
        .copy_into(
            work.path().join("missing"),
            "/srv/m",
            boxlite::CopyOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");

    rt.remove(b.id(), true).await.unwrap();
}
