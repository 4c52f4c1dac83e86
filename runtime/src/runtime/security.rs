//! `SecurityOptions`: how a box's shim and VMM processes are confined on the host.
//!
//! Every field either does what it says or is refused by [`SecurityOptions::validate`] with
//! the reason: nothing is accepted and silently ignored. What is applied today, to the shim
//! (and so to the VMM and helpers it starts, which inherit it): resource limits (rlimits),
//! closing inherited descriptors, and an environment reduced to an allowlist. Dropping to
//! another user, namespaces, chroot and seccomp (the reference's "jailer") are refused until
//! they are implemented.

use std::path::PathBuf;

use boxlite_shim_api::launch::LaunchOptions;

use super::options::InvalidArgument;
use serde::{Deserialize, Serialize};

/// Environment variables a shim keeps when the environment is sanitised and no allowlist is
/// given: what the shim, QEMU and virtiofsd read, and logging.
pub const DEFAULT_ENV_ALLOWLIST: [&str; 7] = [
    "PATH",
    "HOME",
    "LANG",
    "TMPDIR",
    "RUST_LOG",
    "BOXLITE_VIRTIOFSD",
    "BOXLITE_TMPDIR",
];

/// Resource limits (rlimits) of the shim and every process it starts (the VMM included).
/// `None` leaves a limit as inherited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceLimits {
    /// Open descriptors per process (RLIMIT_NOFILE).
    pub max_open_files: Option<u64>,
    /// Largest file a process may write, in bytes (RLIMIT_FSIZE).
    pub max_file_size: Option<u64>,
    /// Processes and threads of the user (RLIMIT_NPROC; not enforced for root).
    pub max_processes: Option<u64>,
    /// Address space per process, in bytes (RLIMIT_AS): must leave room for the guest's RAM.
    pub max_memory: Option<u64>,
    /// CPU seconds per process (RLIMIT_CPU): the VMM is killed past it.
    pub max_cpu_time: Option<u64>,
}

/// How a box's host processes are confined. See the module documentation for what is
/// applied; [`SecurityOptions::development`], [`SecurityOptions::standard`] and
/// [`SecurityOptions::maximum`] are the presets, [`SecurityOptions::builder`] builds others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityOptions {
    /// The reference's jailer (namespaces, chroot, seccomp, privilege drop together). Not
    /// supported yet: `true` is refused.
    pub jailer_enabled: bool,
    /// A seccomp filter on the shim and VMM. Not supported yet: `true` is refused.
    pub seccomp_enabled: bool,
    /// Run the shim as this user. Only the current user is supported (others are refused).
    pub uid: Option<u32>,
    /// Run the shim with this group. Only the current group is supported.
    pub gid: Option<u32>,
    /// A new PID namespace for the shim. Not supported yet: `true` is refused.
    pub new_pid_ns: bool,
    /// A new network namespace for the shim. Not supported yet: `true` is refused.
    pub new_net_ns: bool,
    /// Directory a chroot would be built under. Not supported yet: `Some` is refused.
    pub chroot_base: Option<PathBuf>,
    /// Chroot the shim. Not supported yet: `true` is refused.
    pub chroot_enabled: bool,
    /// Close every descriptor the embedding program leaked into the shim (all but 0-2).
    pub close_fds: bool,
    /// Start the shim with only the variables of `env_allowlist`.
    pub sanitize_env: bool,
    /// Variables kept when `sanitize_env` (empty: [`DEFAULT_ENV_ALLOWLIST`]).
    pub env_allowlist: Vec<String>,
    pub resource_limits: ResourceLimits,
    /// A macOS sandbox profile. Linux has none: `Some` is refused.
    pub sandbox_profile: Option<PathBuf>,
    /// Whether the host sandbox lets the shim use the network (macOS). On Linux the box's
    /// network is `BoxOptions::network`; `false` is refused here so that it is not mistaken
    /// for a way to turn the network off.
    pub network_enabled: bool,
}

