//! Box types built on [`crate::LiteBox`], once, in Rust, so that every SDK wraps the same
//! behaviour: [`crate::SimpleBox`] (commands to completion), [`CodeBox`] (a persistent
//! Python interpreter with rich results) and [`InteractiveBox`] (a shell on a terminal).
//! Each is removed when dropped.

pub mod code_box;
pub mod interactive_box;

pub use code_box::{CodeBox, CodeError, CodeResult, MimeBundle};
pub use interactive_box::InteractiveBox;
