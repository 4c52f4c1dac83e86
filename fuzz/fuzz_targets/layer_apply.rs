//! An image layer blob as a registry serves it, through what the runtime does with it:
//! `images::unpack::decompress` (gzip, zstd or plain tar, by its first bytes) and then
//! `images::unpack::apply_layer` on an image root that already holds a lower layer. Nothing
//! may be written outside the root (see `boxlite_fuzz::sandbox`).
//!
//! Input: the blob itself.

#![no_main]

use boxlite::images::unpack::{apply_layer, decompress, UnpackError};
use boxlite_fuzz::sandbox::{Dest, Sandbox};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sandbox = Sandbox::new(Dest::ImageRoot);
    let applied = decompress(data)
        .map_err(UnpackError::from)
        .and_then(|layer| apply_layer(&sandbox.dest, layer));
    if let Err(err) = applied {
        let _ = err.to_string();
    }
    sandbox.check();
});
