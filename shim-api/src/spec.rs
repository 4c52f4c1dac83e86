//! What a VM is made of, as the runtime asks for it and the shim's engines start it: the
//! `VmSpec` (kernel, initramfs, disks, network, shared directories), the engine kinds, and the
//! errors a spec can be refused with.

use std::path::{Path, PathBuf};

use boxlite_protocol::boot::{BootParams, VolumeMount};

/// Longest path a unix socket address can hold (sun_path, with its terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{what} not found at {path}: {hint}")]
    MissingFile {
        what: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    #[error("{program} could not be started: {source}; {hint}")]
    Spawn {
        program: String,
        source: std::io::Error,
        hint: &'static str,
    },
    #[error("socket path {path} is {len} bytes, longer than the {MAX_SOCKET_PATH} a unix socket allows; use a shorter box directory (BOXLITE_HOME)")]
    SocketPathTooLong { path: PathBuf, len: usize },
    #[error("invalid VM spec: {0}")]
    InvalidSpec(String),
    #[error("the {engine} engine cannot run here: {reason}")]
    Unavailable {
        engine: EngineKind,
        reason: &'static str,
    },
    #[error("the {engine} engine failed: {message}")]
    Failed { engine: EngineKind, message: String },
    #[error("preparing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {engine} engine cannot {what}: {reason}")]
    Unsupported {
        engine: EngineKind,
        what: &'static str,
        reason: &'static str,
    },
}

/// Disk image formats an engine can attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// The box's root disk, seen by the guest as `/dev/vda`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DiskSpec {
    pub path: PathBuf,
    pub format: DiskFormat,
    pub read_only: bool,
}

impl DiskSpec {
    /// The size the guest sees: a qcow2's virtual size, a raw file's length.
    pub fn virtual_size(&self) -> std::io::Result<u64> {
        use std::io::Read;
        match self.format {
            DiskFormat::Raw => Ok(std::fs::metadata(&self.path)?.len()),
            DiskFormat::Qcow2 => {
                // Header: magic (4), version (4), backing offset (8), backing size (4),
                // cluster bits (4), then the virtual size (8), big-endian.
                let mut header = [0u8; 32];
                std::fs::File::open(&self.path)?.read_exact(&mut header)?;
                if &header[..4] != b"QFI\xfb" {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a qcow2 image", self.path.display()),
                    ));
                }
                let mut size = [0u8; 8];
                size.copy_from_slice(&header[24..32]);
                Ok(u64::from_be_bytes(size))
            }
        }
    }
}

/// Everything an engine needs to start one VM.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VmSpec {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub cpus: u8,
    pub memory_mib: u32,
    pub root_disk: Option<DiskSpec>,
    /// The guest vsock port the agent listens on.
    pub agent_port: u32,
    /// Where the VM's sockets and console log live (the box directory).
    pub run_dir: PathBuf,
    /// Extra kernel command line words, appended after the engine's own.
    pub extra_cmdline: Vec<String>,
    /// The guest's hostname (at most 63 bytes of `[a-zA-Z0-9_.-]`); `None` leaves the
    /// agent's default.
    #[serde(default)]
    pub hostname: Option<String>,
    /// User-mode networking with these forwards; `None`: no interface but loopback.
    #[serde(default)]
    pub network: Option<NetworkSpec>,
    /// Host directories shared with the guest over virtio-fs.
    #[serde(default)]
    pub volumes: Vec<SharedDir>,
    /// Boot the kernel, or continue a VM from saved state.
    #[serde(default)]
    pub start: VmStart,
}

/// How a VM starts. Saved state is only ever restored into a VM of the same shape (engine,
/// kernel, initramfs, vCPUs, memory, devices): the runtime checks that before asking.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum VmStart {
    /// Boot the kernel.
    #[default]
    Boot,
    /// Boot an agent that mounts no box disk and configures nothing (`boxlite.template=1`),
    /// with guest RAM in `ram_file` (shared), save its device state to `state`, and end.
    BuildTemplate { ram_file: PathBuf, state: PathBuf },
    /// Continue from a template: RAM mapped privately (copy-on-write) from `ram_file`, device
    /// state from `state`; the agent is then given the box's boot parameters.
    FromTemplate { ram_file: PathBuf, state: PathBuf },
    /// Continue from a snapshot: RAM and device state from `state`.
    FromSnapshot { state: PathBuf },
}

