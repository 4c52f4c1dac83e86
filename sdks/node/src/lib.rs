//! The Node.js SDK's native addon (`boxlite.node`): thin napi-rs classes over the `boxlite`
//! crate. Options come in as JSON built by the JavaScript layer (`index.js`), results go out
//! as JSON or plain values it turns into its objects, and errors carry the core's kind as a
//! `[Kind] ` prefix, which `index.js` turns into the error class of that kind.

mod box_types;
mod execution;
mod options;
mod runtime;

use std::sync::OnceLock;

static SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/boxlite-shim"));
static AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/boxlite-agent"));

/// The core's error as a JS error whose message starts with its kind.
pub(crate) fn js_error(err: boxlite::BoxliteError) -> napi::Error {
    kind_error(err.kind(), err.to_string())
}

pub(crate) fn kind_error(kind: boxlite::ErrorKind, message: impl std::fmt::Display) -> napi::Error {
    napi::Error::from_reason(format!("[{}] {message}", kind.name()))
}

pub(crate) fn invalid(message: impl std::fmt::Display) -> napi::Error {
    kind_error(boxlite::ErrorKind::InvalidArgument, message)
}

/// `map_err` helper: the core's result as napi's.
pub(crate) trait JsResult<T> {
    fn js(self) -> napi::Result<T>;
}

impl<T> JsResult<T> for Result<T, boxlite::BoxliteError> {
    fn js(self) -> napi::Result<T> {
        self.map_err(js_error)
    }
}

/// Unpacks the shim and agent this addon carries, once per process, and tells the core.
pub(crate) fn install() -> napi::Result<()> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let (shim, agent) =
                boxlite_sdk_embed::unpack(&boxlite::guest::cache_dir(), SHIM, AGENT)?;
            boxlite::runtime::set_installed_shim(shim);
            boxlite::guest::set_installed_agent(agent);
            Ok(())
        })
        .clone()
        .map_err(|message| kind_error(boxlite::ErrorKind::Config, message))
}
