//! The guest's console, bounded: the VMM writes it into a FIFO in the box directory
//! (`console.pipe`) and the shim copies it into `console.log`, rotated at
//! [`CONSOLE_MAX_FILE_BYTES`] (see [`crate::rotating`]). A guest that prints forever costs the
//! host at most twice that, instead of a file that grows until the disk is full.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::rotating::RotatingFile;

/// Size at which `console.log` is rotated to `console.log.1`.
pub const CONSOLE_MAX_FILE_BYTES: u64 = 1 << 20;
/// How long [`ConsolePump::finish`] waits for the last bytes to be copied.
const FINISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Copies the console FIFO into the log until finished.
#[derive(Debug)]
pub struct ConsolePump {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ConsolePump {
    /// Makes the FIFO `pipe` (0600, replacing whatever was there) and starts copying what is
    /// written to it into `log`. Opened for reading and writing, so that it neither blocks
    /// the VMM's open nor reads as ended before the VMM has opened it.
    pub fn start(pipe: &Path, log: PathBuf, max_file_bytes: u64) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(pipe);
        nix::unistd::mkfifo(pipe, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(std::io::Error::from)?;
        let mut reader = tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(pipe)?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let pipe = pipe.to_path_buf();
        let task = tokio::spawn(async move {
            let mut log = RotatingFile::new(log, max_file_bytes);
            let mut buf = vec![0u8; 64 << 10];
            let mut write = |data: &[u8]| {
                if let Err(err) = log.write_stream(data) {
                    tracing::warn!("writing the console log: {err}");
                }
            };
            loop {
                tokio::select! {
                    read = reader.read(&mut buf) => match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => write(&buf[..n]),
                    },
                    _ = &mut stopped => {
                        // What the VMM wrote before it ended is still in the pipe.
                        while let Ok(n) = reader.try_read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            write(&buf[..n]);
                        }
                        break;
                    }
                }
            }
            let _ = std::fs::remove_file(&pipe);
        });
        Ok(Self {
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Copies what is left in the FIFO (the VMM has ended) and stops.
    pub async fn finish(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(FINISH_TIMEOUT, task).await;
        }
    }
}

impl Drop for ConsolePump {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn a_console_that_never_stops_is_kept_to_two_files() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = dir.path().join("console.pipe");
        let log = dir.path().join("console.log");
        let mut pump = ConsolePump::start(&pipe, log.clone(), 8192).unwrap();
        // A writer such as the VMM: opens the path and writes far more than the bound.
        let writer = std::thread::spawn({
            let pipe = pipe.clone();
            move || {
                let mut fifo = std::fs::OpenOptions::new().write(true).open(pipe).unwrap();
                for i in 0..20_000u32 {
                    writeln!(fifo, "kernel line {i}").unwrap();
                }
            }
        });
        tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        pump.finish().await;
        let now = std::fs::read_to_string(&log).unwrap();
        let before = std::fs::read_to_string(crate::rotating::rotated(&log)).unwrap();
        assert!(now.len() <= 8192 && before.len() <= 8192);
        assert!(
            now.ends_with("kernel line 19999\n"),
            "the last bytes are kept"
        );
        assert!(!pipe.exists());
    }
}
