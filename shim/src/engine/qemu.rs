//! The QEMU engine: `qemu-system-x86_64 -M microvm` as a child process, with the agent channel
//! on a virtio-serial port whose host end is a unix socket in the box directory, the root disk
//! on virtio-blk and the serial console in the box's console log. (Why not vsock: see
//! docs/ARCHITECTURE.md.)
//!
//! Hardware KVM is used when the CPU has it; otherwise TCG, which is what boots on hosts whose
//! /dev/kvm is software-nested.

use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::net::UnixStream;
use tokio::process::{Child, Command};
use tokio::sync::{watch, Notify};

use super::qmp::{Qmp, QmpError};
use super::{
    check_socket_path, passt, published_exit, virtiofs, Engine, EngineError, EngineKind, RunningVm,
    SharedDir, VmExit, VmSpec, VmStart,
};

const QEMU: &str = "qemu-system-x86_64";
/// The descriptor QEMU finds its end of the network relay at.
const NETWORK_FD: i32 = 3;
/// Name of the agent's virtio-serial port; the agent looks for it by this name.
pub const AGENT_PORT_NAME: &str = "boxlite.agent";
/// QEMU's id of that port, as its VSERPORT_CHANGE events name it.
const AGENT_PORT_ID: &str = "agentport";
/// How long restoring saved state may take, loading it included.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long saving a VM's state may take.
const SAVE_TIMEOUT: Duration = Duration::from_secs(300);

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// KVM where the CPU has hardware virtualisation, TCG otherwise.
    pub fn detect() -> Self {
        if super::hardware_virtualization_usable() {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }
}

/// Paths of one VM's files in its run directory.
#[derive(Debug, Clone)]
pub struct QemuPaths {
    /// QEMU listens here; the stream is the agent's virtio-serial port.
    pub agent_socket: PathBuf,
    pub console_pipe: PathBuf,
    /// QEMU's monitor (QMP): pause, resume, save and restore.
    pub qmp_socket: PathBuf,
}

impl QemuPaths {
    pub fn new(spec: &VmSpec) -> Self {
        Self {
            agent_socket: spec.agent_socket(),
            console_pipe: spec.console_pipe(),
            qmp_socket: spec.run_dir.join("qmp.sock"),
        }
    }
}

/// The QEMU engine.
#[derive(Debug, Clone)]
pub struct QemuEngine {
    pub accel: Accel,
    pub qemu_binary: PathBuf,
}

impl Default for QemuEngine {
    fn default() -> Self {
        Self {
            accel: Accel::detect(),
            qemu_binary: PathBuf::from(QEMU),
        }
    }
}

/// QEMU's command line for `spec`.
pub fn qemu_args(spec: &VmSpec, accel: Accel, paths: &QemuPaths) -> Vec<String> {
    qemu_args_with_tsc(spec, accel, paths, host_tsc_khz())
}

/// The host's TSC rate in kHz, from /proc/cpuinfo. Under TCG the guest reads the host's TSC,
/// so this is the rate the guest must assume for its clock to run at real speed.
pub fn host_tsc_khz() -> Option<u64> {
    tsc_khz_from_cpuinfo(&std::fs::read_to_string("/proc/cpuinfo").ok()?)
}

