//! What a caller asks for: the runtime's options and a box's options, with the checks that
//! turn bad input into a clear error before anything is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::net::Ipv4Addr;

pub use boxlite_shim_api::network_policy::{metadata_networks, IpNet, NetworkPolicy};
use boxlite_shim_api::spec::EngineKind;
pub use boxlite_shim_api::spec::Protocol;

pub use super::security::{
    ResourceLimits, SecurityOptions, SecurityOptionsBuilder, DEFAULT_ENV_ALLOWLIST,
};
use serde::{Deserialize, Serialize};

/// Smallest memory a box's kernel and agent boot in.
pub const MIN_MEMORY_MIB: u32 = 64;
/// Most vCPUs a box may have.
pub const MAX_CPUS: u8 = 64;

/// Options of a [`crate::BoxliteRuntime`].
#[derive(Debug, Clone)]
pub struct BoxliteOptions {
    /// The home: `BOXLITE_HOME`, else `~/.boxlite`, by default.
    pub home_dir: PathBuf,
    /// Registries tried in order for unqualified image names; empty means docker.io.
    pub image_registries: Vec<String>,
}

/// Environment variable with registries for unqualified image names, comma-separated, used
/// when [`BoxliteOptions::default`] is (`BoxliteRuntime::with_defaults`, the default runtime).
pub const IMAGE_REGISTRIES_ENV: &str = "BOXLITE_IMAGE_REGISTRIES";

