//! Template starts, snapshots and forks: create → first exec output from a template and from
//! a warm standby (`BOXLITE_STANDBY`) next to a kernel boot, memory per idle box (PSS) with 16 boxes of one template next to booted
//! ones, pause/resume, snapshot save, fork of a running box → the fork answers exec, a box
//! put back to its snapshot → it answers exec, and
//! `BOXLITE_BENCH_SCALE` boxes (100 by default) running at once, all answering exec.
//! Prints one JSON object and a table. `BOXLITE_BENCH_BOOTS` sets the starts per mode (7).

use std::time::{Duration, Instant};

use boxlite::{BoxCommand, BoxOptions, BoxliteOptions, BoxliteRuntime, LiteBox};
use boxlite_tests::bench::{ms, report, Series};
use boxlite_tests::{agent_binary, cli_bin_dir, layout_box_options, scratch_root};

fn options() -> BoxOptions {
    let mut options = layout_box_options("busybox");
    options.memory_mib = Some(128);
    // The boxes end with the bench, however it ends.
    options.detach = false;
    options
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn echo(b: &LiteBox) -> bool {
    match b.exec(BoxCommand::new("echo").arg("hi")).await {
        Ok(execution) => matches!(execution.output().await, Ok((out, _, _)) if out == b"hi\n"),
        Err(_) => false,
    }
}

/// Mean PSS per box, in MiB: of its VMM processes (QEMU and passt), of its shim, and of QEMU
/// alone (the shim's children named qemu-system-*).
async fn pss_per_box(boxes: &[LiteBox]) -> (f64, f64, f64) {
    let (mut vmm, mut shims, mut qemu) = (0.0, 0.0, 0.0);
    for b in boxes {
        let metrics = b.metrics().await.unwrap();
        vmm += metrics.memory_pss_bytes().unwrap_or(0) as f64 / (1 << 20) as f64;
        let shim = metrics.shim_pid().unwrap();
        shims += pss_mib(shim);
        qemu += children_of(shim)
            .into_iter()
            .filter(|(_, name)| name.starts_with("qemu-system"))
            .map(|(pid, _)| pss_mib(pid))
            .sum::<f64>();
    }
    let n = boxes.len() as f64;
    (vmm / n, shims / n, qemu / n)
}

/// The processes whose parent is `parent`, with their names.
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after its last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push((pid, stat[open + 1..close].to_string()));
        }
    }
    children
}

fn pss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Starts `n` boxes, `parallel` at a time; returns them and how many failed to start.
async fn start_many(rt: &BoxliteRuntime, n: usize, parallel: usize) -> (Vec<LiteBox>, usize) {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(parallel));
    let mut pending = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (rt, gate) = (rt.clone(), gate.clone());
        pending.spawn(async move {
            let _turn = gate.acquire_owned().await.expect("semaphore open");
            let b = rt.create(options(), None).await?;
            b.start().await?;
            Ok::<_, boxlite::BoxliteError>(b)
        });
    }
    let (mut boxes, mut failed) = (Vec::new(), 0);
    while let Some(joined) = pending.join_next().await {
        match joined.expect("start task") {
            Ok(b) => boxes.push(b),
            Err(err) => {
                eprintln!("a box did not start: {err}");
                failed += 1;
            }
        }
    }
    (boxes, failed)
}

async fn remove_all(rt: &BoxliteRuntime, boxes: Vec<LiteBox>) {
    for b in boxes {
        let _ = rt.remove(b.id(), true).await;
    }
}

