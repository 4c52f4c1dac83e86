//! Image benchmarks: OCI layout import, registry pull (cold and warm) from a real local
//! registry, ext4 base build, and box disk creation (time and bytes on disk).
//! Prints one JSON object and a table.

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use boxlite::images::{create_box_disk, ImageStore, PullOptions};
use boxlite_tests::bench::{ms, report, Series};
use boxlite_tests::{oci_layout, scratch_root, TestRegistry};

const ROUNDS: usize = 5;
const DISKS: usize = 50;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let layout = oci_layout();
    let registry = TestRegistry::start();
    registry.push(layout, "opaque", "bench/img");
    let reference = format!("{}/bench/img:opaque", registry.host());

    let mut import = Series::new("layout_import_cold", "ms");
    let mut pull_cold = Series::new("registry_pull_cold", "ms");
    let mut pull_warm = Series::new("registry_pull_warm", "ms");
    let mut base = Series::new("ext4_base_build", "ms");
    let mut disk = Series::new("box_disk_create", "ms");
    let mut disk_bytes = Series::new("box_disk_allocated", "KiB");
    let mut image_bytes = 0;

    for round in 0..ROUNDS {
        let home = tempfile::tempdir_in(scratch_root()).unwrap();
        let store = ImageStore::open(home.path());
        let t = Instant::now();
        store.import_layout(layout, Some("opaque")).unwrap();
        import.values.push(ms(t.elapsed()));

        let home = tempfile::tempdir_in(scratch_root()).unwrap();
        let store = ImageStore::open(home.path());
        let t = Instant::now();
        let pulled = store
            .pull(&reference, &PullOptions::default())
            .await
            .unwrap();
        pull_cold.values.push(ms(t.elapsed()));
        image_bytes = pulled.bytes_downloaded;
        let t = Instant::now();
        store
            .pull(&reference, &PullOptions::default())
            .await
            .unwrap();
        pull_warm.values.push(ms(t.elapsed()));

        let t = Instant::now();
        let base_path = store.ensure_base(&pulled.image).unwrap();
        base.values.push(ms(t.elapsed()));

        if round == 0 {
            let disks = tempfile::tempdir_in(scratch_root()).unwrap();
            for i in 0..DISKS {
                let path = disks.path().join(format!("disk-{i}.qcow2"));
                let t = Instant::now();
                create_box_disk(&base_path, &path).unwrap();
                disk.values.push(ms(t.elapsed()));
                disk_bytes
                    .values
                    .push((path.metadata().unwrap().blocks() * 512) as f64 / 1024.0);
            }
        }
    }
    report(
        &format!("\"image_bytes\":{image_bytes},\"rounds\":{ROUNDS}"),
        &[&import, &pull_cold, &pull_warm, &base, &disk, &disk_bytes],
    );
}
