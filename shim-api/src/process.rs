//! Host processes as /proc shows them: identified by pid *and* start time (and the boot they
//! belong to), so that a recycled pid is never taken for the shim or VMM that once had it;
//! their CPU time and memory; and killing them.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// The kernel's "this task is exiting" flag in field 9 of /proc/PID/stat (linux/sched.h).
const PF_EXITING: u64 = 0x4;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

    /// Whether this very process still runs. A zombie counts as gone, and so does a process
    /// already exiting (PF_EXITING): its pidfd turns readable before /proc shows it a zombie,
    /// and a waiter told "gone" must not then read it as alive.
    pub fn is_alive(&self) -> bool {
        let Some(stat) = read_stat(self.pid) else {
            return false;
        };
        let exiting = stat_field(&stat, 9)
            .and_then(|flags| flags.parse::<u64>().ok())
            .is_some_and(|flags| flags & PF_EXITING != 0);
        stat_field(&stat, 3) != Some("Z")
            && !exiting
            && parse_start_time(&stat) == Some(self.start_time)
    }

    /// A pidfd on this very process: once open it names this process and no later one with
    /// the same pid, so a signal or a wait through it cannot reach a stranger. `None` when the
    /// process is gone (or the kernel has no pidfds, before Linux 5.3).
    fn pidfd(&self) -> Option<OwnedFd> {
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid as libc::pid_t, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the descriptor was just returned by pidfd_open and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // The pid may have been reused before the open; the start time, read after it, tells.
        self.is_alive().then_some(fd)
    }

    /// SIGKILL, if this very process still runs; returns whether it was sent. The process
    /// dies shortly after, not before this returns: [`ProcessId::wait_gone`] waits for that.
    pub fn kill(&self) -> bool {
        match self.pidfd() {
            // SAFETY: pidfd_send_signal(2) with a pidfd we own, no siginfo and no flags.
            Some(fd) => unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                ) == 0
            },
            None if self.is_alive() => {
                // No pidfds on this kernel. SAFETY: kill(2) only sends a signal; the start
                // time was checked just above, and a pid reused within these microseconds is
                // the residual race that pidfds close where they exist.
                unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGKILL) == 0 }
            }
            None => false,
        }
    }

    /// Waits up to `limit` for this process to exit (a zombie counts as gone); returns
    /// whether it has. Blocks the calling thread.
    pub fn wait_gone(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let Some(fd) = self.pidfd() else {
            // Gone already, or a kernel without pidfds: watch /proc instead.
            while self.is_alive() {
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            return true;
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut poll = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // Rounded up, so that a wait never ends before its deadline.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            // SAFETY: poll(2) on one pollfd that lives on this stack for the call.
            let ready = unsafe { libc::poll(&mut poll, 1, ms) };
            if ready > 0 {
                // A pidfd turns readable when its process has exited.
                return true;
            }
            let interrupted = ready < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted;
            if !interrupted || Instant::now() >= deadline {
                return !self.is_alive();
            }
        }
    }

    /// Resolves once this process has exited (at once when it is gone already). Cancel-safe;
    /// needs a tokio runtime with I/O enabled.
    pub async fn exited(&self) {
        if let Some(fd) = self.pidfd() {
            // SAFETY: the AsyncFd owns the pidfd (an OwnedFd) and nothing else closes or
            // replaces that descriptor while it is registered.
            let watched = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            };
            if let Ok(watched) = watched {
                // A pidfd turns readable when its process has exited, and stays so.
                let _ = watched.readable().await;
                return;
            }
        }
        // No pidfds on this kernel: watch /proc instead.
        while self.is_alive() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGKILL, then waits up to `limit` for it to take effect; returns whether the process
    /// is gone (also when it was gone before).
    pub fn kill_and_wait(&self, limit: Duration) -> bool {
        self.kill();
        self.wait_gone(limit)
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
    fn waiting_ends_when_a_process_exits_not_before() {
        // A process that is not our child (its parent, a shell, reaps it): like a shim.
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "sleep 60 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(shell.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let sleeper = ProcessId::of(line.trim().parse().unwrap()).unwrap();
        assert!(!sleeper.wait_gone(Duration::from_millis(50)));
        assert!(sleeper.is_alive());
        assert!(sleeper.kill_and_wait(Duration::from_secs(30)));
        assert!(!sleeper.is_alive());
        assert!(sleeper.wait_gone(Duration::ZERO));
        shell.wait().unwrap();
    }

    #[tokio::test]
    async fn exits_are_awaited_without_a_thread() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let id = ProcessId::of(child.id()).unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), id.exited()).await;
        assert!(waiting.is_err(), "a running process has not exited");
        assert!(id.kill());
        // Our child stays a zombie until reaped; the pidfd says it has exited all the same.
        tokio::time::timeout(Duration::from_secs(30), id.exited())
            .await
            .expect("exited");
        child.wait().unwrap();
        id.exited().await;
    }

    #[test]
    fn a_reaped_process_is_gone() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId::of(child.id()).unwrap();
        child.wait().unwrap();
        assert!(!id.is_alive());
    }
}
