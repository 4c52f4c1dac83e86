//! `ctr run` to output under containerd (Debian's 1.6, private instance): our runtime
//! (`io.containerd.boxlite.v1`, a VM per container) next to runc (`io.containerd.runc.v2`,
//! namespaces on the host) on the same machine, same image, same command.
//! `BOXLITE_BENCH_BOOTS` sets the runs per runtime (7). Prints one JSON object and a table.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Instant;

use boxlite_tests::bench::{ms, report, Series};
use boxlite_tests::containerd::{Containerd, IMAGE, RUNTIME};

const NS: &str = "bench";

/// One `ctr run --rm`: (ms to the output, ms to ctr's exit with the container removed).
fn run_once(ctrd: &Containerd, runtime: &str, id: &str) -> (f64, f64) {
    let start = Instant::now();
    let mut child = Command::new("ctr")
        .arg("--address")
        .arg(ctrd.socket())
        .args([
            "-n",
            NS,
            "run",
            "--rm",
            "--runtime",
            runtime,
            IMAGE,
            id,
            "echo",
            "hi",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running ctr");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 3];
    stdout.read_exact(&mut first).expect("ctr's output");
    let output = start.elapsed();
    assert_eq!(&first, b"hi\n");
    assert!(child.wait().unwrap().success());
    (ms(output), ms(start.elapsed()))
}

fn main() {
    let runs: usize = std::env::var("BOXLITE_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let ctrd = Containerd::start();
    ctrd.import_test_image(NS);
    // The first boxlite run builds the VM template; the first of each warms the caches.
    run_once(&ctrd, RUNTIME, "warm-boxlite");
    run_once(&ctrd, "io.containerd.runc.v2", "warm-runc");

    let mut boxlite_output = Series::new("boxlite_run_to_output", "ms");
    let mut boxlite_total = Series::new("boxlite_run_to_exit", "ms");
    let mut runc_output = Series::new("runc_run_to_output", "ms");
    let mut runc_total = Series::new("runc_run_to_exit", "ms");
    // Interleaved, so both see the same machine noise.
    for i in 0..runs {
        let (output, total) = run_once(&ctrd, RUNTIME, &format!("b{i}"));
        boxlite_output.values.push(output);
        boxlite_total.values.push(total);
        let (output, total) = run_once(&ctrd, "io.containerd.runc.v2", &format!("r{i}"));
        runc_output.values.push(output);
        runc_total.values.push(total);
    }
    ctrd.assert_nothing_left();
    report(
        "\"bench\":\"containerd\",\"containerd\":\"1.6 (Debian)\",\"image\":\"busybox\",\"command\":\"echo hi\"",
        &[&boxlite_output, &boxlite_total, &runc_output, &runc_total],
    );
}
