//! Boxes through the public API: create, exec (starting the box), env/workdir/stdin, exit
//! codes, concurrent execs, stop/start keeping the disk, re-attach by exec id, remove; and
//! bad input that changes nothing.

use std::time::Duration;

use boxlite::{BoxCommand, BoxOptions, BoxStatus, BoxliteError, BoxliteOptions};
use boxlite_tests::{layout_box_options, test_runtime, TestHome};

fn options() -> BoxOptions {
    layout_box_options("opaque")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_lives_through_the_api() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());

    // Bad input is refused and leaves nothing behind.
    for (mutate, needle) in [
        (
            (|o: &mut BoxOptions| o.cpus = Some(0)) as fn(&mut BoxOptions),
            "cpus",
        ),
        (|o: &mut BoxOptions| o.memory_mib = Some(1), "memory"),
        (
            |o: &mut BoxOptions| o.security.seccomp_enabled = true,
            "seccomp_enabled",
        ),
    ] {
        let mut bad = options();
        mutate(&mut bad);
        let err = rt.create(bad, None).await.expect_err("must fail");
        assert!(
            matches!(err, BoxliteError::InvalidArgument(_)) && err.to_string().contains(needle),
            "{err}"
        );
    }
    let err = rt
        .create(options(), Some("bad name!".into()))
        .await
        .expect_err("bad name");
    assert!(
        matches!(
            err,
            BoxliteError::InvalidArgument(boxlite::InvalidArgument::Name(ref n)) if n == "bad name!"
        ),
        "{err}"
    );
    assert!(rt.list_info().await.unwrap().is_empty());

    let web = rt.create(options(), Some("web".into())).await.unwrap();
    let info = rt.get_info("web").await.unwrap().unwrap();
    assert_eq!(
        (info.status, info.id.as_str(), info.pid),
        (BoxStatus::Configured, web.id().as_str(), None)
    );
    let dup = rt
        .create(options(), Some("web".into()))
        .await
        .expect_err("duplicate name");
    assert!(dup.to_string().contains("already exists"), "{dup}");
    assert_eq!(rt.list_info().await.unwrap().len(), 1);

    // exec starts the box; the image's env and workdir apply, the command's win.
    let run = web
        .exec(
            BoxCommand::new("sh")
                .args(["-c", "echo $GREETING $EXTRA; pwd; exit 3"])
                .env("EXTRA", "x"),
        )
        .await
        .unwrap();
    let (out, _, result) = run.output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "from-image x\n/srv\n");
    assert_eq!(result.exit_code, 3);
    let info = web.info();
    assert_eq!(info.status, BoxStatus::Running);
    let shim_pid = info.pid.expect("a running box has a shim");
    assert!(running(shim_pid));

    let metrics = web.metrics().await.unwrap();
    assert_eq!(metrics.shim_pid(), Some(shim_pid));
    assert!(
        metrics.guest_boot_duration_ms().unwrap() > 0 && metrics.spawn_to_ready_ms().unwrap() > 0,
        "{metrics:?}"
    );
    assert!(
        metrics.memory_bytes().unwrap() > 10 << 20,
        "QEMU holds the guest's memory: {metrics:?}"
    );
    assert!(metrics.cpu_percent().unwrap() >= 0.0);
    // The relay counted the one exec, its 18 bytes of output and no input.
    assert_eq!(
        (
            metrics.commands_executed_total(),
            metrics.bytes_sent_total(),
            metrics.bytes_received_total()
        ),
        (1, 0, 18),
        "{metrics:?}"
    );
    assert_eq!(
        metrics.engine(),
        Some(boxlite_tests::test_engine_kind().name())
    );
    let rt_metrics = rt.metrics().await;
    assert_eq!(
        (
            rt_metrics.boxes_total(),
            rt_metrics.num_running_boxes(),
            rt_metrics.boxes_created_total()
        ),
        (1, 1, 1)
    );
    assert_eq!(rt_metrics.total_commands_executed(), 1);

    // A command silent for longer than one long poll of its output (each poll ends at its
    // deadline, the box is pinged, the next poll follows) still gives its output and code.
    let silent_secs = boxlite_shim::agent_client::LONG_POLL.as_secs() + 3;
    let run = web
        .exec(BoxCommand::new("sh").args(["-c", &format!("sleep {silent_secs}; echo woke")]))
        .await
        .unwrap();
    let (out, _, result) = run.output().await.unwrap();
    assert_eq!(
        (String::from_utf8_lossy(&out).as_ref(), result.exit_code),
        ("woke\n", 0)
    );

    // stdin.
    let cat = web.exec(BoxCommand::new("cat").stdin(true)).await.unwrap();
    cat.write_stdin(b"piped\n").await.unwrap();
    cat.close_stdin().await.unwrap();
    assert_eq!(cat.output().await.unwrap().0, b"piped\n");

    // Eight at once.
    let runs = futures_join(&web).await;
    for (i, out) in runs.into_iter().enumerate() {
        assert_eq!(out, format!("{i}\n"));
    }

    // Re-attach: a second runtime (as another process would) reads an exec by id.
    let slow = web
        .exec(BoxCommand::new("sh").args(["-c", "sleep 0.3; echo late; exit 4"]))
        .await
        .unwrap();
    let other = test_runtime!(home.path());
    let again = other
        .get("web")
        .await
        .unwrap()
        .unwrap()
        .attach(slow.id())
        .await
        .unwrap();
    let (out, _, result) = again.output().await.unwrap();
    assert_eq!((out.as_slice(), result.exit_code), (&b"late\n"[..], 4));

    // 100 MB of stdout through the shim arrives intact (the guest's sha256 against ours).
    let (out, _, _) = web
        .exec(BoxCommand::new("sh").args([
            "-c",
            "head -c 104857600 /dev/urandom > /root/big && sha256sum /root/big",
        ]))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    let guest_digest = String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let mut big = web
        .exec(BoxCommand::new("cat").arg("/root/big"))
        .await
        .unwrap();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut size = 0usize;
    while let Some(chunk) = big.read_stdout().await.unwrap() {
        size += chunk.len();
        sha2::Digest::update(&mut hasher, &chunk);
    }
    assert_eq!(big.wait().await.unwrap().exit_code, 0);
    assert_eq!(size, 104_857_600);
    assert_eq!(hex::encode(sha2::Digest::finalize(hasher)), guest_digest);
    web.exec(BoxCommand::new("rm").arg("/root/big"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();

    // A running box is not removed without force.
    let err = rt.remove("web", false).await.unwrap_err();
    assert!(
        matches!(
            err,
            BoxliteError::InvalidState(boxlite::StateError::Running(_))
        ),
        "{err}"
    );
    assert_eq!(err.kind(), boxlite::ErrorKind::InvalidState);

    // Files written survive stop/start.
    web.exec(BoxCommand::new("sh").args(["-c", "echo kept > /root/note; sync"]))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    web.stop().await.unwrap();
    assert_eq!(web.info().status, BoxStatus::Stopped);
    assert!(!running(shim_pid), "the shim outlived stop");
    let (out, _, _) = web
        .exec(BoxCommand::new("cat").arg("/root/note"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(out, b"kept\n");

    // shutdown stops every running box of the home.
    rt.shutdown(Some(10)).await.unwrap();
    assert_eq!(web.info().status, BoxStatus::Stopped);
    web.start().await.unwrap();

    let running_shim = web.info().pid.unwrap();
    rt.remove("web", true).await.unwrap();
    assert!(!running(running_shim), "remove left the shim running");
    assert!(!home.path().join("boxes").join(web.id()).exists());
    assert!(rt.get("web").await.unwrap().is_none());
    let err = web
        .exec(BoxCommand::new("true"))
        .await
        .expect_err("removed");
    assert!(matches!(err, BoxliteError::NotFound(_)), "{err}");
}

async fn futures_join(web: &boxlite::LiteBox) -> Vec<String> {
    let mut handles = Vec::new();
    for i in 0..8 {
        let web = web.clone();
        handles.push(tokio::spawn(async move {
            let run = web
                .exec(BoxCommand::new("sh").args(["-c", &format!("sleep 0.1; echo {i}")]))
                .await
                .unwrap();
            String::from_utf8(run.output().await.unwrap().0).unwrap()
        }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[test]
fn the_default_runtime_is_one_per_process() {
    let home = TestHome::new();
    let options = BoxliteOptions {
        home_dir: home.path().to_path_buf(),
        ..Default::default()
    };
    assert!(boxlite::BoxliteRuntime::try_default_runtime().is_none());
    boxlite::BoxliteRuntime::init_default_runtime(options.clone()).unwrap();
    assert_eq!(
        boxlite::BoxliteRuntime::default_runtime().home(),
        home.path()
    );
    assert_eq!(boxlite::try_default_runtime().unwrap().home(), home.path());
    let err = boxlite::init_default_runtime(options).expect_err("only once");
    assert!(err.to_string().contains("already"), "{err}");
}

/// Whether `pid` runs. A killed shim may stay a zombie for a moment until the process that
/// launched it (this one, from another thread) reaps it; a zombie does not run.
fn running(pid: u32) -> bool {
    boxlite_shim::process::ProcessId::of(pid).is_some_and(|p| p.is_alive())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_boxes_are_listed_as_unknown_and_removed_by_force() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let gone = rt.create(options(), Some("gone".into())).await.unwrap();
    let garbled = rt.create(options(), Some("garbled".into())).await.unwrap();
    let fine = rt.create(options(), Some("fine".into())).await.unwrap();

    // A box that never ran is a row: no directory until it starts.
    assert!(!home.path().join("boxes").join(gone.id()).exists());
    gone.start().await.unwrap();
    gone.stop().await.unwrap();
    // Its directory deleted by hand: rm -f still removes it.
    std::fs::remove_dir_all(home.path().join("boxes").join(gone.id())).unwrap();
    rt.remove("gone", true).await.unwrap();
    assert!(rt.get_info("gone").await.unwrap().is_none());

    // A row whose options and status cannot be read: listed as Unknown, the others intact.
    let db = rusqlite::Connection::open(home.path().join("db/boxes.db")).unwrap();
    db.execute(
        "UPDATE boxes SET options = '{not json', status = 'exploded' WHERE id = ?1",
        [garbled.id()],
    )
    .unwrap();
    let infos = rt.list_info().await.unwrap();
    let status_of = |id: &str| infos.iter().find(|i| i.id == id).map(|i| i.status);
    assert_eq!(status_of(garbled.id()), Some(BoxStatus::Unknown));
    assert_eq!(status_of(fine.id()), Some(BoxStatus::Configured));
    rt.remove("garbled", true).await.unwrap();
    assert!(!home.path().join("boxes").join(garbled.id()).exists());
    assert_eq!(rt.list_info().await.unwrap().len(), 1);

    // What crashed creates and pulls left is swept when a runtime opens the home, but not
    // while a create is under way (it holds a share of the lock the sweep needs whole).
    let leftover = home.path().join("boxes").join("01CRASHEDWHILECREATING0000");
    let partial = home.path().join("images").join("tmp").join("blob-partial");
    let make_leftovers = || {
        std::fs::create_dir_all(&leftover).unwrap();
        std::fs::write(leftover.join("disk.qcow2"), b"half").unwrap();
        std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
        std::fs::write(&partial, b"half a blob").unwrap();
    };
    make_leftovers();
    let creating = boxlite_lockfile_share(&home.path().join("boxes/.create.lock"));
    let writing = boxlite_lockfile_share(&home.path().join("images/locks/tmp.lock"));
    drop(test_runtime!(home.path()));
    assert!(
        leftover.exists() && partial.exists(),
        "swept from under a writer"
    );
    drop((creating, writing));
    drop(test_runtime!(home.path()));
    assert!(!leftover.exists() && !partial.exists(), "leftovers stayed");
    assert!(
        rt.get("fine").await.unwrap().is_some(),
        "a box with a row stays"
    );
    rt.remove("fine", false).await.unwrap();
}

/// A shared hold on a lock file, as a create or a download in another process has.
fn boxlite_lockfile_share(path: &std::path::Path) -> std::fs::File {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap();
    file.lock_shared().unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn homes_are_private_and_only_their_owner_may_open_them() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let parent = TestHome::new();
    let home = parent.path().join("new-home");
    let rt = test_runtime!(&home);
    let b = rt.create(options(), None).await.unwrap();
    b.start().await.unwrap();
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode(&home) & 0o777, 0o700);
    // Environment values of boxes are in these: nobody else may read them.
    let box_dir = home.join("boxes").join(b.id());
    for file in [
        home.join("db/boxes.db"),
        home.join("db/images.db"),
        box_dir.join("config.json"),
    ] {
        assert_eq!(mode(&file) & 0o077, 0, "{}", file.display());
    }
    rt.remove(b.id(), true).await.unwrap();

    // A home that belongs to someone else is refused, naming both users.
    let theirs = parent.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let nobody = 65534;
    std::os::unix::fs::chown(&theirs, Some(nobody), Some(nobody)).expect("tests run as root");
    assert_eq!(std::fs::metadata(&theirs).unwrap().uid(), nobody);
    let err = boxlite::BoxliteRuntime::new(BoxliteOptions {
        home_dir: theirs.clone(),
        ..Default::default()
    })
    .expect_err("another user's home");
    assert!(
        matches!(
            err,
            BoxliteError::Config(boxlite::ConfigError::HomeNotOwned { owner: 65534, .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("65534"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_output_goes_to_the_log_and_never_blocks_the_command() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let b = rt.create(options(), Some("chatty".into())).await.unwrap();
    // ~4.8 MB on stdout, past the 4 MiB the agent keeps for a reader: without the log the
    // command would block until someone read it.
    let lines = 700_000;
    let mut run = b
        .exec(BoxCommand::new("sh").args(["-c", &format!("seq 1 {lines}; echo to-stderr >&2")]))
        .await
        .unwrap();
    run.send_output_to_log().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(600), run.wait())
        .await
        .expect("a detached command must not block on its output")
        .unwrap();
    assert_eq!(result.exit_code, 0);
    // The shim may still be writing the last lines when the command has exited.
    let mut all = Vec::new();
    boxlite_tests::wait_until(Duration::from_secs(60), "every line logged", || {
        all = b.logs(None).unwrap().0;
        let done = all.len() == lines + 1;
        async move { done }
    })
    .await;
    let stdout: Vec<_> = all
        .iter()
        .filter(|l| l.stream == boxlite::LogStream::Stdout)
        .collect();
    assert_eq!(stdout.len(), lines);
    assert_eq!(stdout[0].data, b"1");
    assert_eq!(stdout[lines - 1].data, lines.to_string().into_bytes());
    assert_eq!(
        all.iter()
            .filter(|l| l.stream == boxlite::LogStream::Stderr)
            .map(|l| l.data.as_slice())
            .collect::<Vec<_>>(),
        [&b"to-stderr"[..]]
    );
    // The tail is the log's last line (stdout and stderr are logged in the order their pipes
    // were read, so which stream ends the log is not fixed).
    let (tail, _) = b.logs(Some(1)).unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(
        (tail[0].stream, &tail[0].data),
        (all[lines].stream, &all[lines].data)
    );
    rt.remove("chatty", true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_flooding_its_console_costs_the_host_a_bounded_log() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let b = rt.create(options(), Some("loud".into())).await.unwrap();
    let (code, out) = boxlite_tests::sh(
        &b,
        "head -c 3000000 /dev/zero | tr '\\0' x > /dev/console && echo flooded",
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "flooded\n"));
    b.stop().await.unwrap();
    let dir = home.path().join("boxes").join(b.id());
    let size = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    let kept = size("console.log") + size("console.log.1");
    let bound = 2 * boxlite_shim::console::CONSOLE_MAX_FILE_BYTES;
    assert!(kept <= bound, "{kept} bytes of console kept, bound {bound}");
    assert!(size("console.log.1") > 0, "the flood went through the log");
    rt.remove("loud", false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_this_host_cannot_run_is_unsupported() {
    if boxlite_tests::test_engine_kind() == boxlite::EngineKind::Krun {
        return;
    }
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    // The shim says so as a typed boot failure, which the caller sees as Unsupported (not
    // as a failed VM), and the box stays as it was.
    let mut krun = options();
    krun.engine = Some(boxlite::EngineKind::Krun);
    let b = rt.create(krun, None).await.unwrap();
    let err = b.start().await.expect_err("krun cannot run here");
    assert_eq!(err.kind(), boxlite::ErrorKind::Unsupported, "{err}");
    assert!(
        err.to_string().contains("krun engine cannot run here"),
        "{err}"
    );
    assert_eq!(b.info().status, BoxStatus::Configured);
    rt.remove(b.id(), true).await.unwrap();
}
