//! Box type benchmarks on the images of `scripts/build-images.sh`: CodeBox create → the
//! result of `1+1` (box boot and interpreter start), a second run, a matplotlib plot;
//! BrowserBox create → CDP ready; ComputerBox create → desktop ready, a screenshot;
//! InteractiveBox create → first command echoed. Each image's base is built once, outside
//! the timed parts (the first box of each). Prints one JSON object and a table.
//! `BOXLITE_BENCH_BOOTS` sets the number of boxes (3).

use std::time::{Duration, Instant};

use boxlite::{
    BoxliteOptions, BoxliteRuntime, BrowserBox, CodeBox, ComputerBox, InteractiveBox, NetworkMode,
    RootfsSpec,
};
use boxlite_tests::bench::{ms, report, Series};
use boxlite_tests::{
    agent_binary, cli_bin_dir, image_layout, layout_box_options, python_layout, scratch_root,
};

fn layout(name: &str) -> RootfsSpec {
    RootfsSpec::Layout {
        path: image_layout(name).to_path_buf(),
        tag: Some(name.into()),
    }
}

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

    let mut browser_options = BrowserBox::default_options();
    browser_options.rootfs = layout("browser");
    BrowserBox::with_options(&rt, browser_options.clone())
        .await
        .unwrap()
        .remove()
        .await
        .unwrap();
    let mut browser = Series::new("browserbox_create_to_cdp_ready", "ms");
    for _ in 0..boxes {
        let t = Instant::now();
        let b = BrowserBox::with_options(&rt, browser_options.clone())
            .await
            .unwrap();
        browser.values.push(ms(t.elapsed()));
        b.remove().await.unwrap();
    }

    let mut desktop_options = ComputerBox::default_options();
    desktop_options.rootfs = layout("desktop");
    desktop_options.network = NetworkMode::None;
    let screen = (1024, 768);
    ComputerBox::with_options(&rt, desktop_options.clone(), screen)
        .await
        .unwrap()
        .remove()
        .await
        .unwrap();
    let mut desktop = Series::new("computerbox_create_to_ready", "ms");
    let mut screenshot = Series::new("computerbox_screenshot", "ms");
    for _ in 0..boxes {
        let t = Instant::now();
        let c = ComputerBox::with_options(&rt, desktop_options.clone(), screen)
            .await
            .unwrap();
        desktop.values.push(ms(t.elapsed()));
        for _ in 0..3 {
            let t = Instant::now();
            assert_eq!(c.screenshot().await.unwrap().width, 1024);
            screenshot.values.push(ms(t.elapsed()));
        }
        c.remove().await.unwrap();
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
        &[
            &base,
            &first,
            &second,
            &plot,
            &browser,
            &desktop,
            &screenshot,
            &shell,
        ],
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
