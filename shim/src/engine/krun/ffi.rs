//! The only place boxlite calls into libkrun. Each call takes a context id and returns 0 or a
//! negative errno; [`Context`] wraps them so the rest of the engine is safe Rust.

use std::ffi::{CString, NulError};
use std::path::Path;

/// A libkrun failure: which call, and the errno it returned.
#[derive(Debug, thiserror::Error)]
pub enum KrunError {
    #[error("{call} failed: {}", std::io::Error::from_raw_os_error(*.errno))]
    Call { call: &'static str, errno: i32 },
    #[error("{0} contains a NUL byte")]
    Nul(String),
}

fn check(call: &'static str, rc: i32) -> Result<i32, KrunError> {
    if rc < 0 {
        Err(KrunError::Call { call, errno: -rc })
    } else {
        Ok(rc)
    }
}

fn c_string(text: &str) -> Result<CString, KrunError> {
    CString::new(text).map_err(|_: NulError| KrunError::Nul(text.to_string()))
}

fn c_path(path: &Path) -> Result<CString, KrunError> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| KrunError::Nul(path.display().to_string()))
}

/// A libkrun VM configuration, freed unless it is started.
pub struct Context {
    id: u32,
}

impl Context {
    pub fn new() -> Result<Self, KrunError> {
        let id = check("krun_create_ctx", ::krun::krun_create_ctx())?;
        Ok(Self { id: id as u32 })
    }

    pub fn set_vm_config(&self, cpus: u8, memory_mib: u32) -> Result<(), KrunError> {
        check(
            "krun_set_vm_config",
            ::krun::krun_set_vm_config(self.id, cpus, memory_mib),
        )
        .map(drop)
    }

    pub fn set_kernel(
        &self,
        kernel: &Path,
        format: u32,
        initramfs: &Path,
        cmdline: &str,
    ) -> Result<(), KrunError> {
        let (kernel, initramfs, cmdline) =
            (c_path(kernel)?, c_path(initramfs)?, c_string(cmdline)?);
        // SAFETY: the three pointers are NUL-terminated strings that outlive the call; libkrun
        // copies what it keeps.
        let rc = unsafe {
            ::krun::krun_set_kernel(
                self.id,
                kernel.as_ptr(),
                format,
                initramfs.as_ptr(),
                cmdline.as_ptr(),
            )
        };
        check("krun_set_kernel", rc).map(drop)
    }

    pub fn add_disk(
        &self,
        block_id: &str,
        path: &Path,
        format: u32,
        read_only: bool,
    ) -> Result<(), KrunError> {
        let (block_id, path) = (c_string(block_id)?, c_path(path)?);
        // SAFETY: NUL-terminated strings that outlive the call; libkrun copies them.
        let rc = unsafe {
            ::krun::krun_add_disk2(self.id, block_id.as_ptr(), path.as_ptr(), format, read_only)
        };
        check("krun_add_disk2", rc).map(drop)
    }

    /// Replaces libkrun's implicit vsock device (which hijacks the guest's inet sockets, TSI)
    /// with a plain one.
    pub fn use_plain_vsock(&self) -> Result<(), KrunError> {
        check(
            "krun_disable_implicit_vsock",
            ::krun::krun_disable_implicit_vsock(self.id),
        )?;
        check("krun_add_vsock", ::krun::krun_add_vsock(self.id, 0)).map(drop)
    }

    /// libkrun listens on the unix socket `path` and connects each host connection to the
    /// guest's vsock `port`.
    pub fn listen_vsock_port(&self, port: u32, path: &Path) -> Result<(), KrunError> {
        let path = c_path(path)?;
        // SAFETY: a NUL-terminated string that outlives the call; libkrun copies it.
        let rc = unsafe { ::krun::krun_add_vsock_port2(self.id, port, path.as_ptr(), true) };
        check("krun_add_vsock_port2", rc).map(drop)
    }

    /// Shares host directory `path` as virtio-fs `tag` (no DAX window).
    pub fn add_virtiofs(&self, tag: &str, path: &Path, read_only: bool) -> Result<(), KrunError> {
        let (tag, path) = (c_string(tag)?, c_path(path)?);
        // SAFETY: NUL-terminated strings that outlive the call; libkrun copies them.
        let rc = unsafe {
            ::krun::krun_add_virtiofs3(self.id, tag.as_ptr(), path.as_ptr(), 0, read_only)
        };
        check("krun_add_virtiofs3", rc).map(drop)
    }

    /// Gives the VM a virtio-net device backed by passt on the other end of `fd` (libkrun
    /// keeps the descriptor).
    pub fn set_passt_fd(&self, fd: std::os::fd::OwnedFd) -> Result<(), KrunError> {
        use std::os::fd::IntoRawFd;
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is an open socket whose ownership passes to libkrun here.
        let rc = unsafe { ::krun::krun_set_passt_fd(self.id, raw) };
        if rc < 0 {
            // SAFETY: libkrun refused it, so the descriptor is still ours to close.
            unsafe { libc::close(raw) };
        }
        check("krun_set_passt_fd", rc).map(drop)
    }

    pub fn set_console_output(&self, path: &Path) -> Result<(), KrunError> {
        let path = c_path(path)?;
        // SAFETY: a NUL-terminated string that outlives the call; libkrun copies it.
        let rc = unsafe { ::krun::krun_set_console_output(self.id, path.as_ptr()) };
        check("krun_set_console_output", rc).map(drop)
    }

    /// Runs the VM on the calling thread. Returns only when the VM could not be started; once
    /// it runs, libkrun ends the whole process (`_exit`) when the guest powers off.
    pub fn start_enter(self) -> KrunError {
        let id = self.id;
        // libkrun takes the configuration over, started or not: it must not be freed again.
        std::mem::forget(self);
        match check("krun_start_enter", ::krun::krun_start_enter(id)) {
            Err(err) => err,
            Ok(_) => KrunError::Call {
                call: "krun_start_enter",
                errno: libc::EIO,
            },
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        ::krun::krun_free_ctx(self.id);
    }
}
