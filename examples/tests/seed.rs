//! The seed's examples: their text here is the seed's, and the one that can run on this
//! machine runs, as a user would run it, against the local test registry.

use std::process::Command;

use boxlite_tests::{agent_binary, cli_bin_dir, oci_layout, TestHome, TestRegistry};

/// The seeds, where this checkout has them beside it (CI and sessions do).
fn seed_text() -> Option<String> {
    let path = boxlite_tests::workspace_root().join("../shared/seeds/rust-sdk.txt");
    std::fs::read_to_string(path).ok()
}

#[test]
fn the_examples_are_the_seeds_text() {
    let examples = boxlite_tests::workspace_root().join("examples");
    let mut ours = std::fs::read_to_string(examples.join("src/lib.rs")).unwrap();
    for file in [
        "quickstart",
        "complete",
        "runtime_fragment",
        "options_fragment",
        "litebox_fragment",
    ] {
        ours.push_str(&std::fs::read_to_string(examples.join(format!("seed/{file}.rs"))).unwrap());
    }
    let Some(seed) = seed_text() else {
        eprintln!("no ../shared/seeds here: only the copies in examples/seed are checked");
        return;
    };
    let blocks: Vec<&str> = seed
        .split("```rust theme={null}\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    // Every block that is code to run (not a type's definition) is in the crate, unchanged.
    let code: Vec<&&str> = blocks
        .iter()
        .filter(|b| !b.starts_with("pub struct") && !b.starts_with("pub enum"))
        .collect();
    assert_eq!(
        code.len(),
        5,
        "the seed's examples changed: update examples/"
    );
    for block in code {
        assert!(ours.contains(*block), "not in examples/:\n{block}");
    }
}

#[test]
fn the_quickstart_runs_as_written() {
    let registry = TestRegistry::start();
    // `BoxOptions::default()` names alpine:latest; the test registry serves busybox as it.
    registry.push_as(oci_layout(), "busybox", "alpine:latest");
    let home = TestHome::new();
    let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .env("BOXLITE_HOME", home.path())
        .env("BOXLITE_IMAGE_REGISTRIES", registry.host())
        .env("BOXLITE_SHIM", cli_bin_dir().join("boxlite-shim"))
        .env("BOXLITE_AGENT", agent_binary())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "Exit code: 0\n");
    // The box it made was removed when it stopped (auto_remove, the default).
    let rt = boxlite::BoxliteRuntime::new(boxlite::BoxliteOptions {
        home_dir: home.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    let boxes = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(rt.list_info())
        .unwrap();
    assert!(boxes.is_empty(), "{boxes:?}");
}
