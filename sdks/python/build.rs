//! Builds the shim and the static guest agent this extension carries (see the
//! `boxlite-sdk-embed` crate), so an installed wheel needs nothing from the checkout it was
//! built in.

fn main() {
    boxlite_sdk_embed::build_programs();
}
