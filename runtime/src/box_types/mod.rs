//! Box types built on [`crate::LiteBox`], once, in Rust, so that every SDK wraps the same
//! behaviour: [`crate::SimpleBox`] (commands to completion), [`CodeBox`] (a persistent
//! Python interpreter with rich results), [`BrowserBox`] (headless Chromium over CDP),
//! [`ComputerBox`] (a desktop operated with 14 methods) and [`InteractiveBox`] (a shell on
//! a terminal).
//! Each is removed when dropped.

pub mod browser_box;
pub mod code_box;
pub mod computer_box;
pub mod interactive_box;

pub use browser_box::BrowserBox;
pub use code_box::{CodeBox, CodeError, CodeResult, MimeBundle};
pub use computer_box::{ComputerBox, Screenshot, ScrollDirection};
pub use interactive_box::InteractiveBox;

/// A box type's default image: the reference in `env` when set, else the OCI layout that
/// `scripts/build-images.sh NAME` keeps at `<cache>/images/NAME` (`<cache>`:
/// [`crate::guest::cache_dir`]).
pub fn local_image(env: &str, name: &str) -> String {
    if let Some(image) = std::env::var(env).ok().filter(|i| !i.is_empty()) {
        return image;
    }
    let layout = crate::guest::cache_dir().join("images").join(name);
    format!("oci:{}:{name}", layout.display())
}
