//! containerd runs containers as boxes through `containerd-shim-boxlite-v1`: a real,
//! private containerd (Debian's 1.6), real images imported with `ctr`, real VMs; and the CRI
//! path a kubelet takes, driven by a CRI client over containerd's socket.

use std::time::{Duration, Instant};

use boxlite_tests::containerd::{Containerd, IMAGE, RUNTIME};

const NS: &str = "boxlite-test";

fn run_box(ctrd: &Containerd, id: &str, command: &[&str]) -> std::process::Output {
    let mut args = vec!["-n", NS, "run", "--runtime", RUNTIME, "--rm", IMAGE, id];
    args.extend_from_slice(command);
    ctrd.ctr_output(&args)
}

/// `ctr run -d` of the test image as task `id`: it keeps running after `ctr` returns.
fn run_detached(ctrd: &Containerd, id: &str, command: &[&str]) {
    let mut args = vec!["-n", NS, "run", "-d", "--runtime", RUNTIME, IMAGE, id];
    args.extend_from_slice(command);
    ctrd.ctr(&args);
}

/// Waits (with a deadline) until `ctr task ls` shows `id` in `status`.
fn wait_for_task_status(ctrd: &Containerd, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let tasks = ctrd.ctr(&["-n", NS, "task", "ls"]);
        if tasks
            .lines()
            .any(|l| l.split_whitespace().next() == Some(id) && l.contains(status))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} not {status} after 120 s:\n{tasks}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctr_runs_execs_kills_and_cleans_up_boxes() {
    let ctrd = Containerd::start();
    ctrd.import_test_image(NS);

    let hi = run_box(&ctrd, "hi", &["echo", "hi"]);
    assert!(hi.status.success(), "{hi:?}\n{}", ctrd.log());
    assert_eq!(String::from_utf8_lossy(&hi.stdout), "hi\n");

    // The box's disk is the image's rootfs (busybox's passwd); exit codes propagate.
    let failing = run_box(
        &ctrd,
        "exit7",
        &["sh", "-c", "cat /etc/passwd; echo oops >&2; exit 7"],
    );
    assert_eq!(failing.status.code(), Some(7), "{failing:?}");
    assert!(String::from_utf8_lossy(&failing.stdout).starts_with("root:x:0:0"));
    assert_eq!(String::from_utf8_lossy(&failing.stderr), "oops\n");

    // A long-running task: exec into it, then kill it.
    run_detached(
        &ctrd,
        "long",
        &["sh", "-c", "echo from-init > /tmp/marker; exec sleep 1000"],
    );
    wait_for_task_status(&ctrd, "long", "RUNNING");
    assert_eq!(ctrd.box_count(), 1, "the task is one box");
    // The exec sees the init's files: the same VM.
    let deadline = Instant::now() + Duration::from_secs(60);
    for attempt in 0.. {
        let exec_id = format!("cat{attempt}");
        let cat = ctrd.ctr_output(&[
            "-n",
            NS,
            "task",
            "exec",
            "--exec-id",
            &exec_id,
            "long",
            "cat",
            "/tmp/marker",
        ]);
        if cat.status.success() && String::from_utf8_lossy(&cat.stdout) == "from-init\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exec never saw /tmp/marker: {cat:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The box's root is containerd's snapshot itself: the write is there on the host.
    assert_eq!(
        std::fs::read_to_string(ctrd.task_rootfs(NS, "long").join("tmp/marker")).unwrap(),
        "from-init\n"
    );
    let exec = ctrd.ctr_output(&[
        "-n",
        NS,
        "task",
        "exec",
        "--exec-id",
        "e3",
        "long",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(exec.status.code(), Some(3), "{exec:?}");
    let pids = ctrd.ctr(&["-n", NS, "task", "ps", "long"]);
    assert!(pids.lines().count() >= 2, "{pids}");
    ctrd.ctr(&["-n", NS, "task", "pause", "long"]);
    wait_for_task_status(&ctrd, "long", "PAUSED");
    ctrd.ctr(&["-n", NS, "task", "resume", "long"]);
    wait_for_task_status(&ctrd, "long", "RUNNING");
    let metrics = ctrd.ctr(&["-n", NS, "task", "metrics", "long"]);
    assert!(metrics.contains("memory.usage"), "{metrics}");

    ctrd.ctr(&["-n", NS, "task", "kill", "long"]);
    wait_for_task_status(&ctrd, "long", "STOPPED");
    ctrd.ctr(&["-n", NS, "task", "rm", "long"]);
    ctrd.ctr(&["-n", NS, "container", "rm", "long"]);

    let containers = ctrd.ctr(&["-n", NS, "container", "ls", "-q"]);
    assert_eq!(containers.trim(), "", "containers left: {containers}");
    ctrd.assert_nothing_left();
}

#[test]
fn a_killed_shim_leaves_no_vm() {
    let ctrd = Containerd::start();
    ctrd.import_test_image(NS);
    run_detached(&ctrd, "victim", &["sleep", "1000"]);
    wait_for_task_status(&ctrd, "victim", "RUNNING");
    let shims = ctrd.live_shims();
    assert_eq!(shims.len(), 1, "{shims:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shims[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // containerd notices, runs `containerd-shim-boxlite-v1 delete`, and the task is gone.
    let deadline = Instant::now() + Duration::from_secs(120);
    while ctrd.ctr(&["-n", NS, "task", "ls", "-q"]).contains("victim") {
        assert!(
            Instant::now() < deadline,
            "the dead shim's task is still listed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ctrd.ctr(&["-n", NS, "container", "rm", "victim"]);
    ctrd.assert_nothing_left();
}

mod cri {
    use super::*;
    use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
    use k8s_cri::v1::*;
    use tonic::transport::{Channel, Endpoint, Uri};

    const CRI_NS: &str = "k8s.io";

    async fn client(ctrd: &Containerd) -> RuntimeServiceClient<Channel> {
        let socket = ctrd.socket();
        let channel = Endpoint::try_from("http://[::]:0")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .expect("connecting to containerd's CRI");
        RuntimeServiceClient::new(channel)
    }

    fn pod_config(name: &str, logs: &std::path::Path, network: NamespaceMode) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: logs.to_string_lossy().into_owned(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox with the `boxlite` handler, then CreateContainer and StartContainer of
    /// the test image running `script`: (pod id, container id).
    async fn run_pod(
        cri: &mut RuntimeServiceClient<Channel>,
        ctrd: &Containerd,
        config: PodSandboxConfig,
        script: &str,
    ) -> (String, String) {
        let pod = cri
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: "boxlite".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", ctrd.log()))
            .into_inner()
            .pod_sandbox_id;
        let container = cri
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "app".into(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: IMAGE.into(),
                        ..Default::default()
                    }),
                    command: vec!["sh".into()],
                    args: vec!["-c".into(), script.into()],
                    log_path: "app.log".into(),
                    ..Default::default()
                }),
                sandbox_config: Some(config),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", ctrd.log()))
            .into_inner()
            .container_id;
        cri.start_container(StartContainerRequest {
            container_id: container.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", ctrd.log()));
        (pod, container)
    }

    /// StopPodSandbox (which ends `container`) and RemovePodSandbox; then nothing of the
    /// pod may be left.
    async fn remove_pod(
        cri: &mut RuntimeServiceClient<Channel>,
        ctrd: &Containerd,
        pod: String,
        container: String,
    ) {
        cri.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}\n{}", ctrd.log()));
        let status = cri
            .container_status(ContainerStatusRequest {
                container_id: container,
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(status.state, ContainerState::ContainerExited as i32);
        cri.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}\n{}", ctrd.log()));
        let left = cri
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
            .unwrap()
            .into_inner()
            .items;
        assert!(left.is_empty(), "{left:?}");
        tokio::task::block_in_place(|| ctrd.assert_nothing_left());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pod_runs_its_container_in_a_box() {
        let ctrd = Containerd::start();
        ctrd.import_test_image(CRI_NS);
        let mut cri = client(&ctrd).await;
        let logs = tempfile::tempdir_in(boxlite_tests::scratch_root()).unwrap();
        // The node's network: this containerd has no CNI network.
        let config = pod_config("pod", logs.path(), NamespaceMode::Node);
        let (pod, container) =
            run_pod(&mut cri, &ctrd, config, "echo app-started; exec sleep 1000").await;

        let exec = cri
            .exec_sync(ExecSyncRequest {
                container_id: container.clone(),
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo exec-ok; uname -s; exit 3".into(),
                ],
                timeout: 120,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync: {e}\n{}", ctrd.log()))
            .into_inner();
        assert_eq!(String::from_utf8_lossy(&exec.stdout), "exec-ok\nLinux\n");
        assert_eq!(exec.exit_code, 3);

        // The container's output reached the kubelet's log, in CRI's log format.
        let log = logs.path().join("app.log");
        boxlite_tests::wait_until(Duration::from_secs(60), "logged", || {
            let log = log.clone();
            async move {
                std::fs::read_to_string(&log)
                    .is_ok_and(|text| text.contains(" stdout F app-started"))
            }
        })
        .await;

        let status = cri
            .container_status(ContainerStatusRequest {
                container_id: container.clone(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(status.state, ContainerState::ContainerRunning as i32);
        // One VM: the app container's; the pod's sandbox only holds its namespaces.
        assert_eq!(ctrd.box_count(), 1);

        remove_pod(&mut cri, &ctrd, pod, container).await;
    }

    /// The netns inode of `path` (a netns bind mount or /proc/PID/ns/net).
    fn netns_inode(path: &str) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .ino()
    }

    /// A pod on a CNI network (a bridge): the box's VMM and its network helper (passt) run in
    /// the pod's network namespace, so the box's traffic is the pod's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pods_box_is_in_the_pods_network_namespace() {
        // Names of this run only: two runs on one machine must not share a bridge.
        let n = std::process::id() % 200 + 20;
        let bridge = format!("bxt{n}");
        let subnet = format!("10.87.{n}.0/24");
        let ctrd = Containerd::start_with_cni_bridge(&bridge, &subnet);
        ctrd.import_test_image(CRI_NS);
        let mut cri = client(&ctrd).await;
        let logs = tempfile::tempdir_in(boxlite_tests::scratch_root()).unwrap();
        let config = pod_config("netpod", logs.path(), NamespaceMode::Pod);
        let (pod, container) = run_pod(&mut cri, &ctrd, config, "exec sleep 1000").await;

        let status = cri
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: pod.clone(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        let ip = status
            .status
            .as_ref()
            .unwrap()
            .network
            .as_ref()
            .unwrap()
            .ip
            .clone();
        assert!(ip.starts_with(&format!("10.87.{n}.")), "pod IP {ip}");
        let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
        let netns = info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|ns| ns["type"] == "network")
            .and_then(|ns| ns["path"].as_str())
            .expect("the pod's netns path")
            .to_string();
        let pod_netns = netns_inode(&netns);
        assert_ne!(
            pod_netns,
            netns_inode("/proc/self/ns/net"),
            "the pod has its own netns"
        );

        // The box's shim and its VMM run in the pod's namespace (passt, the shim's child,
        // makes itself undumpable: its namespaces cannot be read from here).
        let processes: Vec<_> = ctrd
            .home
            .box_processes()
            .into_iter()
            // Readable ones: a zombie has no namespaces left to compare.
            .filter(|p| std::fs::metadata(format!("/proc/{}/ns/net", p.pid)).is_ok())
            .collect();
        let names: Vec<String> = processes
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{}/comm", p.pid)).unwrap_or_default())
            .collect();
        assert!(
            ["boxlite-shim", "qemu"]
                .iter()
                .all(|name| names.iter().any(|n| n.starts_with(name))),
            "the box's shim and VMM expected: {names:?}"
        );
        for process in &processes {
            assert_eq!(
                netns_inode(&format!("/proc/{}/ns/net", process.pid)),
                pod_netns,
                "{process:?} is not in the pod's network namespace"
            );
        }

        // And the box's traffic leaves from the pod: a connection from the box to the
        // bridge's address (the node's side) arrives from the pod's IP.
        let gateway = format!("10.87.{n}.1");
        let listener = tokio::net::TcpListener::bind((gateway.as_str(), 0))
            .await
            .unwrap_or_else(|e| panic!("binding {gateway}: {e}"));
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move {
            let (mut stream, peer) = listener.accept().await.unwrap();
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut text)
                .await
                .unwrap();
            (peer.ip().to_string(), text)
        });
        let exec = cri
            .exec_sync(ExecSyncRequest {
                container_id: container.clone(),
                cmd: vec![
                    "sh".into(),
                    "-c".into(),
                    format!("echo from-the-box | nc {gateway} {port}"),
                ],
                timeout: 120,
            })
            .await
            .unwrap_or_else(|e| panic!("ExecSync: {e}\n{}", ctrd.log()))
            .into_inner();
        assert_eq!(
            exec.exit_code,
            0,
            "{}",
            String::from_utf8_lossy(&exec.stderr)
        );
        let (peer, text) = tokio::time::timeout(Duration::from_secs(120), accepted)
            .await
            .expect("no connection from the box within 120 s")
            .unwrap();
        assert_eq!(
            (peer.as_str(), text.as_str()),
            (ip.as_str(), "from-the-box\n")
        );
        remove_pod(&mut cri, &ctrd, pod, container).await;
    }
}
