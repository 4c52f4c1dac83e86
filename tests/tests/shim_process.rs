//! The shim as a process of its own: started detached, it boots the VM, serves exec through
//! its socket to any connection (a new one can pick up an exec a dropped one started), stops
//! on request, and reports a failed boot in its own words.

use std::time::Duration;

use boxlite_protocol::agent::OutputStream;
use boxlite_shim::agent_client::ExecOptions;
use boxlite_shim::client::ShimClient;
use boxlite_shim::launch::{launch, LaunchError, LaunchOptions};
use boxlite_shim::process::{read_all, ProcessId};
use boxlite_shim::ShimConfig;
use boxlite_tests::{process_exists, TestBox, READY_TIMEOUT};

fn shim_binary() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_test_shim").into()
}

fn config(test_box: &TestBox) -> ShimConfig {
    ShimConfig {
        engine: Some(boxlite_tests::test_engine_kind()),
        vm: test_box.spec.clone(),
        ready_timeout_ms: READY_TIMEOUT.as_millis() as u64,
        launcher: None,
        stop_with_launcher: false,
        template_miss: None,
        standby: None,
    }
}

/// A process standing in for the runtime that starts a box (any live process will do).
fn launcher_process() -> (std::process::Child, ProcessId) {
    let child = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let id = ProcessId::of(child.id()).unwrap();
    (child, id)
}

/// A shim for `test_box` started on behalf of a stand-in launcher process (returned, alive).
async fn launch_with_launcher(
    test_box: &TestBox,
) -> (std::process::Child, boxlite_shim::launch::Launched) {
    let (launcher, launcher_id) = launcher_process();
    let mut with_launcher = config(test_box);
    with_launcher.launcher = Some(launcher_id);
    let launched = launch(
        &shim_binary(),
        test_box.dir.path(),
        &with_launcher,
        &LaunchOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (launcher, launched)
}

fn shim_log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join(boxlite_shim::server::files::LOG)).unwrap_or_default()
}

/// The shim and every VMM it recorded are gone (zombies count as gone).
fn assert_all_gone(dir: &std::path::Path) {
    let recorded = read_all(&dir.join(boxlite_shim::server::files::VMM_PID));
    assert!(recorded.len() >= 2, "{recorded:?}");
    for process in recorded {
        assert!(
            process.wait_gone(Duration::from_secs(60)),
            "{process:?} is still running:\n{}",
            shim_log(dir)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_nobody_adopts_and_a_terminated_shim_power_off() {
    // The starting process dies after the box is ready but before recording it: the shim
    // powers the VM off by itself instead of leaving a VM nobody knows about.
    let test_box = TestBox::new();
    let dir = test_box.dir.path();
    let (mut launcher, launched) = launch_with_launcher(&test_box).await;
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    assert_all_gone(dir);
    assert!(!launched.process.is_alive());
    assert!(
        shim_log(dir).contains("died before recording it"),
        "{}",
        shim_log(dir)
    );

    // Adopted, the box outlives its launcher; SIGTERM powers the guest off, then the shim
    // exits.
    let test_box = TestBox::new();
    let dir = test_box.dir.path();
    let (mut launcher, launched) = launch_with_launcher(&test_box).await;
    launched.client.adopt().await.unwrap();
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    let exec = launched
        .client
        .agent()
        .exec("alive", &ExecOptions::new(["echo", "still here"]))
        .await;
    assert!(exec.is_ok(), "{exec:?}");
    assert!(launched.process.is_alive());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(launched.process.pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_all_gone(dir);
    let log = shim_log(dir);
    assert!(log.contains("SIGTERM: powering the VM off"), "{log}");
    assert!(log.contains("VM ended"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_serves_any_connection_and_stops_on_request() {
    let test_box = TestBox::new();
    let dir = test_box.dir.path();
    let launched = launch(
        &shim_binary(),
        dir,
        &config(&test_box),
        &LaunchOptions::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let state = launched.client.state().await.unwrap();
    assert_eq!(state.engine, boxlite_tests::test_engine_kind().name());
    assert_eq!(state.shim_pid, launched.process.pid);
    assert!(launched.process.is_alive());

    // A command started on one connection, which then goes away without reading anything.
    let first = ShimClient::connect(dir).await.unwrap();
    first
        .agent()
        .exec(
            "counter",
            &ExecOptions::new([
                "sh",
                "-c",
                "for i in $(seq 1 40); do echo line-$i; sleep 0.02; done; exit 5",
            ]),
        )
        .await
        .unwrap();
    drop(first);

    // A second connection gets every line and the exit code.
    let second = ShimClient::connect(dir).await.unwrap();
    let mut out = Vec::new();
    second
        .agent()
        .drain("counter", OutputStream::STDOUT, |c| {
            out.extend_from_slice(c)
        })
        .await
        .unwrap();
    second
        .agent()
        .drain("counter", OutputStream::STDERR, |_| {})
        .await
        .unwrap();
    let expected: String = (1..=40).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    assert_eq!(second.agent().wait("counter").await.unwrap().code, 5);

    assert!(
        second.stop(Duration::from_secs(30)).await.unwrap(),
        "a clean power-off"
    );
    // The shim exits once its VM has ended, and takes QEMU with it.
    assert!(
        launched.process.wait_gone(Duration::from_secs(30)),
        "the shim outlived its VM"
    );
    for pid in state.vmm_pids {
        assert!(!process_exists(pid), "VMM {pid} outlived the shim");
    }
    assert!(!dir.join("shim.sock").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_boot_is_reported_by_the_shim() {
    let mut test_box = TestBox::new();
    let bogus = test_box.dir.path().join("not-a-kernel");
    std::fs::write(&bogus, b"nope").unwrap();
    test_box.spec.kernel = bogus;
    let err = launch(
        &shim_binary(),
        test_box.dir.path(),
        &config(&test_box),
        &LaunchOptions::default(),
    )
    .await
    .err()
    .expect("must fail");
    // Typed across the process boundary: the VM ended before its agent answered.
    assert!(
        matches!(
            err,
            LaunchError::BootFailed(boxlite_shim::boot_failure::BootFailure::VmExited { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("exited") && err.to_string().to_lowercase().contains("kernel"),
        "{err}"
    );
}
