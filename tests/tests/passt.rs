//! The engines' network helper against the real passt (no VM needed): the arguments the
//! engine builds are accepted, the forwarded host port is listened on, and passt quits once
//! the VMM's end of the relay closes.

use std::time::{Duration, Instant};

use boxlite_shim::engine::{passt, NetworkSpec, PortForward, Protocol};
use boxlite_tests::{free_port, scratch_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passt_takes_our_arguments_forwards_ports_and_ends_with_the_vm() {
    let dir = tempfile::tempdir_in(scratch_root()).unwrap();
    let port = free_port();
    let network = NetworkSpec {
        forwards: vec![PortForward {
            host_ip: std::net::Ipv4Addr::LOCALHOST,
            host_port: port,
            guest_port: 80,
            protocol: Protocol::Tcp,
        }],
        policy: Default::default(),
    };
    let (mut child, vmm_end) = passt::start(&network, dir.path()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "passt exited: {}",
            std::fs::read_to_string(dir.path().join("passt.log")).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "passt never listened on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(vmm_end);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("passt outlived the VMM's end of the socket")
        .unwrap();
    assert!(status.success(), "{status}");
}