fn tsc_khz_from_cpuinfo(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|line| line.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

/// The size of TCG's translated-code cache for a guest of `memory_mib`: an eighth of the
/// guest's RAM, 32 MiB to 512 MiB. QEMU's own default (1 GiB) is never full, so the pages a
/// box ever translated into stay in it: an idle busybox box kept ~24 MiB of them, the largest
/// part of its footprint. When the cache fills, QEMU drops it and translates anew; sizing it
/// by the guest makes the boxes meant for bigger programs pay that less often. Not below
/// 32 MiB: a box's start alone translates ~20 MiB, and with 16 MiB a template start took
/// ~630 ms instead of ~430 (the same as with 1 GiB).
fn tcg_translation_cache_mib(memory_mib: u32) -> u32 {
    (memory_mib / 8).clamp(32, 512)
}

fn qemu_args_with_tsc(
    spec: &VmSpec,
    accel: Accel,
    paths: &QemuPaths,
    tsc_khz: Option<u64>,
) -> Vec<String> {
    let mem = spec.memory_mib;
    // microvm has no keyboard controller to reset through: reset by triple fault, which
    // `-no-reboot` turns into QEMU exiting.
    // no_timer_check: the kernel's check that the PIT reaches the IO-APIC counts ticks in a
    // short window; on a loaded host a TCG vCPU misses it and the kernel panics ("IO-APIC +
    // timer doesn't work!"), which CI saw under load. The timer works; skip the check.
    let mut cmdline = vec![
        "console=ttyS0".to_string(),
        "quiet".to_string(),
        "reboot=t".to_string(),
        "no_timer_check".to_string(),
    ];
    if let (Accel::Tcg, Some(khz)) = (accel, tsc_khz) {
        // Under TCG the guest's TSC calibration is unreliable (it ran the clock 2.4x fast
        // here); give it the host's rate outright.
        cmdline.push(format!("tsc_early_khz={khz}"));
    }
    if accel == Accel::Tcg && !spec.volumes.is_empty() {
        // virtiofsd writes file data straight into guest RAM, unseen by TCG, so code it had
        // translated from a page the guest's page cache then reused for another file ran
        // stale: a program run twice from virtio-fs crashed (SIGSEGV/SIGILL). Zeroing every
        // page as it is allocated is a CPU store, which TCG does see: it drops what it
        // translated from the page before virtiofsd fills it.
        cmdline.push("init_on_alloc=1".to_string());
    }
    cmdline.extend(spec.guest_cmdline());

    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
    // microvm: no PCI, no firmware tables, virtio-mmio devices announced on the command line.
    // Guest RAM is always the backend `mem`, so that saved state names the same RAM block
    // whichever backend the VM that restores it uses.
    let backend = match &spec.start {
        // Shared with the template file: the saved state then needs no RAM of its own.
        VmStart::BuildTemplate { ram_file, .. } => format!(
            "memory-backend-file,id=mem,size={mem}M,mem-path={},share=on",
            ram_file.display()
        ),
        // Mapped privately: each box writes to its own copies of the pages it changes, the
        // rest stays shared between every box of the template; the file is never written.
        VmStart::FromTemplate { ram_file, .. } => format!(
            "memory-backend-file,id=mem,size={mem}M,mem-path={},share=off,readonly=on,rom=off",
            ram_file.display()
        ),
        // virtiofsd maps guest memory: it must be shareable.
        _ if !spec.volumes.is_empty() => {
            format!("memory-backend-memfd,id=mem,size={mem}M,share=on")
        }
        _ => format!("memory-backend-ram,id=mem,size={mem}M"),
    };
    push(&["-object", &backend]);
    push(&[
        "-M",
        "microvm,acpi=off,pit=on,pic=on,rtc=on,isa-serial=on,memory-backend=mem",
    ]);
    match accel {
        Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        Accel::Tcg => push(&[
            "-accel",
            &format!("tcg,tb-size={}", tcg_translation_cache_mib(mem)),
            "-cpu",
            "max",
        ]),
    }
    push(&["-smp", &spec.cpus.to_string(), "-m", &format!("{mem}M")]);
    // Modern (virtio 1.0) devices; microvm defaults to legacy mmio.
    push(&["-global", "virtio-mmio.force-legacy=false"]);
    push(&["-kernel", &spec.kernel.display().to_string()]);
    push(&["-initrd", &spec.initramfs.display().to_string()]);
    push(&["-append", &cmdline.join(" ")]);
    push(&["-device", "virtio-serial-device,max_ports=2"]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=agent,path={},server=on,wait=off",
            paths.agent_socket.display()
        ),
    ]);
    push(&[
        "-device",
        &format!("virtserialport,chardev=agent,name={AGENT_PORT_NAME},id={AGENT_PORT_ID}"),
    ]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", paths.qmp_socket.display()),
    ]);
    if spec.start.restores() {
        // Wait for the state (`migrate-incoming`), and stay paused once it is loaded.
        push(&["-incoming", "defer", "-S"]);
    }
    if let Some(disk) = &spec.root_disk {
        let ro = if disk.read_only { ",read-only=on" } else { "" };
        // cache=writeback: the host page cache, with the guest's flushes passed on to the
        // file (cache=unsafe dropped them, so a guest's fsync was not durable). werror and
        // rerror=report: a full or failing host disk is an I/O error in the guest, not a VM
        // that QEMU silently pauses (its default for ENOSPC).
        push(&[
            "-drive",
            &format!(
                "file={},if=none,id=root,format={},cache=writeback,werror=report,\
                 rerror=report,discard=unmap{ro}",
                disk.path.display(),
                disk.format.as_str()
            ),
        ]);
        push(&["-device", "virtio-blk-device,drive=root"]);
    }
    for (index, _) in spec.volumes.iter().enumerate() {
        let tag = SharedDir::tag(index);
        push(&[
            "-chardev",
            &format!(
                "socket,id={tag},path={}",
                virtiofs::socket_path(&spec.run_dir, index).display()
            ),
        ]);
        push(&[
            "-device",
            &format!("vhost-user-fs-device,chardev={tag},tag={tag}"),
        ]);
    }
    if spec.network.is_some() {
        // The network device's frames go to the shim's relay, on a descriptor QEMU inherits
        // (`passt::start`); passt and the box's port forwards are behind it.
        push(&[
            "-netdev",
            &format!("stream,id=net0,server=off,addr.type=fd,addr.str={NETWORK_FD}"),
        ]);
        push(&["-device", "virtio-net-device,netdev=net0"]);
    }
    push(&[
        "-chardev",
        &format!("file,id=console,path={}", paths.console_pipe.display()),
    ]);
    push(&["-serial", "chardev:console"]);
    args
}

