//! Building the programs an SDK carries: the shim (`boxlite-shim`, one process per box) and
//! the static guest agent (`boxlite-agent`, PID 1 of every box). They are built by the main
//! workspace, with its Cargo.lock, into its own target directory (`target/` at the top of the
//! checkout, shared with `scripts/setup.sh`, or `BOXLITE_EMBED_TARGET_DIR`); an SDK's own
//! cargo builds into its own target directory, so neither waits on the other's lock.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const AGENT_TARGET: &str = "x86_64-unknown-linux-gnu";

/// For an SDK's build script (its crate two levels below the checkout's top): builds the
/// shim and the static agent with the main workspace and copies them into OUT_DIR as
/// `boxlite-shim` and `boxlite-agent`, for `include_bytes!`. Prints the cargo directives that
/// rebuild the SDK when their sources change.
pub fn build_programs() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let repo = manifest
        .join("../..")
        .canonicalize()
        .expect("an SDK crate lives two levels below the checkout's top (sdks/NAME)");
    let target_dir = env::var_os("BOXLITE_EMBED_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    for watched in [
        "shim",
        "shim-api",
        "protocol",
        "agent",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", repo.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=BOXLITE_EMBED_TARGET_DIR");

    let shim = build(&repo, &target_dir, "boxlite-shim", None);
    let agent = build(&repo, &target_dir, "boxlite-agent", Some(AGENT_TARGET));
    for (built, name) in [(shim, "boxlite-shim"), (agent, "boxlite-agent")] {
        fs::copy(&built, out_dir.join(name)).unwrap_or_else(|e| {
            panic!(
                "copying {} into {}: {e}",
                built.display(),
                out_dir.display()
            )
        });
    }
}

/// `cargo build --release -p PACKAGE` in the main workspace; the agent for `target` with a
/// static C runtime, exactly as scripts/build-guest.sh builds it (same flags, same fingerprint,
/// so one build serves both).
fn build(repo: &Path, target_dir: &Path, package: &str, target: Option<&str>) -> PathBuf {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(repo)
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            package,
            "--target-dir",
        ])
        .arg(target_dir);
    // What the outer cargo tells its build scripts must not steer this build (profile, flags,
    // features, target); the jobserver (CARGO_MAKEFLAGS) and CARGO_HOME are kept.
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let outer = key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_MAKEFLAGS"
            || [
                "RUSTFLAGS",
                "RUSTC_WORKSPACE_WRAPPER",
                "TARGET",
                "HOST",
                "PROFILE",
                "OPT_LEVEL",
                "DEBUG",
                "NUM_JOBS",
                "OUT_DIR",
            ]
            .contains(&key.as_ref());
        if outer {
            command.env_remove(key.as_ref());
        }
    }
    let binary = match target {
        Some(target) => {
            command
                .args(["--target", target])
                .env("RUSTFLAGS", "-C target-feature=+crt-static");
            target_dir.join(target).join("release").join(package)
        }
        None => target_dir.join("release").join(package),
    };
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("running cargo to build {package}: {e}"));
    assert!(
        status.success(),
        "building {package} for the Python package failed ({status})"
    );
    binary
}
