//! `CBoxliteError` and `BoxliteErrorCode`: the core's error kinds with their numbers.

use std::ffi::{c_char, CString};

use boxlite_core::{BoxliteError, ErrorKind};

/// What a function returns: `Ok`, or the kind of its failure (the message is in the
/// `CBoxliteError` it filled).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxliteErrorCode {
    Ok = 0,
    /// A bug (a panic inside the library is reported as this, never unwound into C).
    Internal = 1,
    /// No box (or image) by that id or name.
    NotFound = 2,
    AlreadyExists = 3,
    /// The box is not in a state that allows the operation.
    InvalidState = 4,
    /// A NULL, malformed JSON or a bad option; the message names it. Do not retry.
    InvalidArgument = 5,
    Config = 6,
    Storage = 7,
    Image = 8,
    Network = 9,
    Execution = 10,
    Stopped = 11,
    Engine = 12,
    /// Not supported here or not yet. Do not retry.
    Unsupported = 13,
    Database = 14,
    Portal = 15,
    Rpc = 16,
}

impl From<ErrorKind> for BoxliteErrorCode {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Internal => Self::Internal,
            ErrorKind::NotFound => Self::NotFound,
            ErrorKind::AlreadyExists => Self::AlreadyExists,
            ErrorKind::InvalidState => Self::InvalidState,
            ErrorKind::InvalidArgument => Self::InvalidArgument,
            ErrorKind::Config => Self::Config,
            ErrorKind::Storage => Self::Storage,
            ErrorKind::Image => Self::Image,
            ErrorKind::Network => Self::Network,
            ErrorKind::Execution => Self::Execution,
            ErrorKind::Stopped => Self::Stopped,
            ErrorKind::Engine => Self::Engine,
            ErrorKind::Unsupported => Self::Unsupported,
            ErrorKind::Database => Self::Database,
            ErrorKind::Portal => Self::Portal,
            ErrorKind::Rpc => Self::Rpc,
        }
    }
}

/// An error: its code and a message saying what was wrong (NULL when there is none). Start
/// from `CBoxliteError error = {0};` and free the message with `boxlite_error_free`.
#[repr(C)]
pub struct CBoxliteError {
    pub code: BoxliteErrorCode,
    pub message: *mut c_char,
}

/// A failure inside the library, before it is written to the caller's `CBoxliteError`.
#[derive(Debug)]
pub struct Failure {
    pub code: BoxliteErrorCode,
    pub message: String,
}

impl Failure {
    pub fn new(code: BoxliteErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(BoxliteErrorCode::InvalidArgument, message)
    }
}

impl From<BoxliteError> for Failure {
    fn from(err: BoxliteError) -> Self {
        Self::new(err.kind().into(), err.to_string())
    }
}

/// A C string of `text` (NUL bytes inside it become U+FFFD, which C cannot carry otherwise).
pub fn c_string(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{FFFD}")).expect("no NUL left")
}
