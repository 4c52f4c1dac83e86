//! What a box and a runtime report about themselves.

use super::*;

/// A box's figures. Live figures (CPU, memory, boot timings) are `None` while the box is not
/// running; counters are since the box's current boot, counted by its shim for every process.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BoxMetrics {
    cpu_percent: Option<f32>,
    memory_bytes: Option<u64>,
    guest_boot_duration_ms: Option<u128>,
    spawn_to_ready_ms: Option<u128>,
    shim_pid: Option<u32>,
    engine: Option<String>,
    start_mode: Option<String>,
    template_miss: Option<String>,
    memory_pss_bytes: Option<u64>,
    commands_executed: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

impl BoxMetrics {
    /// CPU used by the VMM over a 200 ms sample, in percent of one core (over 100 with
    /// several busy vCPUs).
    pub fn cpu_percent(&self) -> Option<f32> {
        self.cpu_percent
    }

    /// Resident memory of the VMM process(es), guest RAM it touched included.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.memory_bytes
    }

    /// Guest uptime when its agent began serving: the guest's own boot.
    pub fn guest_boot_duration_ms(&self) -> Option<u128> {
        self.guest_boot_duration_ms
    }

    /// From starting the VMM to the agent's first answer, as the host saw it.
    pub fn spawn_to_ready_ms(&self) -> Option<u128> {
        self.spawn_to_ready_ms
    }

    /// The shim hosting the box's VMM.
    pub fn shim_pid(&self) -> Option<u32> {
        self.shim_pid
    }

    /// The engine running the box ("qemu", "krun").
    pub fn engine(&self) -> Option<&str> {
        self.engine.as_deref()
    }

    /// How the VM started: "boot" (its kernel booted), "template" (restored from its
    /// shape's template), "standby" (a warm VM restored from the template earlier, taken at
    /// the box's first start; see `BOXLITE_STANDBY`) or "snapshot" (created from a snapshot
    /// or a fork).
    pub fn start_mode(&self) -> Option<&str> {
        self.start_mode.as_deref()
    }

    /// Why no template served the box, when it booted.
    pub fn template_miss(&self) -> Option<&str> {
        self.template_miss.as_deref()
    }

    /// The VMM processes' proportional share of memory (PSS): pages shared with other boxes
    /// of one template count once across them.
    pub fn memory_pss_bytes(&self) -> Option<u64> {
        self.memory_pss_bytes
    }

    /// Commands and copies started in the box.
    pub fn commands_executed_total(&self) -> u64 {
        self.commands_executed
    }

    /// Bytes written to commands' stdin.
    pub fn bytes_sent_total(&self) -> u64 {
        self.bytes_sent
    }

    /// Bytes of commands' output handed to readers (bytes sent again to a re-attaching
    /// reader count again).
    pub fn bytes_received_total(&self) -> u64 {
        self.bytes_received
    }
}

/// A runtime's figures: counters of this runtime object (boxes outlive processes, counters
/// do not), and the home's boxes as the database has them now, for every process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeMetrics {
    boxes_created: u64,
    boxes_failed: u64,
    boxes_stopped: u64,
    commands_executed: u64,
    exec_errors: u64,
    boxes_by_status: std::collections::BTreeMap<BoxStatus, u64>,
}

impl RuntimeMetrics {
    /// Boxes this runtime object created.
    pub fn boxes_created_total(&self) -> u64 {
        self.boxes_created
    }

    /// Boxes this runtime object failed to start.
    pub fn boxes_failed_total(&self) -> u64 {
        self.boxes_failed
    }

    /// Boxes this runtime object stopped.
    pub fn boxes_stopped_total(&self) -> u64 {
        self.boxes_stopped
    }

    /// Boxes of the home running now, whoever started them.
    pub fn num_running_boxes(&self) -> u64 {
        self.boxes_by_status
            .get(&BoxStatus::Running)
            .copied()
            .unwrap_or(0)
    }

