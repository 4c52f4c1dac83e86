//! Host processes as /proc shows them: identified by pid *and* start time (and the boot they
//! belong to), so that a recycled pid is never taken for the shim or VMM that once had it;
//! their CPU time and memory; and killing them.

use std::path::Path;

/// Field `n` (1-based, as proc(5) numbers them) of /proc/PID/stat, from field 3 on.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    // The command name (field 2) may hold spaces and parentheses; fields resume after the
    // last ')' with field 3.
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(n - 3)
}

fn read_stat(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&read_stat(pid)?)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    stat_field(stat, 22)?.parse().ok()
}

/// CPU time used by `pid` (user + system), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = read_stat(pid)?;
    Some(stat_field(&stat, 14)?.parse::<u64>().ok()? + stat_field(&stat, 15)?.parse::<u64>().ok()?)
}

/// Resident memory of `pid` in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// This boot of the host: pids and start times only mean something within one.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// A process as recorded in a pid file: "PID START_TIME".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start_time: u64,
}

impl ProcessId {
    /// This process.
    pub fn current() -> Option<Self> {
        let pid = std::process::id();
        Some(Self {
            pid,
            start_time: start_time(pid)?,
        })
    }

    pub fn of(pid: u32) -> Option<Self> {
        Some(Self {
            pid,
            start_time: start_time(pid)?,
        })
    }

    /// Whether this very process still runs (a zombie counts as gone).
    pub fn is_alive(&self) -> bool {
        let Some(stat) = read_stat(self.pid) else {
            return false;
        };
        stat_field(&stat, 3) != Some("Z") && parse_start_time(&stat) == Some(self.start_time)
    }

    /// SIGKILL, if this very process still runs; returns whether it did.
    pub fn kill(&self) -> bool {
        if !self.is_alive() {
            return false;
        }
        // SAFETY: kill(2) only sends a signal. The start time was checked just above; a pid
        // freed and reused within these microseconds is the accepted residual race (pidfds
        // would close it, at the cost of holding one per process across host processes).
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) == 0 }
    }

    /// Writes "PID START_TIME" (atomically: other processes read it at any time).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_all(path, &[*self])
    }

    pub fn read(path: &Path) -> Option<Self> {
        read_all(path).into_iter().next()
    }
}

/// Writes one "PID START_TIME" line per process, atomically.
pub fn write_all(path: &Path, ids: &[ProcessId]) -> std::io::Result<()> {
    let text: String = ids
        .iter()
        .map(|id| format!("{} {}\n", id.pid, id.start_time))
        .collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// The processes of a file [`write_all`] wrote; none when it is missing or unreadable.
pub fn read_all(path: &Path) -> Vec<ProcessId> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map_while(|line| {
            let mut parts = line.split_whitespace();
            Some(ProcessId {
                pid: parts.next()?.parse().ok()?,
                start_time: parts.next()?.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_command_names() {
        let stat =
            "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_start_time(stat), Some(987654));
    }

    #[test]
    fn the_current_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::current().unwrap();
        assert!(me.is_alive());
        assert!(!ProcessId {
            start_time: me.start_time + 1,
            ..me
        }
        .is_alive());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shim.pid");
        me.write(&file).unwrap();
        assert_eq!(ProcessId::read(&file), Some(me));
        write_all(&file, &[me, me]).unwrap();
        assert_eq!(read_all(&file), vec![me, me]);
        assert_eq!(read_all(&dir.path().join("missing")), vec![]);
    }

    #[test]
    fn cpu_memory_and_boot_are_read() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(rss_bytes(me).unwrap() > 1024 * 1024);
        assert_eq!(boot_id().unwrap().len(), 36);
    }

    #[test]
    fn a_killed_process_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let id = ProcessId::of(child.id()).unwrap();
        assert!(id.kill());
        child.wait().unwrap();
        assert!(!id.is_alive());
        assert!(!id.kill());
    }

    #[test]
    fn a_reaped_process_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId::of(child.id()).unwrap();
        child.wait().unwrap();
        assert!(!id.is_alive());
    }
}