/// A child that dies with the shim: if the shim is killed, its VM must not outlive it.
fn child_command(
    program: &Path,
    args: &[String],
    stderr_log: &Path,
    inherited: Option<(RawFd, RawFd)>,
) -> Result<Command, EngineError> {
    let log = std::fs::File::create(stderr_log).map_err(|source| EngineError::Io {
        path: stderr_log.to_path_buf(),
        source,
    })?;
    let log2 = log.try_clone().map_err(|source| EngineError::Io {
        path: stderr_log.to_path_buf(),
        source,
    })?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .kill_on_drop(true);
    // SAFETY: prctl(PR_SET_PDEATHSIG) and `inherit_fd` are async-signal-safe and touch no
    // shared state; the inherited descriptor stays open in the parent until spawn returns.
    unsafe {
        command.pre_exec(move || {
            if let Some((fd, target)) = inherited {
                super::inherit_fd(fd, target)?;
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command)
}

fn spawn(
    program: &Path,
    args: &[String],
    log: &Path,
    inherited: Option<(RawFd, RawFd)>,
    hint: &'static str,
) -> Result<Child, EngineError> {
    child_command(program, args, log, inherited)?
        .spawn()
        .map_err(|source| EngineError::Spawn {
            program: program.display().to_string(),
            source,
            hint,
        })
}

#[async_trait]
impl Engine for QemuEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Qemu
    }

    async fn start(&self, spec: &VmSpec) -> Result<Box<dyn RunningVm>, EngineError> {
        spec.validate()?;
        std::fs::create_dir_all(&spec.run_dir).map_err(|source| EngineError::Io {
            path: spec.run_dir.clone(),
            source,
        })?;
        let paths = QemuPaths::new(spec);
        check_socket_path(&paths.agent_socket)?;
        check_socket_path(&paths.qmp_socket)?;
        let _ = std::fs::remove_file(&paths.agent_socket);
        let _ = std::fs::remove_file(&paths.qmp_socket);

        // A failed start must not leave daemons behind: they are killed on drop.
        let mut helpers = start_virtiofsd(spec).await?;
        let network = match &spec.network {
            Some(network) => {
                let (passt, vmm_side) = passt::start(network, &spec.run_dir)?;
                helpers.push(passt);
                Some(vmm_side)
            }
            None => None,
        };
        let qemu = spawn(
            &self.qemu_binary,
            &qemu_args(spec, self.accel, &paths),
            &spec.vmm_log(),
            network.as_ref().map(|fd| (fd.as_raw_fd(), NETWORK_FD)),
            "install Debian's qemu-system-x86 (scripts/setup.sh does)",
        )?;
        // QEMU holds its own copy now; the relay ends when QEMU's closes.
        drop(network);
        let pids = qemu
            .id()
            .into_iter()
            .chain(helpers.iter().filter_map(|h| h.id()))
            .collect();
        let (exit_tx, exit_rx) = watch::channel(None);
        let kill = Arc::new(Notify::new());
        tokio::spawn(supervise(
            qemu,
            helpers,
            paths.clone(),
            Arc::clone(&kill),
            exit_tx,
        ));
        let vm = QemuVm {
            paths,
            pids,
            exit: exit_rx,
            kill,
            qmp: tokio::sync::OnceCell::new(),
        };
        if spec.start.restores() {
            let restored = tokio::select! {
                restored = vm.restore(spec) => restored,
                exit = vm.wait_exit() => Err(QmpError::Protocol(format!("QEMU exited ({exit})"))),
            };
            if let Err(err) = restored {
                vm.kill().await;
                let vmm = std::fs::read_to_string(spec.vmm_log()).unwrap_or_default();
                return Err(EngineError::Failed {
                    engine: EngineKind::Qemu,
                    message: format!("restoring saved state: {err}; QEMU said: {}", vmm.trim()),
                });
            }
        }
        Ok(Box::new(vm))
    }
}

/// One virtiofsd per volume, each listening before this returns.
async fn start_virtiofsd(spec: &VmSpec) -> Result<Vec<Child>, EngineError> {
    if spec.volumes.is_empty() {
        return Ok(Vec::new());
    }
    let binary = virtiofs::find_binary()?;
    // SAFETY: geteuid only reads the process's credentials.
    let as_root = unsafe { libc::geteuid() } == 0;
    let mut daemons = Vec::new();
    for (index, volume) in spec.volumes.iter().enumerate() {
        let socket = virtiofs::socket_path(&spec.run_dir, index);
        check_socket_path(&socket)?;
        let _ = std::fs::remove_file(&socket);
        let log = spec.run_dir.join(format!("{}.log", SharedDir::tag(index)));
        let mut daemon = spawn(
            &binary,
            &virtiofs::args(volume, &socket, as_root),
            &log,
            None,
            "install virtiofsd (scripts/setup.sh does) or set BOXLITE_VIRTIOFSD",
        )?;
        if let Err(message) = virtiofs::wait_for_socket(&socket, &mut daemon).await {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(EngineError::Failed {
                engine: EngineKind::Qemu,
                message: format!(
                    "volume {} -> {}: {message}: {}",
                    volume.host_path.display(),
                    volume.guest_path,
                    said.trim()
                ),
            });
        }
        daemons.push(daemon);
    }
    Ok(daemons)
}

/// Owns the QEMU process and its helpers: waits for QEMU to end (or for a kill request),
/// ends the helpers, removes the agent socket and publishes how the VM ended.
async fn supervise(
    mut qemu: Child,
    mut helpers: Vec<Child>,
    paths: QemuPaths,
    kill: Arc<Notify>,
    exit: watch::Sender<Option<VmExit>>,
) {
    let status = tokio::select! {
        status = qemu.wait() => status,
        _ = kill.notified() => {
            let _ = qemu.start_kill();
            qemu.wait().await
        }
    };
    for helper in &mut helpers {
        let _ = helper.start_kill();
        let _ = helper.wait().await;
    }
    let _ = std::fs::remove_file(&paths.agent_socket);
    let _ = exit.send(Some(status.map(VmExit::from).unwrap_or(VmExit::Exited(-1))));
}

/// A VM run by QEMU.
pub struct QemuVm {
    paths: QemuPaths,
    pids: Vec<u32>,
    exit: watch::Receiver<Option<VmExit>>,
    kill: Arc<Notify>,
    /// Connected on first use (restores connect at once).
    qmp: tokio::sync::OnceCell<Qmp>,
}

fn qmp_failed(err: QmpError) -> EngineError {
    EngineError::Failed {
        engine: EngineKind::Qemu,
        message: err.to_string(),
    }
}

impl QemuVm {
    async fn qmp(&self) -> Result<&Qmp, QmpError> {
        self.qmp
            .get_or_try_init(|| async {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                Qmp::connect(&self.paths.qmp_socket, deadline).await
            })
            .await
    }

    /// Loads the saved state into the VM QEMU was started paused for, runs it, and returns
    /// once the guest agent has closed the channel it had when the state was saved and
    /// opened a new one: nothing of the saving VM's session can reach whoever connects next.
    async fn restore(&self, spec: &VmSpec) -> Result<(), QmpError> {
        let deadline = tokio::time::Instant::now() + RESTORE_TIMEOUT;
        let qmp = self.qmp().await?;
        let (state, ignore_shared) = match &spec.start {
            VmStart::FromTemplate { state, .. } => (state, true),
            VmStart::FromSnapshot { state } => (state, false),
            _ => return Ok(()),
        };
        let started = std::time::Instant::now();
        set_ignore_shared(qmp, ignore_shared).await?;
        qmp.execute(
            "migrate-incoming",
            json!({"uri": format!("file:{}", state.display())}),
        )
        .await?;
        qmp.wait_migration(deadline).await?;
        let loaded = started.elapsed();
        qmp.execute("cont", json!({})).await?;
        if matches!(spec.start, VmStart::FromTemplate { .. }) && spec.root_disk.is_some() {
            // The guest read the size of the template's placeholder disk; resizing the box's
            // disk to its own size makes virtio-blk tell the guest the real one.
            let size = root_disk_size(qmp).await?;
            qmp.execute("block_resize", json!({"device": "root", "size": size}))
                .await?;
        }
        // The saved session ends in the guest when it sees the host end closed (QEMU tells it
        // after loading, since nobody is connected), and the agent then closes its port: the
        // first change QEMU reports is that close. (Only the first: QEMU sends at most one
        // VSERPORT_CHANGE a second and keeps the latest, while the agent, alone, reopens its
        // port every 10 ms and finds the host gone each time.)
        qmp.wait_event("the agent closing its saved session", deadline, |event| {
            event.name == "VSERPORT_CHANGE"
                && event.data.get("id").and_then(|v| v.as_str()) == Some(AGENT_PORT_ID)
        })
        .await?;
        tracing::info!(?loaded, closed = ?started.elapsed(), "restored saved state");
        Ok(())
    }
}

async fn set_ignore_shared(qmp: &Qmp, on: bool) -> Result<(), QmpError> {
    qmp.execute(
        "migrate-set-capabilities",
        json!({"capabilities": [{"capability": "x-ignore-shared", "state": on}]}),
    )
    .await
    .map(drop)
}

/// The virtual size of the box disk QEMU has open.
async fn root_disk_size(qmp: &Qmp) -> Result<u64, QmpError> {
    let blocks = qmp.execute("query-block", json!({})).await?;
    blocks
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b.get("device").and_then(|d| d.as_str()) == Some("root"))
        .and_then(|b| b.pointer("/inserted/image/virtual-size"))
        .and_then(|v| v.as_u64())
        .ok_or_else(|| QmpError::Protocol("query-block names no root disk with a size".into()))
}