    /// Commands this runtime object started.
    pub fn total_commands_executed(&self) -> u64 {
        self.commands_executed
    }

    /// Commands this runtime object failed to start.
    pub fn total_exec_errors(&self) -> u64 {
        self.exec_errors
    }

    /// The reference's other name for [`RuntimeMetrics::total_commands_executed`].
    pub fn total_commands_run(&self) -> u64 {
        self.commands_executed
    }

    /// The reference's other name for [`RuntimeMetrics::total_exec_errors`].
    pub fn total_run_errors(&self) -> u64 {
        self.exec_errors
    }

    /// Boxes of the home, all statuses.
    pub fn boxes_total(&self) -> u64 {
        self.boxes_by_status.values().sum()
    }

    /// Boxes of the home by status.
    pub fn boxes_by_status(&self) -> &std::collections::BTreeMap<BoxStatus, u64> {
        &self.boxes_by_status
    }
}

/// Counters of one runtime object, shared by its clones.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) boxes_created: std::sync::atomic::AtomicU64,
    pub(crate) boxes_failed: std::sync::atomic::AtomicU64,
    pub(crate) boxes_stopped: std::sync::atomic::AtomicU64,
    pub(crate) commands_executed: std::sync::atomic::AtomicU64,
    pub(crate) exec_errors: std::sync::atomic::AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl BoxliteRuntime {
    /// The runtime's figures. A home whose database cannot be read counts no boxes.
    pub async fn metrics(&self) -> RuntimeMetrics {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let counters = &self.inner.counters;
        let mut boxes_by_status = std::collections::BTreeMap::new();
        for info in self.list_info().await.unwrap_or_default() {
            *boxes_by_status.entry(info.status).or_insert(0) += 1;
        }
        RuntimeMetrics {
            boxes_created: load(&counters.boxes_created),
            boxes_failed: load(&counters.boxes_failed),
            boxes_stopped: load(&counters.boxes_stopped),
            commands_executed: load(&counters.commands_executed),
            exec_errors: load(&counters.exec_errors),
            boxes_by_status,
        }
    }
}

impl LiteBox {
    /// The box's figures (live ones only while it runs; see [`BoxMetrics`]).
    pub async fn metrics(&self) -> Result<BoxMetrics> {
        let status = self.record()?.info.status;
        if !status.is_running() && !status.is_paused() {
            return Ok(BoxMetrics::default());
        }
        let state = ShimClient::connect(&self.dir()).await?.state().await?;
        let ticks =
            |pids: &[u32]| -> u64 { pids.iter().filter_map(|p| process::cpu_ticks(*p)).sum() };
        let before = ticks(&state.vmm_pids);
        let sample = Duration::from_millis(200);
        tokio::time::sleep(sample).await;
        let used = ticks(&state.vmm_pids).saturating_sub(before);
        // SAFETY: sysconf only reads a constant of the system.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Ok(BoxMetrics {
            cpu_percent: Some((used as f64 / hz / sample.as_secs_f64() * 100.0) as f32),
            memory_bytes: Some(
                state
                    .vmm_pids
                    .iter()
                    .filter_map(|p| process::rss_bytes(*p))
                    .sum(),
            ),
            guest_boot_duration_ms: Some(state.guest_ready_at_ms.into()),
            spawn_to_ready_ms: Some(state.spawn_to_ready_ms.into()),
            shim_pid: Some(state.shim_pid),
            memory_pss_bytes: Some(state.vmm_pids.iter().filter_map(|p| pss_bytes(*p)).sum()),
            engine: Some(state.engine),
            start_mode: Some(state.start_mode).filter(|m| !m.is_empty()),
            template_miss: Some(state.template_miss).filter(|m| !m.is_empty()),
            commands_executed: state.execs_started,
            bytes_sent: state.bytes_in,
            bytes_received: state.bytes_out,
        })
    }
}

/// A process's proportional set size, from /proc/PID/smaps_rollup.
fn pss_bytes(pid: u32) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = rollup.lines().find(|line| line.starts_with("Pss:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
