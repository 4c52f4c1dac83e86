//! boxlite-shim: one process per box. Started detached by the runtime with the box directory
//! as its only argument; reads `shim.json` there, boots the VM, serves `shim.sock`, and exits
//! when the VM ends. See docs/ARCHITECTURE.md.

fn main() -> std::process::ExitCode {
    boxlite_shim::entry::main()
}
