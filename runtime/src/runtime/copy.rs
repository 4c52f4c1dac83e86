//! Copies between the host and a box, as tar streams with bounded memory.

use super::*;

/// How [`LiteBox::copy_into`] and [`LiteBox::copy_out`] copy. The default copies trees,
/// replaces what is there, keeps symlinks as symlinks and keeps the source's own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOptions {
    /// Copy directories with everything in them; `false` refuses a directory source.
    pub recursive: bool,
    /// Replace what is at the destination; `false` refuses the copy when it exists (checked
    /// on the host for `copy_out`; not supported yet for `copy_into`).
    pub overwrite: bool,
    /// Copy what symlinks point to instead of the links. Not supported yet: `true` is
    /// refused.
    pub follow_symlinks: bool,
    /// Copy a directory as itself (under its name when the destination is a directory);
    /// `false`, copying only its contents, is not supported yet and is refused.
    pub include_parent: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            recursive: true,
            overwrite: true,
            follow_symlinks: false,
            include_parent: true,
        }
    }
}

impl CopyOptions {
    /// Refuses what this copy cannot honour, naming the option.
    fn check(&self, source_is_dir: bool, call: &'static str) -> Result<()> {
        let unsupported = |option: &str| {
            Err(BoxliteError::Unsupported(format!(
                "{call} with CopyOptions::{option} is not supported yet"
            )))
        };
        if self.follow_symlinks {
            return unsupported("follow_symlinks = true");
        }
        if !self.include_parent {
            return unsupported("include_parent = false");
        }
        if !self.overwrite && call == "copy_into" {
            return unsupported("overwrite = false");
        }
        if !self.recursive && call == "copy_out" {
            return unsupported("recursive = false");
        }
        if !self.recursive && source_is_dir {
            return Err(InvalidArgument::CopyOfDirectoryNotRecursive { call }.into());
        }
        Ok(())
    }
}

/// The most of a copy helper's stderr kept for an error message: the guest writes it.
const COPY_STDERR_KEPT: usize = 64 << 10;

/// Waits for the box's copy helper to end: its stderr (the first [`COPY_STDERR_KEPT`] bytes;
/// the rest is read and dropped) and how it ended. Its stdout, already consumed or empty, is
/// drained the same way.
async fn copy_helper_end(execution: &Execution) -> Result<(Vec<u8>, ExecResult)> {
    let mut stderr = Vec::new();
    let drain_stdout = async {
        while execution.read_stdout().await?.is_some() {}
        Ok::<_, BoxliteError>(())
    };
    let keep_stderr = async {
        while let Some(data) = execution.read_stderr().await? {
            let room = COPY_STDERR_KEPT.saturating_sub(stderr.len());
            stderr.extend_from_slice(&data[..data.len().min(room)]);
        }
        Ok::<_, BoxliteError>(())
    };
    let (out, err) = tokio::join!(drain_stdout, keep_stderr);
    out?;
    err?;
    Ok((stderr, execution.wait_shared().await?))
}

impl LiteBox {
    /// Copies `host_src` (a file or a tree; symlinks kept) to `guest_dest` in the box, which
    /// becomes the copy, or holds it under the source's name when it is an existing directory.
    /// Streamed as tar (modes and mtimes kept); entries that would land outside `guest_dest`
    /// are refused by the box. Starts the box if needed.
    pub async fn copy_into(
        &self,
        host_src: impl AsRef<Path>,
        guest_dst: impl AsRef<str>,
        opts: CopyOptions,
    ) -> Result<boxlite_copy::CopyStats> {
        let guest_dest = guest_dst.as_ref();
        let host_src = host_src.as_ref().to_path_buf();
        let what = format!(
            "{} into box {} at {guest_dest}",
            host_src.display(),
            self.id
        );
        let meta = std::fs::symlink_metadata(&host_src).map_err(io_err(&host_src))?;
        opts.check(meta.is_dir(), "copy_into")?;
        let execution = self.start_copy(true, guest_dest).await?;
        let agent = execution.client.agent();

        let (tx, mut rx) = tokio::sync::mpsc::channel(COPY_CHUNKS_IN_FLIGHT);
        let packer = tokio::task::spawn_blocking(move || {
            boxlite_copy::pack(&host_src, ChunkWriter::new(tx))
        });
        let mut write_error = None;
        while let Some(chunk) = rx.recv().await {
            if let Err(err) = agent.write_stdin(&execution.id, &chunk, false).await {
                // The box stopped reading (it refused an entry, say): its own account below.
                write_error = Some(err);
                break;
            }
        }
        drop(rx);
        let packed = packer.await.expect("pack task panicked");
        let _ = agent.write_stdin(&execution.id, &[], true).await;
        let (stderr, result) = copy_helper_end(&execution).await?;
        // A host-side failure (an unreadable file) is the cause of whatever the box then
        // says about the cut-short stream.
        let packed = packed?;
        if result.exit_code != 0 || result.signal != 0 {
            return Err(ExecutionError::Copy {
                what,
                message: String::from_utf8_lossy(&stderr).trim().to_string(),
            }
            .into());
        }
        if let Some(err) = write_error {
            return Err(err.into());
        }
        Ok(packed)
    }

