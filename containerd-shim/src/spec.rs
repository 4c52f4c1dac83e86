//! The parts of an OCI runtime spec (the bundle's `config.json`, an exec's process) that a
//! box can honour. Everything else in the spec (cgroups, seccomp, capabilities, mounts) is
//! the VM's business: the box is the isolation boundary.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::ShimError;

/// The annotation CRI puts on a pod's sandbox ("pause") container.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// Annotations an operator may set (on the pod or the container) to size the box.
pub const CPUS_ANNOTATION: &str = "io.boxlite.cpus";
pub const MEMORY_ANNOTATION: &str = "io.boxlite.memory_mib";

/// Largest config.json read: containerd writes a few KiB.
const MAX_SPEC_BYTES: u64 = 4 << 20;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub process: Option<Process>,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub linux: Option<Linux>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
}

#[derive(Debug, Default, Deserialize)]
pub struct Linux {
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
    #[serde(default)]
    pub resources: Option<Resources>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub memory: Option<Memory>,
    #[serde(default)]
    pub cpu: Option<Cpu>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Memory {
    #[serde(default)]
    pub limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Cpu {
    #[serde(default)]
    pub quota: Option<i64>,
    #[serde(default)]
    pub period: Option<u64>,
}

impl Spec {
    /// `config.json` of the bundle in `bundle`.
    pub fn load(bundle: &Path) -> Result<Self, ShimError> {
        use std::io::Read;
        let path = bundle.join("config.json");
        let mut text = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_SPEC_BYTES).read_to_end(&mut text))
            .map_err(|source| ShimError::Io {
                what: format!("reading {}", path.display()),
                source,
            })?;
        serde_json::from_slice(&text)
            .map_err(|e| ShimError::InvalidSpec(format!("{}: {e}", path.display())))
    }

    /// The pod's network namespace, when the spec joins one (CRI pods on a CNI network).
    pub fn network_namespace(&self) -> Option<&str> {
        self.linux
            .as_ref()?
            .namespaces
            .iter()
            .find(|ns| ns.kind == "network")?
            .path
            .as_deref()
            .filter(|p| !p.is_empty())
    }

    /// A CRI pod's sandbox container: it only holds the pod's namespaces, so it needs no VM.
    pub fn is_pod_sandbox(&self) -> bool {
        self.annotations
            .get(CONTAINER_TYPE_ANNOTATION)
            .is_some_and(|t| t == "sandbox")
    }

    /// vCPUs: the annotation, else the CPU quota rounded up; `None` leaves the default.
    pub fn cpus(&self) -> Result<Option<u8>, ShimError> {
        if let Some(value) = self.annotations.get(CPUS_ANNOTATION) {
            return value.parse().map(Some).map_err(|_| {
                ShimError::InvalidSpec(format!(
                    "{CPUS_ANNOTATION}={value:?} is not a number of vCPUs (1-255)"
                ))
            });
        }
        let cpu = self.resources().and_then(|r| r.cpu.as_ref());
        Ok(match cpu.and_then(|c| Some((c.quota?, c.period?))) {
            Some((quota, period)) if quota > 0 && period > 0 => {
                Some((quota as u64).div_ceil(period).clamp(1, 255) as u8)
            }
            _ => None,
        })
    }

    /// Guest memory in MiB: the annotation, else the memory limit (at least 128 MiB, which a
    /// box needs to boot); `None` leaves the default.
    pub fn memory_mib(&self) -> Result<Option<u32>, ShimError> {
        if let Some(value) = self.annotations.get(MEMORY_ANNOTATION) {
            return value.parse().map(Some).map_err(|_| {
                ShimError::InvalidSpec(format!(
                    "{MEMORY_ANNOTATION}={value:?} is not a size in MiB"
                ))
            });
        }
        let limit = self.resources().and_then(|r| r.memory.as_ref()?.limit);
        Ok(match limit {
            Some(bytes) if bytes > 0 => {
                Some(((bytes as u64) >> 20).clamp(128, u32::MAX as u64) as u32)
            }
            _ => None,
        })
    }

    fn resources(&self) -> Option<&Resources> {
        self.linux.as_ref()?.resources.as_ref()
    }
}

impl Process {
    /// An exec's process: the JSON that containerd sends in `ExecProcessRequest.spec`.
    pub fn from_json(json: &[u8]) -> Result<Self, ShimError> {
        serde_json::from_slice(json)
            .map_err(|e| ShimError::InvalidSpec(format!("exec process: {e}")))
    }

    /// `KEY=VALUE` entries split; entries without '=' are dropped, as runc does.
    pub fn env_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.env.iter().filter_map(|entry| entry.split_once('='))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_a_box_honours() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","process":{"terminal":false,"user":{"uid":1000,"gid":100},
            "args":["sh","-c","echo hi"],"env":["PATH=/bin","NOEQUALS","A=b=c"],"cwd":"/srv"},
            "annotations":{"io.kubernetes.cri.container-type":"sandbox"},
            "linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/var/run/netns/cni-1"}],
            "resources":{"memory":{"limit":536870912},"cpu":{"quota":150000,"period":100000}}}}"#,
        )
        .unwrap();
        let process = spec.process.as_ref().unwrap();
        assert_eq!(process.args, ["sh", "-c", "echo hi"]);
        assert_eq!((process.user.uid, process.user.gid), (1000, 100));
        assert_eq!(
            process.env_pairs().collect::<Vec<_>>(),
            [("PATH", "/bin"), ("A", "b=c")]
        );
        assert_eq!(spec.network_namespace(), Some("/var/run/netns/cni-1"));
        assert!(spec.is_pod_sandbox());
        assert_eq!(spec.cpus().unwrap(), Some(2));
        assert_eq!(spec.memory_mib().unwrap(), Some(512));
    }

    #[test]
    fn annotations_size_the_box_and_bad_ones_are_refused() {
        let mut spec = Spec::default();
        assert_eq!(spec.cpus().unwrap(), None);
        assert_eq!(spec.memory_mib().unwrap(), None);
        spec.annotations
            .insert(MEMORY_ANNOTATION.into(), "256".into());
        spec.annotations
            .insert(CPUS_ANNOTATION.into(), "lots".into());
        assert_eq!(spec.memory_mib().unwrap(), Some(256));
        let err = spec.cpus().unwrap_err().to_string();
        assert!(err.contains("io.boxlite.cpus"), "{err}");
        assert!(!spec.is_pod_sandbox());
        assert_eq!(spec.network_namespace(), None);
    }
}
