//! The examples of the Rust SDK reference (`rust-sdk.txt` of the seeds), unchanged, so that
//! CI proves they compile against this crate. The programs are the binaries `quickstart` and
//! `complete` (each `include!`s its file from `seed/`); the fragments, which are not programs,
//! stand below inside functions, verbatim, with only the scaffolding a fragment needs
//! (`PathBuf` for the first, a `runtime` for the third). `tests/seed.rs` checks that the text
//! here is the text of `seed/`, and runs the examples that can run here.

#![allow(unused, clippy::all)]

use boxlite::runtime::BoxliteRuntime;
use std::path::PathBuf;

/// rust-sdk.txt, "BoxliteRuntime".
#[rustfmt::skip]
pub async fn runtime_fragment() -> Result<(), Box<dyn std::error::Error>> {
use boxlite::runtime::{BoxliteRuntime, BoxliteOptions, BoxOptions};

// Create with default options
let runtime = BoxliteRuntime::with_defaults()?;

// Create with custom options
let options = BoxliteOptions {
    home_dir: PathBuf::from("/custom/boxlite"),
    image_registries: vec!["ghcr.io/myorg".to_string()],
};
let runtime = BoxliteRuntime::new(options)?;

// Use global default runtime
let runtime = BoxliteRuntime::default_runtime();
Ok(())
}

/// rust-sdk.txt, "BoxliteOptions", "Example".
#[rustfmt::skip]
pub fn options_fragment() {
use boxlite::runtime::BoxliteOptions;
use std::path::PathBuf;

let options = BoxliteOptions {
    home_dir: PathBuf::from("/var/lib/boxlite"),
    image_registries: vec![
        "ghcr.io/myorg".to_string(),
        "docker.io".to_string(),
    ],
};
// "alpine" → tries ghcr.io/myorg/alpine, then docker.io/alpine
}

/// rust-sdk.txt, "LiteBox", "Example".
#[rustfmt::skip]
pub async fn litebox_fragment(runtime: &BoxliteRuntime) -> Result<(), Box<dyn std::error::Error>> {
use boxlite::runtime::BoxOptions;
let litebox = runtime.create(BoxOptions::default(), None).await?;

// Start explicitly (optional, run does this automatically)
litebox.start().await?;

// Check metrics
let metrics = litebox.metrics().await?;
println!("CPU: {:?}%", metrics.cpu_percent());

// Stop when done
litebox.stop().await?;
Ok(())
}
