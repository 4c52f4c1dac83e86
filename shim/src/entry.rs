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
use crate::server::{files, AgentRelay, Assignment, RelayCounters, ShimService};
use crate::vm::Vm;
use crate::{ShimConfig, StandbyConfig, ADOPT_TIMEOUT};
use boxlite_protocol::agent::OutputStream;

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

/// Resolves, with the reason, when the box should end for want of an owner: a standby that
/// no box took in time, or one taken whose taker never assigned it; then as [`abandonment`]
/// with the launcher of shim.json or of the Assign call.
async fn ownerless(
    config: &ShimConfig,
    standby_dir: Option<&Path>,
    assigned: tokio::sync::oneshot::Receiver<Assignment>,
    adopted: Arc<tokio::sync::Notify>,
) -> String {
    let (launcher, stop_with_launcher) = match (&config.standby, standby_dir) {
        (Some(standby), Some(published)) => {
            match wait_for_a_box(standby, published, assigned).await {
                Ok(assignment) => (Some(assignment.launcher), assignment.stop_with_launcher),
                Err(reason) => return reason,
            }
        }
        _ => (config.launcher, config.stop_with_launcher),
    };
    abandonment(launcher, adopted, stop_with_launcher).await
}

/// A published standby waits for a box to take it (Assign) for its idle time. Then it
/// retires: it moves itself out of its pool, and only a standby still in the pool can, so
/// that a runtime taking it at that moment either has it or does not. Once taken (moved out
/// of its pool by a runtime), it waits [`ADOPT_TIMEOUT`] at most for the Assign that follows:
/// a taker killed in between leaves no VM behind for long.
async fn wait_for_a_box(
    standby: &StandbyConfig,
    published: &Path,
    mut assigned: tokio::sync::oneshot::Receiver<Assignment>,
) -> Result<Assignment, String> {
    let idle = Duration::from_millis(standby.idle_timeout_ms);
    let idle_until = tokio::time::Instant::now() + idle;
    let taken = loop {
        let look_again = tokio::time::Instant::now() + TAKEN_CHECK;
        tokio::select! {
            assignment = &mut assigned => {
                return assignment.map_err(|_| "the box that took this standby could not use it".into());
            }
            _ = tokio::time::sleep_until(look_again.min(idle_until)) => {}
        }
        if std::env::current_dir().is_ok_and(|here| here != published) {
            break true;
        }
        if tokio::time::Instant::now() >= idle_until {
            break std::fs::rename(published, retired_path(published)).is_err();
        }
    };
    if !taken {
        return Err(format!("no box took this standby within {idle:?}"));
    }
    match tokio::time::timeout(ADOPT_TIMEOUT, assigned).await {
        Ok(Ok(assignment)) => Ok(assignment),
        _ => Err(format!(
            "the standby was taken for a box, but not assigned within {ADOPT_TIMEOUT:?}"
        )),
    }
}

/// How often a waiting standby looks whether a runtime took it.
const TAKEN_CHECK: Duration = Duration::from_secs(1);

/// Where a standby published at `published` moves when it retires: beside it, hidden from
/// the runtimes that look for standbys.
fn retired_path(published: &Path) -> PathBuf {
    let name = published
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    published.with_file_name(StandbyConfig::retired_name(&name))
}

/// Warms the guest paths a box's first command takes, so that under TCG they are translated
/// before a box takes this standby: the agent's exec, the kernel's fork, exec and page faults,
/// the output streams and the exit. It runs nothing of the image (a box's image is its
/// owner's to run, when they ask): the program is the agent's own copy helper, asked to pack
/// a path no image has, which it reports on stderr before it exits.
async fn warm_up(vm: &Vm) {
    let agent = vm.agent();
    for round in 0..WARM_UP_ROUNDS {
        let exec_id = format!("boxlite-standby-warm-up-{round}");
        let ran = async {
            agent.copy(&exec_id, false, WARM_UP_PATH).await?;
            let (out, err) = tokio::join!(
                agent.drain(&exec_id, OutputStream::STDOUT, |_| {}),
                agent.drain(&exec_id, OutputStream::STDERR, |_| {}),
            );
            out.and(err)?;
            agent.wait(&exec_id).await
        };
        if tokio::time::timeout(WARM_UP_TIMEOUT, ran).await.is_err() {
            let _ = agent.signal(&exec_id, libc::SIGKILL).await;
        }
    }
}

