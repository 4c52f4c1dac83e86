//! Boots a box from the busybox test image and runs one command in it, streaming its output
//! and exiting with its exit code: `cargo run -p boxlite-tests --example run -- uname -a`.
//! (The `boxlite` CLI replaces this once the runtime API lands.)

use std::io::Write;
use std::time::Duration;

use boxlite_protocol::agent::OutputStream;
use boxlite_shim::agent_client::ExecOptions;
use boxlite_shim::engine::qemu::QemuEngine;
use boxlite_shim::vm::Vm;
use boxlite_tests::{TestBox, READY_TIMEOUT};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        args = vec![
            "sh".into(),
            "-c".into(),
            "uname -a; echo hello from $(hostname) in a box".into(),
        ];
    }
    let test_box = TestBox::new();
    let vm = match Vm::boot(&QemuEngine::default(), &test_box.spec, READY_TIMEOUT).await {
        Ok(vm) => vm,
        Err(err) => {
            eprintln!("boxlite: {err}");
            std::process::exit(125);
        }
    };
    eprintln!("boxlite: box ready in {:?}", vm.timings().spawn_to_ready);
    let agent = vm.agent();
    if let Err(err) = agent.exec("main", &ExecOptions::new(args)).await {
        eprintln!("boxlite: {err}");
        let _ = vm.shutdown(Duration::from_secs(10)).await;
        std::process::exit(127);
    }
    let (out, err) = tokio::join!(
        agent.drain("main", OutputStream::STDOUT, |c| {
            let _ = std::io::stdout().write_all(c);
        }),
        agent.drain("main", OutputStream::STDERR, |c| {
            let _ = std::io::stderr().write_all(c);
        }),
    );
    let status = match (out, err) {
        (Ok(()), Ok(())) => agent.wait("main").await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let _ = std::io::stdout().flush();
    let code = match status {
        Ok(status) if status.signal != 0 => 128 + status.signal,
        Ok(status) => status.code,
        Err(err) => {
            eprintln!("boxlite: {err}");
            125
        }
    };
    if let Err(err) = vm.shutdown(Duration::from_secs(10)).await {
        eprintln!("boxlite: {err}");
    }
    std::process::exit(code);
}
