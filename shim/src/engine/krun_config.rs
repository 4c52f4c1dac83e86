//! What the krun engine asks libkrun for, worked out from a [`VmSpec`] without touching
//! libkrun: the calls themselves live in `engine::krun` (cargo feature `krun`), this part is
//! built and unit-tested everywhere.

use std::path::PathBuf;

use super::{check_socket_path, DiskFormat, EngineError, EngineKind, SharedDir, VmSpec};

/// libkrun's `KRUN_KERNEL_FORMAT_ELF`: our `vmlinux` is an ELF image.
pub const KERNEL_FORMAT_ELF: u32 = 1;
/// libkrun's `KRUN_DISK_FORMAT_RAW`.
pub const DISK_FORMAT_RAW: u32 = 0;
/// libkrun's `KRUN_DISK_FORMAT_QCOW2`.
pub const DISK_FORMAT_QCOW2: u32 = 1;
/// Longest kernel command line libkrun accepts on x86_64 (`arch::CMDLINE_MAX_SIZE`).
pub const CMDLINE_MAX: usize = 2048;
/// Block device id of the box disk (the guest sees it as /dev/vda, the first virtio-blk).
pub const ROOT_BLOCK_ID: &str = "root";

/// One virtio-blk disk, as `krun_add_disk2` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KrunDisk {
    pub block_id: String,
    pub path: PathBuf,
    pub format: u32,
    pub read_only: bool,
}

/// Everything the krun engine passes to libkrun for one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KrunConfig {
    pub cpus: u8,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    pub kernel_format: u32,
    pub initramfs: PathBuf,
    pub cmdline: String,
    pub disks: Vec<KrunDisk>,
    /// The guest vsock port the agent listens on, and the unix socket libkrun listens on for
    /// the host side of it (`krun_add_vsock_port2(.., listen = true)`).
    pub agent_port: u32,
    pub agent_socket: PathBuf,
    /// Where the guest's console (virtio-console, hvc0) is written.
    pub console_pipe: PathBuf,
    /// virtio-fs shares: (tag, host directory, read-only), served by libkrun itself.
    pub shared_dirs: Vec<(String, PathBuf, bool)>,
}

impl KrunConfig {
    pub fn from_spec(spec: &VmSpec) -> Result<Self, EngineError> {
        spec.validate()?;
        let agent_socket = spec.agent_socket();
        check_socket_path(&agent_socket)?;
        // libkrun resets the VM through the i8042 port (reboot=k) and exits the process then;
        // its console is virtio-console; kvm async page faults are off as libkrun's own
        // default command line has them.
        let mut words: Vec<String> = ["reboot=k", "console=hvc0", "quiet", "no-kvmapf"]
            .map(String::from)
            .to_vec();
        words.extend(spec.guest_cmdline());
        let cmdline = words.join(" ");
        if cmdline.len() >= CMDLINE_MAX {
            return Err(invalid(format!(
                "the kernel command line is {} bytes; libkrun takes fewer than {CMDLINE_MAX}",
                cmdline.len()
            )));
        }
        let disks = spec
            .root_disk
            .iter()
            .map(|disk| KrunDisk {
                block_id: ROOT_BLOCK_ID.to_string(),
                path: disk.path.clone(),
                format: match disk.format {
                    DiskFormat::Raw => DISK_FORMAT_RAW,
                    DiskFormat::Qcow2 => DISK_FORMAT_QCOW2,
                },
                read_only: disk.read_only,
            })
            .collect::<Vec<_>>();
        let config = KrunConfig {
            cpus: spec.cpus,
            memory_mib: spec.memory_mib,
            kernel: spec.kernel.clone(),
            kernel_format: KERNEL_FORMAT_ELF,
            initramfs: spec.initramfs.clone(),
            cmdline,
            disks,
            agent_port: spec.agent_port,
            agent_socket,
            console_pipe: spec.console_pipe(),
            shared_dirs: spec
                .volumes
                .iter()
                .enumerate()
                .map(|(i, v)| (SharedDir::tag(i), v.host_path.clone(), v.read_only))
                .collect(),
        };
        // libkrun takes C strings: a NUL inside a path would cut it short.
        let mut paths = vec![
            &config.kernel,
            &config.initramfs,
            &config.agent_socket,
            &config.console_pipe,
        ];
        paths.extend(config.disks.iter().map(|d| &d.path));
        paths.extend(config.shared_dirs.iter().map(|d| &d.1));
        if let Some(bad) = paths
            .into_iter()
            .find(|p| p.as_os_str().as_encoded_bytes().contains(&0))
        {
            return Err(invalid(format!("{} contains a NUL byte", bad.display())));
        }
        Ok(config)
    }
}

