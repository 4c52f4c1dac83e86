//! Pause and resume, memory snapshots, forks and template starts, on real VMs: processes keep
//! running through them, each box's writes stay its own, and bad requests are refused with
//! nothing half-written left behind.

use std::time::Duration;

use boxlite::{BoxStatus, BoxliteError, ErrorKind, LiteBox};
use boxlite_tests::{layout_box_options, sh, test_runtime, wait_until, TestHome};

/// A counter the box's shell increments every 50 ms into /tmp/counter (on the box disk).
const COUNTER: &str = "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; \
                       mv /tmp/counter.new /tmp/counter; sleep 0.05; done";

/// Every test of this binary starts boxes from templates (the default, unless the
/// environment turned them off): the same value in every test, so setting it from parallel
/// tests is harmless.
fn templates_on() {
    std::env::set_var(boxlite::TEMPLATES_ENV, "1");
}

async fn counter(b: &LiteBox) -> u64 {
    let (code, out) = sh(b, "cat /tmp/counter").await;
    assert_eq!(code, 0, "{out}");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("counter {out:?}"))
}

/// Waits until the box's counter passes `above`: the loop runs in it.
async fn counter_passes(b: &LiteBox, above: u64) {
    wait_until(
        Duration::from_secs(60),
        "the counter to advance",
        || async { counter(b).await > above },
    )
    .await;
}

async fn start_counter(b: &LiteBox) -> u32 {
    let (code, out) = sh(b, &format!("({COUNTER}) >/dev/null 2>&1 & echo $!")).await;
    assert_eq!(code, 0, "{out}");
    let pid = out.trim().parse().expect("the loop's pid");
    counter_passes(b, 0).await;
    pid
}