impl Default for BoxliteOptions {
    /// The home of `BOXLITE_HOME` (else `~/.boxlite`); the registries of
    /// `BOXLITE_IMAGE_REGISTRIES` (else docker.io).
    fn default() -> Self {
        Self {
            home_dir: crate::runtime::default_home(),
            image_registries: std::env::var(IMAGE_REGISTRIES_ENV)
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|r| !r.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// Where a box's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootfsSpec {
    /// An OCI image reference, pulled when not stored yet.
    Image(String),
    /// A root filesystem already prepared on this host: a directory, copied into the box's
    /// disk when the box is created.
    RootfsPath(String),
    /// An OCI image layout directory on this host, with an optional tag.
    Layout { path: PathBuf, tag: Option<String> },
    /// A root filesystem directory on this host shared into the box (virtio-fs), not copied:
    /// the box reads and writes it in place (an extension of the reference's API; what the
    /// containerd shim does with the snapshot containerd prepared). Such a box boots its
    /// kernel (no template) and cannot be snapshotted.
    SharedPath(PathBuf),
}

impl RootfsSpec {
    /// What a user writes for an image: a registry reference, or `oci:PATH[:TAG]` for an OCI
    /// image layout on this host (a PATH may not contain ':' then).
    pub fn from_reference(image: &str) -> Self {
        match image.strip_prefix("oci:") {
            Some(rest) => {
                let (path, tag) = match rest.rsplit_once(':') {
                    Some((p, t)) if !t.contains('/') => (p, Some(t.to_string())),
                    _ => (rest, None),
                };
                RootfsSpec::Layout {
                    path: PathBuf::from(path),
                    tag,
                }
            }
            None => RootfsSpec::Image(image.to_string()),
        }
    }
}

impl Default for RootfsSpec {
    fn default() -> Self {
        RootfsSpec::Image(DEFAULT_IMAGE.to_string())
    }
}

/// The image of a box whose options name none.
pub const DEFAULT_IMAGE: &str = "alpine:latest";
/// vCPUs of a box whose options name no number.
pub const DEFAULT_CPUS: u8 = 1;
/// Memory of a box whose options name none.
pub const DEFAULT_MEMORY_MIB: u32 = 512;

/// Options of one box. `BoxOptions::default()` is a box of [`DEFAULT_IMAGE`] with
/// [`DEFAULT_CPUS`] and [`DEFAULT_MEMORY_MIB`], removed when stopped (`auto_remove`) and
/// stopped when the process that started it exits (`detach: false`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BoxOptions {
    /// vCPUs ([`DEFAULT_CPUS`] when `None`).
    pub cpus: Option<u8>,
    /// Memory in MiB ([`DEFAULT_MEMORY_MIB`] when `None`).
    pub memory_mib: Option<u32>,
    /// Size of the box's disk. Not supported yet: a box's disk is its image plus 2 GiB, and
    /// `Some` is refused rather than ignored.
    pub disk_size_gb: Option<u64>,
    /// Replaces the image's working directory when set.
    pub working_dir: Option<String>,
    /// Added to (and overriding) the image's environment, for every exec.
    pub env: Vec<(String, String)>,
    pub rootfs: RootfsSpec,
    /// Host directories mounted in the box (virtio-fs).
    pub volumes: Vec<VolumeSpec>,
    /// User-mode networking (outbound access, DNS) or none (loopback only).
    pub network: NetworkSpec,
    /// Host ports forwarded into the box (they need the network).
    pub ports: Vec<PortSpec>,
    /// Where the box's network traffic may go. The default reaches the internet but neither
    /// the host's services nor cloud metadata (see [`NetworkPolicy`]).
    pub network_policy: NetworkPolicy,
    /// Not supported yet (`true` is refused): the shim does not run in a mount namespace.
    pub isolate_mounts: bool,
    /// Remove the box (row, disk, directory) when it is stopped. Default `true`.
    pub auto_remove: bool,
    /// Keep the box running after the process that started it exits. Default `false`: the
    /// box's shim powers it off when that process dies. A detached box belongs to its home
    /// and any process may use it later.
    pub detach: bool,
    /// How the box's shim and VMM processes are confined on the host.
    pub security: SecurityOptions,
    pub labels: BTreeMap<String, String>,
    /// How long the VM may take to answer after it starts.
    pub ready_timeout: Duration,
    /// The engine to run the box with; `None` takes `BOXLITE_ENGINE`, else picks one for the
    /// host (krun where built in and hardware virtualisation works, QEMU otherwise).
    pub engine: Option<EngineKind>,
}

impl Default for BoxOptions {
    fn default() -> Self {
        Self {
            cpus: None,
            memory_mib: None,
            disk_size_gb: None,
            working_dir: None,
            env: Vec::new(),
            rootfs: RootfsSpec::default(),
            volumes: Vec::new(),
            network: NetworkSpec::default(),
            ports: Vec::new(),
            network_policy: NetworkPolicy::default(),
            isolate_mounts: false,
            auto_remove: true,
            detach: false,
            security: SecurityOptions::default(),
            labels: BTreeMap::new(),
            ready_timeout: Duration::from_secs(60),
            engine: None,
        }
    }
}

/// A host directory mounted at `guest_path` in the box; read-only is enforced by the host's
/// file server and by the guest's mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub host_path: String,
    pub guest_path: String,
    pub read_only: bool,
}

impl std::str::FromStr for VolumeSpec {
    type Err = String;

    /// `HOST:GUEST` or `HOST:GUEST:ro` (`:rw` also accepted).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, guest, read_only) = match parts.as_slice() {
            [host, guest] => (host, guest, false),
            [host, guest, "ro"] => (host, guest, true),
            [host, guest, "rw"] => (host, guest, false),
            _ => return Err(format!("{s:?} is not HOST_DIR:GUEST_PATH[:ro]")),
        };
        Ok(VolumeSpec {
            host_path: host.to_string(),
            guest_path: guest.to_string(),
            read_only,
        })
    }
}

/// Whether a box has a network interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkSpec {
    /// An interface behind the VMM's user-mode network stack: outbound TCP/UDP and DNS.
    #[default]
    User,
    /// No interface but loopback.
    None,
}

/// The name this crate used before the seeds' `NetworkSpec`.
pub type NetworkMode = NetworkSpec;

impl std::str::FromStr for NetworkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" | "default" => Ok(NetworkSpec::User),
            "none" => Ok(NetworkSpec::None),
            other => Err(format!("unknown network {other:?}: expected user or none")),
        }
    }
}