fn invalid(message: String) -> EngineError {
    EngineError::Failed {
        engine: EngineKind::Krun,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::DiskSpec;

    fn spec(dir: &std::path::Path) -> VmSpec {
        for file in ["vmlinux", "initramfs.cpio", "disk.qcow2"] {
            std::fs::write(dir.join(file), b"x").unwrap();
        }
        VmSpec {
            kernel: dir.join("vmlinux"),
            initramfs: dir.join("initramfs.cpio"),
            cpus: 2,
            memory_mib: 384,
            root_disk: Some(DiskSpec {
                path: dir.join("disk.qcow2"),
                format: DiskFormat::Qcow2,
                read_only: false,
            }),
            agent_port: 1024,
            run_dir: dir.to_path_buf(),
            extra_cmdline: vec!["boxlite.test=1".into()],
            hostname: None,
            network: None,
            volumes: Vec::new(),
            start: Default::default(),
        }
    }

    #[test]
    fn a_box_spec_becomes_libkrun_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let config = KrunConfig::from_spec(&spec(dir.path())).unwrap();
        assert_eq!((config.cpus, config.memory_mib), (2, 384));
        assert_eq!(config.kernel_format, KERNEL_FORMAT_ELF);
        assert_eq!(config.initramfs, dir.path().join("initramfs.cpio"));
        assert_eq!(
            config.disks,
            vec![KrunDisk {
                block_id: "root".into(),
                path: dir.path().join("disk.qcow2"),
                format: DISK_FORMAT_QCOW2,
                read_only: false,
            }]
        );
        assert_eq!(config.agent_port, 1024);
        assert_eq!(config.agent_socket, dir.path().join("agent.sock"));
        assert_eq!(config.console_pipe, dir.path().join("console.pipe"));
        let words: Vec<&str> = config.cmdline.split(' ').collect();
        for word in [
            "reboot=k",
            "console=hvc0",
            "panic=-1",
            "boxlite.port=1024",
            "boxlite.root=/dev/vda",
        ] {
            assert!(words.contains(&word), "{word} missing from {words:?}");
        }
        assert_eq!(words.last(), Some(&"boxlite.test=1"));
        assert!(config.shared_dirs.is_empty());
        let mut with_volume = spec(dir.path());
        with_volume.volumes.push(SharedDir {
            host_path: dir.path().to_path_buf(),
            guest_path: "/data".into(),
            read_only: true,
        });
        let config = KrunConfig::from_spec(&with_volume).unwrap();
        assert_eq!(
            config.shared_dirs,
            vec![("vol0".to_string(), dir.path().to_path_buf(), true)]
        );
        assert!(config.cmdline.contains("boxlite.vol=vol0,ro,"));
    }

    #[test]
    fn raw_and_diskless_vms_are_described_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = spec(dir.path());
        raw.root_disk.as_mut().unwrap().format = DiskFormat::Raw;
        raw.root_disk.as_mut().unwrap().read_only = true;
        let disk = &KrunConfig::from_spec(&raw).unwrap().disks[0];
        assert_eq!((disk.format, disk.read_only), (DISK_FORMAT_RAW, true));
        raw.root_disk = None;
        let config = KrunConfig::from_spec(&raw).unwrap();
        assert!(config.disks.is_empty());
        assert!(!config.cmdline.contains("boxlite.root"));
    }

    #[test]
    fn what_libkrun_would_refuse_is_refused_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut long = spec(dir.path());
        long.extra_cmdline = vec!["x".repeat(CMDLINE_MAX)];
        let err = KrunConfig::from_spec(&long).unwrap_err().to_string();
        assert!(err.contains("kernel command line"), "{err}");

        let mut no_cpu = spec(dir.path());
        no_cpu.cpus = 0;
        assert!(KrunConfig::from_spec(&no_cpu).is_err());

        let deep = dir.path().join("d".repeat(120));
        std::fs::create_dir(&deep).unwrap();
        let err = KrunConfig::from_spec(&spec(&deep)).unwrap_err().to_string();
        assert!(err.contains("longer than"), "{err}");
    }
}
