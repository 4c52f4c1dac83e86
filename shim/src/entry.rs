//! The shim process's single entry point, [`main`]: the `boxlite-shim` binary is a call to it
//! (and so is the test suite's copy, which must be as fresh as the code under test).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::boot_failure::BootFailure;
use crate::engine::{self, hardware_virtualization_usable, VmStart};
use crate::output_log::{OutputLog, DEFAULT_MAX_FILE_BYTES};
use crate::process::ProcessId;
use crate::server::{files, AgentRelay, RelayCounters, ShimService};
use crate::vm::Vm;
use crate::{ShimConfig, ADOPT_TIMEOUT};

/// Runs a shim for the box directory named by the only argument: reads `shim.json` there,
/// boots the VM, serves `shim.sock`, and returns once the VM has ended.
pub fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(box_dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: boxlite-shim BOX_DIR   (started by the boxlite runtime)");
        return ExitCode::from(2);
    };
    let box_dir = PathBuf::from(box_dir);
    // Its stderr is shim.log; RUST_LOG picks what goes there (info by default).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    // Everything the shim and its VMM create (shim.sock, agent.sock, logs, pid files) is for
    // the box's owner alone.
    // SAFETY: umask(2) only sets this process's file mode mask; it cannot fail.
    unsafe { libc::umask(0o077) };
    // Helpers that daemonize (passt, say) stay our children, so that we reap them and they
    // cannot outlive the box unnoticed.
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes an integer flag and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            return fail(
                &box_dir,
                &setup(format!("starting the async runtime: {err}")),
            )
        }
    };
    let outcome = runtime.block_on(run(&box_dir));
    // The VM is gone: nothing left on a blocking thread may hold the exit up.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(&box_dir, &failure),
    }
}

/// How long the guest gets to power off when the shim is told to end (SIGTERM, SIGINT, or
/// a launcher that never adopted the box) before the VM is killed.
pub const SIGNALLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves, with the reason, when the box is abandoned: its launcher died before adopting
/// it, or did not adopt it within [`ADOPT_TIMEOUT`], or (`stop_with_launcher`) exited after
/// adopting it. Never resolves otherwise, nor for a shim started without a launcher.
async fn abandonment(
    launcher: Option<ProcessId>,
    adopted: Arc<tokio::sync::Notify>,
    stop_with_launcher: bool,
) -> String {
    let Some(launcher) = launcher else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = adopted.notified() => {
            if !stop_with_launcher {
                return std::future::pending().await;
            }
            launcher.exited().await;
            format!(
                "the process that started the box (pid {}) exited, and the box is not detached",
                launcher.pid
            )
        }
        gone = tokio::time::timeout(ADOPT_TIMEOUT, launcher.exited()) => match gone {
            Ok(()) => format!(
                "the process that started the box (pid {}) died before recording it",
                launcher.pid
            ),
            Err(_) => format!("the box was not adopted within {ADOPT_TIMEOUT:?} of being ready"),
        },
    }
}

/// Boots a template's VM, saves it once its agent answers, and ends it.
async fn build_template(
    engine: &dyn engine::Engine,
    spec: &engine::VmSpec,
    state: &Path,
    ready_timeout: Duration,
) -> Result<(), BootFailure> {
    let vm = Vm::boot(engine, spec, ready_timeout).await?;
    let failed = |what: &str, err: engine::EngineError| BootFailure::Engine {
        message: format!("{what}: {err}"),
    };
    let saved = async {
        vm.pause()
            .await
            .map_err(|e| failed("pausing the template", e))?;
        vm.save_state(state, true)
            .await
            .map_err(|e| failed("saving the template", e))
    }
    .await;
    vm.kill().await;
    vm.finish_console().await;
    saved
}

/// Records why the shim could not do its job where the runtime looks for it.
fn fail(box_dir: &Path, failure: &BootFailure) -> ExitCode {
    eprintln!("boxlite-shim: {failure}");
    let _ = failure.write(box_dir);
    ExitCode::FAILURE
}

fn setup(message: String) -> BootFailure {
    BootFailure::Setup { message }
}

