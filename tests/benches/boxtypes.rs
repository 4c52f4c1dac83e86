//! Box type benchmarks on the python image of `scripts/build-images.sh`: CodeBox create →
//! the result of `1+1` (box boot and interpreter start), a second run, a matplotlib plot;
//! InteractiveBox create → first command echoed. The image's base is built once, outside
//! the timed parts. Prints one JSON object and a table. `BOXLITE_BENCH_BOOTS` sets the
//! number of boxes (3).

use std::time::{Duration, Instant};

use boxlite::{BoxliteOptions, BoxliteRuntime, CodeBox, InteractiveBox, NetworkMode, RootfsSpec};
use boxlite_tests::bench::{ms, report, Series};
use boxlite_tests::{agent_binary, cli_bin_dir, layout_box_options, python_layout, scratch_root};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var(boxlite::SHIM_ENV, cli_bin_dir().join("boxlite-shim"));
    std::env::set_var(boxlite::guest::AGENT_ENV, agent_binary());
    let boxes: usize = std::env::var("BOXLITE_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let home = tempfile::tempdir_in(scratch_root()).unwrap();
    let rt = BoxliteRuntime::new(BoxliteOptions {
        home_dir: home.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let mut options = CodeBox::default_options();
    options.rootfs = RootfsSpec::Layout {
        path: python_layout().to_path_buf(),
        tag: Some("python".into()),
    };
    options.network = NetworkMode::None;

    let t = Instant::now();
    let warmup = CodeBox::with_options(&rt, options.clone()).await.unwrap();
    let mut base = Series::new("codebox_first_box_incl_base_build", "ms");
    base.values.push(ms(t.elapsed()));
    warmup.remove().await.unwrap();

    let mut first = Series::new("codebox_create_to_1plus1", "ms");
    let mut second = Series::new("codebox_second_run", "ms");
    let mut plot = Series::new("codebox_matplotlib_plot", "ms");
    for _ in 0..boxes {
        let t = Instant::now();
        let code = CodeBox::with_options(&rt, options.clone()).await.unwrap();
        assert_eq!(code.run("1+1").await.unwrap().text(), Some("2"));
        first.values.push(ms(t.elapsed()));
        let t = Instant::now();
        assert_eq!(code.run("2+2").await.unwrap().text(), Some("4"));
        second.values.push(ms(t.elapsed()));
        let t = Instant::now();
        let drawn = code
            .run("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nNone")
            .await
            .unwrap();
        assert_eq!(drawn.display.len(), 1);
        plot.values.push(ms(t.elapsed()));
        code.remove().await.unwrap();
    }

    let mut shell = Series::new("interactivebox_create_to_echo", "ms");
    for _ in 0..boxes {
        let t = Instant::now();
        let mut options = layout_box_options("busybox");
        options.detach = false;
        options.auto_remove = true;
        let mut interactive = InteractiveBox::new(&rt, options).await.unwrap();
        interactive
            .write_str("echo ready-$((6*7))\n")
            .await
            .unwrap();
        interactive
            .read_until("ready-42", Duration::from_secs(60))
            .await
            .unwrap();
        shell.values.push(ms(t.elapsed()));
        interactive.remove().await.unwrap();
    }
    let image_mib = python_layout_mib();
    report(
        &format!("\"engine\":\"qemu\",\"boxes\":{boxes},\"python_layout_mib\":{image_mib:.0}"),
        &[&base, &first, &second, &plot, &shell],
    );
}

/// The python image layout's size on disk (its compressed layer, mostly).
fn python_layout_mib() -> f64 {
    fn size(path: &std::path::Path) -> u64 {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| size(&e.path()))
                .sum(),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    size(python_layout()) as f64 / (1 << 20) as f64
}
