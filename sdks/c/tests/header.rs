//! include/boxlite.h is what cbindgen makes of src/ now: a change to the API that forgot the
//! header fails here. `BOXLITE_UPDATE_HEADER=1 cargo test --test header` writes it anew.

#[test]
fn the_checked_in_header_is_a_fresh_generation() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let config =
        cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")).expect("cbindgen.toml");
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen reads src/")
        .write(&mut fresh);
    let fresh = String::from_utf8(fresh).expect("UTF-8");
    let path = format!("{dir}/include/boxlite.h");
    if std::env::var_os("BOXLITE_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("writing the header");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "{path} differs from a fresh generation: run `BOXLITE_UPDATE_HEADER=1 cargo test --test \
         header` in sdks/c and commit the header"
    );
}
