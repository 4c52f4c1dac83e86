//! A box's lifecycle: `create` → Configured (persisted, no VM); `start` → Running;
//! `stop` → Stopped (restartable); `pause` → Paused (vCPUs stopped, memory kept) and `resume`
//! → Running again. Stopping is the short passage between Running and Stopped;
//! Unknown is a box whose state could not be established (its reason is logged).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BoxStatus {
    Unknown,
    Configured,
    Running,
    /// The VM exists with its vCPUs stopped: processes, memory and devices are kept; exec
    /// and copies are refused until `resume`.
    Paused,
    Stopping,
    Stopped,
}

impl BoxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BoxStatus::Unknown => "unknown",
            BoxStatus::Configured => "configured",
            BoxStatus::Running => "running",
            BoxStatus::Paused => "paused",
            BoxStatus::Stopping => "stopping",
            BoxStatus::Stopped => "stopped",
        }
    }

    /// A VM exists (or is being taken down).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            BoxStatus::Running | BoxStatus::Paused | BoxStatus::Stopping
        )
    }

    pub fn is_paused(self) -> bool {
        self == BoxStatus::Paused
    }

    pub fn is_running(self) -> bool {
        self == BoxStatus::Running
    }

    pub fn is_configured(self) -> bool {
        self == BoxStatus::Configured
    }

    pub fn is_stopped(self) -> bool {
        self == BoxStatus::Stopped
    }

    /// Between two states (Stopping).
    pub fn is_transient(self) -> bool {
        self == BoxStatus::Stopping
    }

    /// `start` may boot the box (a running box makes `start` a no-op instead).
    pub fn can_start(self) -> bool {
        matches!(self, BoxStatus::Configured | BoxStatus::Stopped)
    }

    pub fn can_stop(self) -> bool {
        matches!(self, BoxStatus::Running | BoxStatus::Paused)
    }

    /// Removal without force: only boxes with no VM.
    pub fn can_remove(self) -> bool {
        !self.is_active()
    }

    /// `exec` may run (starting the box first if needed).
    pub fn can_run(self) -> bool {
        self.is_running() || self.can_start()
    }
}

/// The identity of a box's one container: 64 hex digits, derived from the box id (sha256),
/// so that every process names it alike.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerID(String);

impl ContainerID {
    pub fn of_box(box_id: &str) -> Self {
        use sha2::Digest;
        Self(hex::encode(sha2::Sha256::digest(box_id.as_bytes())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerID {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The lock that serialises start, stop and remove of a box across processes: the path of
/// its lock file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockId(pub std::path::PathBuf);

/// A box's dynamic state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxState {
    pub status: BoxStatus,
    /// The shim's pid while the box runs (it hosts the VMM).
    pub pid: Option<u32>,
    pub container_id: Option<ContainerID>,
    pub last_updated: chrono::DateTime<chrono::Utc>,
    pub lock_id: Option<LockId>,
}

impl fmt::Display for BoxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BoxStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "unknown" => BoxStatus::Unknown,
            "configured" => BoxStatus::Configured,
            "running" => BoxStatus::Running,
            "paused" => BoxStatus::Paused,
            "stopping" => BoxStatus::Stopping,
            "stopped" => BoxStatus::Stopped,
            other => return Err(format!("unknown box status {other:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [BoxStatus; 6] = [
        BoxStatus::Unknown,
        BoxStatus::Configured,
        BoxStatus::Running,
        BoxStatus::Paused,
        BoxStatus::Stopping,
        BoxStatus::Stopped,
    ];

    #[test]
    fn names_round_trip() {
        for status in ALL {
            assert_eq!(status.as_str().parse::<BoxStatus>(), Ok(status));
        }
        assert!("frozen".parse::<BoxStatus>().is_err());
    }

    #[test]
    fn predicates_follow_the_state_machine() {
        let can = |f: fn(BoxStatus) -> bool| ALL.into_iter().filter(|s| f(*s)).collect::<Vec<_>>();
        assert_eq!(
            can(BoxStatus::can_start),
            [BoxStatus::Configured, BoxStatus::Stopped]
        );
        assert_eq!(can(BoxStatus::is_transient), [BoxStatus::Stopping]);
        assert_eq!(
            can(BoxStatus::can_stop),
            [BoxStatus::Running, BoxStatus::Paused]
        );
        assert_eq!(
            can(BoxStatus::can_remove),
            [
                BoxStatus::Unknown,
                BoxStatus::Configured,
                BoxStatus::Stopped
            ]
        );
        assert_eq!(
            can(BoxStatus::is_active),
            [BoxStatus::Running, BoxStatus::Paused, BoxStatus::Stopping]
        );
        assert_eq!(
            can(BoxStatus::can_run),
            [
                BoxStatus::Configured,
                BoxStatus::Running,
                BoxStatus::Stopped
            ]
        );
    }
}