async fn run(box_dir: &Path) -> Result<(), BootFailure> {
    let config_path = box_dir.join(files::CONFIG);
    let config: ShimConfig = serde_json::from_slice(
        &std::fs::read(&config_path)
            .map_err(|e| setup(format!("reading {}: {e}", config_path.display())))?,
    )
    .map_err(|e| setup(format!("parsing {}: {e}", config_path.display())))?;
    ProcessId::current()
        .ok_or_else(|| setup("reading this process's start time".into()))?
        .write(&box_dir.join(files::PID))
        .map_err(|e| setup(format!("writing {}: {e}", files::PID)))?;

    let unavailable = |e: engine::EngineError| BootFailure::EngineUnavailable {
        message: e.to_string(),
    };
    let kind =
        engine::select(config.engine, hardware_virtualization_usable()).map_err(unavailable)?;
    let engine = engine::engine(kind).map_err(unavailable)?;
    let mut spec = config.vm.clone();
    if let VmStart::BuildTemplate { state, .. } = &spec.start {
        return build_template(engine.as_ref(), &spec, state, config.ready_timeout()).await;
    }
    let mut template_miss = config.template_miss.clone().unwrap_or_default();
    let vm = match Vm::boot(engine.as_ref(), &spec, config.ready_timeout()).await {
        Err(err) if matches!(spec.start, VmStart::FromTemplate { .. }) => {
            // A template is a way to start faster, never a reason not to start.
            eprintln!("boxlite-shim: the template could not serve this box ({err}); booting");
            template_miss = format!("restoring the template failed: {err}");
            spec.start = VmStart::Boot;
            Vm::boot(engine.as_ref(), &spec, config.ready_timeout()).await?
        }
        booted => booted?,
    };
    let vm = Arc::new(vm);

    let socket = box_dir.join(files::SOCKET);
    let _ = std::fs::remove_file(&socket);
    let counters = Arc::new(RelayCounters::default());
    let adopted = Arc::new(tokio::sync::Notify::new());
    let mut services = boxlite_protocol::agent_ttrpc::create_agent(Arc::new(AgentRelay {
        agent: vm.agent().raw(),
        counters: Arc::clone(&counters),
    }));
    services.extend(boxlite_protocol::shim_ttrpc::create_shim(Arc::new(
        ShimService {
            vm: Arc::clone(&vm),
            engine: engine.kind().name(),
            counters,
            adopted: Arc::clone(&adopted),
            output_log: Arc::new(std::sync::Mutex::new(OutputLog::new(
                box_dir,
                DEFAULT_MAX_FILE_BYTES,
            ))),
            paused: tokio::sync::Mutex::new(false),
            paused_now: Default::default(),
            start_mode: spec.start.name(),
            template_miss,
            root_disk: spec.root_disk.as_ref().map(|d| d.path.clone()),
        },
    )));
    let address = format!("unix://{}", socket.display());
    let mut server = ttrpc::r#async::Server::new()
        .bind(&address)
        .map_err(|e| setup(format!("listening on {address}: {e}")))?
        .register_service(services);
    server
        .start()
        .await
        .map_err(|e| setup(format!("serving on {address}: {e}")))?;
    eprintln!(
        "boxlite-shim: box ready in {:?}, serving {address}",
        vm.timings().spawn_to_ready
    );

    // Until the VM ends: by Stop, by the guest, by the VMM dying, by a signal to this
    // process, or because nobody adopted the box.
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| setup(format!("SIGTERM: {e}")))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| setup(format!("SIGINT: {e}")))?;
    let told_to_end = tokio::select! {
        exit = vm.wait_exit() => Err(exit),
        reason = abandonment(config.launcher, adopted, config.stop_with_launcher) => Ok(reason),
        _ = terminate.recv() => Ok("SIGTERM".to_string()),
        _ = interrupt.recv() => Ok("SIGINT".to_string()),
    };
    let exit = match told_to_end {
        Err(exit) => exit,
        Ok(reason) => {
            eprintln!("boxlite-shim: {reason}: powering the VM off");
            // Cleanly if the guest can, within a bound; the VM is gone either way.
            match vm.shutdown(SIGNALLED_SHUTDOWN_TIMEOUT).await {
                Ok(exit) => exit,
                Err(_) => vm.wait_exit().await,
            }
        }
    };
    let _ = std::fs::remove_file(&socket);
    vm.finish_console().await;
    eprintln!("boxlite-shim: VM ended ({exit}); exiting");
    let _ = server.shutdown().await;
    Ok(())
}
