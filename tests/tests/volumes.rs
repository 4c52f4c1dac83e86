//! Volumes through a real box (virtio-fs, virtiofsd under QEMU): writes cross both ways, a
//! read-only volume refuses writes in the box, and bad volume options are refused up front.

use boxlite::VolumeSpec;
use boxlite_tests::{layout_box_options, scratch_root, sh, test_runtime, TestHome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_are_shared_both_ways_and_read_only_means_it() {
    let home = TestHome::new();
    let shared = tempfile::tempdir_in(scratch_root()).unwrap();
    let docs = tempfile::tempdir_in(scratch_root()).unwrap();
    std::fs::write(shared.path().join("from-host.txt"), "hello box\n").unwrap();
    std::fs::write(docs.path().join("readme"), "read me\n").unwrap();
    let rt = test_runtime!(home.path());

    let mut options = layout_box_options("busybox");
    options.volumes = vec![
        VolumeSpec {
            host_path: shared.path().display().to_string(),
            guest_path: "/work".into(),
            read_only: false,
        },
        VolumeSpec {
            host_path: docs.path().display().to_string(),
            guest_path: "/mnt/docs".into(),
            read_only: true,
        },
    ];
    let b = rt.create(options.clone(), None).await.unwrap();

    // Host → guest, guest → host.
    let (code, out) = sh(
        &b,
        "cat /work/from-host.txt && echo from-guest > /work/out.txt",
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "hello box\n"));
    assert_eq!(
        std::fs::read_to_string(shared.path().join("out.txt")).unwrap(),
        "from-guest\n"
    );

    // Guest root cannot plant device nodes in a host directory (virtiofsd runs without
    // CAP_MKNOD): a box must not hand the host a /dev/mem or a disk.
    if boxlite_tests::test_engine_kind() == boxlite::EngineKind::Qemu {
        let (code, out) = sh(&b, "mknod /work/mem c 1 1 2>&1").await;
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("not permitted"), "{out}");
        assert!(!shared.path().join("mem").exists());
    }
    // A change on the host is seen by the running box.
    std::fs::write(shared.path().join("later.txt"), "later\n").unwrap();
    assert_eq!(sh(&b, "cat /work/later.txt").await.1, "later\n");

    // Read-only: readable, every write refused.
    assert_eq!(sh(&b, "cat /mnt/docs/readme").await.1, "read me\n");
    let (code, out) = sh(&b, "echo x > /mnt/docs/new; echo x >> /mnt/docs/readme").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(!docs.path().join("new").exists());
    assert_eq!(
        std::fs::read_to_string(docs.path().join("readme")).unwrap(),
        "read me\n"
    );
    rt.remove(b.id(), true).await.unwrap();

    // Bad volumes are refused before anything is made.
    for (volume, needle) in [
        (
            VolumeSpec {
                host_path: shared.path().join("missing").display().to_string(),
                guest_path: "/x".into(),
                read_only: false,
            },
            "not a directory",
        ),
        (
            VolumeSpec {
                host_path: shared.path().display().to_string(),
                guest_path: "relative".into(),
                read_only: false,
            },
            "absolute path",
        ),
        (
            VolumeSpec {
                host_path: shared.path().display().to_string(),
                guest_path: "/".into(),
                read_only: false,
            },
            "below /",
        ),
    ] {
        let mut bad = layout_box_options("busybox");
        bad.volumes = vec![volume];
        let err = rt.create(bad, None).await.expect_err("a bad volume");
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert!(rt.list_info().await.unwrap().is_empty());
}

/// A box whose root is a host directory shared in place (`RootfsSpec::SharedPath`, what the
/// containerd shim gives a container's snapshot): every program comes from virtio-fs, run
/// again and again (under TCG that crashed on the second run until guests zeroed pages on
/// allocation), and its writes land in the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_root_runs_programs_again_and_is_written_in_place() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let root = tempfile::tempdir_in(scratch_root()).unwrap();
    boxlite_tests::install_busybox(root.path());
    std::fs::write(root.path().join("etc/marker"), "shared root\n").unwrap();
    let mut options = layout_box_options("busybox");
    options.rootfs = boxlite::RootfsSpec::SharedPath(root.path().to_path_buf());

    let b = rt.create(options, None).await.unwrap();
    // Each exec runs sh, cat and ls from the shared root; dropping the guest's page cache
    // makes the next run's pages come from virtiofsd again, into pages that held code before.
    for _ in 0..5 {
        let (code, out) = sh(
            &b,
            "cat /etc/marker && ls /bin >/dev/null && echo written > /from-box \
             && echo 3 > /proc/sys/vm/drop_caches",
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "shared root\n"));
    }
    assert_eq!(
        std::fs::read_to_string(root.path().join("from-box")).unwrap(),
        "written\n"
    );
    // No disk of its own, and no snapshot of a state virtiofsd holds.
    assert!(!home
        .path()
        .join("boxes")
        .join(b.id())
        .join("disk.qcow2")
        .exists());
    let err = b.snapshot("s").await.unwrap_err();
    assert!(err.to_string().contains("shared host directory"), "{err}");
    b.stop().await.unwrap();
}
