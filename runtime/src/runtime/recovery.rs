//! What is left of a box whose shim died: killing it and waiting until it is gone.

use super::*;

/// How long a SIGKILLed shim or VMM may take to be gone before we give up waiting on it.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(5);

/// Waits up to `limit` for a process to be gone; returns whether it is.
pub(crate) async fn wait_gone(process: ProcessId, limit: Duration) -> bool {
    tokio::task::spawn_blocking(move || process.wait_gone(limit))
        .await
        .unwrap_or_else(|_| !process.is_alive())
}

/// SIGKILL to a box's shim and to the VMM processes it recorded in `vmm.pid` (only when the
/// file is that shim's), so that nothing of the box survives even if PR_SET_PDEATHSIG did not
/// fire. Returns what was recorded, for waiting on.
pub(crate) fn kill_box_processes(dir: &Path, shim: ProcessId) -> Vec<ProcessId> {
    shim.kill();
    let mut recorded =
        boxlite_shim_api::process::read_all(&dir.join(boxlite_shim_api::files::VMM_PID));
    if recorded.first() != Some(&shim) {
        recorded.clear();
    }
    for vmm in recorded.iter().skip(1) {
        vmm.kill();
    }
    if recorded.is_empty() {
        recorded.push(shim);
    }
    recorded
}

/// Kills a box's processes (see [`kill_box_processes`]) and waits until they are gone.
pub(crate) async fn kill_and_wait(dir: &Path, shim: ProcessId) {
    for process in kill_box_processes(dir, shim) {
        wait_gone(process, KILL_WAIT).await;
    }
}

/// The shim that `dir/shim.pid` names, if that very process still runs.
pub(crate) fn live_shim(dir: &Path) -> Option<ProcessId> {
    ProcessId::read(&dir.join(boxlite_shim_api::files::PID)).filter(ProcessId::is_alive)
}
