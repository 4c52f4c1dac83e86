//! passt, the user-mode network stack of every engine's VMs: one passt per VM, configured so
//! that the guest sees what the agent configures (10.0.2.15/24, gateway 10.0.2.2, DNS at
//! 10.0.2.3 forwarded to the host's resolver) and with the box's port forwards. The VMM does
//! not talk to passt directly: the shim relays between them (`relay`) and applies the box's
//! network policy to what the guest sends (`netfilter`). QEMU gets its end as `-netdev stream`
//! on an inherited descriptor, libkrun through `krun_set_passt_fd`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;

use tokio::process::{Child, Command};

use boxlite_shim_api::spec::{GUEST_ADDRESS, GUEST_DNS, GUEST_GATEWAY};

use super::netfilter::FrameFilter;
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
        &GUEST_ADDRESS.to_string(),
        "--netmask",
        "24",
        "--gateway",
        &GUEST_GATEWAY.to_string(),
        "--dns-forward",
        &GUEST_DNS.to_string(),
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

/// Starts the VM's network: passt for `network` (dying with this process) and the relay
/// that filters the guest's frames on their way to it. Returns passt and the descriptor the
/// VMM's network device uses; the relay runs on the current tokio runtime until either side
/// closes.
pub fn start(network: &NetworkSpec, run_dir: &Path) -> Result<(Child, OwnedFd), EngineError> {
    let (passt, passt_side) = spawn(network, run_dir)?;
    let (vmm_side, relay_side) = socket_pair(run_dir)?;
    let stream = |fd: OwnedFd| {
        let stream = std::os::unix::net::UnixStream::from(fd);
        stream.set_nonblocking(true)?;
        tokio::net::UnixStream::from_std(stream)
    };
    let io = |source| EngineError::Io {
        path: run_dir.to_path_buf(),
        source,
    };
    let relay_side = stream(relay_side).map_err(io)?;
    let passt_side = stream(passt_side).map_err(io)?;
    let filter = FrameFilter::for_this_host(network);
    tokio::spawn(async move {
        if let Err(e) = super::relay::run(relay_side, passt_side, filter).await {
            tracing::warn!("the box's network stopped: {e}");
        }
    });
    Ok((passt, vmm_side))
}

/// A connected pair of unix stream sockets, both close-on-exec.
fn socket_pair(run_dir: &Path) -> Result<(OwnedFd, OwnedFd), EngineError> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| EngineError::Io {
        path: run_dir.to_path_buf(),
        source: e.into(),
    })
}

/// Starts passt on one end of a socket pair and returns it with the other end.
fn spawn(network: &NetworkSpec, run_dir: &Path) -> Result<(Child, OwnedFd), EngineError> {
    let (ours, theirs) = socket_pair(run_dir)?;
    let log = run_dir.join("passt.log");
    let theirs_fd = theirs.as_raw_fd();
    let mut command = Command::new("passt");
    command
        .args(args(network, &log))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    // SAFETY: `inherit_fd` and prctl are async-signal-safe; `theirs_fd` stays open in the
    // parent until spawn returns.
    unsafe {
        command.pre_exec(move || {
            super::inherit_fd(theirs_fd, PASST_FD)?;
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| EngineError::Spawn {
        program: "passt".into(),
        source,
        hint: "install passt (scripts/setup.sh does); boxes with a network need it",
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
            policy: Default::default(),
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
