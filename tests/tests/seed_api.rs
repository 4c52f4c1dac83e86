//! The seeds' API, through real boxes: output streams, stdin and results; what
//! `SecurityOptions` does to a box's host processes; the defaults that tie a box to the
//! process that started it and remove it when it stops; prepared root filesystems; copy
//! options; error kinds.

use std::process::Command;
use std::time::Duration;

use boxlite::{
    BoxCommand, BoxStatus, BoxliteError, CopyOptions, ErrorKind, RootfsSpec, SecurityOptions,
};
use boxlite_shim::process::{read_all, ProcessId};
use boxlite_tests::{layout_box_options, oci_layout, test_runtime, wait_until, TestHome};
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_stdin_and_results() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let b = rt
        .create(layout_box_options("busybox"), Some("streams".into()))
        .await
        .unwrap();

    let mut run = b
        .exec(BoxCommand::new("sh").args(["-c", "echo a; echo b >&2; printf 'c\\r\\nlast'"]))
        .await
        .unwrap();
    let mut stdout = run.stdout().expect("stdout, once");
    assert!(run.stdout().is_none(), "stdout is handed out once");
    let stderr = run.stderr().unwrap();
    let out: Vec<String> = stdout.by_ref().collect().await;
    assert_eq!(out, ["a", "c", "last"]);
    let err: Vec<Vec<u8>> = stderr.bytes().map(|chunk| chunk.unwrap()).collect().await;
    assert_eq!(err.concat(), b"b\n");
    let result = run.wait().await.unwrap();
    assert!(
        result.success() && result.error_message.is_none(),
        "{result:?}"
    );
    assert!(run.stdin().is_none(), "started without stdin");

    let mut cat = b.exec(BoxCommand::new("cat").stdin(true)).await.unwrap();
    let mut stdin = cat.stdin().expect("asked for");
    stdin.write_str("x\ny\n").await.unwrap();
    stdin.close().await.unwrap();
    assert!(stdin.write(b"more").await.is_err(), "closed");
    let lines: Vec<String> = cat.stdout().unwrap().collect().await;
    assert_eq!(lines, ["x", "y"]);
    assert!(cat.wait().await.unwrap().success());

    let mut sleeper = b.exec(BoxCommand::new("sleep").arg("600")).await.unwrap();
    sleeper.kill().await.unwrap();
    let result = sleeper.wait().await.unwrap();
    assert!(!result.success());
    assert_eq!(result.signal, 9);
    assert_eq!(result.error_message.as_deref(), Some("killed by signal 9"));

    let mut slow = b
        .exec(
            BoxCommand::new("sleep")
                .arg("600")
                .timeout(Duration::from_secs(1)),
        )
        .await
        .unwrap();
    let result = slow.wait().await.unwrap();
    assert!(result.timed_out && !result.success(), "{result:?}");
    rt.remove("streams", true).await.unwrap();
}

/// The processes a box's shim recorded: the shim first, then its VMM.
fn box_processes(home: &std::path::Path, id: &str) -> Vec<ProcessId> {
    read_all(&home.join("boxes").join(id).join("vmm.pid"))
}

fn proc_file(pid: u32, name: &str) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/{name}")).unwrap()).into_owned()
}