/// Waits (up to 5 minutes) until a standby is ready in the home.
async fn wait_for_standby(rt: &BoxliteRuntime) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while rt.standbys_ready() == 0 {
        assert!(
            Instant::now() < deadline,
            "no standby warmed up in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var(boxlite::SHIM_ENV, cli_bin_dir().join("boxlite-shim"));
    std::env::set_var(boxlite::guest::AGENT_ENV, agent_binary());
    let starts = env_number("BOXLITE_BENCH_BOOTS", 7);
    let scale = env_number("BOXLITE_BENCH_SCALE", 100);
    let home = tempfile::tempdir_in(scratch_root()).unwrap();
    let rt = BoxliteRuntime::new(BoxliteOptions {
        home_dir: home.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    // Image import, base build and the template's own boot happen once, untimed.
    let first = rt.create(options(), None).await.unwrap();
    assert!(echo(&first).await);
    assert_eq!(
        first.metrics().await.unwrap().start_mode(),
        Some("template")
    );
    rt.remove(first.id(), true).await.unwrap();

    let mut from_template = Series::new("create_to_output_template", "ms");
    let mut from_boot = Series::new("create_to_output_boot", "ms");
    for (series, templates) in [(&mut from_template, "1"), (&mut from_boot, "0")] {
        std::env::set_var(boxlite::TEMPLATES_ENV, templates);
        for _ in 0..starts {
            let t = Instant::now();
            let b = rt.create(options(), None).await.unwrap();
            assert!(echo(&b).await);
            series.values.push(ms(t.elapsed()));
            rt.remove(b.id(), true).await.unwrap();
        }
    }
    std::env::remove_var(boxlite::TEMPLATES_ENV);

    // From a warm standby: each create finds one ready (the previous one's replacement has
    // warmed up; waiting for it is not timed).
    let mut from_standby = Series::new("create_to_output_standby", "ms");
    std::env::set_var(boxlite::STANDBY_ENV, "1");
    let seed = rt.create(options(), None).await.unwrap();
    assert!(echo(&seed).await);
    rt.remove(seed.id(), true).await.unwrap();
    for _ in 0..starts {
        wait_for_standby(&rt).await;
        let t = Instant::now();
        let b = rt.create(options(), None).await.unwrap();
        assert!(echo(&b).await);
        from_standby.values.push(ms(t.elapsed()));
        assert_eq!(b.metrics().await.unwrap().start_mode(), Some("standby"));
        rt.remove(b.id(), true).await.unwrap();
    }
    std::env::remove_var(boxlite::STANDBY_ENV);
    wait_for_standby(&rt).await;
    rt.retire_standbys().await;

    // Memory of idle boxes: 16 from the template, 4 booted.
    let mut pss_template = Series::new("idle_vmm_pss_per_box_16_template", "MiB");
    let mut qemu_pss = Series::new("idle_qemu_pss_per_box_16_template", "MiB");
    let mut shim_pss = Series::new("idle_shim_pss_per_box_16_template", "MiB");
    let mut pss_boot = Series::new("idle_vmm_pss_per_box_4_booted", "MiB");
    let mut qemu_pss_boot = Series::new("idle_qemu_pss_per_box_4_booted", "MiB");
    let (boxes, failed) = start_many(&rt, 16, 4).await;
    assert_eq!(failed, 0);
    for b in &boxes {
        assert!(echo(b).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (vmm, shim, qemu) = pss_per_box(&boxes).await;
    pss_template.values.push(vmm);
    shim_pss.values.push(shim);
    qemu_pss.values.push(qemu);

    // Pause/resume and snapshot of one of them; fork of a running box.
    let mut pause = Series::new("pause", "ms");
    let mut resume = Series::new("resume", "ms");
    let mut save = Series::new("snapshot_save", "ms");
    let mut size = Series::new("snapshot_size", "MiB");
    let mut fork = Series::new("fork_to_fork_output", "ms");
    let mut revert = Series::new("restore_in_place_to_output", "ms");
    let source = &boxes[0];
    for i in 0..starts.min(5) {
        let t = Instant::now();
        source.pause().await.unwrap();
        pause.values.push(ms(t.elapsed()));
        let t = Instant::now();
        source.resume().await.unwrap();
        resume.values.push(ms(t.elapsed()));
        let t = Instant::now();
        let info = source.snapshot(&format!("s{i}")).await.unwrap();
        save.values.push(ms(t.elapsed()));
        size.values.push(info.size_bytes as f64 / (1 << 20) as f64);
        let t = Instant::now();
        source.restore(&info.name).await.unwrap();
        assert!(echo(source).await);
        revert.values.push(ms(t.elapsed()));
        rt.remove_snapshot(&info.name).unwrap();
        let t = Instant::now();
        let forked = source.fork(&format!("fork{i}")).await.unwrap();
        assert!(echo(&forked).await);
        fork.values.push(ms(t.elapsed()));
        rt.remove(forked.id(), true).await.unwrap();
    }
    remove_all(&rt, boxes).await;

    std::env::set_var(boxlite::TEMPLATES_ENV, "0");
    let (booted, failed) = start_many(&rt, 4, 2).await;
    std::env::remove_var(boxlite::TEMPLATES_ENV);
    assert_eq!(failed, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (vmm, _, qemu) = pss_per_box(&booted).await;
    pss_boot.values.push(vmm);
    qemu_pss_boot.values.push(qemu);
    remove_all(&rt, booted).await;

    let context = format!("\"engine\":\"qemu\",\"starts\":{starts},\"memory_mib\":128");
    report(
        &context,
        &[
            &from_template,
            &from_standby,
            &from_boot,
            &pss_template,
            &qemu_pss,
            &shim_pss,
            &pss_boot,
            &qemu_pss_boot,
            &pause,
            &resume,
            &save,
            &size,
            &fork,
            &revert,
        ],
    );

    // Scale: `scale` boxes at once, all answering exec (8 execs at a time).
    let mut scale_start = Series::new("scale_start_all", "s");
    let mut scale_failed = Series::new("scale_boxes_failed_to_start", "boxes");
    let mut scale_answering = Series::new("scale_boxes_answering_exec", "boxes");
    let mut scale_pss = Series::new("scale_vmm_pss_per_box", "MiB");
    let mut scale_qemu_pss = Series::new("scale_qemu_pss_per_box", "MiB");
    let mut scale_exec_all = Series::new("scale_echo_in_every_box", "s");
    let t = Instant::now();
    let (boxes, failed) = start_many(&rt, scale, 8).await;
    scale_start.values.push(t.elapsed().as_secs_f64());
    scale_failed.values.push(failed as f64);
    let t = Instant::now();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(8));
    let mut execs = tokio::task::JoinSet::new();
    for b in boxes.clone() {
        let gate = gate.clone();
        execs.spawn(async move {
            let _turn = gate.acquire_owned().await.expect("semaphore open");
            tokio::time::timeout(Duration::from_secs(300), echo(&b))
                .await
                .unwrap_or(false)
        });
    }
    let mut answering = 0;
    while let Some(answered) = execs.join_next().await {
        answering += usize::from(answered.expect("exec task"));
    }
    scale_exec_all.values.push(t.elapsed().as_secs_f64());
    scale_answering.values.push(answering as f64);
    let (vmm, _, qemu) = pss_per_box(&boxes).await;
    scale_pss.values.push(vmm);
    scale_qemu_pss.values.push(qemu);
    remove_all(&rt, boxes).await;

    report(
        &format!("{context},\"scale\":{scale}"),
        &[
            &scale_start,
            &scale_failed,
            &scale_exec_all,
            &scale_answering,
            &scale_pss,
            &scale_qemu_pss,
        ],
    );
}
