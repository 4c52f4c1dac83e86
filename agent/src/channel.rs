//! The host channels the agent serves its ttrpc service on.
//!
//! - QEMU: a virtio-serial port named [`SERIAL_PORT_NAME`] (one byte stream, reopened whenever
//!   the host side goes away). See docs/ARCHITECTURE.md for why QEMU does not use vsock.
//! - libkrun and any VMM with virtio-vsock: a vsock listener on the agent port.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::fdio::FdStream;

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
    port: FdStream,
    _session: OwnedSemaphorePermit,
}

impl AsyncRead for SerialStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.port).poll_read(cx, buf)
    }
}

impl AsyncWrite for SerialStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.port).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.port).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.port).poll_shutdown(cx)
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
                .custom_flags(libc::O_CLOEXEC)
                .open(&device)
                .and_then(FdStream::new)
                .map(|port| SerialStream {
                    port,
                    _session: permit,
                });
            Some((opened, (device, sessions, false)))
        },
    );
    ttrpc::r#async::transport::Listener::new(stream)
}