/// A host port forwarded to a port of the box, from 127.0.0.1 unless `host_ip` says otherwise.
/// `host_port: None` forwards the guest port's own number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_port: Option<u16>,
    pub guest_port: u16,
    pub protocol: Protocol,
    #[serde(default = "localhost")]
    pub host_ip: Ipv4Addr,
}

fn localhost() -> Ipv4Addr {
    Ipv4Addr::LOCALHOST
}

impl Default for PortSpec {
    fn default() -> Self {
        Self {
            host_port: None,
            guest_port: 0,
            protocol: Protocol::Tcp,
            host_ip: Ipv4Addr::LOCALHOST,
        }
    }
}

impl PortSpec {
    pub fn tcp(host_port: u16, guest_port: u16) -> Self {
        Self {
            host_port: Some(host_port),
            guest_port,
            protocol: Protocol::Tcp,
            host_ip: Ipv4Addr::LOCALHOST,
        }
    }

    pub fn udp(host_port: u16, guest_port: u16) -> Self {
        Self {
            protocol: Protocol::Udp,
            ..Self::tcp(host_port, guest_port)
        }
    }
}

impl std::str::FromStr for PortSpec {
    type Err = String;

    /// `HOST:GUEST`, `IP:HOST:GUEST`, each with an optional `/tcp` or `/udp`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not [IP:]HOST_PORT:GUEST_PORT[/tcp|/udp]");
        let (ports, protocol) = match s.rsplit_once('/') {
            Some((ports, "tcp")) => (ports, Protocol::Tcp),
            Some((ports, "udp")) => (ports, Protocol::Udp),
            Some(_) => return Err(bad()),
            None => (s, Protocol::Tcp),
        };
        let parts: Vec<&str> = ports.split(':').collect();
        let (ip, host, guest) = match parts.as_slice() {
            [host, guest] => (Ipv4Addr::LOCALHOST, host, guest),
            [ip, host, guest] => (ip.parse().map_err(|_| bad())?, host, guest),
            _ => return Err(bad()),
        };
        Ok(PortSpec {
            host_port: Some(host.parse().map_err(|_| bad())?),
            guest_port: guest.parse().map_err(|_| bad())?,
            protocol,
            host_ip: ip,
        })
    }
}

impl PortSpec {
    /// The host port: `host_port`, else the guest port's own number.
    pub fn effective_host_port(&self) -> u16 {
        self.host_port.unwrap_or(self.guest_port)
    }
}

impl BoxOptions {
    /// Options for a box of `reference`, otherwise the defaults.
    pub fn image(reference: impl Into<String>) -> Self {
        Self::with_rootfs(RootfsSpec::Image(reference.into()))
    }

    pub fn with_rootfs(rootfs: RootfsSpec) -> Self {
        Self {
            rootfs,
            ..Self::default()
        }
    }

    /// vCPUs the box gets.
    pub fn effective_cpus(&self) -> u8 {
        self.cpus.unwrap_or(DEFAULT_CPUS)
    }

