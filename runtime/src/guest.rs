//! Guest assets: the box kernel and the initramfs that carries the guest agent as `/init`.
//!
//! The initramfs is built by the runtime itself from the agent binary (a newc cpio, written
//! here rather than by `cpio` so that no root privileges are needed for the device nodes), and
//! cached under `<home>/init/` by the agent's hash. Nothing of the guest ever comes from a
//! registry.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Environment variable naming the box kernel (an uncompressed ELF vmlinux with a PVH entry,
/// which QEMU boots directly and libkrun loads as ELF; a bzImage also works with QEMU).
pub const KERNEL_ENV: &str = "BOXLITE_KERNEL";
/// Environment variable naming the guest agent binary.
pub const AGENT_ENV: &str = "BOXLITE_AGENT";

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("no box kernel at {path}: run scripts/setup.sh (it builds the kernel into ~/.cache/boxlite/kernel) or set {KERNEL_ENV}")]
    NoKernel { path: PathBuf },
    #[error("no guest agent at {path}: run scripts/setup.sh (it builds boxlite-agent) or set {AGENT_ENV}")]
    NoAgent { path: PathBuf },
    #[error("the guest agent {path} is dynamically linked and cannot run as PID 1 of a box: build it with scripts/build-guest.sh (static) or point {AGENT_ENV} at that build")]
    DynamicAgent { path: PathBuf },
    #[error("writing the initramfs {path}: {source}")]
    Initramfs { path: PathBuf, source: io::Error },
}

/// The kernel and initramfs a VM boots.
#[derive(Debug, Clone)]
pub struct GuestAssets {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

impl GuestAssets {
    /// Finds the kernel and agent (explicit paths first, then the environment, then the
    /// default places) and builds the initramfs into `<home>/init/` if it is not there yet.
    pub fn prepare(
        home: &Path,
        kernel: Option<PathBuf>,
        agent: Option<PathBuf>,
    ) -> Result<Self, GuestError> {
        let kernel = kernel
            .or_else(|| std::env::var_os(KERNEL_ENV).map(PathBuf::from))
            .unwrap_or_else(default_kernel_path);
        if !kernel.is_file() {
            return Err(GuestError::NoKernel { path: kernel });
        }
        let agent = agent
            .or_else(|| std::env::var_os(AGENT_ENV).map(PathBuf::from))
            .unwrap_or_else(default_agent_path);
        let agent_bytes = fs::read(&agent).map_err(|_| GuestError::NoAgent {
            path: agent.clone(),
        })?;
        let digest = hex::encode(Sha256::digest(&agent_bytes));
        let initramfs = home
            .join("init")
            .join(format!("initramfs-{}.cpio", &digest[..16]));
        if !initramfs.is_file() {
            write_initramfs(&agent_bytes, &initramfs).map_err(|source| GuestError::Initramfs {
                path: initramfs.clone(),
                source,
            })?;
        }
        Ok(Self { kernel, initramfs })
    }
}

/// Where the scripts cache what they build (the kernel, the box types' images):
/// `BOXLITE_CACHE_DIR`, else `$XDG_CACHE_HOME/boxlite`, else `~/.cache/boxlite`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BOXLITE_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("boxlite")))
        .unwrap_or_else(|| home_dir().join(".cache").join("boxlite"))
}

/// `~/.cache/boxlite/kernel/current/vmlinux`, where scripts/build-kernel.sh puts the kernel.
/// The uncompressed kernel, because decompressing a bzImage costs ~0.9 s under TCG.
pub fn default_kernel_path() -> PathBuf {
    cache_dir().join("kernel").join("current").join("vmlinux")
}

/// The agent a program carries with it (an SDK unpacks its own), set once per process.
static INSTALLED_AGENT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Tells the runtime where this program's own static `boxlite-agent` is: used unless
/// `BOXLITE_AGENT` names another. The first call wins.
pub fn set_installed_agent(path: PathBuf) {
    let _ = INSTALLED_AGENT.set(path);
}

