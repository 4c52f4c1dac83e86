//! What a caller asks for: the runtime's options and a box's options, with the checks that
//! turn bad input into a clear error before anything is written.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use std::net::Ipv4Addr;

use boxlite_shim::engine::EngineKind;
pub use boxlite_shim::engine::Protocol;
use serde::{Deserialize, Serialize};

/// Smallest memory a box's kernel and agent boot in.
pub const MIN_MEMORY_MIB: u32 = 64;
/// Most vCPUs a box may have.
pub const MAX_CPUS: u8 = 64;

/// Options of a [`crate::BoxliteRuntime`].
#[derive(Debug, Clone, Default)]
pub struct BoxliteOptions {
    /// The home (`~/.boxlite`, or `BOXLITE_HOME`, when `None`).
    pub home_dir: Option<PathBuf>,
    /// Registries tried in order for unqualified image names; empty means docker.io.
    pub image_registries: Vec<String>,
}

/// Where a box's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootfsSpec {
    /// An OCI image reference, pulled when not stored yet.
    Image(String),
    /// An OCI image layout directory on this host, with an optional tag.
    Layout { path: PathBuf, tag: Option<String> },
}

/// Options of one box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoxOptions {
    pub rootfs: RootfsSpec,
    pub cpus: u8,
    pub memory_mib: u32,
    /// Added to (and overriding) the image's environment, for every exec.
    pub env: Vec<(String, String)>,
    /// Replaces the image's working directory when set.
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// How long the VM may take to answer after it starts.
    pub ready_timeout: Duration,
    /// The engine to run the box with; `None` takes `BOXLITE_ENGINE`, else picks one for the
    /// host (krun where built in and hardware virtualisation works, QEMU otherwise).
    #[serde(default)]
    pub engine: Option<EngineKind>,
    /// User-mode networking (outbound access, DNS) or none (loopback only).
    #[serde(default)]
    pub network: NetworkMode,
    /// Host ports forwarded into the box (they need the network).
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Host directories mounted in the box (virtio-fs).
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
}

/// A host directory mounted at `guest_path` in the box; read-only is enforced by the host's
/// file server and by the guest's mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub host_path: PathBuf,
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
            host_path: PathBuf::from(host),
            guest_path: guest.to_string(),
            read_only,
        })
    }
}

/// Whether a box has a network interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// An interface behind the VMM's user-mode network stack: outbound TCP/UDP and DNS.
    #[default]
    User,
    /// No interface but loopback.
    None,
}

impl std::str::FromStr for NetworkMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" | "default" => Ok(NetworkMode::User),
            "none" => Ok(NetworkMode::None),
            other => Err(format!("unknown network {other:?}: expected user or none")),
        }
    }
}

/// A host port forwarded to a port of the box, from 127.0.0.1 unless `host_ip` says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub host_port: u16,
    pub guest_port: u16,
    pub protocol: Protocol,
    #[serde(default = "localhost")]
    pub host_ip: Ipv4Addr,
}

fn localhost() -> Ipv4Addr {
    Ipv4Addr::LOCALHOST
}

impl PortSpec {
    pub fn tcp(host_port: u16, guest_port: u16) -> Self {
        Self {
            host_port,
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
            host_port: host.parse().map_err(|_| bad())?,
            guest_port: guest.parse().map_err(|_| bad())?,
            protocol,
            host_ip: ip,
        })
    }
}

impl BoxOptions {
    pub fn image(reference: impl Into<String>) -> Self {
        Self::with_rootfs(RootfsSpec::Image(reference.into()))
    }

    pub fn with_rootfs(rootfs: RootfsSpec) -> Self {
        Self {
            rootfs,
            cpus: 1,
            memory_mib: 512,
            env: Vec::new(),
            working_dir: None,
            labels: BTreeMap::new(),
            ready_timeout: Duration::from_secs(60),
            engine: None,
            network: NetworkMode::User,
            ports: Vec::new(),
            volumes: Vec::new(),
        }
    }

    /// Checks every field; the first problem found is the error.
    pub fn validate(&self) -> Result<(), String> {
        if self.cpus == 0 || self.cpus > MAX_CPUS {
            return Err(format!(
                "cpus must be between 1 and {MAX_CPUS}, not {}",
                self.cpus
            ));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(format!(
                "memory must be at least {MIN_MEMORY_MIB} MiB, not {} MiB",
                self.memory_mib
            ));
        }
        if let Some((key, _)) = self
            .env
            .iter()
            .find(|(k, _)| k.is_empty() || k.contains('=') || k.contains('\0'))
        {
            return Err(format!("invalid environment variable name {key:?}"));
        }
        if let Some(dir) = &self.working_dir {
            if !dir.starts_with('/') {
                return Err(format!(
                    "working directory {dir:?} must be an absolute path"
                ));
            }
        }
        let mut guest_paths = std::collections::BTreeSet::new();
        for volume in &self.volumes {
            let host = volume.host_path.display();
            if !volume.host_path.is_absolute() {
                return Err(format!("volume host path {host} must be absolute"));
            }
            if !volume.host_path.is_dir() {
                return Err(format!(
                    "volume host path {host} is not a directory (volumes share directories)"
                ));
            }
            let guest = &volume.guest_path;
            if !guest.starts_with('/') || guest == "/" || guest.split('/').any(|p| p == "..") {
                return Err(format!(
                    "volume guest path {guest:?} must be an absolute path below / without `..`"
                ));
            }
            if guest.contains(['\0', ',']) || !guest_paths.insert(guest.trim_end_matches('/')) {
                return Err(format!(
                    "volume guest path {guest:?} is invalid or used twice"
                ));
            }
        }
        if !self.ports.is_empty() && self.network == NetworkMode::None {
            return Err("ports need the network: drop --network none or the ports".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for port in &self.ports {
            if port.host_port == 0 || port.guest_port == 0 {
                return Err(format!(
                    "port 0 cannot be forwarded ({} -> {})",
                    port.host_port, port.guest_port
                ));
            }
            if !seen.insert((port.host_ip, port.host_port, port.protocol)) {
                return Err(format!(
                    "host port {}/{} is forwarded twice",
                    port.host_port,
                    port.protocol.name()
                ));
            }
        }
        match &self.rootfs {
            RootfsSpec::Image(reference) if reference.trim().is_empty() => {
                Err("the image reference is empty".into())
            }
            _ if self.ready_timeout.is_zero() => {
                Err("the ready timeout must be longer than zero".into())
            }
            _ => Ok(()),
        }
    }
}

/// Whether `name` may name a box: like Docker's container names.
pub fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        || name.len() > 128
    {
        return Err(format!(
            "invalid box name {name:?}: use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_options_are_named() {
        let ok = BoxOptions::image("busybox");
        assert_eq!(ok.validate(), Ok(()));
        let err = |f: fn(&mut BoxOptions)| {
            let mut o = ok.clone();
            f(&mut o);
            o.validate().unwrap_err()
        };
        assert!(err(|o| o.cpus = 0).contains("cpus"));
        assert!(err(|o| o.memory_mib = 1).contains("at least 64 MiB"));
        assert!(err(|o| o.env = vec![("A=B".into(), "x".into())]).contains("A=B"));
        assert!(err(|o| o.working_dir = Some("rel".into())).contains("absolute"));
        assert!(err(|o| o.rootfs = RootfsSpec::Image(" ".into())).contains("empty"));
    }

    #[test]
    fn names_follow_docker_rules() {
        assert!(validate_name("web-1.test_a").is_ok());
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
