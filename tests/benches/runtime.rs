//! Runtime API benchmarks: cold start (create + boot + first exec), warm exec round trip
//! through the shim, create/list/remove of configured boxes, shim RSS, disk per box.
//! Prints one JSON object and a table. `BOXLITE_BENCH_BOOTS` sets the number of boots (5).

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use boxlite::{BoxCommand, BoxOptions, BoxliteOptions, BoxliteRuntime};
use boxlite_tests::bench::{ms, report, Series};
use boxlite_tests::{agent_binary, cli_bin_dir, layout_box_options, scratch_root};

fn options() -> BoxOptions {
    layout_box_options("busybox")
}

fn rss_kib(pid: u32) -> f64 {
    boxlite_shim::process::rss_bytes(pid).map_or(f64::NAN, |b| b as f64 / 1024.0)
}

/// What a box's directory holds on disk; a box that never started has none (0).
fn allocated_kib(dir: &std::path::Path) -> f64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| (m.blocks() * 512) as f64 / 1024.0)
        .sum()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var(boxlite::SHIM_ENV, cli_bin_dir().join("boxlite-shim"));
    std::env::set_var(boxlite::guest::AGENT_ENV, agent_binary());
    let boots: usize = std::env::var("BOXLITE_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let home = tempfile::tempdir_in(scratch_root()).unwrap();
    let rt = BoxliteRuntime::new(BoxliteOptions {
        home_dir: home.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    // Image import and base build happen once, outside the timed parts.
    rt.remove(rt.create(options(), None).await.unwrap().id(), false)
        .await
        .unwrap();

    let mut create = Series::new("create_configured", "ms");
    let mut list = Series::new("list_info_50_boxes", "ms");
    let mut remove = Series::new("remove_configured", "ms");
    let mut disk = Series::new("new_box_on_disk", "KiB");
    let mut ids = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let b = rt.create(options(), None).await.unwrap();
        create.values.push(ms(t.elapsed()));
        disk.values
            .push(allocated_kib(&home.path().join("boxes").join(b.id())));
        ids.push(b.id().to_string());
    }
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(rt.list_info().await.unwrap().len(), 50);
        list.values.push(ms(t.elapsed()));
    }
    for id in ids {
        let t = Instant::now();
        rt.remove(&id, false).await.unwrap();
        remove.values.push(ms(t.elapsed()));
    }

    let mut cold = Series::new("cold_start_create_to_output", "ms");
    let mut warm = Series::new("warm_exec_via_shim", "ms");
    let mut rss = Series::new("shim_rss", "KiB");
    let mut stop = Series::new("stop", "ms");
    for boot in 0..boots {
        let t = Instant::now();
        let b = rt.create(options(), None).await.unwrap();
        let (out, _, _) = b
            .exec(BoxCommand::new("echo").arg("hi"))
            .await
            .unwrap()
            .output()
            .await
            .unwrap();
        assert_eq!(out, b"hi\n");
        cold.values.push(ms(t.elapsed()));
        rss.values.push(rss_kib(b.info().pid.unwrap()));
        if boot < 2 {
            for _ in 0..30 {
                let t = Instant::now();
                b.exec(BoxCommand::new("true"))
                    .await
                    .unwrap()
                    .output()
                    .await
                    .unwrap();
                warm.values.push(ms(t.elapsed()));
            }
        }
        let t = Instant::now();
        b.stop().await.unwrap();
        stop.values.push(ms(t.elapsed()));
        rt.remove(b.id(), false).await.unwrap();
    }
    report(
        &format!("\"engine\":\"qemu\",\"boots\":{boots}"),
        &[&cold, &warm, &create, &list, &remove, &rss, &disk, &stop],
    );
}
