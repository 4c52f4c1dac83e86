//! `boxlite._native`: the Python SDK's bindings over the `boxlite` crate. Thin on purpose:
//! options come in as plain dicts built by the Python layer (`python/boxlite/`), results go
//! out as plain values it wraps in its classes, and every behaviour lives in the Rust core.

mod box_types;
mod bridge;
mod convert;
mod errors;
mod execution;
mod install;
mod runtime;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<runtime::NativeRuntime>()?;
    m.add_class::<runtime::NativeBox>()?;
    m.add_class::<execution::NativeExecution>()?;
    m.add_class::<execution::NativeOutput>()?;
    m.add_class::<execution::NativeStdin>()?;
    m.add_class::<bridge::Completions>()?;
    m.add_class::<box_types::NativeCodeBox>()?;
    m.add_class::<box_types::NativeBrowserBox>()?;
    m.add_class::<box_types::NativeComputerBox>()?;
    m.add_class::<box_types::NativeInteractiveBox>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
