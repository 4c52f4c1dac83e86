//! What a VM needs after it continued from saved state: every box restored from one snapshot
//! or template wakes with the same clock, the same random pool and the same name. `Setup`
//! gives it the host's time, fresh entropy and its own hostname, and, for a template (an agent
//! that booted with no box), the box's boot parameters, applied as at boot.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use boxlite_protocol::agent::SetupRequest;

use crate::init::{self, BootParams};
use crate::net::{self, NetParams};

/// Most entropy bytes one request may carry.
pub const MAX_ENTROPY: usize = 512;
/// How long the box disk may take to show the size the host announced.
const DISK_SIZE_WAIT: Duration = Duration::from_secs(5);

// Linux ioctl numbers (include/uapi/linux/random.h, include/uapi/linux/fs.h).
/// `_IOW('R', 0x03, int[2])`: add bytes to the pool, crediting entropy.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `_IO('R', 0x07)`: reseed the CRNG from the pool now.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
/// `_IO(0x12, 97)`: drop a block device's cached pages.
const BLKFLSBUF: libc::c_ulong = 0x1261;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0} bytes of entropy is more than the {MAX_ENTROPY} a request may carry")]
    TooMuchEntropy(usize),
    #[error("this agent booted with its own box; boot parameters are for a template's agent")]
    NotATemplate,
    #[error("the box disk was never given (no boxlite.root in the boot parameters)")]
    NoRootDisk,
    #[error("{what}: {source}")]
    Os {
        what: String,
        source: std::io::Error,
    },
    #[error("{device} still shows {shown} bytes after {waited:?}; the host announced {wanted}")]
    DiskSize {
        device: String,
        shown: u64,
        wanted: u64,
        waited: Duration,
    },
    #[error("{0}")]
    Init(#[from] init::InitError),
    #[error("{0}")]
    Net(#[from] net::NetError),
}

fn os(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SetupError {
    let what = what.into();
    move |source| SetupError::Os { what, source }
}

/// Whether this agent still waits for a box (it booted as a template), and the network it
/// configured as one.
pub struct Pending(Mutex<Option<TemplateState>>);

struct TemplateState {
    network: Option<NetParams>,
}

impl Pending {
    pub fn new(template: bool, network: Option<NetParams>) -> Self {
        Self(Mutex::new(template.then_some(TemplateState { network })))
    }
}

/// Applies `req`; blocking (mounts, ioctls). A template's agent serves commands from the
/// directory the box disk is mounted at, so nothing else changes once it is.
pub fn apply(req: &SetupRequest, pending: &Pending) -> Result<(), SetupError> {
    if req.entropy.len() > MAX_ENTROPY {
        return Err(SetupError::TooMuchEntropy(req.entropy.len()));
    }
    let mut phases = Phases::start();
    set_clock(req.unix_time_ns)?;
    if !req.entropy.is_empty() {
        add_entropy(&req.entropy)?;
    }
    if !req.hostname.is_empty() {
        nix::unistd::sethostname(&req.hostname)
            .map_err(|e| os("setting the hostname")(e.into()))?;
    }
    phases.mark("clock, entropy, hostname");
    if !req.boot_params.is_empty() {
        apply_boot_params(req, pending, &mut phases)?;
    }
    // On the console (the box's console.log): where a restore spends its time.
    eprintln!("boxlite-agent: setup: {phases}");
    Ok(())
}

/// A template's agent takes on its box: disk, network, volumes.
fn apply_boot_params(
    req: &SetupRequest,
    pending: &Pending,
    phases: &mut Phases,
) -> Result<(), SetupError> {
    let mut pending = pending.0.lock().unwrap_or_else(|p| p.into_inner());
    let Some(template) = pending.as_ref() else {
        return Err(SetupError::NotATemplate);
    };
    let (params, _) = BootParams::parse(&req.boot_params);
    let device = params.root_device.clone().ok_or(SetupError::NoRootDisk)?;
    wait_for_disk_size(&device, req.root_disk_bytes)?;
    phases.mark("disk size");
    // The template read its placeholder disk's first blocks (the partition scan): what the
    // page cache kept of them is not this box's disk.
    let disk = File::open(&device).map_err(os(format!("opening {device}")))?;
    // SAFETY: BLKFLSBUF takes no argument; the descriptor is open for the call.
    if unsafe { libc::ioctl(disk.as_raw_fd(), BLKFLSBUF, 0) } != 0 {
        return Err(os(format!("flushing {device}'s cache"))(
            std::io::Error::last_os_error(),
        ));
    }
    phases.mark("cache flush");
    let root = init::mount_box_disk(&params)?;
    phases.mark("disk mount");
    init::mount_box_pseudo_filesystems(&root)?;
    phases.mark("proc, sys, dev");
    let net = params.net.as_deref().map(NetParams::parse).transpose()?;
    match net {
        // Configured when the template booted; only the box's resolv.conf is new.
        Some(net) if template.network == Some(net) => net::write_resolv_conf(&root, net.dns)?,
        _ => net::configure(net.as_ref(), &root)?,
    }
    phases.mark("network");
    init::mount_volumes(&root, &params.volumes)?;
    phases.mark("volumes");
    *pending = None;
    Ok(())
}

/// How long each step of a setup took.
struct Phases {
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn start() -> Self {
        Self {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    fn mark(&mut self, phase: &'static str) {
        let now = Instant::now();
        self.done.push((phase, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (phase, took)) in self.done.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{phase} {} ms", took.as_millis())?;
        }
        Ok(())
    }
}

fn set_clock(unix_time_ns: i64) -> Result<(), SetupError> {
    let now = libc::timespec {
        tv_sec: unix_time_ns.div_euclid(1_000_000_000),
        tv_nsec: unix_time_ns.rem_euclid(1_000_000_000),
    };
    // SAFETY: clock_settime reads the timespec we pass; nothing else is touched.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &now) } != 0 {
        return Err(os("setting the clock")(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Mixes `bytes` into the kernel's pool, credited as entropy, and reseeds the CRNG, so that
/// what clones read from /dev/urandom differs from now on.
fn add_entropy(bytes: &[u8]) -> Result<(), SetupError> {
    let random = File::options()
        .write(true)
        .open("/dev/urandom")
        .map_err(os("opening /dev/urandom"))?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut request = Vec::with_capacity(8 + bytes.len());
    request.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
    request.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
    request.extend_from_slice(bytes);
    // SAFETY: the buffer is a complete rand_pool_info, buf_size bytes of data after the
    // header, alive for the call.
    if unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, request.as_ptr()) } != 0 {
        return Err(os("adding entropy")(std::io::Error::last_os_error()));
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    if unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG, 0) } != 0 {
        return Err(os("reseeding the CRNG")(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Waits until the block device shows `wanted` bytes (the host resized it to announce the
/// box's disk in place of the template's placeholder). 0: no expectation.
fn wait_for_disk_size(device: &str, wanted: u64) -> Result<(), SetupError> {
    if wanted == 0 {
        return Ok(());
    }
    let name = Path::new(device)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let size_file = Path::new("/sys/block").join(name).join("size");
    let deadline = Instant::now() + DISK_SIZE_WAIT;
    loop {
        let sectors: u64 = std::fs::read_to_string(&size_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let shown = sectors * 512;
        if shown == wanted {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SetupError::DiskSize {
                device: device.to_string(),
                shown,
                wanted,
                waited: DISK_SIZE_WAIT,
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
