//! napi-rs's linker setup, and the shim and static agent this addon carries (see the
//! `boxlite-sdk-embed` crate), so an installed package needs nothing from the checkout.

fn main() {
    napi_build::setup();
    boxlite_sdk_embed::build_programs();
}
