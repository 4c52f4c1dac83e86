//! The SDKs' cost per call over the Rust API, in the same run and on the same box: rounds of
//! `exec("true")` + `wait()` (for C, whose `boxlite_execute` also reads both streams to their
//! end: `exec` + `output()`) and of `get_info` (a database read: no VM, so the SDK's own cost
//! shows) from Rust, then from the Python SDK (async and sync API,
//! scripts/bench-sdk/python_exec.py), the Node.js SDK (node_exec.js) and the C SDK
//! (c_exec.c), interleaved so that drift hits all. Each SDK is installed as the README says
//! (scripts/python-sdk.sh, scripts/node-sdk.sh; the C library built in release).
//! `BOXLITE_BENCH_ROUNDS` (5) rounds of `BOXLITE_BENCH_CALLS` (40) calls each. Prints one JSON
//! object and a table.

use std::path::{Path, PathBuf};
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

/// Runs `command`, which must succeed; its stdout's last line.
fn last_line(command: &mut Command, what: &str) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string()
}

/// The C bench program, built against the release libboxlite.
fn c_program(repo: &Path) -> PathBuf {
    let sdk = repo.join("sdks/c");
    last_line(
        Command::new("cargo")
            .args(["build", "--release", "--locked", "--manifest-path"])
            .arg(sdk.join("Cargo.toml")),
        "building libboxlite",
    );
    let lib = sdk.join("target/release");
    let program = repo.join("target/c-sdk/c_exec");
    std::fs::create_dir_all(program.parent().unwrap()).unwrap();
    last_line(
        Command::new("gcc")
            .args(["-O2", "-std=c11", "-Wall", "-Werror", "-I"])
            .arg(sdk.join("include"))
            .arg(repo.join("scripts/bench-sdk/c_exec.c"))
            .arg("-L")
            .arg(&lib)
            .arg("-lboxlite")
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-o")
            .arg(&program),
        "compiling c_exec.c",
    );
    program
}

/// One round of an SDK's program: its JSON output's series `keys`, appended to `into`.
fn round(command: &mut Command, what: &str, into: &mut [(&str, &mut Series)]) {
    let json: serde_json::Value = serde_json::from_str(&last_line(command, what)).unwrap();
    for (key, series) in into.iter_mut() {
        series.values.extend(
            json[*key]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no {key}"))
                .iter()
                .map(|v| v.as_f64().unwrap()),
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var(boxlite::SHIM_ENV, cli_bin_dir().join("boxlite-shim"));
    std::env::set_var(boxlite::guest::AGENT_ENV, agent_binary());
    let (rounds, calls) = (
        env_number("BOXLITE_BENCH_ROUNDS", 5),
        env_number("BOXLITE_BENCH_CALLS", 40),
    );
    let repo = workspace_root();
    let python = last_line(
        &mut Command::new(repo.join("scripts/python-sdk.sh")),
        "scripts/python-sdk.sh",
    );
    let node_project = last_line(
        &mut Command::new(repo.join("scripts/node-sdk.sh")),
        "scripts/node-sdk.sh",
    );
    let c_exec = c_program(&repo);

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
    // What boxlite_execute does: both streams read to their end, then the wait.
    let mut rust_output = Series::new("rust_exec_output", "ms");
    let mut py_async = Series::new("python_async_exec_wait", "ms");
    let mut py_sync = Series::new("python_sync_exec_wait", "ms");
    let mut node = Series::new("node_exec_wait", "ms");
    let mut c = Series::new("c_exec_wait", "ms");
    let mut rust_info = Series::new("rust_get_info", "ms");
    let mut py_async_info = Series::new("python_async_get_info", "ms");
    let mut py_sync_info = Series::new("python_sync_get_info", "ms");
    let mut node_info = Series::new("node_get_info", "ms");
    let mut c_info = Series::new("c_get_info", "ms");
    let n = calls.to_string();
    for _ in 0..rounds {
        for _ in 0..calls {
            let t = Instant::now();
            let mut execution = b.exec(BoxCommand::new("true")).await.unwrap();
            execution.wait().await.unwrap();
            rust.values.push(ms(t.elapsed()));
        }
        for _ in 0..calls {
            let t = Instant::now();
            let execution = b.exec(BoxCommand::new("true")).await.unwrap();
            execution.output().await.unwrap();
            rust_output.values.push(ms(t.elapsed()));
        }
        for _ in 0..calls {
            let t = Instant::now();
            rt.get_info("bench").await.unwrap().unwrap();
            rust_info.values.push(ms(t.elapsed()));
        }
        round(
            Command::new(&python)
                .arg(repo.join("scripts/bench-sdk/python_exec.py"))
                .arg(home.path())
                .args(["bench", &n]),
            "the Python round",
            &mut [
                ("async", &mut py_async),
                ("sync", &mut py_sync),
                ("async_info", &mut py_async_info),
                ("sync_info", &mut py_sync_info),
            ],
        );
        round(
            Command::new("node")
                .arg(repo.join("scripts/bench-sdk/node_exec.js"))
                .arg(home.path())
                .args(["bench", &n])
                .env("NODE_PATH", Path::new(&node_project).join("node_modules")),
            "the Node round",
            &mut [("exec", &mut node), ("info", &mut node_info)],
        );
        round(
            Command::new(&c_exec).arg(home.path()).args(["bench", &n]),
            "the C round",
            &mut [("exec", &mut c), ("info", &mut c_info)],
        );
    }
    b.stop().await.unwrap();
    let over = |s: &Series, base: &Series| s.median() - base.median();
    // Each SDK's exec against the Rust call doing the same work.
    let sdks = [
        ("python_async", &py_async, &rust, &py_async_info),
        ("python_sync", &py_sync, &rust, &py_sync_info),
        ("node", &node, &rust, &node_info),
        ("c", &c, &rust_output, &c_info),
    ];
    let mut context =
        format!("\"engine\":\"qemu\",\"rounds\":{rounds},\"calls_per_round\":{calls}");
    for (name, exec, base, info) in sdks {
        context.push_str(&format!(
            ",\"{name}_exec_overhead_ms\":{:.3},\"{name}_call_overhead_ms\":{:.3}",
            over(exec, base),
            over(info, &rust_info)
        ));
    }
    report(
        &context,
        &[
            &rust,
            &rust_output,
            &py_async,
            &py_sync,
            &node,
            &c,
            &rust_info,
            &py_async_info,
            &py_sync_info,
            &node_info,
            &c_info,
        ],
    );
    println!();
    for (name, exec, base, info) in sdks {
        println!(
            "{name}: added cost per exec (median) {:.3} ms; per call without a VM (get_info) {:.3} ms",
            over(exec, base),
            over(info, &rust_info)
        );
    }
}
