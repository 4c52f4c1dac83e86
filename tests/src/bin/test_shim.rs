//! The shim process, built with the test suite so tests always run the current code
//! (`BOXLITE_SHIM` points the runtime at it).

fn main() -> std::process::ExitCode {
    boxlite_shim::entry::main()
}
