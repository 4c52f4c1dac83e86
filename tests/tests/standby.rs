//! Standby VMs (`BOXLITE_STANDBY`), on real VMs: a box takes a warm standby of its kind and is
//! then a box like any other (its own name, clock, disk and image; restartable), the pool is
//! topped up again, boxes of another kind do not take one, and standbys nobody takes retire
//! by themselves or on request, leaving no process and no directory.

use std::path::Path;
use std::time::Duration;

use boxlite::{BoxliteRuntime, LiteBox, NetworkMode, PortSpec};
use boxlite_tests::{
    free_port, layout_box_options, sh, standby_dirs, test_runtime, wait_until, TestHome,
};

/// How long a standby may take to warm up (a template restore and a first command; longer
/// when the template itself is built, or the machine is loaded).
const WARM_LIMIT: Duration = Duration::from_secs(60);

async fn wait_for_ready_standbys(rt: &BoxliteRuntime, home: &Path, count: usize) {
    let deadline = tokio::time::Instant::now() + WARM_LIMIT;
    while rt.standbys_ready() != count {
        if tokio::time::Instant::now() > deadline {
            panic!(
                "not {count} standby ready after {WARM_LIMIT:?}; their shims said:\n{}",
                standby_logs(home)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The shim logs of `home`'s standbys, for a failure's message.
fn standby_logs(home: &Path) -> String {
    standby_dirs(home)
        .into_iter()
        .map(|dir| {
            let log = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
            format!("{}:\n{log}\n", dir.display())
        })
        .collect()
}

/// The shims of the standbys ready in `home` (not warming or retiring: no leading dot).
fn ready_standby_shims(home: &Path) -> Vec<boxlite_shim::process::ProcessId> {
    standby_dirs(home)
        .into_iter()
        .filter(|dir| !dir.file_name().unwrap().to_string_lossy().starts_with('.'))
        .flat_map(|dir| boxlite_shim::process::read_all(&dir.join("shim.pid")))
        .collect()
}

/// A box of the test image named `name`, not started yet.
async fn new_box(rt: &BoxliteRuntime, name: &str) -> LiteBox {
    rt.create(layout_box_options("opaque"), Some(name.into()))
        .await
        .unwrap()
}

/// Starts the box (a no-op when it runs) and says how its VM started.
async fn start_mode(b: &LiteBox) -> String {
    b.start().await.unwrap();
    b.metrics()
        .await
        .unwrap()
        .start_mode()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxes_take_warm_standbys_of_their_kind_and_are_their_own() {
    std::env::set_var(boxlite::TEMPLATES_ENV, "1");
    std::env::set_var(boxlite::STANDBY_ENV, "1");
    let home = TestHome::new();
    let rt = test_runtime!(home.path());

    // The first box of its kind finds no standby: it starts from the template and leaves one
    // warming behind it.
    let first = new_box(&rt, "first").await;
    assert_eq!(start_mode(&first).await, "template");
    wait_for_ready_standbys(&rt, home.path(), 1).await;

    // The next takes it: its own hostname, the host's clock, its image, its own disk.
    let taken = new_box(&rt, "taken").await;
    assert_eq!(start_mode(&taken).await, "standby");
    let (code, out) = sh(&taken, "hostname; date +%s; ls /srv").await;
    assert_eq!(code, 0, "{out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("taken"), "{out}");
    let guest_now: u64 = lines.next().unwrap().trim().parse().unwrap();
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        guest_now.abs_diff(host_now) <= 5,
        "guest clock {guest_now}, host {host_now}"
    );
    assert_eq!(lines.next(), Some("fresh"), "the image's /srv: {out}");
    let (code, out) = sh(&taken, "echo mine > /root-file && sync && cat /root-file").await;
    assert_eq!((code, out.as_str()), (0, "mine\n"));
    let (code, _) = sh(&first, "test -e /root-file").await;
    assert_ne!(code, 0, "a standby's disk is its box's own");
    // Entropy: two boxes from one template draw different random numbers.
    let (_, uuid_first) = sh(&first, "cat /proc/sys/kernel/random/uuid").await;
    let (_, uuid_taken) = sh(&taken, "cat /proc/sys/kernel/random/uuid").await;
    assert_ne!(uuid_first, uuid_taken);
    // Another process on the home sees a running box like any other.
    let other = test_runtime!(home.path());
    assert!(other
        .get_info("taken")
        .await
        .unwrap()
        .unwrap()
        .status
        .is_running());

    // It snapshots and forks like any box: the fork has its disk.
    let child = taken.fork("child").await.unwrap();
    let (code, out) = sh(&child, "cat /root-file; hostname").await;
    assert_eq!((code, out.as_str()), (0, "mine\nchild\n"));

    // Taking one started another. Two boxes starting at once: one gets it, the other starts
    // from the template.
    wait_for_ready_standbys(&rt, home.path(), 1).await;
    let racers = [new_box(&rt, "racer1").await, new_box(&rt, "racer2").await];
    let (a, b) = tokio::join!(start_mode(&racers[0]), start_mode(&racers[1]));
    let mut modes = [a, b];
    modes.sort();
    assert_eq!(modes, ["standby", "template"]);
    for racer in &racers {
        let (code, out) = sh(racer, "hostname").await;
        assert_eq!((code, out.trim()), (0, racer.name().unwrap()));
    }
    wait_for_ready_standbys(&rt, home.path(), 1).await;

    // A standby that died (its shim killed) is not taken: the box starts from the template,
    // and the top-up it triggers removes the dead one before starting another.
    for shim in ready_standby_shims(home.path()) {
        assert!(shim.kill_and_wait(Duration::from_secs(30)));
    }
    let after_death = new_box(&rt, "after-death").await;
    assert_eq!(start_mode(&after_death).await, "template");
    let (code, out) = sh(&after_death, "hostname; ls /srv").await;
    assert_eq!((code, out.as_str()), (0, "after-death\nfresh\n"));
    wait_for_ready_standbys(&rt, home.path(), 1).await;
    assert_eq!(standby_dirs(home.path()).len(), 1, "the dead standby swept");

    // One that hangs (its shim stopped) is taken, does not answer Assign within its deadline,
    // is killed, and the box starts from the template in a directory cleared for it.
    for shim in ready_standby_shims(home.path()) {
        let stopped = std::process::Command::new("kill")
            .args(["-STOP", &shim.pid.to_string()])
            .status()
            .unwrap();
        assert!(stopped.success());
    }
    let after_hang = new_box(&rt, "after-hang").await;
    assert_eq!(start_mode(&after_hang).await, "template");
    let (code, out) = sh(&after_hang, "hostname; ls /srv").await;
    assert_eq!((code, out.as_str()), (0, "after-hang\nfresh\n"));
    wait_for_ready_standbys(&rt, home.path(), 1).await;

    // A box of another kind (more memory) does not take it (and leaves one of its own kind).
    let mut bigger = layout_box_options("opaque");
    bigger.memory_mib = Some(bigger.effective_memory_mib() + 64);
    let other_kind = rt.create(bigger, Some("other".into())).await.unwrap();
    assert_eq!(start_mode(&other_kind).await, "template");

    // A box with a host port forward neither takes a standby nor leaves one warming (its
    // passt would hold the port while it waits); the retire below counts two pools only.
    let mut forwarded = layout_box_options("opaque");
    forwarded.network = NetworkMode::User;
    forwarded.ports = vec![PortSpec::tcp(free_port(), 8000)];
    let with_port = rt
        .create(forwarded, Some("with-port".into()))
        .await
        .unwrap();
    assert_eq!(start_mode(&with_port).await, "template");

    // Stopped and started again, the box boots from its own disk as any box does.
    let kept = new_box(&rt, "kept").await;
    assert_eq!(start_mode(&kept).await, "standby");
    let (code, _) = sh(&kept, "echo kept > /kept && sync").await;
    assert_eq!(code, 0);
    kept.stop().await.unwrap();
    kept.start().await.unwrap();
    assert_ne!(start_mode(&kept).await, "standby");
    let (code, out) = sh(&kept, "cat /kept; hostname").await;
    assert_eq!((code, out.as_str()), (0, "kept\nkept\n"));

    // Retired on request: none left running, no directory left.
    wait_for_ready_standbys(&rt, home.path(), 2).await;
    assert_eq!(rt.retire_standbys().await, 2);
    assert_eq!(rt.standbys_ready(), 0);
    assert!(
        standby_dirs(home.path()).is_empty(),
        "{:?}",
        standby_dirs(home.path())
    );

    // Retired by themselves after their idle time.
    std::env::set_var(boxlite::STANDBY_IDLE_ENV, "2");
    let last = new_box(&rt, "last").await;
    last.start().await.unwrap();
    // One warms, waits its two seconds and goes: its directory appears, then nothing is left.
    wait_until(WARM_LIMIT, "a standby started", || async {
        !standby_dirs(home.path()).is_empty()
    })
    .await;
    wait_until(WARM_LIMIT, "the idle standby gone", || async {
        standby_dirs(home.path()).is_empty()
    })
    .await;
    assert_eq!(rt.standbys_ready(), 0);

    // The runtime's shutdown retires the standbys along with the boxes.
    std::env::remove_var(boxlite::STANDBY_IDLE_ENV);
    let shut = new_box(&rt, "shut").await;
    shut.start().await.unwrap();
    wait_for_ready_standbys(&rt, home.path(), 1).await;
    rt.shutdown(Some(10)).await.unwrap();
    assert!(
        standby_dirs(home.path()).is_empty(),
        "{:?}",
        standby_dirs(home.path())
    );
    assert!(!shut.info().status.is_running());

    let [racer1, racer2] = racers;
    for b in [
        first,
        taken,
        child,
        racer1,
        racer2,
        after_death,
        after_hang,
        other_kind,
        with_port,
        kept,
        last,
        shut,
    ] {
        rt.remove(b.id(), true).await.unwrap();
    }
    assert!(
        home.box_processes().is_empty(),
        "{:?}",
        home.box_processes()
    );
}
