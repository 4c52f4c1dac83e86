//! One home, many host processes (tests/src/bin/box_worker.rs): concurrent lifecycles with no
//! lost or duplicated rows and no orphan processes; boxes that outlive the process that made
//! them; re-attaching after the reader was killed; a killed shim or VMM noticed by whoever
//! looks next. Slow: every box is a TCG guest, several at once on two cores.

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use boxlite::{BoxCommand, BoxStatus, BoxliteOptions, BoxliteRuntime};
use boxlite_shim::process::{read_all, ProcessId};
use boxlite_tests::{agent_binary, oci_layout, wait_until, TestHome};
use sha2::{Digest, Sha256};

const WORKERS: usize = 4;
const CYCLES: usize = 25;

fn runtime(home: &Path) -> BoxliteRuntime {
    set_binaries();
    BoxliteRuntime::new(BoxliteOptions {
        home_dir: home.to_path_buf(),
        ..Default::default()
    })
    .unwrap()
}

/// The shim and agent under test, for this process and the workers it starts.
fn set_binaries() {
    std::env::set_var(boxlite::SHIM_ENV, env!("CARGO_BIN_EXE_test_shim"));
    std::env::set_var(boxlite::guest::AGENT_ENV, agent_binary());
}

fn worker(args: &[&str]) -> Command {
    set_binaries();
    let mut command = Command::new(env!("CARGO_BIN_EXE_box_worker"));
    command.args(args);
    command
}

fn run_worker(args: &[&str]) -> String {
    let out = worker(args).output().unwrap();
    assert!(
        out.status.success(),
        "box_worker {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Host processes (other than this one) whose command line names something in `home`:
/// shims and VMMs of its boxes.
fn processes_of(home: &Path) -> Vec<String> {
    let needle = home.display().to_string();
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| e.file_name().to_string_lossy() != me)
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline
                .contains(&needle)
                .then(|| format!("{}: {cmdline}", e.file_name().to_string_lossy()))
        })
        .collect()
}