impl Default for SecurityOptions {
    /// [`SecurityOptions::standard`].
    fn default() -> Self {
        Self::standard()
    }
}

impl SecurityOptions {
    /// Nothing applied: the shim inherits the caller's descriptors, environment and limits.
    pub fn development() -> Self {
        Self {
            jailer_enabled: false,
            seccomp_enabled: false,
            uid: None,
            gid: None,
            new_pid_ns: false,
            new_net_ns: false,
            chroot_base: None,
            chroot_enabled: false,
            close_fds: false,
            sanitize_env: false,
            env_allowlist: Vec::new(),
            resource_limits: ResourceLimits::default(),
            sandbox_profile: None,
            network_enabled: true,
        }
    }

    /// No leaked descriptors, a sanitised environment (the default).
    pub fn standard() -> Self {
        Self {
            close_fds: true,
            sanitize_env: true,
            ..Self::development()
        }
    }

    /// `standard()` plus resource limits: 4096 descriptors, files of at most 64 GiB, 24 hours
    /// of CPU per process.
    pub fn maximum() -> Self {
        Self {
            resource_limits: ResourceLimits {
                max_open_files: Some(4096),
                max_file_size: Some(64 << 30),
                max_cpu_time: Some(24 * 3600),
                ..ResourceLimits::default()
            },
            ..Self::standard()
        }
    }

    pub fn builder() -> SecurityOptionsBuilder {
        SecurityOptionsBuilder::default()
    }

    /// The first field set to something this host cannot honour, as an error that says so.
    pub fn validate(&self) -> Result<(), InvalidArgument> {
        let problem = |field: &'static str, problem: String| {
            Err(InvalidArgument::Security { field, problem })
        };
        let unsupported = |field: &'static str| {
            problem(
                field,
                "not supported yet; leave it off (supported: close_fds, sanitize_env, \
                 env_allowlist, resource_limits)"
                    .into(),
            )
        };
        if self.jailer_enabled {
            return unsupported("jailer_enabled");
        }
        if self.seccomp_enabled {
            return unsupported("seccomp_enabled");
        }
        if self.new_pid_ns {
            return unsupported("new_pid_ns");
        }
        if self.new_net_ns {
            return unsupported("new_net_ns");
        }
        if self.chroot_enabled || self.chroot_base.is_some() {
            return unsupported("chroot_enabled/chroot_base");
        }
        if self.sandbox_profile.is_some() {
            return problem(
                "sandbox_profile",
                "a macOS sandbox profile; Linux has none".into(),
            );
        }
        if !self.network_enabled {
            return problem(
                "network_enabled",
                "false has no meaning on Linux; use BoxOptions::network = NetworkSpec::None \
                 for a box without a network"
                    .into(),
            );
        }
        // SAFETY: geteuid/getegid only read this process's credentials.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if self.uid.is_some_and(|u| u != uid) || self.gid.is_some_and(|g| g != gid) {
            return problem(
                "uid/gid",
                format!(
                    "running the shim as another user is not supported yet; leave them None \
                     or set them to this user ({uid}:{gid})"
                ),
            );
        }
        let limits = &self.resource_limits;
        if limits.max_open_files.is_some_and(|n| n < 64) {
            return problem(
                "resource_limits.max_open_files",
                "must be at least 64 (the VMM needs descriptors)".into(),
            );
        }
        if self
            .env_allowlist
            .iter()
            .any(|name| name.is_empty() || name.contains(['=', '\0']))
        {
            return problem("env_allowlist", "holds an invalid variable name".into());
        }
        Ok(())
    }

    /// What `launch` applies to the shim process.
    pub(crate) fn launch_options(&self) -> LaunchOptions {
        let limits = &self.resource_limits;
        let rlimits = [
            (libc::RLIMIT_NOFILE, limits.max_open_files),
            (libc::RLIMIT_FSIZE, limits.max_file_size),
            (libc::RLIMIT_NPROC, limits.max_processes),
            (libc::RLIMIT_AS, limits.max_memory),
            (libc::RLIMIT_CPU, limits.max_cpu_time),
        ]
        .into_iter()
        .filter_map(|(resource, limit)| Some((resource as i32, limit?)))
        .collect();
        let env = self.sanitize_env.then(|| {
            let allowed: Vec<String> = if self.env_allowlist.is_empty() {
                DEFAULT_ENV_ALLOWLIST
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                self.env_allowlist.clone()
            };
            allowed
                .into_iter()
                .filter_map(|name| Some((name.clone(), std::env::var(&name).ok()?)))
                .collect()
        });
        LaunchOptions {
            rlimits,
            close_fds: self.close_fds,
            env,
        }
    }
}

