//! boxlite: an embeddable micro-VM sandbox runtime.
//!
//! This crate grows into the public API (`BoxliteRuntime`, `LiteBox`, ...). Today it holds
//! what the runtime prepares for every VM: the guest assets (box kernel and the initramfs
//! built from the guest agent).

pub mod guest;
pub mod images;
