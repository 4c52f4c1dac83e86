//! The host channels the agent serves its ttrpc service on.
//!
//! - QEMU: a virtio-serial port named [`SERIAL_PORT_NAME`] (one byte stream, reopened whenever
//!   the host side goes away). See docs/ARCHITECTURE.md for why QEMU does not use vsock.
//! - libkrun and any VMM with virtio-vsock: a vsock listener on the agent port.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Name of the virtio-serial port the QEMU engine creates for the agent.
pub const SERIAL_PORT_NAME: &str = "boxlite.agent";

/// Pause before reopening the port after the host side closed it (or was never there).
const REOPEN_PAUSE: Duration = Duration::from_millis(10);

/// The /dev node of the virtio-serial port with the given name, if the VM has one.
pub fn find_serial_port(name: &str) -> Option<PathBuf> {
    let ports = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    ports.flatten().find_map(|entry| {
        let port_name = std::fs::read_to_string(entry.path().join("name")).ok()?;
        (port_name.trim() == name).then(|| Path::new("/dev").join(entry.file_name()))
    })
}

/// One open session on the serial port. Holding the permit keeps the listener from opening a
/// second session while this one lives.
pub struct SerialStream {
    port: AsyncFd<File>,
    _session: OwnedSemaphorePermit,
}

impl AsyncRead for SerialStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.port.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|port| port.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(err)) => return Poll::Ready(Err(err)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for SerialStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.port.poll_write_ready(cx))?;
            match guard.try_io(|port| port.get_ref().write(data)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A ttrpc listener over the serial port: yields one session at a time, and a new one after
/// the previous session ended (the host closed its end, and ttrpc dropped the stream).
pub fn serial_listener(device: PathBuf) -> ttrpc::r#async::transport::Listener {
    let sessions = Arc::new(Semaphore::new(1));
    let stream = futures::stream::unfold(
        (device, sessions, true),
        |(device, sessions, first)| async move {
            let permit = Arc::clone(&sessions).acquire_owned().await.ok()?;
            if !first {
                tokio::time::sleep(REOPEN_PAUSE).await;
            }
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&device)
                .and_then(|file| {
                    // SAFETY: the AsyncFd owns the File, whose descriptor stays open and unchanged
                    // until the AsyncFd is dropped.
                    unsafe { AsyncFd::register(file) }.map_err(|e| io::Error::other(e.to_string()))
                })
                .map(|port| SerialStream {
                    port,
                    _session: permit,
                });
            Some((opened, (device, sessions, false)))
        },
    );
    ttrpc::r#async::transport::Listener::new(stream)
}
