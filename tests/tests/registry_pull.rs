//! Pulls from a real registry (Debian's docker-registry on 127.0.0.1) holding images built
//! locally with umoci and pushed with skopeo.

use std::path::Path;
use std::process::Command;

use boxlite::images::{ImageError, ImageStore, ProgressFn, PullLimits, PullOptions, PullProgress};
use boxlite_tests::{free_port, oci_layout, TestHome, TestRegistry};

fn blob_count(home: &Path) -> usize {
    std::fs::read_dir(home.join("images/blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Changes, in the registry's storage, the bytes of the busybox image's first layer; its
/// digest.
fn damage_first_layer(registry: &TestRegistry, home: &Path, damage: fn(&mut Vec<u8>)) -> String {
    let layout_store = ImageStore::open(&home.join("layout"));
    let image = layout_store
        .import_layout(oci_layout(), Some("busybox"))
        .unwrap();
    let layer = image.layers[0].clone();
    let file = registry.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    damage(&mut bytes);
    std::fs::write(&file, bytes).unwrap();
    layer
}

fn nothing_partial(home: &Path) {
    let tmp = home.join("images/tmp");
    let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "partial files left in {}", tmp.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_once_shares_layers_lists_and_removes() {
    let registry = TestRegistry::start();
    registry.push(oci_layout(), "busybox", "test/img");
    registry.push(oci_layout(), "layered", "test/img");
    let home = TestHome::new();
    let store = ImageStore::open(home.path());
    let layered_ref = format!("{}/test/img:layered", registry.host());

    let received = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let seen = received.clone();
    let with_progress = PullOptions {
        progress: Some(ProgressFn(std::sync::Arc::new(move |p: &PullProgress| {
            assert!(p.received <= p.total);
            seen.lock().unwrap().insert(p.digest.clone(), p.received);
        }))),
        ..Default::default()
    };
    let first = store.pull(&layered_ref, &with_progress).await.unwrap();
    let progress_total: u64 = received.lock().unwrap().values().sum();
    assert_eq!(
        progress_total, first.bytes_downloaded,
        "progress saw every byte"
    );
    assert_eq!(first.blobs_downloaded, 3, "config and two layers");
    assert!(first.bytes_downloaded > 500_000, "busybox is in there");
    assert_eq!(first.image.layers.len(), 2);
    assert_eq!(first.image.run.working_dir, "/srv");

    let again = store
        .pull(&layered_ref, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (again.blobs_downloaded, again.bytes_downloaded),
        (0, 0),
        "a second pull downloads nothing"
    );
    assert_eq!(again.image, first.image);

    // Unqualified name: the first registry is down, the second has it.
    let options = PullOptions {
        registries: vec![format!("127.0.0.1:{}", free_port()), registry.host()],
        ..Default::default()
    };
    let busybox = store.pull("test/img:busybox", &options).await.unwrap();
    assert_eq!(
        busybox.resolved,
        format!("{}/test/img:busybox", registry.host())
    );
    assert_eq!(
        busybox.blobs_downloaded, 1,
        "only its config: the layer is shared"
    );
    assert_eq!(busybox.image.layers[0], first.image.layers[0]);

    let listed: Vec<String> = store
        .list_images()
        .unwrap()
        .into_iter()
        .map(|i| i.reference)
        .collect();
    assert_eq!(
        listed,
        [layered_ref.clone(), "test/img:busybox".to_string()],
        "sorted by reference"
    );

    let before = blob_count(home.path());
    store.remove_image(&layered_ref).unwrap();
    // Its manifest, its config and its own layer go; the shared layer stays for busybox.
    assert_eq!(blob_count(home.path()), before - 3);
    assert!(store.blobs().contains(&first.image.layers[0]));
    assert!(!store.blobs().contains(&first.image.layers[1]));
    assert!(matches!(
        store.image(&layered_ref),
        Err(ImageError::UnknownImage(_))
    ));
    store.ensure_base(&busybox.image).unwrap();
    nothing_partial(home.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_references_fail_clearly_and_leave_nothing() {
    let registry = TestRegistry::start();
    registry.push(oci_layout(), "busybox", "test/img");
    let home = TestHome::new();
    let store = ImageStore::open(home.path());
    let options = PullOptions::default();

    let unknown_image = format!("{}/test/nope:latest", registry.host());
    let err = store.pull(&unknown_image, &options).await.unwrap_err();
    assert!(matches!(err, ImageError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&unknown_image), "{err}");

    let unknown_tag = format!("{}/test/img:nope", registry.host());
    let err = store.pull(&unknown_tag, &options).await.unwrap_err();
    assert!(err.to_string().contains(&unknown_tag), "{err}");

    let unreachable = format!("127.0.0.1:{}/test/img:busybox", free_port());
    let err = store.pull(&unreachable, &options).await.unwrap_err();
    assert!(err.to_string().contains(&unreachable), "{err}");

    let err = store.pull("Not A Reference!", &options).await.unwrap_err();
    assert!(matches!(err, ImageError::BadReference { .. }), "{err}");
    assert_eq!(blob_count(home.path()), 0);
    assert!(store.list_images().unwrap().is_empty());

    // A layer whose bytes do not match its digest is refused, and never lands in the store.
    let layer = damage_first_layer(&registry, home.path(), |bytes| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
    });
    let layer = &layer;
    let reference = format!("{}/test/img:busybox", registry.host());
    let err = store.pull(&reference, &options).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&reference) || message.contains(layer.as_str()),
        "{message}"
    );
    assert!(!store.blobs().contains(layer));
    assert!(store.list_images().unwrap().is_empty());
    nothing_partial(home.path());
}

#[test]
fn two_processes_pulling_at_once_write_each_blob_once() {
    let registry = TestRegistry::start();
    registry.push(oci_layout(), "layered", "test/img");
    let home = TestHome::new();
    let reference = format!("{}/test/img:layered", registry.host());
    let puller = env!("CARGO_BIN_EXE_pull_image");
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(puller)
                .arg(home.path())
                .arg(&reference)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut downloaded = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        downloaded += String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse::<usize>()
            .unwrap();
    }
    assert_eq!(
        downloaded, 3,
        "config and two layers, each downloaded by one of the two"
    );
    assert_eq!(blob_count(home.path()), 4, "manifest, config, two layers");
    nothing_partial(home.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_arch_index_resolves_to_linux_amd64() {
    let registry = TestRegistry::start();
    registry.push(oci_layout(), "multiarch", "test/img");
    let home = TestHome::new();
    let store = ImageStore::open(home.path());
    let pulled = store
        .pull(
            &format!("{}/test/img:multiarch", registry.host()),
            &PullOptions::default(),
        )
        .await
        .unwrap();
    let expected = ImageStore::open(&home.path().join("layout"))
        .import_layout(oci_layout(), Some("opaque"))
        .unwrap();
    // skopeo re-serialises manifests and gzips the uncompressed third layer on the way in,
    // so compare what can be compared: three layers (the arm64 entry has one), the first two
    // the same blobs.
    assert_eq!(pulled.image.layers.len(), 3);
    assert_eq!(pulled.image.layers[..2], expected.layers[..2]);
    assert_eq!(pulled.image.run, expected.run);
    // The index is kept with the image; nothing of the arm64 entry was fetched.
    assert_eq!(pulled.image.blobs.len(), 1 + expected.blobs.len());
    assert_eq!(pulled.blobs_downloaded, 4, "config and three layers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_cannot_make_a_pull_hold_or_store_more_than_its_limits() {
    let registry = TestRegistry::start();
    registry.push(oci_layout(), "busybox", "test/img");
    let home = TestHome::new();
    let store = ImageStore::open(home.path());
    let reference = format!("{}/test/img:busybox", registry.host());

    // Limits below what the image needs: refused, naming the limit to raise.
    for (limits, field) in [
        (
            PullLimits {
                max_manifest_bytes: 64,
                ..Default::default()
            },
            "max_manifest_bytes",
        ),
        (
            PullLimits {
                max_blob_bytes: 64,
                ..Default::default()
            },
            "max_blob_bytes",
        ),
    ] {
        let options = PullOptions {
            limits,
            ..Default::default()
        };
        let err = store.pull(&reference, &options).await.unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains(field), "{err}");
    }
    assert!(store.list_images().unwrap().is_empty());

    // A blob served longer than its descriptor says is cut off there, and never stored.
    let layer = damage_first_layer(&registry, home.path(), |bytes| {
        bytes.extend_from_slice(&[0u8; 4096])
    });
    let layer = &layer;
    let err = store
        .pull(&reference, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    assert!(!store.blobs().contains(layer));
    assert!(store.list_images().unwrap().is_empty());
    nothing_partial(home.path());
}