/// The program's own agent ([`set_installed_agent`]), else `boxlite-agent` beside the running
/// program (an installation), else the static build of a checkout
/// (`target/x86_64-unknown-linux-gnu/release/`, seen from `target/<profile>/`).
pub fn default_agent_path() -> PathBuf {
    if let Some(installed) = INSTALLED_AGENT.get() {
        return installed.clone();
    }
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    else {
        return PathBuf::from("boxlite-agent");
    };
    let beside = dir.join("boxlite-agent");
    let checkout = dir.join("../x86_64-unknown-linux-gnu/release/boxlite-agent");
    match (
        beside.is_file()
            && !fs::read(&beside)
                .map(|b| has_interpreter(&b))
                .unwrap_or(true),
        checkout.is_file(),
    ) {
        (false, true) => checkout,
        _ => beside,
    }
}

/// Whether an ELF executable asks for a dynamic loader (a PT_INTERP program header).
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    };
    if elf.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..phnum).any(|i| {
        elf.get(phoff + i * phentsize..phoff + i * phentsize + 4)
            .is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) == PT_INTERP)
    })
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Writes a newc cpio archive holding the agent as /init, the device nodes PID 1 needs
/// before devtmpfs is mounted, and the mount points. Written to a temporary name and renamed,
/// so a reader never sees half an archive.
pub fn write_initramfs(agent: &[u8], out: &Path) -> io::Result<()> {
    let dir = out.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        out.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("initramfs"),
        std::process::id()
    ));
    let mut archive = Vec::with_capacity(agent.len() + 4096);
    let mut cpio = Cpio {
        out: &mut archive,
        next_ino: 1,
    };
    for dir in ["dev", "proc", "sys", "run", "tmp"] {
        cpio.entry(dir, 0o040755, (0, 0), &[])?;
    }
    cpio.entry("dev/console", 0o020600, (5, 1), &[])?;
    cpio.entry("dev/null", 0o020666, (1, 3), &[])?;
    cpio.entry("init", 0o100755, (0, 0), agent)?;
    cpio.entry("TRAILER!!!", 0, (0, 0), &[])?;
    let mut file = fs::File::create(&tmp)?;
    file.write_all(&archive)?;
    file.sync_all()?;
    fs::rename(&tmp, out)
}

struct Cpio<'a> {
    out: &'a mut Vec<u8>,
    next_ino: u32,
}

impl Cpio<'_> {
    /// One archive member; `rdev` is the (major, minor) of a device node, else (0, 0).
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & 0o170000 == 0o040000 { 2 } else { 1 };
        let namesize = name.len() + 1;
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            u32::try_from(data.len())
                .map_err(|_| io::Error::other("initramfs entry over 4 GiB"))?,
            0,
            0,
            rdev.0,
            rdev.1,
            namesize as u32,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn dynamic_executables_are_told_from_static_ones() {
        // /bin/busybox (busybox-static) has no interpreter; /bin/sh (dash) has one.
        assert!(!has_interpreter(&fs::read("/bin/busybox").unwrap()));
        assert!(has_interpreter(&fs::read("/bin/sh").unwrap()));
        assert!(!has_interpreter(b"#!/bin/sh\n"));
    }

    #[test]
    fn initramfs_lists_init_and_device_nodes_with_cpio() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("initramfs.cpio");
        write_initramfs(b"#!/bin/true\n", &out).unwrap();
        // Debian's cpio reads the archive back: the format is what the kernel expects.
        let listing = Command::new("cpio")
            .args(["-itv", "--quiet"])
            .stdin(fs::File::open(&out).unwrap())
            .output()
            .expect("cpio is installed by scripts/setup.sh");
        assert!(
            listing.status.success(),
            "{}",
            String::from_utf8_lossy(&listing.stderr)
        );
        let text = String::from_utf8_lossy(&listing.stdout);
        let line = |name: &str| {
            text.lines()
                .find(|l| l.ends_with(name))
                .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
                .to_string()
        };
        assert!(line(" init").starts_with("-rwxr-xr-x"));
        assert!(line("dev/console").starts_with("crw-------"));
        assert!(line("dev/console").contains("5,"));
        assert!(line("dev/null").starts_with("crw-rw-rw-"));
        assert!(line(" proc").starts_with("drwxr-xr-x"));
        assert!(out.metadata().unwrap().len().is_multiple_of(4));
    }
}