/// A path no image has.
const WARM_UP_PATH: &str = "/.boxlite-standby-warm-up";
const WARM_UP_ROUNDS: usize = 2;
/// The most one warm-up command may take.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(10);

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
    // A standby's directory moves (published, then taken by a box): the shim works from
    // inside it, and the spec's paths in it are relative. Where it warms and where it is
    // published are made absolute first: from inside, relative ones name other places.
    let started_in =
        std::env::current_dir().map_err(|e| setup(format!("this process's directory: {e}")))?;
    let published = config
        .standby
        .as_ref()
        .map(|s| started_in.join(&s.publish_as));
    let warming = started_in.join(box_dir);
    let box_dir = if published.is_some() {
        std::env::set_current_dir(box_dir)
            .map_err(|e| setup(format!("entering {}: {e}", box_dir.display())))?;
        Path::new(".")
    } else {
        box_dir
    };
    let mut template_miss = config.template_miss.clone().unwrap_or_default();
    let vm = match Vm::boot(engine.as_ref(), &spec, config.ready_timeout()).await {
        // A standby is only worth having warm from its template.
        Err(err) if published.is_none() && matches!(spec.start, VmStart::FromTemplate { .. }) => {
            // A template is a way to start faster, never a reason not to start.
            eprintln!("boxlite-shim: the template could not serve this box ({err}); booting");
            template_miss = format!("restoring the template failed: {err}");
            spec.start = VmStart::Boot;
            Vm::boot(engine.as_ref(), &spec, config.ready_timeout()).await?
        }
        booted => booted?,
    };
    if published.is_some() {
        warm_up(&vm).await;
    }
    let vm = Arc::new(vm);

    let socket = box_dir.join(files::SOCKET);
    let _ = std::fs::remove_file(&socket);
    let counters = Arc::new(RelayCounters::default());
    let adopted = Arc::new(tokio::sync::Notify::new());
    let (assign, assigned) = tokio::sync::oneshot::channel();
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
            start_mode: if published.is_some() {
                "standby"
            } else {
                spec.start.name()
            },
            template_miss,
            root_disk: spec.root_disk.as_ref().map(|d| d.path.clone()),
            assignment: std::sync::Mutex::new(published.is_some().then_some(assign)),
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
    let published = match published {
        Some(published) => Some(publish(&warming, &published).map_err(|e| {
            setup(format!(
                "publishing the standby as {}: {e}",
                published.display()
            ))
        })?),
        None => None,
    };

    // Until the VM ends: by Stop, by the guest, by the VMM dying, by a signal to this
    // process, or because nobody adopted the box.
    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| setup(format!("SIGTERM: {e}")))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| setup(format!("SIGINT: {e}")))?;
    let told_to_end = tokio::select! {
        exit = vm.wait_exit() => Err(exit),
        reason = ownerless(&config, published.as_deref(), assigned, adopted) => Ok(reason),
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
    if let Some(published) = &published {
        remove_if_still_a_standby(published);
    }
    Ok(())
}

/// Moves a warm standby's directory from where it warmed (`warming`) to `publish_as`, where
/// runtimes may take it from now on. Returns that path as the kernel names it (symbolic links
/// in the home's path resolved), which is how `current_dir` names this directory while it
/// stays there. Fails if the directory is no longer where it warmed: retired meanwhile.
fn publish(warming: &Path, publish_as: &Path) -> std::io::Result<PathBuf> {
    let (Some(pool), Some(name)) = (publish_as.parent(), publish_as.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a path in a pool directory",
        ));
    };
    let published = std::fs::canonicalize(pool)?.join(name);
    std::fs::rename(warming, &published)?;
    eprintln!("boxlite-shim: standby published as {}", published.display());
    Ok(published)
}

/// A standby that no box took removes its directory as it ends; one a box took is the box's
/// directory now, left to the box's owner. Still published, it first moves itself out of the
/// pool (retires) and removes only what it moved: a runtime taking it at that moment either
/// has it, whole, or does not. A runtime that claimed it (`.taken-`) owns it and clears it.
fn remove_if_still_a_standby(published: &Path) {
    let Ok(here) = std::env::current_dir() else {
        return;
    };
    if here.parent().is_none() || here.parent() != published.parent() {
        return;
    }
    let retired = retired_path(published);
    let mine = if here == retired {
        Some(here)
    } else if here == published {
        std::fs::rename(published, &retired).ok().map(|()| retired)
    } else {
        None
    };
    if let Some(dir) = mine {
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            eprintln!("boxlite-shim: removing {}: {err}", dir.display());
        }
    }
}
