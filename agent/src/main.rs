//! boxlite-agent: PID 1 of a box VM. Prepares the guest, then serves the Agent ttrpc service
//! on vsock until asked to shut down.
//!
//! `boxlite-agent --listen unix:///path/agent.sock` runs the same service as an ordinary
//! process on a host, with commands run in the host's root; the test suite uses it to exercise
//! the exec machinery without a VM.

mod channel;
mod exec;
mod fdio;
mod init;
mod net;
mod service;
mod setup;
mod users;

use std::path::PathBuf;
use std::sync::Arc;

use boxlite_protocol::AGENT_VSOCK_PORT;
use service::{AgentService, ShutdownMode};

macro_rules! log {
    ($($arg:tt)*) => { eprintln!("boxlite-agent: {}", format_args!($($arg)*)) };
}

fn main() {
    if let Some(code) = copy_helper() {
        std::process::exit(code);
    }
    let listen = parse_listen_arg();
    let is_pid1 = std::process::id() == 1;
    if is_pid1 {
        init::ensure_std_fds();
    }

    let mut template = false;
    let mut template_net = None;
    let (addresses, root, shutdown) = if is_pid1 && listen.is_none() {
        if let Err(err) = init::mount_guest_filesystems() {
            fatal(&err.to_string());
        }
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        let (params, malformed) = init::BootParams::parse(&cmdline);
        for word in malformed {
            eprintln!("boxlite-agent: ignoring malformed {word}");
        }
        template = cmdline
            .split_whitespace()
            .any(|w| w == format!("{}=1", boxlite_protocol::boot::TEMPLATE_PARAM));
        if template {
            // Saved as a template: each box restored from it sends its settings in Setup.
            // The network is every box's (boxlite.net is the same for all): configured now,
            // once, rather than after each restore.
            template_net = params
                .net
                .as_deref()
                .map(net::NetParams::parse)
                .transpose()
                .unwrap_or_else(|err| fatal(&err.to_string()));
            net::configure_interfaces(template_net.as_ref())
                .unwrap_or_else(|err| fatal(&err.to_string()));
            (
                vec![format!("vsock://-1:{}", AGENT_VSOCK_PORT)],
                PathBuf::from(init::ROOTFS),
                ShutdownMode::PowerOff,
            )
        } else {
            let root = init::mount_box_disk(&params).unwrap_or_else(|err| fatal(&err.to_string()));
            if params.root_device.is_some() {
                init::mount_box_pseudo_filesystems(&root)
                    .unwrap_or_else(|err| fatal(&err.to_string()));
            }
            let net = params
                .net
                .as_deref()
                .map(net::NetParams::parse)
                .transpose()
                .unwrap_or_else(|err| fatal(&err.to_string()));
            net::configure(net.as_ref(), &root).unwrap_or_else(|err| fatal(&err.to_string()));
            init::mount_volumes(&root, &params.volumes)
                .unwrap_or_else(|err| fatal(&err.to_string()));
            if let Some(name) = &params.hostname {
                if let Err(err) = nix::unistd::sethostname(name) {
                    log!("setting the hostname to {name:?}: {err}");
                }
            }
            let port = params.vsock_port.unwrap_or(AGENT_VSOCK_PORT);
            (
                vec![format!("vsock://-1:{port}")],
                root,
                ShutdownMode::PowerOff,
            )
        }
    } else {
        let Some(address) = listen else {
            eprintln!("usage: boxlite-agent --listen unix:///PATH (outside a VM)");
            std::process::exit(2);
        };
        (vec![address], PathBuf::from("/"), ShutdownMode::ExitProcess)
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|err| fatal(&format!("starting the async runtime: {err}")));
    runtime.block_on(async move {
        let pending = setup::Pending::new(template, template_net);
        if let Err(err) = serve(&addresses, root, shutdown, pending).await {
            fatal(&err);
        }
    });
}

/// Serves the agent on every address, plus the virtio-serial port when the VM has one.
async fn serve(
    addresses: &[String],
    root: PathBuf,
    shutdown: ShutdownMode,
    pending_box: setup::Pending,
) -> Result<(), String> {
    let execs = exec::ExecTable::new(root);
    execs
        .start_reaper()
        .map_err(|e| format!("installing the SIGCHLD handler: {e}"))?;
    let service = Arc::new(AgentService {
        execs,
        ready_at_ms: init::uptime_ms(),
        shutdown,
        pending_box,
    });

    let mut listeners = Vec::new();
    let mut failures = Vec::new();
    if std::process::id() == 1 {
        if let Some(port) = channel::find_serial_port(channel::SERIAL_PORT_NAME) {
            listeners.push((port.display().to_string(), channel::serial_listener(port)));
        }
    }
    for address in addresses {
        if let Some(path) = address.strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
        }
        match ttrpc::r#async::transport::Listener::bind(address) {
            Ok(listener) => listeners.push((address.clone(), listener)),
            Err(e) => failures.push(format!("listening on {address}: {e}")),
        }
    }
    // A VM without a vsock device is fine as long as another channel is there.
    if listeners.is_empty() {
        return Err(failures.join("; "));
    }
    for failure in failures {
        log!("{failure} (serving on the other channels)");
    }

    // One server per listener (a ttrpc server starts one); they share the service.
    let mut servers = Vec::new();
    for (address, listener) in listeners {
        let services = boxlite_protocol::agent_ttrpc::create_agent(service.clone());
        let mut server = ttrpc::r#async::Server::new()
            .add_listener(listener)
            .register_service(services);
        server
            .start()
            .await
            .map_err(|e| format!("serving on {address}: {e}"))?;
        if std::process::id() == 1 {
            log!(
                "ready on {address} at {} ms of guest uptime",
                init::uptime_ms()
            );
        } else {
            log!("ready on {address}");
        }
        servers.push(server);
    }
    std::future::pending::<()>().await;
    Ok(())
}

/// `boxlite-agent --copy-in ROOT DEST` / `--copy-out ROOT SRC`: the copy helper the agent
/// starts as an exec (`ExecTable::spawn_copy`). Confined to the box by chroot(ROOT) before it
/// touches a path, then unpacks stdin at DEST or packs SRC to stdout. `None` when the
/// arguments ask for something else.
fn copy_helper() -> Option<i32> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, root, path) = match args.as_slice() {
        [mode, root, path] if mode == "--copy-in" || mode == "--copy-out" => (mode, root, path),
        _ => return None,
    };
    let run = || -> Result<boxlite_copy::CopyStats, String> {
        if root != "/" {
            nix::unistd::chroot(root.as_str()).map_err(|e| format!("chroot {root}: {e}"))?;
            std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
        }
        let path = std::path::Path::new(path);
        let result = if mode == "--copy-in" {
            boxlite_copy::unpack(std::io::stdin().lock(), path)
        } else {
            boxlite_copy::pack(path, std::io::BufWriter::new(std::io::stdout().lock()))
        };
        result.map_err(|e| e.to_string())
    };
    Some(match run() {
        Ok(_) => 0,
        Err(message) => {
            eprintln!("{message}");
            1
        }
    })
}

fn parse_listen_arg() -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--listen" {
            return args.next();
        }
        if let Some(value) = arg.strip_prefix("--listen=") {
            return Some(value.to_string());
        }
    }
    None
}

/// Reports a failure that leaves the agent unable to serve. As PID 1 it must not exit (the
/// kernel would panic and the console would lose the message), so it powers the VM off and
/// the host reports the console tail, which ends with this line.
fn fatal(message: &str) -> ! {
    log!("fatal: {message}");
    if std::process::id() == 1 {
        init::power_off();
    }
    std::process::exit(1);
}
