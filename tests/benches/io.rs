//! Data in and out of a box: volume write/read throughput (virtio-fs, `dd` in the guest,
//! timed around the exec) and copy_into/copy_out throughput of one large file, checked by
//! sha256, with the host process's peak RSS growth during the copies (the copy streams: it
//! must stay small whatever the file size). Prints one JSON object and a table.
//! `BOXLITE_BENCH_COPY_MIB` sets the copied file's size (1024), `BOXLITE_BENCH_VOLUME_MIB` the
//! volume file's (256), `BOXLITE_BENCH_ROUNDS` the number of rounds (3).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use boxlite::{BoxliteOptions, BoxliteRuntime, LiteBox, VolumeSpec};
use boxlite_tests::bench::{report, Series};
use boxlite_tests::{agent_binary, cli_bin_dir, layout_box_options, scratch_root, sh};
use sha2::{Digest, Sha256};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

async fn run(b: &LiteBox, script: &str) -> String {
    let (code, out) = sh(b, script).await;
    assert_eq!(code, 0, "{script}: {out}");
    out
}

fn sha256_file(path: &Path) -> String {
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    std::env::set_var(boxlite::SHIM_ENV, cli_bin_dir().join("boxlite-shim"));
    std::env::set_var(boxlite::guest::AGENT_ENV, agent_binary());
    let copy_mib = env_u64("BOXLITE_BENCH_COPY_MIB", 1024);
    let volume_mib = env_u64("BOXLITE_BENCH_VOLUME_MIB", 256);
    let rounds = env_u64("BOXLITE_BENCH_ROUNDS", 3);
    let home = tempfile::tempdir_in(scratch_root()).unwrap();
    let shared = tempfile::tempdir_in(scratch_root()).unwrap();
    let work = tempfile::tempdir_in(scratch_root()).unwrap();
    let rt = BoxliteRuntime::new(BoxliteOptions {
        home_dir: home.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let mut options = layout_box_options("busybox");
    options.memory_mib = Some(512);
    options.volumes = vec![VolumeSpec {
        host_path: shared.path().display().to_string(),
        guest_path: "/vol".into(),
        read_only: false,
    }];
    let b = rt.create(options, None).await.unwrap();
    b.start().await.unwrap();

    let mut vol_write = Series::new("volume_write", "MB/s");
    let mut vol_read = Series::new("volume_read", "MB/s");
    for _ in 0..rounds {
        let t = Instant::now();
        run(
            &b,
            &format!("dd if=/dev/zero of=/vol/f bs=1M count={volume_mib} conv=fsync 2>/dev/null"),
        )
        .await;
        vol_write
            .values
            .push(volume_mib as f64 * 1.048576 / t.elapsed().as_secs_f64());
        // Dropping the guest's page cache makes the read go through virtio-fs.
        run(&b, "echo 3 > /proc/sys/vm/drop_caches").await;
        let t = Instant::now();
        run(&b, "dd if=/vol/f of=/dev/null bs=1M 2>/dev/null").await;
        vol_read
            .values
            .push(volume_mib as f64 * 1.048576 / t.elapsed().as_secs_f64());
        std::fs::remove_file(shared.path().join("f")).unwrap();
    }

    // One file of copy_mib pseudo-random-ish bytes, in and out, checked by sha256.
    let big = work.path().join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for i in 0..copy_mib {
            for (j, byte) in block.iter_mut().enumerate() {
                *byte = (i as usize * 131 + j * 7 + j / 251) as u8;
            }
            f.write_all(&block).unwrap();
        }
    }
    let expected = sha256_file(&big);
    let mut copy_in = Series::new("copy_into", "MB/s");
    let mut copy_out = Series::new("copy_out", "MB/s");
    let mut rss_growth = Series::new("host_peak_rss_growth", "MiB");
    let copy_rounds = if copy_mib >= 512 { 1 } else { rounds };
    for _ in 0..copy_rounds {
        let before = peak_rss_mib();
        let t = Instant::now();
        b.copy_into(&big, "/big.bin", boxlite::CopyOptions::default())
            .await
            .unwrap();
        copy_in
            .values
            .push(copy_mib as f64 * 1.048576 / t.elapsed().as_secs_f64());
        let back = work.path().join("back.bin");
        let t = Instant::now();
        b.copy_out("/big.bin", &back, boxlite::CopyOptions::default())
            .await
            .unwrap();
        copy_out
            .values
            .push(copy_mib as f64 * 1.048576 / t.elapsed().as_secs_f64());
        rss_growth.values.push(peak_rss_mib() - before);
        assert_eq!(
            sha256_file(&back),
            expected,
            "copy_out returned other bytes"
        );
        let in_box = run(&b, "sha256sum /big.bin").await;
        assert!(in_box.starts_with(&expected), "copy_into wrote other bytes");
        std::fs::remove_file(&back).unwrap();
        run(&b, "rm /big.bin").await;
    }
    rt.remove(b.id(), true).await.unwrap();
    report(
        &format!("\"engine\":\"qemu\",\"copy_mib\":{copy_mib},\"volume_mib\":{volume_mib}"),
        &[&vol_write, &vol_read, &copy_in, &copy_out, &rss_growth],
    );
}
