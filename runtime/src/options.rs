//! What a caller asks for: the runtime's options and a box's options, with the checks that
//! turn bad input into a clear error before anything is written.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use boxlite_shim::engine::EngineKind;
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
