//! VM benchmarks: spawn to agent ready, first exec, warm exec round trip, agent ping, stdout
//! throughput and shutdown, on real VMs (QEMU; TCG where there is no hardware virtualisation).
//! Prints one JSON object and a table. `BOXLITE_BENCH_BOOTS` sets the number of boots (7).

use std::time::{Duration, Instant};

use boxlite_shim::agent_client::{AgentClient, ExecOptions};
use boxlite_shim::engine::qemu::{Accel, QemuEngine};
use boxlite_shim::vm::Vm;
use boxlite_tests::bench::{ms, report, Series};
use boxlite_tests::{TestBox, READY_TIMEOUT};

/// Runs a command to completion; returns the bytes of stdout.
async fn run(agent: &AgentClient, id: &str, args: &[&str]) -> usize {
    agent
        .exec(id, &ExecOptions::new(args.iter().copied()))
        .await
        .expect("exec");
    let output = agent.output(id).await.expect("output");
    assert_eq!(output.status.code, 0, "{args:?} failed");
    output.stdout.len()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let boots: usize = std::env::var("BOXLITE_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let engine = QemuEngine::default();
    let mut spawn_to_ready = Series::new("spawn_to_ready", "ms");
    let mut guest_ready_at = Series::new("guest_uptime_at_ready", "ms");
    let mut first_exec = Series::new("first_exec", "ms");
    let mut spawn_to_first_exec = Series::new("spawn_to_first_exec_output", "ms");
    let mut exec_rtt = Series::new("warm_exec_round_trip", "ms");
    let mut ping_rtt = Series::new("agent_ping_round_trip", "ms");
    let mut throughput = Series::new("stdout_throughput", "MB/s");
    let mut shutdown = Series::new("shutdown", "ms");

    for boot in 0..boots {
        let test_box = TestBox::new();
        let started = Instant::now();
        let vm = Vm::boot(&engine, &test_box.spec, READY_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        spawn_to_ready.values.push(ms(vm.timings().spawn_to_ready));
        guest_ready_at.values.push(ms(vm.timings().guest_ready_at));
        let agent = vm.agent().clone();

        let t = Instant::now();
        run(&agent, "first", &["echo", "hello"]).await;
        first_exec.values.push(ms(t.elapsed()));
        spawn_to_first_exec.values.push(ms(started.elapsed()));

        // The steady-state figures need only a few boots' worth of samples.
        if boot < 2 {
            for i in 0..30 {
                let t = Instant::now();
                run(&agent, &format!("warm-{i}"), &["true"]).await;
                exec_rtt.values.push(ms(t.elapsed()));
            }
            for _ in 0..200 {
                let t = Instant::now();
                agent.ping(Duration::from_secs(10)).await.expect("ping");
                ping_rtt.values.push(ms(t.elapsed()));
            }
            let t = Instant::now();
            let bytes = run(&agent, "bulk", &["head", "-c", "104857600", "/dev/zero"]).await;
            throughput
                .values
                .push(bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
        }

        let t = Instant::now();
        vm.shutdown(Duration::from_secs(30))
            .await
            .expect("shutdown");
        shutdown.values.push(ms(t.elapsed()));
    }

    let accel = match engine.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    report(
        &format!("\"engine\":\"qemu\",\"accel\":\"{accel}\",\"boots\":{boots}"),
        &[
            &spawn_to_ready,
            &guest_ready_at,
            &first_exec,
            &spawn_to_first_exec,
            &exec_rtt,
            &ping_rtt,
            &throughput,
            &shutdown,
        ],
    );
}