/// Builds [`SecurityOptions`] from [`SecurityOptions::standard`].
#[derive(Debug, Clone, Default)]
pub struct SecurityOptionsBuilder {
    options: SecurityOptions,
}

impl SecurityOptionsBuilder {
    /// Starts from a preset instead.
    pub fn from_preset(options: SecurityOptions) -> Self {
        Self { options }
    }

    pub fn close_fds(mut self, close: bool) -> Self {
        self.options.close_fds = close;
        self
    }

    pub fn sanitize_env(mut self, sanitize: bool) -> Self {
        self.options.sanitize_env = sanitize;
        self
    }

    /// Keeps `name` when the environment is sanitised.
    pub fn allow_env(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.options.env_allowlist.contains(&name) {
            self.options.env_allowlist.push(name);
        }
        self
    }

    pub fn resource_limits(mut self, limits: ResourceLimits) -> Self {
        self.options.resource_limits = limits;
        self
    }

    pub fn max_open_files(mut self, n: u64) -> Self {
        self.options.resource_limits.max_open_files = Some(n);
        self
    }

    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.options.resource_limits.max_file_size = Some(bytes);
        self
    }

    pub fn max_processes(mut self, n: u64) -> Self {
        self.options.resource_limits.max_processes = Some(n);
        self
    }

    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.options.resource_limits.max_memory = Some(bytes);
        self
    }

    pub fn max_cpu_time(mut self, seconds: u64) -> Self {
        self.options.resource_limits.max_cpu_time = Some(seconds);
        self
    }

    pub fn jailer_enabled(mut self, enabled: bool) -> Self {
        self.options.jailer_enabled = enabled;
        self
    }

    pub fn seccomp_enabled(mut self, enabled: bool) -> Self {
        self.options.seccomp_enabled = enabled;
        self
    }

    /// The options, checked ([`SecurityOptions::validate`]).
    pub fn build(self) -> Result<SecurityOptions, InvalidArgument> {
        self.options.validate()?;
        Ok(self.options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_honourable_and_unsupported_fields_are_refused() {
        for preset in [
            SecurityOptions::development(),
            SecurityOptions::standard(),
            SecurityOptions::maximum(),
        ] {
            assert_eq!(preset.validate(), Ok(()), "{preset:?}");
        }
        let refused = |f: fn(&mut SecurityOptions)| {
            let mut o = SecurityOptions::standard();
            f(&mut o);
            o.validate().unwrap_err().to_string()
        };
        assert!(refused(|o| o.seccomp_enabled = true).contains("seccomp_enabled"));
        assert!(refused(|o| o.new_net_ns = true).contains("new_net_ns"));
        assert!(refused(|o| o.uid = Some(u32::MAX - 1)).contains("another user"));
        assert!(refused(|o| o.network_enabled = false).contains("NetworkSpec::None"));
        assert!(SecurityOptions::builder()
            .seccomp_enabled(true)
            .build()
            .is_err());
        let built = SecurityOptions::builder()
            .max_open_files(512)
            .allow_env("MY_VAR")
            .build()
            .unwrap();
        let launch = built.launch_options();
        assert!(launch.close_fds);
        assert!(launch.rlimits.contains(&(libc::RLIMIT_NOFILE as i32, 512)));
    }
}
