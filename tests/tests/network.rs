//! Networking through a real box: user-mode networking with an address, default route and DNS
//! server; a guest server reached from the host through a forwarded port; the network policy
//! (host services out of reach by default and reachable when allowed, allow lists); a box
//! without a network has loopback only; a taken host port is a clear error.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use boxlite::{BoxCommand, BoxStatus, BoxliteError, NetworkMode, PortSpec};
use boxlite_tests::{free_port, layout_box_options, sh, test_runtime, TestHome};

/// A TCP service on every address of this host (0.0.0.0), to be reached from boxes at the
/// host's loopback (through the gateway) and at `own_address`, its first non-loopback IPv4
/// address.
struct HostService {
    port: u16,
    own_address: String,
    received: std::sync::mpsc::Receiver<String>,
}

impl HostService {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let own_address = boxlite_shim::engine::netfilter::host_addresses()
            .into_iter()
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
            .expect("this host has a non-loopback IPv4 address")
            .to_string();
        let (sender, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut got = String::new();
                if stream.and_then(|mut s| s.read_to_string(&mut got)).is_ok()
                    && sender.send(got).is_err()
                {
                    return;
                }
            }
        });
        Self {
            port,
            own_address,
            received,
        }
    }

    /// What the next connection sent.
    fn next(&self) -> String {
        self.received
            .recv_timeout(Duration::from_secs(60))
            .expect("nothing reached the host service")
    }
}

/// GET / from 127.0.0.1:port, retrying while the server in the box starts.
fn http_get(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        })();
        match attempt {
            Ok(response) if response.contains("200 OK") => return response,
            other if Instant::now() > deadline => panic!("no answer on port {port}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boxes_get_a_network_ports_and_none_on_request() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());

    let host_port = free_port();
    let mut options = layout_box_options("busybox");
    options.network = NetworkMode::User;
    options.ports = vec![PortSpec::tcp(host_port, 8000)];
    let web = rt
        .create(options.clone(), Some("web".into()))
        .await
        .unwrap();

    // The interface, route and DNS server the agent set up.
    let (code, out) = sh(&web, "ip -4 addr show; ip route; cat /etc/resolv.conf").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(sh(&web, "hostname").await.1, "web\n");
    assert!(out.contains("inet 10.0.2.15/24"), "{out}");
    assert!(out.contains("default via 10.0.2.2"), "{out}");
    assert!(out.contains("nameserver 10.0.2.3"), "{out}");

    // A server in the box, reached from the host through the forwarded port.
    let (code, out) = sh(
        &web,
        "mkdir -p /srv/www && echo served-from-the-box > /srv/www/index.html",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let server = web
        .exec(BoxCommand::new("httpd").args(["-f", "-p", "8000", "-h", "/srv/www"]))
        .await
        .unwrap();
    let response = tokio::task::spawn_blocking(move || http_get(host_port))
        .await
        .unwrap();
    assert!(response.contains("served-from-the-box"), "{response}");
    server.signal(9).await.unwrap();

    // The default policy: services on the host are out of reach, through the gateway (the
    // host's loopback) and through the host's own addresses, refused at once rather than
    // left to time out.
    let host_service = HostService::start();
    for address in ["10.0.2.2".to_string(), host_service.own_address.clone()] {
        let (code, out) = sh(
            &web,
            &format!("echo x | nc {address} {}", host_service.port),
        )
        .await;
        assert_ne!(code, 0, "{address}: {out}");
        assert!(out.contains("No route to host"), "{address}: {out}");
    }

    // Allowed, the box reaches a service on the host's loopback through the gateway and one
    // on the host's own address.
    let mut open = layout_box_options("busybox");
    open.network_policy.allow_host = true;
    let open = rt.create(open, Some("open".into())).await.unwrap();
    for address in ["10.0.2.2".to_string(), host_service.own_address.clone()] {
        let (code, out) = sh(
            &open,
            &format!("echo hello-{address} | nc {address} {}", host_service.port),
        )
        .await;
        assert_eq!(code, 0, "{address}: {out}");
        assert_eq!(host_service.next(), format!("hello-{address}\n"));
    }
    // An allow list narrows what is reachable: not the rest of the internet (the refusal
    // comes from the policy, before any route is tried).
    rt.remove("open", true).await.unwrap();
    let mut narrow = layout_box_options("busybox");
    narrow.network_policy.allow_net = vec!["198.51.100.0/24".parse().unwrap()];
    let narrow = rt.create(narrow, Some("narrow".into())).await.unwrap();
    let (code, out) = sh(&narrow, "echo x | nc 203.0.113.7 80").await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("No route to host"), "{out}");
    rt.remove("narrow", true).await.unwrap();

    // A taken host port: a clear error, and the box is left as it was.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let mut clash = options.clone();
    clash.ports = vec![PortSpec::tcp(taken, 80)];
    let b = rt.create(clash, Some("clash".into())).await.unwrap();
    let err = b.start().await.unwrap_err();
    assert!(
        matches!(
            err,
            BoxliteError::Network(boxlite::NetworkError::PortTaken { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("{taken}/tcp is taken")),
        "{err}"
    );
    assert_eq!(b.info().status, BoxStatus::Configured);
    rt.remove("clash", false).await.unwrap();
    drop(holder);

    // Ports without a network are refused at create.
    let mut bad = options.clone();
    bad.network = NetworkMode::None;
    let err = rt
        .create(bad, None)
        .await
        .expect_err("ports without a network");
    assert!(err.to_string().contains("ports need the network"), "{err}");
    rt.remove("web", true).await.unwrap();

    // No network: loopback only.
    let mut none = layout_box_options("busybox");
    none.network = NetworkMode::None;
    let isolated = rt.create(none, None).await.unwrap();
    let (code, out) = sh(&isolated, "ls /sys/class/net; ip -4 addr show lo").await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().next(), Some("lo"), "{out}");
    assert!(!out.contains("eth0"), "{out}");
    assert!(out.contains("inet 127.0.0.1/8"), "{out}");
    rt.remove(isolated.id(), true).await.unwrap();
}
