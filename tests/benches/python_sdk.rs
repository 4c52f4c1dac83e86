//! The Python SDK's cost per exec over the Rust API, in the same run and on the same box:
//! rounds of `exec("true")` + `wait()` from Rust, then from a Python process (async and
//! sync API, scripts/bench-sdk/python_exec.py), interleaved so that drift hits both. The SDK
//! is installed as the README says (scripts/python-sdk.sh). `BOXLITE_BENCH_ROUNDS` (5) rounds
//! of `BOXLITE_BENCH_EXECS` (40) each. Prints one JSON object and a table.

use std::process::Command;
use std::time::Instant;

use boxlite::{BoxCommand, BoxliteOptions, BoxliteRuntime};
use boxlite_tests::bench::{ms, report, Series};
use boxlite_tests::{agent_binary, cli_bin_dir, layout_box_options, workspace_root, TestHome};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var(boxlite::SHIM_ENV, cli_bin_dir().join("boxlite-shim"));
    std::env::set_var(boxlite::guest::AGENT_ENV, agent_binary());
    let (rounds, execs) = (
        env_number("BOXLITE_BENCH_ROUNDS", 5),
        env_number("BOXLITE_BENCH_EXECS", 40),
    );
    let installed = Command::new(workspace_root().join("scripts/python-sdk.sh"))
        .output()
        .expect("running scripts/python-sdk.sh");
    assert!(installed.status.success(), "scripts/python-sdk.sh failed");
    let python = String::from_utf8(installed.stdout).expect("a path");
    let python = python.trim();

    let home = TestHome::new();
    let rt = BoxliteRuntime::new(BoxliteOptions {
        home_dir: home.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let b = rt
        .create(layout_box_options("busybox"), Some("bench".into()))
        .await
        .unwrap();
    b.start().await.unwrap();

    let mut rust = Series::new("rust_exec_wait", "ms");
    let mut py_async = Series::new("python_async_exec_wait", "ms");
    let mut py_sync = Series::new("python_sync_exec_wait", "ms");
    let mut rust_info = Series::new("rust_get_info", "ms");
    let mut py_async_info = Series::new("python_async_get_info", "ms");
    let mut py_sync_info = Series::new("python_sync_get_info", "ms");
    for _ in 0..rounds {
        for _ in 0..execs {
            let t = Instant::now();
            let mut execution = b.exec(BoxCommand::new("true")).await.unwrap();
            execution.wait().await.unwrap();
            rust.values.push(ms(t.elapsed()));
        }
        for _ in 0..execs {
            let t = Instant::now();
            rt.get_info("bench").await.unwrap().unwrap();
            rust_info.values.push(ms(t.elapsed()));
        }
        let out = Command::new(python)
            .arg(workspace_root().join("scripts/bench-sdk/python_exec.py"))
            .arg(home.path())
            .arg("bench")
            .arg(execs.to_string())
            .output()
            .expect("running the Python round");
        assert!(
            out.status.success(),
            "python round: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for (key, series) in [
            ("async", &mut py_async),
            ("sync", &mut py_sync),
            ("async_info", &mut py_async_info),
            ("sync_info", &mut py_sync_info),
        ] {
            series.values.extend(
                json[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap()),
            );
        }
    }
    b.stop().await.unwrap();
    let over = |s: &Series, base: &Series| s.median() - base.median();
    report(
        &format!(
            "\"engine\":\"qemu\",\"rounds\":{rounds},\"calls_per_round\":{execs},\
             \"python_async_exec_overhead_ms\":{:.3},\"python_sync_exec_overhead_ms\":{:.3},\
             \"python_async_call_overhead_ms\":{:.3},\"python_sync_call_overhead_ms\":{:.3}",
            over(&py_async, &rust),
            over(&py_sync, &rust),
            over(&py_async_info, &rust_info),
            over(&py_sync_info, &rust_info)
        ),
        &[
            &rust,
            &py_async,
            &py_sync,
            &rust_info,
            &py_async_info,
            &py_sync_info,
        ],
    );
    println!(
        "\nadded cost per exec (median): async {:.3} ms, sync {:.3} ms; per call without a VM \
         (get_info): async {:.3} ms, sync {:.3} ms",
        over(&py_async, &rust),
        over(&py_sync, &rust),
        over(&py_async_info, &rust_info),
        over(&py_sync_info, &rust_info)
    );
}