    /// Memory the box gets, in MiB.
    pub fn effective_memory_mib(&self) -> u32 {
        self.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB)
    }

    /// Checks every field; the first problem found is the error.
    pub fn validate(&self) -> Result<(), InvalidArgument> {
        use InvalidArgument as E;
        let cpus = self.effective_cpus();
        if cpus == 0 || cpus > MAX_CPUS {
            return Err(E::Cpus { value: cpus });
        }
        let memory = self.effective_memory_mib();
        if memory < MIN_MEMORY_MIB {
            return Err(E::Memory { value: memory });
        }
        if let Some(host) = host_memory_mib().filter(|&host| u64::from(memory) > host) {
            return Err(E::MemoryAboveHost {
                value: memory,
                host,
            });
        }
        if self.disk_size_gb.is_some() {
            return Err(E::NotSupported {
                field: "disk_size_gb",
                hint: "a box's disk is its image plus 2 GiB; leave it None",
            });
        }
        if self.isolate_mounts {
            return Err(E::NotSupported {
                field: "isolate_mounts",
                hint: "leave it false",
            });
        }
        self.security.validate()?;
        if let Some((key, _)) = self
            .env
            .iter()
            .find(|(k, _)| k.is_empty() || k.contains('=') || k.contains('\0'))
        {
            return Err(E::EnvName(key.clone()));
        }
        if let Some(dir) = &self.working_dir {
            if !dir.starts_with('/') {
                return Err(E::WorkingDir(dir.clone()));
            }
        }
        let mut guest_paths = std::collections::BTreeSet::new();
        for volume in &self.volumes {
            let host = &volume.host_path;
            let host_problem = |problem| {
                Err(E::VolumeHostPath {
                    path: host.clone(),
                    problem,
                })
            };
            if !Path::new(host).is_absolute() {
                return host_problem("must be absolute");
            }
            if !Path::new(host).is_dir() {
                return host_problem("is not a directory (volumes share directories)");
            }
            let guest = &volume.guest_path;
            let guest_problem = |problem| {
                Err(E::VolumeGuestPath {
                    path: guest.clone(),
                    problem,
                })
            };
            if !guest.starts_with('/')
                || guest.trim_end_matches('/').is_empty()
                || guest.split('/').any(|p| p == "..")
            {
                return guest_problem("must be an absolute path below / without `..`");
            }
            if guest.contains(['\0', ',']) || !guest_paths.insert(guest.trim_end_matches('/')) {
                return guest_problem("is invalid or used twice");
            }
        }
        if !self.ports.is_empty() && self.network == NetworkSpec::None {
            return Err(E::PortsWithoutNetwork);
        }
        let mut seen = std::collections::BTreeSet::new();
        for port in &self.ports {
            let host_port = port.effective_host_port();
            if host_port == 0 || port.guest_port == 0 {
                return Err(E::PortZero {
                    host_port,
                    guest_port: port.guest_port,
                });
            }
            if !seen.insert((port.host_ip, host_port, port.protocol)) {
                return Err(E::PortTwice {
                    host_port,
                    protocol: port.protocol.name(),
                });
            }
        }
        match &self.rootfs {
            RootfsSpec::Image(reference) if reference.trim().is_empty() => Err(E::EmptyImage),
            RootfsSpec::RootfsPath(path) if !Path::new(path).is_dir() => {
                Err(E::RootfsPath(path.clone()))
            }
            RootfsSpec::SharedPath(path) if !path.is_absolute() || !path.is_dir() => {
                Err(E::RootfsPath(path.display().to_string()))
            }
            _ if self.ready_timeout.is_zero() => Err(E::ReadyTimeout),
            _ => Ok(()),
        }
    }
}