impl VmStart {
    /// Whether the VM continues saved state rather than booting.
    pub fn restores(&self) -> bool {
        matches!(
            self,
            VmStart::FromTemplate { .. } | VmStart::FromSnapshot { .. }
        )
    }

    /// How boot metrics name it.
    pub fn name(&self) -> &'static str {
        match self {
            VmStart::Boot | VmStart::BuildTemplate { .. } => "boot",
            VmStart::FromTemplate { .. } => "template",
            VmStart::FromSnapshot { .. } => "snapshot",
        }
    }
}

/// A host directory the guest mounts at `guest_path` (virtio-fs, tag `vol{index}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SharedDir {
    pub host_path: PathBuf,
    pub guest_path: String,
    pub read_only: bool,
}

impl SharedDir {
    /// The `guest_path` of the box's root when it is a shared directory (no root disk):
    /// the agent mounts it as the box's root instead of a volume.
    pub const ROOT: &'static str = "/";

    /// The virtio-fs tag of the `index`th volume.
    pub fn tag(index: usize) -> String {
        format!("vol{index}")
    }

    /// How the guest is told to mount the `index`th volume.
    pub fn mount(&self, index: usize) -> VolumeMount {
        VolumeMount {
            tag: Self::tag(index),
            read_only: self.read_only,
            guest_path: self.guest_path.clone(),
        }
    }
}

/// A box's user-mode network: outbound access and DNS through passt, host ports forwarded
/// in, and where the guest's traffic may go.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkSpec {
    pub forwards: Vec<PortForward>,
    #[serde(default)]
    pub policy: crate::network_policy::NetworkPolicy,
}

/// A host port (on `host_ip`) forwarded to a port of the guest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortForward {
    pub host_ip: std::net::Ipv4Addr,
    pub host_port: u16,
    pub guest_port: u16,
    pub protocol: Protocol,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// The guest side of user-mode networking (the addresses QEMU's slirp made familiar): the box's address and
/// prefix, the gateway, and the DNS server the VMM answers on.
pub const GUEST_NET: &str = "10.0.2.15/24,10.0.2.2,10.0.2.3";
/// The box's address in [`GUEST_NET`].
pub const GUEST_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 15);
/// The gateway in [`GUEST_NET`]: passt maps it to the host's loopback, both ways (the box's
/// policy decides whether the box may use it).
pub const GUEST_GATEWAY: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 2);
/// The DNS server in [`GUEST_NET`]; passt forwards its queries to the host's resolver.
pub const GUEST_DNS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 3);

impl VmSpec {
    /// The host end of the agent channel: a unix socket the VMM listens on.
    pub fn agent_socket(&self) -> PathBuf {
        self.run_dir.join("agent.sock")
    }

    /// The guest's console, as kept on the host (bounded: the shim's console pump).
    pub fn console_log(&self) -> PathBuf {
        self.run_dir.join("console.log")
    }

    /// Where the VMM writes the guest's console: a FIFO the shim copies into the log.
    pub fn console_pipe(&self) -> PathBuf {
        self.run_dir.join("console.pipe")
    }

    /// Where the VMM's own messages go (bad arguments, unreadable kernel, ...).
    pub fn vmm_log(&self) -> PathBuf {
        self.run_dir.join("vmm.log")
    }

    /// The end of the console log and of the VMM's log, for error messages.
    pub fn diagnostics(&self, max_lines: usize) -> String {
        let mut text = console_tail(&self.console_log(), max_lines);
        let vmm = std::fs::read_to_string(self.vmm_log()).unwrap_or_default();
        let vmm: Vec<&str> = vmm.lines().collect();
        if !vmm.is_empty() {
            text.push_str("\n--- VMM ---\n");
            text.push_str(&vmm[vmm.len().saturating_sub(max_lines)..].join("\n"));
        }
        text
    }