/// Rewrites snapshot `name`'s record as if it had been saved under another kernel.
fn taken_under_another_kernel(home: &std::path::Path, name: &str) {
    let meta_path = home.join("snapshots").join(name).join("snapshot.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["shape"]["kernel"] = "/boot/another-vmlinux (1 bytes, mtime 0.0)".into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_box_keeps_its_processes_and_refuses_commands() {
    templates_on();
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let b = rt
        .create(layout_box_options("opaque"), Some("p".into()))
        .await
        .unwrap();
    let pid = start_counter(&b).await;

    b.pause().await.unwrap();
    assert_eq!(b.info().status, BoxStatus::Paused);
    b.pause().await.unwrap(); // a no-op
    let err = b
        .exec(boxlite::BoxCommand::new("true"))
        .await
        .expect_err("exec on a paused box");
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(err.to_string().contains("resume it first"), "{err}");
    // Another process's view (a second runtime on the home) agrees.
    let other = test_runtime!(home.path());
    assert_eq!(
        other.get_info("p").await.unwrap().unwrap().status,
        BoxStatus::Paused
    );

    b.resume().await.unwrap();
    assert_eq!(b.info().status, BoxStatus::Running);
    let before = counter(&b).await;
    counter_passes(&b, before).await;
    // The same process, still running.
    let (code, out) = sh(&b, &format!("kill -0 {pid} && echo alive")).await;
    assert_eq!((code, out.trim()), (0, "alive"));

    // A paused box can be stopped.
    b.pause().await.unwrap();
    b.stop().await.unwrap();
    assert_eq!(b.info().status, BoxStatus::Stopped);
    let err = b.resume().await.expect_err("resume a stopped box");
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_continues_the_source_and_then_goes_its_own_way() {
    templates_on();
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let src = rt
        .create(layout_box_options("opaque"), Some("src".into()))
        .await
        .unwrap();
    let pid = start_counter(&src).await;
    let (code, _) = sh(&src, "echo before > /root-file").await;
    assert_eq!(code, 0);

    let fork = src.fork("forked").await.unwrap();
    assert_eq!(fork.info().status, BoxStatus::Running);
    let metrics = fork.metrics().await.unwrap();
    assert_eq!(metrics.start_mode(), Some("snapshot"));
    // The loop started in the source runs in the fork: same pid, counter moving on.
    let (code, out) = sh(&fork, &format!("kill -0 {pid} && echo alive")).await;
    assert_eq!((code, out.trim()), (0, "alive"), "{out}");
    let at_fork = counter(&fork).await;
    counter_passes(&fork, at_fork).await;
    // Its own name; the clock is now, not the moment of the snapshot.
    let (_, hostname) = sh(&fork, "hostname").await;
    assert_eq!(hostname.trim(), "forked");
    let (_, now) = sh(&fork, "date +%s").await;
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let guest_now: u64 = now.trim().parse().unwrap();
    assert!(
        guest_now.abs_diff(host_now) < 30,
        "{guest_now} vs {host_now}"
    );
    // Entropy: the two boxes draw different random bytes.
    let (_, a) = sh(&src, "head -c 16 /dev/urandom | od -An -tx1").await;
    let (_, b) = sh(&fork, "head -c 16 /dev/urandom | od -An -tx1").await;
    assert_ne!(a, b);

    // Independent afterwards: writes in one are not seen in the other.
    assert_eq!(sh(&fork, "echo fork > /root-file").await.0, 0);
    assert_eq!(sh(&src, "echo src > /src-only").await.0, 0);
    assert_eq!(sh(&src, "cat /root-file").await.1.trim(), "before");
    assert_eq!(sh(&fork, "cat /root-file").await.1.trim(), "fork");
    assert_ne!(sh(&fork, "cat /src-only").await.0, 0);
    // Stopping one leaves the other running.
    src.stop().await.unwrap();
    let later = counter(&fork).await;
    counter_passes(&fork, later).await;
    // The fork's disk persists across its own restart.
    fork.stop().await.unwrap();
    assert_eq!(sh(&fork, "cat /root-file").await.1.trim(), "fork");
    assert_eq!(fork.metrics().await.unwrap().start_mode(), Some("template"));
    // The fork's snapshot was internal: none is listed.
    assert!(rt.list_snapshots().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_are_kept_listed_restored_and_removed() {
    templates_on();
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let b = rt
        .create(layout_box_options("opaque"), Some("s".into()))
        .await
        .unwrap();
    assert_eq!(sh(&b, "echo one > /f").await.0, 0);
    let info = b.snapshot("one").await.unwrap();
    assert_eq!(
        (info.name.as_str(), info.source_name.as_deref()),
        ("one", Some("s"))
    );
    assert!(info.size_bytes > 0);
    assert_eq!(sh(&b, "echo two > /f").await.0, 0);

    // Kept across runtimes: another runtime on the home lists it and restores from it.
    let other = test_runtime!(home.path());
    assert_eq!(
        other
            .list_snapshots()
            .unwrap()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["one"]
    );
    let restored = other
        .create_from_snapshot("one", Some("r".into()))
        .await
        .unwrap();
    assert_eq!(sh(&restored, "cat /f").await.1.trim(), "one");
    assert_eq!(sh(&b, "cat /f").await.1.trim(), "two");

    // A snapshot taken under another kernel (its record says so) is refused by name.
    let b2 = b.snapshot("other-kernel").await.unwrap();
    taken_under_another_kernel(home.path(), "other-kernel");
    let err = rt
        .create_from_snapshot(&b2.name, Some("k".into()))
        .await
        .expect_err("another kernel");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(
        err.to_string().contains("the kernel /boot/another-vmlinux"),
        "{err}"
    );
    assert!(rt.get_info("k").await.unwrap().is_none());
    rt.remove_snapshot(&b2.name).unwrap();

    // Bad input: clear errors, nothing half-made.
    let err = b.snapshot("one").await.expect_err("same name");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let err = b.fork("r").await.expect_err("fork onto a box's name");
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    let err = b.snapshot("no good").await.expect_err("bad name");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    rt.remove_snapshot("one").unwrap();
    let err = rt
        .create_from_snapshot("one", Some("r2".into()))
        .await
        .expect_err("a removed snapshot");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("no snapshot \"one\""), "{err}");
    assert!(rt.get_info("r2").await.unwrap().is_none());
    let err = rt.remove_snapshot("one").expect_err("removed twice");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    b.stop().await.unwrap();
    let err = b.snapshot("stopped").await.expect_err("a stopped box");
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(err.to_string().contains("stopped"), "{err}");

    // A snapshot's disk is an overlay on its image's base: the image stays while it does.
    let keep = restored.snapshot("keep").await.unwrap();
    rt.remove(restored.id(), true).await.unwrap();
    rt.remove(b.id(), true).await.unwrap();
    let err = rt
        .remove_image(&keep.image)
        .await
        .expect_err("the image of a snapshot");
    assert_eq!(err.kind(), ErrorKind::InvalidState, "{err}");
    assert!(err.to_string().contains("snapshot \"keep\""), "{err}");
    rt.remove_snapshot("keep").unwrap();
    rt.remove_image(&keep.image).await.unwrap();

    let leftovers: Vec<_> = std::fs::read_dir(home.path().join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_goes_back_to_its_own_snapshot_in_place() {
    templates_on();
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let b = rt
        .create(layout_box_options("opaque"), Some("v".into()))
        .await
        .unwrap();
    let pid = start_counter(&b).await;
    // On the disk, and in memory (tmpfs): both go back.
    let (code, out) = sh(&b, "echo before > /f && echo kept > /dev/shm/m0").await;
    assert_eq!(code, 0, "{out}");
    let info = b.snapshot("mark").await.unwrap();
    assert!(!info.id.is_empty() && info.disk_bytes > 0, "{info:?}");
    let (code, out) = sh(&b, "echo after > /f && echo lost > /dev/shm/m1").await;
    assert_eq!(code, 0, "{out}");

    b.restore("mark").await.unwrap();
    assert_eq!(b.info().status, BoxStatus::Running);
    let (code, out) = sh(&b, "cat /f /dev/shm/m0; ls /dev/shm").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["before", "kept", "m0"]
    );
    // The loop started before the snapshot runs on: the same process, counting.
    let (code, out) = sh(&b, &format!("kill -0 {pid} && echo alive")).await;
    assert_eq!((code, out.trim()), (0, "alive"));
    let now = counter(&b).await;
    counter_passes(&b, now).await;
    // Reverting twice to one snapshot works: it is kept.
    b.restore("mark").await.unwrap();
    assert_eq!(sh(&b, "cat /f").await.1.trim(), "before");

    // Bad input: clear errors, the box untouched.
    b.snapshot("other-kernel").await.unwrap();
    taken_under_another_kernel(home.path(), "other-kernel");
    let err = b.restore("other-kernel").await.expect_err("another kernel");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert_eq!(b.info().status, BoxStatus::Running);
    assert_eq!(sh(&b, "cat /f").await.1.trim(), "before");
    b.remove_snapshot("other-kernel").unwrap();
    let err = b.restore("nope").await.expect_err("no such snapshot");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let w = rt
        .create(layout_box_options("opaque"), Some("w".into()))
        .await
        .unwrap();
    let err = w.restore("mark").await.expect_err("another box's snapshot");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("not of box"), "{err}");
    let err = w
        .remove_snapshot("mark")
        .expect_err("another box's snapshot");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(w.snapshots().unwrap().is_empty());
    let names: Vec<_> = b.snapshots().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["mark"]);
    assert_eq!(w.info().status, BoxStatus::Configured);
    assert_eq!(b.info().status, BoxStatus::Running);
    let leftovers: Vec<_> = std::fs::read_dir(home.path().join("boxes").join(b.id()))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("restor"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    b.remove_snapshot("mark").unwrap();
    rt.remove(b.id(), true).await.unwrap();
    rt.remove(w.id(), true).await.unwrap();
    assert!(rt.list_snapshots().unwrap().is_empty());
}

/// `snapshots/` on a 4 MiB tmpfs: the save fails for want of space, and nothing of it is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_while_saving_leaves_nothing() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    templates_on();
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let b = rt
        .create(layout_box_options("opaque"), Some("full".into()))
        .await
        .unwrap();
    assert_eq!(sh(&b, "echo x > /f").await.0, 0);
    let snapshots = home.path().join("snapshots");
    std::fs::create_dir_all(&snapshots).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&snapshots)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(snapshots.clone());

    let err = b.snapshot("big").await.expect_err("no room");
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert!(
        matches!(
            err,
            BoxliteError::Snapshot(boxlite::SnapshotError::Save {
                disk_full: true,
                ..
            })
        ),
        "{err}"
    );
    assert!(rt.list_snapshots().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 0);
    // The box runs on.
    assert_eq!(sh(&b, "cat /f").await.1.trim(), "x");
    assert_eq!(b.info().status, BoxStatus::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxes_start_from_their_shapes_template_with_their_own_disk() {
    templates_on();
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let first = rt
        .create(layout_box_options("opaque"), Some("t1".into()))
        .await
        .unwrap();
    first.start().await.unwrap();
    let second = rt
        .create(layout_box_options("busybox"), Some("t2".into()))
        .await
        .unwrap();
    second.start().await.unwrap();
    for b in [&first, &second] {
        let metrics = b.metrics().await.unwrap();
        assert_eq!(
            (metrics.start_mode(), metrics.template_miss()),
            (Some("template"), None)
        );
        assert!(metrics.memory_pss_bytes().unwrap() > 0);
    }
    // Each sees its own image, its own name and its own disk.
    let (_, one) = sh(&first, "ls /; hostname").await;
    let (_, two) = sh(&second, "ls /; hostname").await;
    assert_ne!(one, two);
    assert!(one.trim_end().ends_with("t1") && two.trim_end().ends_with("t2"));
    assert_eq!(sh(&first, "echo mine > /own && sync").await.0, 0);
    assert_ne!(sh(&second, "cat /own").await.0, 0);
    // The network is the box's own: its interface is up with the box's address.
    let (code, out) = sh(&first, "ip addr 2>/dev/null || ifconfig").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("10.0.2.15"), "{out}");
    // Its disk persists: stop, start (from the template again), read.
    first.stop().await.unwrap();
    assert_eq!(sh(&first, "cat /own").await.1.trim(), "mine");
    // A box the template cannot serve boots, and says why.
    let shared = tempfile::tempdir().unwrap();
    let mut with_volume = layout_box_options("opaque");
    with_volume.volumes.push(boxlite::VolumeSpec {
        host_path: shared.path().display().to_string(),
        guest_path: "/shared".into(),
        read_only: false,
    });
    let booted = rt.create(with_volume, Some("t3".into())).await.unwrap();
    booted.start().await.unwrap();
    let metrics = booted.metrics().await.unwrap();
    assert_eq!(metrics.start_mode(), Some("boot"));
    assert!(
        metrics.template_miss().unwrap().contains("volumes"),
        "{:?}",
        metrics.template_miss()
    );
    assert_eq!(sh(&booted, "echo ok").await.1.trim(), "ok");
    let err = booted.snapshot("vol").await.expect_err("volumes");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
}