/// What is wrong with an option or argument, one variant per kind of mistake (the SDKs show
/// the message; programs can match the variant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidArgument {
    #[error("cpus must be between 1 and {MAX_CPUS}, not {value}")]
    Cpus { value: u8 },
    #[error("memory must be at least {MIN_MEMORY_MIB} MiB, not {value} MiB")]
    Memory { value: u32 },
    #[error("memory of {value} MiB is more than this host has ({host} MiB)")]
    MemoryAboveHost { value: u32, host: u64 },
    #[error("{field} is not supported yet: {hint}")]
    NotSupported {
        field: &'static str,
        hint: &'static str,
    },
    #[error("invalid environment variable name {0:?}")]
    EnvName(String),
    #[error("working directory {0:?} must be an absolute path")]
    WorkingDir(String),
    #[error("volume host path {path} {problem}")]
    VolumeHostPath { path: String, problem: &'static str },
    #[error("volume guest path {path:?} {problem}")]
    VolumeGuestPath { path: String, problem: &'static str },
    #[error("ports need the network: drop --network none or the ports")]
    PortsWithoutNetwork,
    #[error("port 0 cannot be forwarded ({host_port} -> {guest_port})")]
    PortZero { host_port: u16, guest_port: u16 },
    #[error("host port {host_port}/{protocol} is forwarded twice")]
    PortTwice {
        host_port: u16,
        protocol: &'static str,
    },
    #[error("the image reference is empty")]
    EmptyImage,
    #[error("rootfs path {0:?} is not a directory (RootfsPath and SharedPath take a prepared root filesystem directory, SharedPath an absolute path)")]
    RootfsPath(String),
    #[error("the ready timeout must be longer than zero")]
    ReadyTimeout,
    #[error("invalid box name {0:?}: use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit")]
    Name(String),
    /// A security option this host cannot honour, or a bad value in one.
    #[error("security.{field}: {problem}")]
    Security {
        field: &'static str,
        problem: String,
    },
    #[error("{0:?} is not an absolute path in the box")]
    GuestPath(String),
    #[error("{call}: the source is a directory and CopyOptions::recursive is false")]
    CopyOfDirectoryNotRecursive { call: &'static str },
    #[error("script {path}: {problem}")]
    Script { path: String, problem: String },
    #[error("{0:?} is not a package name pip should be given (no options, no spaces)")]
    Package(String),
    #[error("{0:?} is not a terminal size (rows and columns from 1 to 65535)")]
    TerminalSize(String),
    /// A `ComputerBox` call with coordinates off the screen, or keys or text it cannot send.
    #[error("{0}")]
    Desktop(String),
}

/// This host's memory in MiB (MemTotal of /proc/meminfo); `None` if it cannot be read.
fn host_memory_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Whether `name` may name a box: like Docker's container names.
pub fn validate_name(name: &str) -> Result<(), InvalidArgument> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        || name.len() > 128
    {
        return Err(InvalidArgument::Name(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_and_local_layouts_are_told_apart() {
        assert_eq!(
            RootfsSpec::from_reference("registry.local:5000/busybox:1"),
            RootfsSpec::Image("registry.local:5000/busybox:1".into())
        );
        assert_eq!(
            RootfsSpec::from_reference("oci:/cache/images/python:python"),
            RootfsSpec::Layout {
                path: "/cache/images/python".into(),
                tag: Some("python".into())
            }
        );
        assert_eq!(
            RootfsSpec::from_reference("oci:./layout"),
            RootfsSpec::Layout {
                path: "./layout".into(),
                tag: None
            }
        );
        // The box types' defaults are the layouts scripts/build-images.sh keeps.
        for options in [
            crate::CodeBox::default_options(),
            crate::BrowserBox::default_options(),
            crate::ComputerBox::default_options(),
        ] {
            assert!(
                matches!(options.rootfs, RootfsSpec::Layout { .. }),
                "{:?}",
                options.rootfs
            );
        }
    }

    #[test]
    fn bad_options_are_named() {
        let ok = BoxOptions::image("busybox");
        assert_eq!(ok.validate(), Ok(()));
        let err = |f: fn(&mut BoxOptions)| {
            let mut o = ok.clone();
            f(&mut o);
            o.validate().unwrap_err().to_string()
        };
        assert!(err(|o| o.cpus = Some(0)).contains("cpus"));
        assert!(err(|o| o.memory_mib = Some(1)).contains("at least 64 MiB"));
        assert!(err(|o| o.memory_mib = Some(u32::MAX)).contains("more than this host has"));
        assert!(err(|o| o.disk_size_gb = Some(10)).contains("disk_size_gb"));
        assert!(err(|o| o.security.jailer_enabled = true).contains("jailer_enabled"));
        assert!(err(|o| o.env = vec![("A=B".into(), "x".into())]).contains("A=B"));
        assert!(err(|o| o.working_dir = Some("rel".into())).contains("absolute"));
        assert!(err(|o| o.rootfs = RootfsSpec::Image(" ".into())).contains("empty"));
        // Typed: programs can match the mistake.
        let mut o = ok.clone();
        o.ports = vec![PortSpec::tcp(8080, 80), PortSpec::tcp(8080, 81)];
        assert_eq!(
            o.validate(),
            Err(InvalidArgument::PortTwice {
                host_port: 8080,
                protocol: "tcp"
            })
        );
    }

    #[test]
    fn names_follow_docker_rules() {
        assert!(validate_name("web-1.test_a").is_ok());
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