    /// Copies `guest_src` (a file or a tree) out of the box to `host_dest`, which becomes the
    /// copy, or holds it under the source's name when it is an existing directory. Entries
    /// that would land outside `host_dest` are refused here. Starts the box if needed.
    pub async fn copy_out(
        &self,
        guest_src: impl AsRef<str>,
        host_dst: impl AsRef<Path>,
        opts: CopyOptions,
    ) -> Result<boxlite_copy::CopyStats> {
        let guest_src = guest_src.as_ref();
        let host_dest = host_dst.as_ref().to_path_buf();
        opts.check(false, "copy_out")?;
        if !opts.overwrite {
            // What the copy would create: the destination, or the source's name inside it.
            let target = if host_dest.is_dir() {
                host_dest.join(boxlite_copy::archive_name(Path::new(guest_src)))
            } else {
                host_dest.clone()
            };
            if std::fs::symlink_metadata(&target).is_ok() {
                return Err(BoxliteError::AlreadyExists(format!(
                    "{} exists and CopyOptions::overwrite is false",
                    target.display()
                )));
            }
        }
        let what = format!(
            "{guest_src} out of box {} to {}",
            self.id,
            host_dest.display()
        );
        let execution = self.start_copy(false, guest_src).await?;

        // The box names the stream's top entry; it must be the source asked for, or a hostile
        // guest could pick which entry of an existing `host_dest` directory it overwrites.
        let options = boxlite_copy::UnpackOptions {
            expected_name: Some(boxlite_copy::archive_name(Path::new(guest_src)).into()),
            ..boxlite_copy::UnpackOptions::copy()
        };
        let (tx, rx) = tokio::sync::mpsc::channel(COPY_CHUNKS_IN_FLIGHT);
        let unpacker = tokio::task::spawn_blocking(move || {
            boxlite_copy::unpack_with(ChunkReader::new(rx), &host_dest, &options)
        });
        let mut refused = false;
        while let Some(chunk) = execution.read_stdout().await? {
            if tx.send(chunk).await.is_err() {
                // The unpacker gave up (an entry escaping the destination, say): stop the box's
                // side and report the unpacker's reason.
                refused = true;
                let _ = execution.signal(libc::SIGKILL).await;
                break;
            }
        }
        drop(tx);
        let unpacked = unpacker.await.expect("unpack task panicked");
        let (stderr, result) = copy_helper_end(&execution).await?;
        if !refused && (result.exit_code != 0 || result.signal != 0) {
            return Err(ExecutionError::Copy {
                what,
                message: String::from_utf8_lossy(&stderr).trim().to_string(),
            }
            .into());
        }
        Ok(unpacked?)
    }

    pub(crate) async fn start_copy(&self, into_box: bool, guest_path: &str) -> Result<Execution> {
        if !guest_path.starts_with('/') {
            return Err(InvalidArgument::GuestPath(guest_path.to_string()).into());
        }
        self.start().await?;
        let client = ShimClient::connect(&self.dir()).await?;
        let id = new_id();
        client.agent().copy(&id, into_box, guest_path).await?;
        Ok(Execution::new(id, client, into_box, None))
    }
}

/// Chunks between a copy's tar stream and the box: at most this many (of [`COPY_CHUNK`]) wait,
/// so host memory stays bounded whatever the size of the copy.
pub(crate) const COPY_CHUNKS_IN_FLIGHT: usize = 4;
pub(crate) const COPY_CHUNK: usize = 256 * 1024;

/// A `Write` for a blocking tar packer that hands full chunks to the async side.
pub(crate) struct ChunkWriter {
    pub(crate) tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    pub(crate) buf: Vec<u8>,
}

impl ChunkWriter {
    pub(crate) fn new(tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(COPY_CHUNK),
        }
    }

    pub(crate) fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(COPY_CHUNK));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the box stopped reading")
        })
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(COPY_CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == COPY_CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A `Read` for a blocking tar unpacker, fed chunks by the async side.
pub(crate) struct ChunkReader {
    pub(crate) rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    pub(crate) chunk: Vec<u8>,
    pub(crate) at: usize,
}

impl ChunkReader {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
