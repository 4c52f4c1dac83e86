//! The shim and the guest agent travel inside this extension (build.rs embeds them; see the
//! `boxlite-sdk-embed` crate). The first runtime of a process unpacks them under the cache
//! directory and tells the core to use them; `BOXLITE_SHIM` and `BOXLITE_AGENT` still name
//! others.

use std::sync::OnceLock;

use boxlite::ErrorKind;
use pyo3::PyResult;

use crate::errors::Failure;

static SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/boxlite-shim"));
static AGENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/boxlite-agent"));

static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();

/// Unpacks the programs where the core looks for them, once per process.
pub fn ensure() -> PyResult<()> {
    INSTALLED
        .get_or_init(|| {
            let (shim, agent) =
                boxlite_sdk_embed::unpack(&boxlite::guest::cache_dir(), SHIM, AGENT)?;
            boxlite::runtime::set_installed_shim(shim);
            boxlite::guest::set_installed_agent(agent);
            Ok(())
        })
        .clone()
        .map_err(|message| Failure::Kind(ErrorKind::Config, message).into())
}
