//! `boxlite_copy::unpack_with` on arbitrary bytes as a tar stream: what the host receives from
//! a box on `copy_out` (a hostile guest writes it) and what the guest's copy helper receives on
//! `copy_in`, and, with the image-layer preset, what a registry serves. Nothing may ever be
//! written outside the destination, whatever the stream (see `boxlite_fuzz::sandbox`).
//!
//! Input: one byte choosing the policy and the destination, then the tar stream.

#![no_main]

use boxlite_copy::{unpack_with, UnpackOptions};
use boxlite_fuzz::sandbox::{Dest, Sandbox};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((mode, stream)) = boxlite_fuzz::selector(data, 5) else {
        return;
    };
    // The name the corpus's archives give their top entry; copy_out insists on the one it
    // asked for.
    let expecting = |mut options: UnpackOptions| {
        options.expected_name = Some("a".into());
        options
    };
    let (options, dest) = match mode {
        // `boxlite cp` into a new path, and into an existing directory.
        0 => (UnpackOptions::copy(), Dest::Absent),
        1 => (UnpackOptions::copy(), Dest::ImageRoot),
        // `LiteBox::copy_out`: the top entry must have the name asked for.
        2 => (expecting(UnpackOptions::copy()), Dest::Absent),
        3 => (expecting(UnpackOptions::copy()), Dest::ImageRoot),
        // An image layer on a root holding a lower layer.
        _ => (UnpackOptions::oci_layer(), Dest::ImageRoot),
    };
    let sandbox = Sandbox::new(dest);
    // Refusals are expected; the error text is built as a caller would print it.
    if let Err(err) = unpack_with(stream, &sandbox.dest, &options) {
        let _ = err.to_string();
    }
    sandbox.check();
});
