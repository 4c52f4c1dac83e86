//! The shim process's single entry point, [`main`]: the `boxlite-shim` binary is a call to it
//! (and so is the test suite's copy, which must be as fresh as the code under test).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::engine::{self, hardware_virtualization_usable, EngineKind};
use crate::process::ProcessId;
use crate::server::{files, AgentRelay, RelayCounters, ShimService};
use crate::vm::Vm;
use crate::ShimConfig;

/// Runs a shim for the box directory named by the only argument: reads `shim.json` there,
/// boots the VM, serves `shim.sock`, and returns once the VM has ended.
pub fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(box_dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: boxlite-shim BOX_DIR   (started by the boxlite runtime)");
        return ExitCode::from(2);
    };
    let box_dir = PathBuf::from(box_dir);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => return fail(&box_dir, &format!("starting the async runtime: {err}")),
    };
    match runtime.block_on(run(&box_dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&box_dir, &message),
    }
}

/// Records why the shim could not do its job where the runtime looks for it.
fn fail(box_dir: &Path, message: &str) -> ExitCode {
    eprintln!("boxlite-shim: {message}");
    let _ = std::fs::write(box_dir.join(files::BOOT_ERROR), message);
    ExitCode::FAILURE
}

async fn run(box_dir: &Path) -> Result<(), String> {
    let config_path = box_dir.join(files::CONFIG);
    let config: ShimConfig = serde_json::from_slice(
        &std::fs::read(&config_path)
            .map_err(|e| format!("reading {}: {e}", config_path.display()))?,
    )
    .map_err(|e| format!("parsing {}: {e}", config_path.display()))?;
    ProcessId::current()
        .ok_or("reading this process's start time")?
        .write(&box_dir.join(files::PID))
        .map_err(|e| format!("writing {}: {e}", files::PID))?;

    let kind = EngineKind::select(config.engine, hardware_virtualization_usable())
        .map_err(|e| e.to_string())?;
    let engine = engine::engine(kind).map_err(|e| e.to_string())?;
    let vm = Vm::boot(engine.as_ref(), &config.vm, config.ready_timeout())
        .await
        .map_err(|e| e.to_string())?;
    let vm = Arc::new(vm);

    let socket = box_dir.join(files::SOCKET);
    let _ = std::fs::remove_file(&socket);
    let counters = Arc::new(RelayCounters::default());
    let mut services = boxlite_protocol::agent_ttrpc::create_agent(Arc::new(AgentRelay {
        agent: vm.agent().raw(),
        counters: Arc::clone(&counters),
    }));
    services.extend(boxlite_protocol::shim_ttrpc::create_shim(Arc::new(
        ShimService {
            vm: Arc::clone(&vm),
            engine: engine.kind().name(),
            counters,
        },
    )));
    let address = format!("unix://{}", socket.display());
    let mut server = ttrpc::r#async::Server::new()
        .bind(&address)
        .map_err(|e| format!("listening on {address}: {e}"))?
        .register_service(services);
    server
        .start()
        .await
        .map_err(|e| format!("serving on {address}: {e}"))?;
    eprintln!(
        "boxlite-shim: box ready in {:?}, serving {address}",
        vm.timings().spawn_to_ready
    );

    // Until the VM ends: by Stop, by the guest, or by the VMM dying.
    let exit = vm.wait_exit().await;
    let _ = std::fs::remove_file(&socket);
    eprintln!("boxlite-shim: VM ended ({exit}); exiting");
    let _ = server.shutdown().await;
    Ok(())
}
