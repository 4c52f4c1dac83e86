//! Boots real VMs (QEMU; TCG on hosts without hardware virtualisation) from the project's own
//! box kernel and initramfs, and talks to the guest agent over vsock.

use std::time::{Duration, Instant};

use boxlite_protocol::agent::OutputStream;
use boxlite_shim::agent_client::{AgentClient, ExecOptions, ExitStatus};
use boxlite_shim::engine::qemu::QemuEngine;
use boxlite_shim::engine::VmExit;
use boxlite_shim::vm::{BootError, Vm};
use boxlite_tests::{process_exists, TestBox, READY_TIMEOUT};
use sha2::{Digest, Sha256};

async fn run(agent: &AgentClient, id: &str, args: &[&str]) -> (Vec<u8>, Vec<u8>, ExitStatus) {
    agent
        .exec(id, &ExecOptions::new(args.iter().copied()))
        .await
        .expect("exec");
    let output = agent.output(id).await.expect("output");
    (output.stdout, output.stderr, output.status)
}

/// One VM carries the whole happy path, to keep the suite to a few TCG boots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boots_runs_commands_streams_and_shuts_down_cleanly() {
    let test_box = TestBox::new();
    let vm = Vm::boot(&QemuEngine::default(), &test_box.spec, READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("boot failed: {e}"));
    let pids = vm.pids();
    assert_eq!(pids.len(), 1, "QEMU is the VM's only host process");
    eprintln!(
        "spawn to ready: {:?}, guest ready at {:?}",
        vm.timings().spawn_to_ready,
        vm.timings().guest_ready_at
    );

    let ping = vm
        .agent()
        .ping(Duration::from_secs(10))
        .await
        .expect("ping");
    assert_eq!(ping.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(ping.uptime_ms >= ping.ready_at_ms);

    let agent = vm.agent();
    let (out, err, status) = run(agent, "echo", &["echo", "hello"]).await;
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"hello\n"[..], &b""[..])
    );
    assert_eq!(
        status,
        ExitStatus {
            code: 0,
            signal: 0,
            timed_out: false
        }
    );

    let (_, _, status) = run(agent, "exit7", &["sh", "-c", "exit 7"]).await;
    assert_eq!(status.code, 7);

    let (out, err, _) = run(
        agent,
        "split",
        &["sh", "-c", "echo to-out; echo to-err >&2"],
    )
    .await;
    assert_eq!(
        (out.as_slice(), err.as_slice()),
        (&b"to-out\n"[..], &b"to-err\n"[..])
    );

    // The command runs in the box disk's root, with the working directory asked for.
    let mut options = ExecOptions::new(["sh", "-c", "pwd; echo $GREETING; test -x /bin/busybox"]);
    options.working_dir = "/etc".into();
    options.env = vec!["GREETING=hi".into()];
    agent.exec("env", &options).await.unwrap();
    let output = agent.output("env").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "/etc\nhi\n");
    assert_eq!(output.status.code, 0);

    // stdin: written in pieces, then closed; the command sees EOF and ends.
    let mut options = ExecOptions::new(["cat"]);
    options.stdin = true;
    agent.exec("cat", &options).await.unwrap();
    agent.write_stdin("cat", b"abc", false).await.unwrap();
    agent.write_stdin("cat", b"def\n", true).await.unwrap();
    let output = agent.output("cat").await.unwrap();
    assert_eq!(
        (output.stdout.as_slice(), output.status.code),
        (&b"abcdef\n"[..], 0)
    );

    // The guest clock runs at real speed (TCG needs the host's TSC rate to get this right).
    let started = Instant::now();
    let (_, _, status) = run(agent, "sleep1", &["sleep", "1"]).await;
    assert_eq!(status.code, 0);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "sleep 1 took {:?}",
        started.elapsed()
    );

    // A signal ends a command and is reported as such.
    agent
        .exec("sleep", &ExecOptions::new(["sleep", "600"]))
        .await
        .unwrap();
    agent.signal("sleep", 9).await.unwrap();
    assert_eq!(
        agent.wait("sleep").await.unwrap(),
        ExitStatus {
            code: -1,
            signal: 9,
            timed_out: false
        }
    );

    // 50 MB of stdout arrives complete: the guest's own sha256 of the file matches ours.
    const SIZE: usize = 50 * 1024 * 1024;
    let (out, err, status) = run(
        agent,
        "mkbig",
        &[
            "sh",
            "-c",
            &format!("head -c {SIZE} /dev/urandom > /tmp/big && sha256sum /tmp/big"),
        ],
    )
    .await;
    assert_eq!(status.code, 0, "{}", String::from_utf8_lossy(&err));
    let guest_digest = String::from_utf8_lossy(&out)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    agent
        .exec("big", &ExecOptions::new(["cat", "/tmp/big"]))
        .await
        .unwrap();
    let mut hasher = Sha256::new();
    let mut received = 0usize;
    let started = Instant::now();
    agent
        .drain("big", OutputStream::STDOUT, |c| {
            received += c.len();
            hasher.update(c);
        })
        .await
        .unwrap();
    agent
        .drain("big", OutputStream::STDERR, |_| {})
        .await
        .unwrap();
    eprintln!("50 MB of stdout in {:?}", started.elapsed());
    assert_eq!(agent.wait("big").await.unwrap().code, 0);
    assert_eq!(received, SIZE);
    assert_eq!(hex::encode(hasher.finalize()), guest_digest);

    // Once every part of an exec has been handed out, the agent forgets it.
    let gone = agent.wait("echo").await.unwrap_err();
    assert_eq!(gone.code(), Some(ttrpc_code_not_found()));

    let exit = vm
        .shutdown(Duration::from_secs(30))
        .await
        .expect("clean shutdown");
    assert_eq!(exit, VmExit::Exited(0));
    for pid in pids {
        assert!(!process_exists(pid), "process {pid} of the VM outlived it");
    }
    assert!(!test_box.dir.path().join("agent.sock").exists());
}

