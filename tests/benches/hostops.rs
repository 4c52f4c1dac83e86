//! Host operations against a peer in the same run: creating and removing configured boxes
//! (no VM) with our runtime and with BoxLite 0.10.8 (its PyPI wheel, in a virtualenv made on
//! first use under ~/.cache/boxlite/peer/, driven by scripts/bench-peer/boxlite_hostops.py).
//! `BOXLITE_BENCH_OPS` sets the number of boxes (200). Prints one JSON object and a table;
//! the peer's figures are left out (and said so) when its wheel cannot be installed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use boxlite::{BoxliteOptions, BoxliteRuntime};
use boxlite_tests::bench::{ms, report, Series};
use boxlite_tests::{agent_binary, layout_box_options, workspace_root, TestHome};

const PEER_VERSION: &str = "0.10.8";

/// A python with the peer installed, made once.
fn peer_python() -> Option<PathBuf> {
    let cache = std::env::var_os("BOXLITE_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/boxlite")
        });
    let venv = cache.join(format!("peer/boxlite-{PEER_VERSION}"));
    let python = venv.join("bin/python");
    let installed = |python: &PathBuf| {
        Command::new(python)
            .args(["-c", "import boxlite"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if installed(&python) {
        return Some(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", &format!("boxlite=={PEER_VERSION}")])
            .status()
            .is_ok_and(|s| s.success());
    (made && installed(&python)).then_some(python)
}

fn peer_series(n: usize) -> Option<(Series, Series)> {
    let python = peer_python()?;
    let out = Command::new(python)
        .arg(workspace_root().join("scripts/bench-peer/boxlite_hostops.py"))
        .arg(n.to_string())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("peer: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let series = |key: &str, name: &'static str| {
        let mut s = Series::new(name, "ms");
        s.values = json[key]
            .as_array()?
            .iter()
            .filter_map(|v| v.as_f64())
            .collect();
        Some(s)
    };
    Some((
        series("create_ms", "peer_create_configured")?,
        series("remove_ms", "peer_remove_configured")?,
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var(boxlite::guest::AGENT_ENV, agent_binary());
    let n: usize = std::env::var("BOXLITE_BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let home = TestHome::new();
    let rt = BoxliteRuntime::new(BoxliteOptions {
        home_dir: home.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    // Image import and base build happen once, outside the timed parts (the peer's first
    // create is not timed either).
    let first = rt
        .create(layout_box_options("busybox"), None)
        .await
        .unwrap();
    rt.remove(first.id(), false).await.unwrap();

    let mut create = Series::new("create_configured", "ms");
    let mut remove = Series::new("remove_configured", "ms");
    let mut ids = Vec::new();
    for _ in 0..n {
        let options = layout_box_options("busybox");
        let t = Instant::now();
        let b = rt.create(options, None).await.unwrap();
        create.values.push(ms(t.elapsed()));
        ids.push(b.id().clone());
    }
    for id in ids {
        let t = Instant::now();
        rt.remove(&id, false).await.unwrap();
        remove.values.push(ms(t.elapsed()));
    }

    let peer = peer_series(n);
    let mut all = vec![&create, &remove];
    let context = match &peer {
        Some((peer_create, peer_remove)) => {
            all.push(peer_create);
            all.push(peer_remove);
            format!(
                "\"bench\":\"hostops\",\"n\":{n},\"peer\":\"boxlite {PEER_VERSION} (PyPI wheel)\",\
                 \"create_ratio\":{:.3},\"remove_ratio\":{:.3}",
                create.median() / peer_create.median(),
                remove.median() / peer_remove.median()
            )
        }
        None => format!("\"bench\":\"hostops\",\"n\":{n},\"peer\":null"),
    };
    report(&context, &all);
    match &peer {
        Some((peer_create, peer_remove)) => println!(
            "\nours / peer (median): create {:.2}x, remove {:.2}x",
            create.median() / peer_create.median(),
            remove.median() / peer_remove.median()
        ),
        None => println!("\npeer: BoxLite {PEER_VERSION} could not be installed; ours only"),
    }
}