fn layout() -> String {
    oci_layout().display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_cycle_boxes_on_one_home() {
    let home = TestHome::new();
    let home_arg = home.path().display().to_string();
    let layout = layout();
    let cycles = CYCLES.to_string();
    let children: Vec<_> = (0..WORKERS)
        .map(|i| {
            let prefix = format!("w{i}");
            worker(&["cycles", &home_arg, &layout, &prefix, &cycles])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut failures = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            failures.push(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "worker errors:\n{}",
        failures.join("\n")
    );

    let rt = runtime(home.path());
    assert_eq!(rt.list_info().await.unwrap(), vec![], "rows left behind");
    let dirs: Vec<_> = std::fs::read_dir(home.path().join("boxes"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    assert!(dirs.is_empty(), "box directories left behind: {dirs:?}");
    assert_eq!(processes_of(home.path()), Vec::<String>::new());
}

/// The shim's and VMM's pids of a running box, from the file its shim writes.
fn box_processes(home: &Path, id: &str) -> Vec<ProcessId> {
    let recorded = read_all(&home.join("boxes").join(id).join("vmm.pid"));
    assert!(recorded.len() >= 2, "vmm.pid of {id}: {recorded:?}");
    recorded
}

/// How long a killed process, or a box whose VM was killed, may take to be seen gone. A
/// deadline against hangs, not a speed claim: the figures are in `scripts/bench`.
const PROCESS_EXIT_DEADLINE: Duration = Duration::from_secs(30);

async fn wait_stopped(rt: &BoxliteRuntime, id: &str) {
    wait_until(
        PROCESS_EXIT_DEADLINE,
        "Stopped after its VM was killed",
        || async { rt.get_info(id).await.unwrap().unwrap().status == BoxStatus::Stopped },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxes_outlive_their_processes_and_survive_crashes() {
    let home = TestHome::new();
    let home_arg = home.path().display().to_string();
    let layout = layout();

    // Several processes ask for the same name at once: one box.
    let children: Vec<_> = (0..WORKERS)
        .map(|_| {
            worker(&["get-or-create", &home_arg, &layout, "shared"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let rt = runtime(home.path());
    let infos = rt.list_info().await.unwrap();
    assert_eq!(infos.len(), 1, "{infos:?}");
    let id = ids[0].clone();

    // Process A starts it and exits; this process finds it running and execs in it.
    assert_eq!(
        run_worker(&["start-exec", &home_arg, "shared"]),
        "started\n"
    );
    let b = rt.get("shared").await.unwrap().unwrap();
    assert_eq!(b.info().status, BoxStatus::Running);
    let (stdout, _, _) = b
        .exec(BoxCommand::new("echo").arg("from B"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(stdout, b"from B\n");

    // A reader killed mid-stream: a new reader attaches by exec id and gets the rest.
    let lines = 1_500_000u32;
    let expected: Vec<u8> = (1..=lines)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let received_by_a = home.path().join("a.out");
    let mut reader = worker(&[
        "read-slowly",
        &home_arg,
        "shared",
        &lines.to_string(),
        &received_by_a.display().to_string(),
    ])
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let mut exec_id = String::new();
    std::io::BufReader::new(reader.stdout.take().unwrap())
        .read_line(&mut exec_id)
        .unwrap();
    let exec_id = exec_id.trim().to_string();
    while std::fs::metadata(&received_by_a).map_or(0, |m| m.len()) < 1024 * 1024 {
        assert!(
            reader.try_wait().unwrap().is_none(),
            "the reader ended early"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    reader.kill().unwrap(); // SIGKILL
    reader.wait().unwrap();
    let a_got = std::fs::read(&received_by_a).unwrap();
    assert!(
        a_got.len() < expected.len(),
        "the reader finished before it was killed"
    );

    let exec = b.attach(&exec_id).await.unwrap();
    let first = exec.read_stdout_chunk().await.unwrap().unwrap();
    assert!(
        first.offset <= a_got.len() as u64,
        "bytes {}..{} were never delivered to anyone",
        a_got.len(),
        first.offset
    );
    let mut whole = a_got[..first.offset as usize].to_vec();
    whole.extend_from_slice(&first.data);
    let (rest, _, result) = exec.output().await.unwrap();
    whole.extend_from_slice(&rest);
    assert_eq!(whole.len(), expected.len());
    assert_eq!(
        hex::encode(Sha256::digest(&whole)),
        hex::encode(Sha256::digest(&expected))
    );
    assert_eq!(result.exit_code, 7);

    // kill -9 of the shim: once it is dead (SIGKILL lands after kill(2) returns), the very
    // next call anywhere sees the box Stopped, and nothing of the VM is left when it returns.
    let recorded = box_processes(home.path(), &id);
    assert!(recorded[0].kill_and_wait(PROCESS_EXIT_DEADLINE));
    assert_eq!(
        rt.get_info(&id).await.unwrap().unwrap().status,
        BoxStatus::Stopped
    );
    assert!(recorded.iter().all(|p| !p.is_alive()), "{recorded:?}");
    assert_eq!(processes_of(home.path()), Vec::<String>::new());
    assert!(!home
        .path()
        .join("boxes")
        .join(&id)
        .join("shim.sock")
        .exists());

    // kill -9 of the VMM alone: its shim notices and exits; the box turns Stopped.
    b.start().await.unwrap();
    let recorded = box_processes(home.path(), &id);
    assert!(recorded[1].kill());
    wait_stopped(&rt, &id).await;
    assert!(recorded.iter().all(|p| !p.is_alive()), "{recorded:?}");
    assert_eq!(processes_of(home.path()), Vec::<String>::new());

    // And the box still works after both.
    let (stdout, _, _) = b
        .exec(BoxCommand::new("echo").arg("again"))
        .await
        .unwrap()
        .output()
        .await
        .unwrap();
    assert_eq!(stdout, b"again\n");
    rt.remove(&id, true).await.unwrap();
    assert_eq!(processes_of(home.path()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_from_another_host_boot_is_never_trusted_or_killed() {
    let home = TestHome::new();
    let rt = runtime(home.path());
    let b = rt
        .create(
            boxlite_tests::layout_box_options("busybox"),
            Some("old".into()),
        )
        .await
        .unwrap();
    // As if the box ran before a reboot, under a pid that now belongs to a live process (this
    // one): the pid and even its start time may match by chance after a reboot.
    let me = ProcessId::current().unwrap();
    let db = rusqlite::Connection::open(home.path().join("db/boxes.db")).unwrap();
    let set = |boot: &str| {
        db.execute(
            "UPDATE boxes SET status = 'running', shim_pid = ?1, shim_start = ?2, shim_boot = ?3",
            rusqlite::params![me.pid, me.start_time as i64, boot],
        )
        .unwrap();
    };
    let this_boot = boxlite_shim::process::boot_id().unwrap();
    set(&this_boot);
    assert_eq!(b.info().status, BoxStatus::Running);
    set("00000000-0000-0000-0000-000000000000");
    assert_eq!(b.info().status, BoxStatus::Stopped);
    assert!(me.is_alive());
    rt.remove("old", false).await.unwrap();
}

/// Sends `signal` to a process this test found recorded for its box.
fn send(process: ProcessId, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(process.pid as i32), signal).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_shim_hangs_neither_readers_nor_stop() {
    let home = TestHome::new();
    let rt = runtime(home.path());
    let b = rt
        .create(
            boxlite_tests::layout_box_options("busybox"),
            Some("frozen".into()),
        )
        .await
        .unwrap();
    let execution = b.exec(BoxCommand::new("sleep").arg("600")).await.unwrap();
    let recorded = box_processes(home.path(), b.id());
    send(recorded[0], nix::sys::signal::Signal::SIGSTOP);

    // A reader waiting on the command learns that the box stopped answering.
    let bound = Duration::from_secs(120);
    let read = tokio::time::timeout(bound, execution.output())
        .await
        .expect("a read of a frozen box must end");
    let Err(err) = read else {
        panic!("a frozen box gave output");
    };
    assert!(err.to_string().contains("stopped answering"), "{err}");

    // stop escalates past the frozen shim: the VM and the shim are killed, the box Stopped.
    tokio::time::timeout(bound, b.stop_within(Duration::from_secs(2)))
        .await
        .expect("stop must end")
        .unwrap();
    assert_eq!(b.info().status, BoxStatus::Stopped);
    assert!(recorded.iter().all(|p| !p.is_alive()), "{recorded:?}");
    assert_eq!(processes_of(home.path()), Vec::<String>::new());
    rt.remove(b.id(), false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_killed_during_a_boot_leaks_no_vm() {
    let home = TestHome::new();
    let home_arg = home.path().display().to_string();
    let rt = runtime(home.path());
    let b = rt
        .create(
            boxlite_tests::layout_box_options("busybox"),
            Some("orphan".into()),
        )
        .await
        .unwrap();
    let mut starter = worker(&["start-exec", &home_arg, "orphan"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once its shim runs, before the box is ready (a TCG boot takes a while).
    let shim_pid = home.path().join("boxes").join(b.id()).join("shim.pid");
    wait_until(PROCESS_EXIT_DEADLINE, "a shim started", || async {
        shim_pid.exists()
    })
    .await;
    starter.kill().unwrap();
    starter.wait().unwrap();

    // The shim notices that nobody will record it, and takes its VM down.
    wait_until(PROCESS_EXIT_DEADLINE * 4, "the shim and VM gone", || {
        let gone = processes_of(home.path()).is_empty();
        async move { gone }
    })
    .await;
    let status = b.info().status;
    assert!(!status.is_active(), "{status}");
    // And the box is as good as before: it starts, runs and is removed.
    let (code, out) = boxlite_tests::sh(&b, "echo again").await;
    assert_eq!((code, out.as_str()), (0, "again\n"));
    rt.remove(b.id(), true).await.unwrap();
    assert_eq!(processes_of(home.path()), Vec::<String>::new());
}
