//! passt, the user-mode network stack the krun engine gives its VMs (libkrun's
//! `krun_set_passt_fd`): one passt per VM, talking to libkrun's virtio-net over a socket pair,
//! configured so that the guest sees what the agent configures for user-mode networking
//! (10.0.2.15/24, gateway 10.0.2.2 = the host, DNS at 10.0.2.3 forwarded to the host's
//! resolver) and with the box's port forwards.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::{EngineError, NetworkSpec, Protocol};

/// The descriptor number passt finds its end of the socket pair at.
const PASST_FD: i32 = 3;

/// passt's arguments for a VM with `network`; the socket is descriptor 3 (`PASST_FD`).
pub fn args(network: &NetworkSpec, log: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--foreground",
        "--quiet",
        "--one-off",
        "--fd",
        &PASST_FD.to_string(),
        "--address",
        "10.0.2.15",
        "--netmask",
        "24",
        "--gateway",
        "10.0.2.2",
        "--dns-forward",
        "10.0.2.3",
        "--log-file",
        &log.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    for (protocol, flag) in [
        (Protocol::Tcp, "--tcp-ports"),
        (Protocol::Udp, "--udp-ports"),
    ] {
        let specs: Vec<String> = network
            .forwards
            .iter()
            .filter(|f| f.protocol == protocol)
            .map(|f| format!("{}/{}:{}", f.host_ip, f.host_port, f.guest_port))
            .collect();
        if specs.is_empty() {
            args.extend([flag.to_string(), "none".to_string()]);
        }
        for spec in specs {
            args.extend([flag.to_string(), spec]);
        }
    }
    args
}

/// Starts passt for `network` (dying with this process) and returns it with this side of the
/// socket pair, which goes to libkrun.
pub fn spawn(network: &NetworkSpec, run_dir: &Path) -> Result<(Child, OwnedFd), EngineError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| EngineError::Io {
        path: run_dir.to_path_buf(),
        source: e.into(),
    })?;
    let log = run_dir.join("passt.log");
    let theirs_fd = theirs.as_raw_fd();
    let mut command = Command::new("passt");
    command
        .args(args(network, &log))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    // SAFETY: dup2 and prctl are async-signal-safe; `theirs_fd` stays open in the parent
    // until spawn returns. dup2 clears close-on-exec on the copy passt is told about.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(theirs_fd, PASST_FD) < 0
                || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| EngineError::Spawn {
        program: "passt".into(),
        source,
        hint: "install passt (scripts/setup.sh does); the krun engine needs it for networking",
    })?;
    drop(theirs);
    Ok((child, ours))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PortForward;

    #[test]
    fn forwards_and_addresses_become_passt_arguments() {
        let network = NetworkSpec {
            forwards: vec![
                PortForward {
                    host_ip: std::net::Ipv4Addr::LOCALHOST,
                    host_port: 8080,
                    guest_port: 80,
                    protocol: Protocol::Tcp,
                },
                PortForward {
                    host_ip: std::net::Ipv4Addr::new(0, 0, 0, 0),
                    host_port: 5353,
                    guest_port: 53,
                    protocol: Protocol::Tcp,
                },
            ],
        };
        let args = args(&network, Path::new("/b/passt.log"));
        let joined = args.join(" ");
        assert!(joined.contains("--fd 3"), "{joined}");
        assert!(joined.contains("--address 10.0.2.15 --netmask 24 --gateway 10.0.2.2"));
        assert!(joined.contains("--dns-forward 10.0.2.3"));
        assert!(joined.contains("--tcp-ports 127.0.0.1/8080:80 --tcp-ports 0.0.0.0/5353:53"));
        assert!(joined.contains("--udp-ports none"), "{joined}");
        assert!(joined.contains("--log-file /b/passt.log"));
    }
}