    pub fn validate(&self) -> Result<(), EngineError> {
        if self.cpus == 0 {
            return Err(EngineError::InvalidSpec(
                "a VM needs at least 1 vCPU".into(),
            ));
        }
        if self.memory_mib < 64 {
            return Err(EngineError::InvalidSpec(format!(
                "{} MiB of memory is too little for a VM; give it at least 64",
                self.memory_mib
            )));
        }
        let roots = self
            .volumes
            .iter()
            .filter(|v| v.guest_path == SharedDir::ROOT)
            .count();
        if roots > 1 || (roots == 1 && self.root_disk.is_some()) {
            return Err(EngineError::InvalidSpec(
                "a VM has one root: a disk or one shared directory at /".into(),
            ));
        }
        require_file(
            "kernel",
            &self.kernel,
            "run scripts/setup.sh to build the box kernel, or set BOXLITE_KERNEL",
        )?;
        require_file(
            "initramfs",
            &self.initramfs,
            "build the guest agent and its initramfs (scripts/setup.sh)",
        )?;
        for volume in &self.volumes {
            if !volume.host_path.is_dir() {
                return Err(EngineError::MissingFile {
                    what: "volume directory",
                    path: volume.host_path.clone(),
                    hint: "volumes share host directories; create it first",
                });
            }
        }
        if let Some(disk) = &self.root_disk {
            require_file(
                "root disk",
                &disk.path,
                "create the box disk before starting the VM",
            )?;
        }
        Ok(())
    }

    /// The kernel command line words every engine passes. A template's agent gets none of
    /// the box's settings: a box restored from it gets them from [`VmSpec::boot_params`].
    pub fn guest_cmdline(&self) -> Vec<String> {
        // A panic resets the VM, and each engine makes a reset end it: a dead guest is seen
        // at once. (How to reset is engine-specific: see the engines' cmdlines.)
        let mut words = vec!["panic=-1".to_string()];
        if matches!(self.start, VmStart::BuildTemplate { .. }) {
            words.push(format!("{}=1", boxlite_protocol::boot::TEMPLATE_PARAM));
            // Every box's guest network is GUEST_NET: the template's agent configures the
            // interface once, and boxes restored from it only get their resolv.conf.
            let network = BootParams {
                net: self.boot_params().net,
                ..BootParams::default()
            };
            words.extend(network.to_cmdline_words());
        } else {
            words.extend(self.boot_params().to_cmdline_words());
        }
        words.extend(self.extra_cmdline.iter().cloned());
        words
    }

    /// The box's settings for its agent.
    pub fn boot_params(&self) -> BootParams {
        let shared_root = self
            .volumes
            .iter()
            .position(|v| v.guest_path == SharedDir::ROOT);
        BootParams {
            root_device: match shared_root {
                Some(index) => Some(SharedDir::tag(index)),
                None => self.root_disk.as_ref().map(|_| "/dev/vda".to_string()),
            },
            root_fstype: shared_root.map(|_| "virtiofs".to_string()),
            vsock_port: Some(self.agent_port),
            net: self.network.as_ref().map(|_| GUEST_NET.to_string()),
            hostname: self.hostname.clone(),
            volumes: self
                .volumes
                .iter()
                .enumerate()
                .filter(|(_, volume)| volume.guest_path != SharedDir::ROOT)
                .map(|(index, volume)| volume.mount(index))
                .collect(),
        }
    }
}

fn require_file(what: &'static str, path: &Path, hint: &'static str) -> Result<(), EngineError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(EngineError::MissingFile {
            what,
            path: path.to_path_buf(),
            hint,
        })
    }
}

pub fn check_socket_path(path: &Path) -> Result<(), EngineError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(EngineError::SocketPathTooLong {
            path: path.to_path_buf(),
            len,
        });
    }
    Ok(())
}

/// Whether this host can run VMs with hardware virtualisation: the CPU advertises vmx or svm
/// (a software-nested /dev/kvm does not) and /dev/kvm can be opened for writing.
pub fn hardware_virtualization_usable() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let kvm_usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    cpu_has_virtualization_flags(&cpuinfo) && kvm_usable
}

pub fn cpu_has_virtualization_flags(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .any(|line| {
            line.split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
        })
}

/// Which engine runs a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// QEMU `microvm` as a child process of the shim: KVM where usable, TCG elsewhere.
    Qemu,
    /// libkrun inside the shim process (cargo feature `krun`); needs hardware KVM.
    Krun,
}

impl EngineKind {
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Qemu => "qemu",
            EngineKind::Krun => "krun",
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "qemu" => Ok(EngineKind::Qemu),
            "krun" => Ok(EngineKind::Krun),
            other => Err(format!("unknown engine {other:?}: expected qemu or krun")),
        }
    }
}

/// The last `max_lines` lines of a console log, for error messages.
pub fn console_tail(path: &Path, max_lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return format!("(no console output: {} could not be read)", path.display());
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "(the guest printed nothing)".to_string();
    }
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}
