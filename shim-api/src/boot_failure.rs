//! Why a shim could not serve its box, as a value both sides agree on: the shim writes it to
//! `shim.error` as JSON before it exits, the launcher reads it back, and the runtime turns
//! each kind into the error kind callers see (an engine this host cannot run is
//! `Unsupported`, a guest that never answered is an `Engine` error with the console's last
//! lines, and so on) instead of parsing text.

use std::path::Path;

use crate::files;

/// Most of `shim.error` that is read: a console tail and a message, never more.
pub const MAX_BOOT_FAILURE_BYTES: u64 = 64 * 1024;

/// Why the shim could not boot its VM or serve it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BootFailure {
    /// The shim could not set itself up: `shim.json` unreadable or invalid, its own files
    /// not writable, its socket not served.
    #[error("the box's shim could not set itself up: {message}")]
    Setup { message: String },
    /// No engine that can run on this host was available.
    #[error("{message}")]
    EngineUnavailable { message: String },
    /// The VMM or one of its helpers could not be started, or refused the VM.
    #[error("the VM could not be started: {message}")]
    Engine { message: String },
    /// The VM ended before its agent answered.
    #[error("the VM exited ({exit}) before its agent answered; last console (and VMM) lines:\n{console}")]
    VmExited { exit: String, console: String },
    /// The agent did not answer within the box's ready timeout; the VM was stopped.
    #[error("the agent did not answer within {waited_ms} ms (the ready timeout); the VM was stopped; last console (and VMM) lines:\n{console}")]
    ReadyTimeout { waited_ms: u64, console: String },
}

impl BootFailure {
    /// Writes the failure where the launcher looks for it.
    pub fn write(&self, box_dir: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).expect("a boot failure serializes");
        std::fs::write(box_dir.join(files::BOOT_ERROR), json)
    }

    /// The failure a shim left in `box_dir`, if any. A file that is not one (a shim of an
    /// older build wrote plain text) reads as [`BootFailure::Setup`] with its text; only the
    /// first [`MAX_BOOT_FAILURE_BYTES`] are read.
    pub fn read(box_dir: &Path) -> Option<Self> {
        use std::io::Read;
        let file = std::fs::File::open(box_dir.join(files::BOOT_ERROR)).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_BOOT_FAILURE_BYTES)
            .read_to_end(&mut bytes)
            .ok()?;
        Some(
            serde_json::from_slice(&bytes).unwrap_or_else(|_| BootFailure::Setup {
                message: String::from_utf8_lossy(&bytes).trim().to_string(),
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_round_trip_through_the_box_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(BootFailure::read(dir.path()), None);
        let failure = BootFailure::ReadyTimeout {
            waited_ms: 1500,
            console: "[    0.1] Linux version".into(),
        };
        failure.write(dir.path()).unwrap();
        let read = BootFailure::read(dir.path()).unwrap();
        assert_eq!(read, failure);
        assert!(read.to_string().contains("within 1500 ms"), "{read}");

        std::fs::write(dir.path().join(files::BOOT_ERROR), "plain words\n").unwrap();
        assert_eq!(
            BootFailure::read(dir.path()),
            Some(BootFailure::Setup {
                message: "plain words".into()
            })
        );
        // A huge file is read only so far.
        std::fs::write(
            dir.path().join(files::BOOT_ERROR),
            vec![b'x'; 4 * MAX_BOOT_FAILURE_BYTES as usize],
        )
        .unwrap();
        let BootFailure::Setup { message } = BootFailure::read(dir.path()).unwrap() else {
            panic!("not a setup failure");
        };
        assert_eq!(message.len() as u64, MAX_BOOT_FAILURE_BYTES);
    }
}