fn ttrpc_code_not_found() -> boxlite_shim::agent_client::Code {
    boxlite_shim::agent_client::Code::NOT_FOUND
}

#[tokio::test]
async fn a_missing_kernel_is_refused_before_anything_starts() {
    let mut test_box = TestBox::new();
    test_box.spec.kernel = test_box.dir.path().join("no-such-bzImage");
    let err = Vm::boot(&QemuEngine::default(), &test_box.spec, READY_TIMEOUT)
        .await
        .err()
        .expect("must fail");
    let message = err.to_string();
    assert!(
        message.contains("kernel not found") && message.contains("no-such-bzImage"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_qemu_cannot_load_fails_at_once_with_the_vmm_message() {
    let mut test_box = TestBox::new();
    let bogus = test_box.dir.path().join("bzImage");
    std::fs::write(&bogus, b"this is not a kernel").unwrap();
    test_box.spec.kernel = bogus;
    let started = Instant::now();
    let err = Vm::boot(&QemuEngine::default(), &test_box.spec, READY_TIMEOUT)
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, BootError::VmExited { .. }), "{err}");
    assert!(err.to_string().to_lowercase().contains("kernel"), "{err}");
    // Reported on the VMM's death, not after the ready timeout.
    assert!(
        started.elapsed() < READY_TIMEOUT / 4,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_never_answers_hits_the_configured_timeout_with_the_console() {
    let mut test_box = TestBox::new();
    // An initramfs whose /init is busybox's init: the VM boots and runs, but nothing answers.
    let silent = test_box.dir.path().join("silent-initramfs.cpio");
    boxlite::guest::write_initramfs(&std::fs::read("/bin/busybox").unwrap(), &silent).unwrap();
    test_box.spec.initramfs = silent;
    let timeout = Duration::from_secs(8);
    let started = Instant::now();
    let err = Vm::boot(&QemuEngine::default(), &test_box.spec, timeout)
        .await
        .err()
        .expect("must fail");
    match &err {
        BootError::ReadyTimeout { waited, console } => {
            assert_eq!(*waited, timeout);
            assert!(!console.is_empty());
        }
        other => panic!("expected a ready timeout, got {other}"),
    }
    assert!(started.elapsed() >= timeout);
    assert!(
        err.to_string().contains("did not answer within 8s"),
        "{err}"
    );
    assert!(
        find_qemu(test_box.dir.path()).is_none(),
        "the timed-out VM was left running"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_qemu_during_boot_is_reported_on_its_death() {
    let test_box = TestBox::new();
    let spec = test_box.spec.clone();
    let boot =
        tokio::spawn(async move { Vm::boot(&QemuEngine::default(), &spec, READY_TIMEOUT).await });
    let deadline = Instant::now() + Duration::from_secs(60);
    let qemu_pid = loop {
        if let Some(pid) = find_qemu(test_box.dir.path()) {
            break pid;
        }
        assert!(Instant::now() < deadline, "QEMU never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    let err = boot.await.unwrap().err().expect("boot must fail");
    let latency = killed.elapsed();
    eprintln!("VMM death reported after {latency:?}");
    match &err {
        BootError::VmExited { exit, .. } => assert_eq!(*exit, VmExit::Signaled(9)),
        other => panic!("expected VmExited, got {other}"),
    }
    // Reported on the VMM's death, not after the ready timeout (how fast: scripts/bench).
    assert!(
        latency < READY_TIMEOUT / 4,
        "reported {latency:?} after QEMU died"
    );
}

/// The pid of the QEMU whose command line names `box_dir`.
fn find_qemu(box_dir: &std::path::Path) -> Option<u32> {
    let needle = box_dir.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.starts_with("qemu-system") && cmdline.contains(&needle)).then_some(pid)
        })
}
