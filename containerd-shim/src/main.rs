//! `containerd-shim-boxlite-v1`: containerd's runtime v2 shim for the runtime type
//! `io.containerd.boxlite.v1`. Each container runs as a box (one VM) in the home
//! `BOXLITE_HOME` (default `/var/lib/boxlite-containerd`); see docs/KUBERNETES.md.

mod container;
mod error;
mod process;
mod service;
mod spec;

/// containerd's name for this runtime.
const RUNTIME_ID: &str = "io.containerd.boxlite.v1";

fn main() {
    // The serving daemon runs in its bundle; when the pod has a network namespace (CNI),
    // join it before any thread exists, so the box's network (passt, started by the box's
    // own shim, a child of ours) is the pod's.
    if let Err(err) = join_pod_network() {
        eprintln!("{RUNTIME_ID}: {err}");
        std::process::exit(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{RUNTIME_ID}: starting tokio: {err}");
            std::process::exit(1);
        }
    };
    // The runtime waits for the processes it starts (the box's shim, mkfs.ext4): a reaper
    // of every child would take their exit statuses, and a subreaper that reaps nothing
    // would keep orphans as zombies.
    let config = containerd_shim::Config {
        no_reaper: true,
        no_sub_reaper: true,
        ..Default::default()
    };
    runtime.block_on(containerd_shim::asynchronous::run::<service::BoxliteShim>(
        RUNTIME_ID,
        Some(config),
    ));
}

fn join_pod_network() -> Result<(), error::ShimError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `start` and `delete` only set up and clean up; the daemon (no action) serves.
    let serving = containerd_shim::parse(&args).is_ok_and(|flags| flags.action.is_empty());
    let Ok(bundle) = std::env::current_dir() else {
        return Ok(());
    };
    if !serving || !bundle.join("config.json").is_file() {
        return Ok(());
    }
    let spec = spec::Spec::load(&bundle)?;
    let Some(path) = spec.network_namespace() else {
        return Ok(());
    };
    let io = |source| error::ShimError::Io {
        what: format!("joining the pod's network namespace {path}"),
        source,
    };
    let netns = std::fs::File::open(path).map_err(io)?;
    nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| io(e.into()))
}
