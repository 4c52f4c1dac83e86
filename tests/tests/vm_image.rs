//! Boxes booted from OCI images: a layout built with umoci is imported into the blob store,
//! turned into an ext4 base, and a VM boots from a qcow2 disk over that base. The image has a
//! whiteout, an opaque directory, a hardlink and a symlink across three layers.

use std::collections::HashSet;
use std::time::Duration;

use boxlite::images::{ImageRunConfig, ImageStore, PullOptions};
use boxlite_shim::agent_client::ExecOptions;
use boxlite_shim::engine::qemu::QemuEngine;
use boxlite_shim::vm::Vm;
use boxlite_tests::{oci_layout, TestBox, TestHome, TestRegistry, READY_TIMEOUT};

fn blob_files(store_dir: &std::path::Path) -> Vec<(String, std::time::SystemTime)> {
    let dir = store_dir.join("blobs/sha256");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// `BOXLITE_TMPDIR`: image root filesystems are unpacked there while a base is built, and
/// nothing is left there afterwards.
#[test]
fn bases_are_unpacked_in_the_scratch_directory() {
    let home = TestHome::new();
    let not_a_dir = home.path().join("not-a-dir");
    std::fs::write(&not_a_dir, b"").unwrap();
    let store = ImageStore::open(home.path()).with_scratch(Some(not_a_dir));
    let image = store.import_layout(oci_layout(), Some("busybox")).unwrap();
    let err = store.ensure_base(&image).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");

    let scratch = tempfile::tempdir_in(home.path()).unwrap();
    let store = ImageStore::open(home.path()).with_scratch(Some(scratch.path().to_path_buf()));
    assert!(store.ensure_base(&image).unwrap().is_file());
    assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layered_image_boots_with_its_files_and_config() {
    let home = TestHome::new();
    let images = home.path().join("images");
    let store = ImageStore::open(home.path());

    let busybox = store.import_layout(oci_layout(), Some("busybox")).unwrap();
    let layered = store.import_layout(oci_layout(), Some("opaque")).unwrap();
    assert_eq!(layered.layers.len(), 3);
    assert_eq!(
        layered.layers[0], busybox.layers[0],
        "the images share their first layer"
    );
    // Every blob both images need is stored once: manifests, configs, and the shared layer.
    let stored = blob_files(&images);
    let distinct: HashSet<&String> = busybox.layers.iter().chain(&layered.layers).collect();
    assert_eq!(distinct.len(), 3);
    assert_eq!(
        stored.len(),
        3 /* layers */ + 2 /* manifests */ + 2 /* configs */
    );
    // Importing again writes nothing.
    store.import_layout(oci_layout(), Some("opaque")).unwrap();
    assert_eq!(blob_files(&images), stored);

    assert_eq!(layered.run.working_dir, "/srv");
    assert!(layered.run.env.contains(&"GREETING=from-image".to_string()));
    assert_eq!(layered.run.cmd, ["sh"]);

    let base = store.ensure_base(&layered).unwrap();
    assert_eq!(
        store.ensure_base(&layered).unwrap(),
        base,
        "the base is built once"
    );
    let out = run_in_box(
        &base,
        &layered.run,
        "cat /etc/marker; \
         test ! -e /etc/removed && echo whiteout-ok; \
         [ \"$(stat -c %i /etc/marker)\" = \"$(stat -c %i /etc/hard)\" ] && echo hardlink-ok; \
         readlink /etc/link; echo $GREETING; pwd; ls /srv",
    )
    .await;
    assert_eq!(
        out,
        "marker\nwhiteout-ok\nhardlink-ok\nmarker\nfrom-image\n/srv\nfresh\n"
    );
}

/// Boots a box over `base` and runs `script` with the image's environment and working
/// directory; returns its stdout (and fails on a non-zero exit).
async fn run_in_box(base: &std::path::Path, run: &ImageRunConfig, script: &str) -> String {
    let test_box = TestBox::with_base(base);
    let disk = test_box.dir.path().join("disk.qcow2");
    assert!(
        disk.metadata().unwrap().len() <= 1 << 20,
        "a new box disk must stay under 1 MiB"
    );
    let vm = Vm::boot(&QemuEngine::default(), &test_box.spec, READY_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("boot failed: {e}"));
    let mut options = ExecOptions::new(["sh", "-c", script]);
    options.env = run.env.clone();
    options.working_dir = run.working_dir.clone();
    vm.agent().exec("check", &options).await.unwrap();
    let output = vm.agent().output("check").await.unwrap();
    assert_eq!(
        output.status.code,
        0,
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    vm.shutdown(Duration::from_secs(30)).await.unwrap();
    String::from_utf8(output.stdout).unwrap()
}

/// Both test images, pulled from a real registry, boot with exactly their files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_pulled_from_a_registry_boot_with_their_files() {
    let registry = TestRegistry::start();
    registry.push(oci_layout(), "busybox", "test/img");
    registry.push(oci_layout(), "opaque", "test/img");
    let home = TestHome::new();
    let store = ImageStore::open(home.path());
    let options = PullOptions::default();

    let busybox = store
        .pull(&format!("{}/test/img:busybox", registry.host()), &options)
        .await
        .unwrap()
        .image;
    let out = run_in_box(
        &store.ensure_base(&busybox).unwrap(),
        &busybox.run,
        "cat /etc/marker /etc/removed; ls /srv | wc -l; test ! -e /etc/hard && echo no-hardlink-yet",
    )
    .await;
    assert_eq!(out, "marker\ngone in the next layer\n0\nno-hardlink-yet\n");

    let opaque = store
        .pull(&format!("{}/test/img:opaque", registry.host()), &options)
        .await
        .unwrap()
        .image;
    let out = run_in_box(
        &store.ensure_base(&opaque).unwrap(),
        &opaque.run,
        "ls /srv; test ! -e /etc/removed && readlink /etc/link",
    )
    .await;
    assert_eq!(out, "fresh\nmarker\n");
}

#[test]
fn an_unknown_tag_names_the_tags_there_are() {
    let home = TestHome::new();
    let store = ImageStore::open(home.path());
    let err = store
        .import_layout(oci_layout(), Some("nope"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"nope\"") && err.contains("busybox") && err.contains("layered"),
        "{err}"
    );
    let err = store
        .import_layout(&home.path().join("missing"), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("index.json"), "{err}");
}

#[test]
fn an_index_in_a_layout_resolves_to_linux_amd64() {
    let home = TestHome::new();
    let store = ImageStore::open(home.path());
    let multi = store
        .import_layout(oci_layout(), Some("multiarch"))
        .unwrap();
    let opaque = store.import_layout(oci_layout(), Some("opaque")).unwrap();
    assert_eq!(multi.manifest_digest, opaque.manifest_digest);
    assert_eq!(multi.layers.len(), 3);
}