/// Targets of a process's open descriptors.
fn open_files(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .map(|target| target.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_options_confine_the_shim_and_its_vmm() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    // What an embedding program might have: a secret in its environment, a descriptor
    // without close-on-exec.
    std::env::set_var("BOXLITE_TEST_SECRET", "hunter2");
    let leaked_path = home.path().join("leaked-descriptor");
    std::fs::write(&leaked_path, b"x").unwrap();
    let leaked = nix::fcntl::open(
        &leaked_path,
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap();

    let mut confined = layout_box_options("busybox");
    confined.security = SecurityOptions::builder()
        .max_open_files(512)
        .max_file_size(1 << 30)
        .build()
        .unwrap();
    let mut open = layout_box_options("busybox");
    open.security = SecurityOptions::development();
    for (options, is_confined) in [(confined, true), (open, false)] {
        let b = rt.create(options, None).await.unwrap();
        b.start().await.unwrap();
        let processes = box_processes(home.path(), b.id());
        assert!(processes.len() >= 2, "{processes:?}");
        for process in &processes {
            let environ = proc_file(process.pid, "environ");
            let limits = proc_file(process.pid, "limits");
            let files = open_files(process.pid);
            let leaked_here = files.iter().any(|f| f.ends_with("leaked-descriptor"));
            assert_eq!(
                environ.contains("BOXLITE_TEST_SECRET=hunter2"),
                !is_confined,
                "{process:?}"
            );
            assert_eq!(leaked_here, !is_confined, "{process:?}: {files:?}");
            let nofile = limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .unwrap()
                .split_whitespace()
                .nth(3)
                .unwrap()
                .to_string();
            assert_eq!(nofile == "512", is_confined, "{process:?}: {limits}");
        }
        let (code, out) = boxlite_tests::sh(&b, "echo confined or not").await;
        assert_eq!((code, out.as_str()), (0, "confined or not\n"));
        rt.remove(b.id(), true).await.unwrap();
    }
    nix::unistd::close(leaked).unwrap();

    // What cannot be honoured is refused, not ignored.
    let mut jailed = layout_box_options("busybox");
    jailed.security.jailer_enabled = true;
    let err = rt.create(jailed, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("jailer_enabled"), "{err}");
    assert!(rt.list_info().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_box_ends_with_its_starter_and_is_removed_when_stopped() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    std::env::set_var(boxlite::SHIM_ENV, env!("CARGO_BIN_EXE_test_shim"));
    let out = Command::new(env!("CARGO_BIN_EXE_box_worker"))
        .args([
            "run-attached",
            &home.path().display().to_string(),
            &oci_layout().display().to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // Its starter exited: the shim powers the VM off, and whoever looks next removes it.
    wait_until(Duration::from_secs(120), "the box gone", || async {
        rt.get_info(&id).await.unwrap().is_none()
    })
    .await;
    assert!(home.box_processes().iter().all(|p| !p.is_alive()));

    // stop() of a box with auto_remove removes it; without, keeps it.
    let mut removed = layout_box_options("busybox");
    removed.auto_remove = true;
    let b = rt.create(removed, None).await.unwrap();
    b.start().await.unwrap();
    b.stop().await.unwrap();
    assert!(rt.get_info(b.id()).await.unwrap().is_none());
    let kept = rt
        .create(layout_box_options("busybox"), None)
        .await
        .unwrap();
    kept.stop().await.unwrap();
    assert_eq!(kept.info().status, BoxStatus::Configured);
    rt.remove(kept.id(), false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_root_filesystems_copy_options_and_error_kinds() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let rootfs = home.path().join("rootfs");
    boxlite_tests::install_busybox(&rootfs);
    std::fs::write(rootfs.join("hello.txt"), "from a prepared rootfs\n").unwrap();
    let mut options = layout_box_options("busybox");
    options.rootfs = RootfsSpec::RootfsPath(rootfs.display().to_string());
    let b = rt.create(options, Some("prepared".into())).await.unwrap();
    assert_eq!(b.info().image, rootfs.display().to_string());
    let (code, out) = boxlite_tests::sh(&b, "cat /hello.txt").await;
    assert_eq!((code, out.as_str()), (0, "from a prepared rootfs\n"));

    // Copy options: what is asked is done or refused, never ignored.
    let dir = home.path().join("tree");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("f"), "f").unwrap();
    let not_recursive = CopyOptions {
        recursive: false,
        ..Default::default()
    };
    let err = b.copy_into(&dir, "/tree", not_recursive).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let follow = CopyOptions {
        follow_symlinks: true,
        ..Default::default()
    };
    let err = b.copy_into(&dir, "/tree", follow).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    b.copy_into(&dir, "/tree", CopyOptions::default())
        .await
        .unwrap();
    let no_overwrite = CopyOptions {
        overwrite: false,
        ..Default::default()
    };
    let err = b
        .copy_out("/tree", home.path(), no_overwrite)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");

    // Kinds and codes, as the SDKs map them.
    let err = rt.remove("no-such-box", false).await.unwrap_err();
    assert_eq!((err.kind(), err.kind().code()), (ErrorKind::NotFound, 2));
    let err = rt
        .create(layout_box_options("busybox"), Some("prepared".into()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(matches!(err, BoxliteError::AlreadyExists(_)));
    rt.remove("prepared", true).await.unwrap();
}

#[test]
fn the_blocking_api_and_simple_box_need_no_async_runtime() {
    let home = TestHome::new();
    let rt = boxlite::blocking::BoxliteRuntime::from(test_runtime!(home.path()));
    let b = rt
        .create(layout_box_options("busybox"), Some("sync".into()))
        .unwrap();
    let (out, _, result) = b
        .exec(BoxCommand::new("echo").arg("hi"))
        .unwrap()
        .output()
        .unwrap();
    assert_eq!((out.as_slice(), result.success()), (&b"hi\n"[..], true));
    rt.remove("sync", true).unwrap();

    // A SimpleBox runs commands to completion and is gone once dropped.
    let simple = boxlite::blocking::SimpleBox::new(&rt, layout_box_options("busybox")).unwrap();
    let out = simple.exec("sh", &["-c", "echo simple; exit 3"]).unwrap();
    assert_eq!((out.stdout.as_str(), out.exit_code), ("simple\n", 3));
    assert!(!out.success());
    let id = simple.id().to_string();
    drop(simple);
    assert!(rt.get_info(&id).unwrap().is_none());
    assert!(home.box_processes().iter().all(|p| !p.is_alive()));

    // Called from a thread of the caller's own async runtime, it still works.
    let listed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async { rt.list_info() })
        .unwrap();
    assert!(listed.is_empty());
}