#[async_trait]
impl RunningVm for QemuVm {
    fn kind(&self) -> EngineKind {
        EngineKind::Qemu
    }

    async fn connect_agent(&self) -> std::io::Result<UnixStream> {
        UnixStream::connect(&self.paths.agent_socket).await
    }

    async fn wait_exit(&self) -> VmExit {
        published_exit(&self.exit).await
    }

    async fn kill(&self) -> VmExit {
        self.kill.notify_one();
        self.wait_exit().await
    }

    fn pids(&self) -> Vec<u32> {
        self.pids.clone()
    }

    async fn pause(&self) -> Result<(), EngineError> {
        let qmp = self.qmp().await.map_err(qmp_failed)?;
        qmp.execute("stop", json!({})).await.map_err(qmp_failed)?;
        Ok(())
    }

    async fn resume(&self) -> Result<(), EngineError> {
        let qmp = self.qmp().await.map_err(qmp_failed)?;
        qmp.execute("cont", json!({})).await.map_err(qmp_failed)?;
        Ok(())
    }

    async fn save_state(&self, path: &Path, ram_shared: bool) -> Result<(), EngineError> {
        let qmp = self.qmp().await.map_err(qmp_failed)?;
        let deadline = tokio::time::Instant::now() + SAVE_TIMEOUT;
        set_ignore_shared(qmp, ram_shared)
            .await
            .map_err(qmp_failed)?;
        qmp.execute(
            "migrate",
            json!({"uri": format!("file:{}", path.display())}),
        )
        .await
        .map_err(qmp_failed)?;
        qmp.wait_migration(deadline).await.map_err(qmp_failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{DiskFormat, DiskSpec, NetworkSpec, PortForward, Protocol, SharedDir};

    fn spec() -> VmSpec {
        VmSpec {
            kernel: "/k/bzImage".into(),
            initramfs: "/k/initramfs.cpio".into(),
            cpus: 2,
            memory_mib: 256,
            root_disk: Some(DiskSpec {
                path: "/b/disk.qcow2".into(),
                format: DiskFormat::Qcow2,
                read_only: false,
            }),
            agent_port: 1024,
            run_dir: "/b".into(),
            extra_cmdline: vec!["x=y".into()],
            hostname: None,
            network: Some(NetworkSpec {
                forwards: vec![PortForward {
                    host_ip: std::net::Ipv4Addr::LOCALHOST,
                    host_port: 8080,
                    guest_port: 80,
                    protocol: Protocol::Udp,
                }],
                policy: Default::default(),
            }),
            volumes: vec![SharedDir {
                host_path: "/h/data".into(),
                guest_path: "/data".into(),
                read_only: true,
            }],
            start: Default::default(),
        }
    }

    fn value_after<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn tcg_guests_with_shared_directories_zero_pages_on_allocation() {
        let with_volume = spec();
        let mut without = spec();
        without.volumes.clear();
        let append = |s: &VmSpec, accel| {
            value_after(
                &qemu_args_with_tsc(s, accel, &QemuPaths::new(s), None),
                "-append",
            )[0]
            .to_string()
        };
        assert!(append(&with_volume, Accel::Tcg).contains("init_on_alloc=1"));
        assert!(!append(&without, Accel::Tcg).contains("init_on_alloc"));
        assert!(!append(&with_volume, Accel::Kvm).contains("init_on_alloc"));
    }

    #[test]
    fn a_shared_root_is_mounted_by_tag_instead_of_a_disk() {
        let mut s = spec();
        s.root_disk = None;
        s.volumes.push(SharedDir {
            host_path: "/h/rootfs".into(),
            guest_path: SharedDir::ROOT.into(),
            read_only: false,
        });
        let params = s.boot_params();
        assert_eq!(params.root_device.as_deref(), Some("vol1"));
        assert_eq!(params.root_fstype.as_deref(), Some("virtiofs"));
        // The root is not also mounted as a volume; the other volume keeps its tag.
        assert_eq!(params.volumes.len(), 1);
        assert_eq!(params.volumes[0].tag, "vol0");
        // One root only: a disk and a shared root together are refused.
        s.root_disk = spec().root_disk;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("one root"), "{err}");
    }

    #[test]
    fn the_translation_cache_follows_the_guest_ram_within_bounds() {
        let sizes: Vec<u32> = [64, 128, 512, 2048, 8192]
            .into_iter()
            .map(tcg_translation_cache_mib)
            .collect();
        assert_eq!(sizes, [32, 32, 64, 256, 512]);
    }

    #[test]
    fn tcg_args_describe_the_whole_vm() {
        let args = qemu_args_with_tsc(&spec(), Accel::Tcg, &QemuPaths::new(&spec()), Some(2445404));
        assert_eq!(value_after(&args, "-accel"), ["tcg,tb-size=32"]);
        assert_eq!(value_after(&args, "-smp"), ["2"]);
        assert_eq!(value_after(&args, "-m"), ["256M"]);
        assert!(args.contains(&"-no-reboot".to_string()));
        let append = value_after(&args, "-append")[0];
        assert!(append.contains("tsc_early_khz=2445404"));
        assert!(append.contains("boxlite.root=/dev/vda"));
        assert!(append.contains("boxlite.port=1024"));
        assert!(append.ends_with("x=y"));
        assert!(append.contains("reboot=t") && append.contains("panic=-1"));
        assert_eq!(
            value_after(&args, "-drive"),
            [
                "file=/b/disk.qcow2,if=none,id=root,format=qcow2,cache=writeback,werror=report,\
              rerror=report,discard=unmap"
            ]
        );
        assert!(value_after(&args, "-chardev")
            .contains(&"socket,id=agent,path=/b/agent.sock,server=on,wait=off"));
        assert!(value_after(&args, "-device")
            .contains(&"virtserialport,chardev=agent,name=boxlite.agent,id=agentport"));
        assert!(value_after(&args, "-chardev").contains(&"file,id=console,path=/b/console.pipe"));
        assert_eq!(
            value_after(&args, "-netdev"),
            ["stream,id=net0,server=off,addr.type=fd,addr.str=3"]
        );
        assert!(value_after(&args, "-device").contains(&"virtio-net-device,netdev=net0"));
        assert!(append.contains("boxlite.net=10.0.2.15/24,10.0.2.2,10.0.2.3"));
        // A volume: shared memory, its daemon's socket, and the guest told where to mount it.
        assert_eq!(
            value_after(&args, "-M"),
            ["microvm,acpi=off,pit=on,pic=on,rtc=on,isa-serial=on,memory-backend=mem"]
        );
        assert_eq!(
            value_after(&args, "-object"),
            ["memory-backend-memfd,id=mem,size=256M,share=on"]
        );
        assert!(value_after(&args, "-qmp")[0].starts_with("unix:/b/qmp.sock,"));
        assert!(value_after(&args, "-incoming").is_empty());
        assert!(value_after(&args, "-chardev").contains(&"socket,id=vol0,path=/b/vol0.sock"));
        assert!(
            value_after(&args, "-device").contains(&"vhost-user-fs-device,chardev=vol0,tag=vol0")
        );
        assert!(append.contains("boxlite.vol=vol0,ro,2f64617461"));
    }

    #[test]
    fn templates_share_ram_through_a_file_and_restores_wait_for_their_state() {
        let mut s = spec();
        s.volumes.clear();
        s.start = VmStart::BuildTemplate {
            ram_file: "/t/ram".into(),
            state: "/t/state".into(),
        };
        let args = qemu_args_with_tsc(&s, Accel::Tcg, &QemuPaths::new(&s), None);
        assert_eq!(
            value_after(&args, "-object"),
            ["memory-backend-file,id=mem,size=256M,mem-path=/t/ram,share=on"]
        );
        let append = value_after(&args, "-append")[0];
        assert!(append.contains("boxlite.template=1"));
        assert!(!append.contains("boxlite.root") && !append.contains("boxlite.hostname"));
        assert!(append.contains("boxlite.net=10.0.2.15/24,10.0.2.2,10.0.2.3"));
        assert!(value_after(&args, "-incoming").is_empty());

        s.start = VmStart::FromTemplate {
            ram_file: "/t/ram".into(),
            state: "/t/state".into(),
        };
        let args = qemu_args_with_tsc(&s, Accel::Tcg, &QemuPaths::new(&s), None);
        assert_eq!(
            value_after(&args, "-object"),
            ["memory-backend-file,id=mem,size=256M,mem-path=/t/ram,share=off,readonly=on,rom=off"]
        );
        assert_eq!(value_after(&args, "-incoming"), ["defer"]);
        assert!(args.contains(&"-S".to_string()));

        s.start = VmStart::FromSnapshot {
            state: "/s/vm.state".into(),
        };
        let args = qemu_args_with_tsc(&s, Accel::Tcg, &QemuPaths::new(&s), None);
        assert_eq!(
            value_after(&args, "-object"),
            ["memory-backend-ram,id=mem,size=256M"]
        );
        assert_eq!(value_after(&args, "-incoming"), ["defer"]);
    }

    #[test]
    fn tsc_rate_comes_from_cpu_mhz() {
        assert_eq!(
            tsc_khz_from_cpuinfo("processor\t: 0\ncpu MHz\t\t: 2445.404\n"),
            Some(2445404)
        );
        assert_eq!(tsc_khz_from_cpuinfo("processor\t: 0\n"), None);
        assert_eq!(tsc_khz_from_cpuinfo("cpu MHz\t: bogus\n"), None);
    }

    #[test]
    fn kvm_args_use_the_host_cpu_and_skip_tcg_workarounds() {
        let mut s = spec();
        s.root_disk = None;
        s.network = None;
        s.volumes.clear();
        let args = qemu_args_with_tsc(&s, Accel::Kvm, &QemuPaths::new(&spec()), Some(2445404));
        assert_eq!(value_after(&args, "-accel"), ["kvm"]);
        assert_eq!(value_after(&args, "-cpu"), ["host"]);
        let append = value_after(&args, "-append")[0];
        assert!(!append.contains("tsc_early_khz"));
        assert!(append.contains("no_timer_check"));
        assert!(!append.contains("boxlite.root"));
        assert!(value_after(&args, "-drive").is_empty());
        assert!(value_after(&args, "-netdev").is_empty());
        assert_eq!(
            value_after(&args, "-object"),
            ["memory-backend-ram,id=mem,size=256M"]
        );
        assert!(!append.contains("boxlite.net"));
    }
}
