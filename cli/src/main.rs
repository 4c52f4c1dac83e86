//! `boxlite`: the command-line face of the runtime, shaped like `docker`.
//! `run` and `exec` exit with the command's exit code (128 + signal when a signal ended it);
//! boxlite's own failures exit with 125, a command that cannot start with 127.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use boxlite::{
    BoxCommand, BoxInfo, BoxOptions, BoxliteOptions, BoxliteRuntime, CopyOptions, EngineKind,
    Execution, IpNet, NetworkMode, NetworkPolicy, PortSpec, RootfsSpec, VolumeSpec,
};
use clap::{Parser, Subcommand};
use tokio::io::AsyncReadExt;

#[derive(Parser)]
#[command(
    name = "boxlite",
    version,
    about = "Micro-VM sandboxes from OCI images"
)]
struct Cli {
    /// Home directory of boxes and images.
    #[arg(long, global = true, env = "BOXLITE_HOME")]
    home: Option<PathBuf>,
    /// Registry tried for unqualified image names (repeatable, in order; default docker.io).
    #[arg(long = "registry", global = true)]
    registries: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Name of the box.
    #[arg(long)]
    name: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the box.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Memory in MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// VMM engine: qemu or krun (default: BOXLITE_ENGINE, else krun where built in and the
    /// host has hardware virtualisation, else qemu).
    #[arg(long)]
    engine: Option<EngineKind>,
    /// Forward a host port: [IP:]HOST:GUEST[/udp] (IP defaults to 127.0.0.1; repeatable).
    #[arg(short = 'p', long = "publish")]
    ports: Vec<PortSpec>,
    /// Mount a host directory: HOST_DIR:GUEST_PATH[:ro] (repeatable).
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<VolumeSpec>,
    /// `user` (default: outbound access and DNS) or `none` (loopback only).
    #[arg(long, default_value = "user")]
    network: NetworkMode,
    /// Let the box reach services on this host (its loopback through the gateway 10.0.2.2,
    /// and its own addresses). Off by default: code in a box is untrusted.
    #[arg(long)]
    allow_host: bool,
    /// Only these networks are reachable (CIDR or address; repeatable); DNS always is.
    #[arg(long = "allow-net", value_name = "NET")]
    allow_net: Vec<IpNet>,
    /// Never reach these networks (CIDR or address; repeatable), besides cloud metadata.
    #[arg(long = "deny-net", value_name = "NET")]
    deny_net: Vec<IpNet>,
    /// Let the box reach cloud metadata services (169.254.0.0/16 and the like), which are
    /// denied by default because they hand out the host's credentials.
    #[arg(long)]
    allow_metadata: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create a box from IMAGE, start it and run CMD (or the image's command) in it.
    /// IMAGE is a reference, or oci:PATH[:TAG] for an OCI image layout on this host.
    Run {
        /// Remove the box when the command ends.
        #[arg(long)]
        rm: bool,
        /// Start the command and print the box id without waiting.
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep stdin open and pass it to the command.
        #[arg(short = 'i', long)]
        interactive: bool,
        #[command(flatten)]
        create: CreateArgs,
        image: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Run CMD in a box (starting it if needed).
    Exec {
        #[arg(short = 'i', long)]
        interactive: bool,
        /// Run on a terminal (raw mode here while it runs, when stdin is a terminal).
        #[arg(short = 't', long)]
        tty: bool,
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        #[arg(short = 'w', long = "workdir")]
        workdir: Option<String>,
        #[arg(short = 'u', long)]
        user: Option<String>,
        #[arg(name = "BOX")]
        target: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Stream the output of a command started earlier (`run -d` prints its exec id) from
    /// where its last reader stopped, and exit with its exit code.
    Attach {
        #[arg(name = "BOX")]
        target: String,
        exec_id: String,
    },
    /// Show the output of a box's detached commands (`run -d`), kept on the host.
    Logs {
        /// Follow: print what is written next, until the box stops.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        #[arg(name = "BOX")]
        target: String,
    },
    /// List running boxes (all with -a).
    Ls {
        #[arg(short = 'a', long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show a box as JSON.
    Inspect { target: String },
    /// Start boxes.
    Start { targets: Vec<String> },
    /// Stop boxes.
    Stop { targets: Vec<String> },
    /// Remove boxes (-f also stops running ones).
    Rm {
        #[arg(short = 'f', long)]
        force: bool,
        targets: Vec<String>,
    },
    /// Copy files or trees between a box and this host: `cp BOX:PATH HOSTPATH` or
    /// `cp HOSTPATH BOX:PATH` (modes, mtimes and symlinks kept; the destination becomes the
    /// copy, or holds it when it is an existing directory).
    Cp { src: String, dest: String },
    /// Figures of running boxes (all of them, or those named): CPU, memory, execs, bytes.
    Stats {
        #[arg(long)]
        json: bool,
        targets: Vec<String>,
    },
    /// Stop boxes' vCPUs; their processes and memory are kept (exec is refused until `resume`).
    Pause { targets: Vec<String> },
    /// Run paused boxes again.
    Resume { targets: Vec<String> },
    /// Memory snapshots: a running box saved whole (memory, devices, disk).
    Snapshot {
        #[command(subcommand)]
        action: SnapshotCommand,
    },
    /// Create box NEW that continues from this moment of box SRC (its processes running),
    /// and is independent afterwards.
    Fork {
        #[arg(name = "SRC")]
        source: String,
        #[arg(name = "NEW")]
        name: String,
    },
    /// Standbys: warm VMs kept ready for boxes not asked for yet (`BOXLITE_STANDBY=N` keeps N
    /// per kind of box; a box's first start takes one).
    Standby {
        #[command(subcommand)]
        action: StandbyCommand,
    },
    /// Pull an image.
    Pull { image: String },
    /// List images.
    Images,
    /// Remove images no box uses.
    Rmi { images: Vec<String> },
}

#[derive(Subcommand)]
enum StandbyCommand {
    /// How many standbys are ready to be taken.
    Ls,
    /// Power every standby of the home off (boxes started from one are not touched).
    Retire,
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Save running (or paused) box BOX as snapshot NAME.
    Save {
        #[arg(name = "BOX")]
        target: String,
        name: String,
    },
    /// List the home's snapshots.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove snapshots (boxes made from them are not affected).
    Rm { names: Vec<String> },
    /// Create and start box NEW from snapshot NAME.
    Restore {
        name: String,
        #[arg(name = "NEW")]
        new: String,
    },
    /// Put box BOX back to its own snapshot NAME: what happened since is lost, and the box
    /// runs on from the moment the snapshot was taken.
    Revert {
        #[arg(name = "BOX")]
        target: String,
        name: String,
    },
}

/// Exit code for boxlite's own failures, as docker uses it.
const FAILURE: u8 = 125;

fn main() -> ExitCode {
    // Usage errors exit 125 like boxlite's other failures (docker's convention), so that
    // scripts can tell them from the command's own codes; --help and --version exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { FAILURE } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("boxlite: {err}");
            return ExitCode::from(FAILURE);
        }
    };
    let outcome = runtime.block_on(run(cli));
    // A read of our stdin may still be pending on a blocking thread (the command ended
    // before its input did): do not wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("boxlite: {message}");
            ExitCode::from(FAILURE)
        }
    }
}

/// Log lines to our stdout and stderr, as the command wrote them.
fn print_log_lines(lines: &[boxlite::LogLine]) -> Result<(), String> {
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    for line in lines {
        let sink: &mut dyn Write = match line.stream {
            boxlite::LogStream::Stdout => &mut out,
            boxlite::LogStream::Stderr => &mut err,
        };
        sink.write_all(&line.data)
            .and_then(|_| sink.write_all(b"\n"))
            .map_err(|e| format!("writing the log out: {e}"))?;
    }
    out.flush().map_err(|e| format!("writing the log out: {e}"))
}

/// A command that could not start is reported with docker's exit codes (127: no such program,
/// 126: cannot be run); other errors are boxlite's own (125).
fn exec_failure(err: boxlite::BoxliteError) -> Result<u8, String> {
    match err {
        boxlite::BoxliteError::Execution(boxlite::ExecutionError::CannotStart {
            reason,
            message,
        }) => {
            eprintln!("boxlite: {message}");
            Ok(reason.exit_code())
        }
        other => Err(other.to_string()),
    }
}

/// The box's network policy from `create`'s flags: the default, widened or narrowed.
fn network_policy(
    allow_host: bool,
    allow_net: Vec<IpNet>,
    deny_net: Vec<IpNet>,
    allow_metadata: bool,
) -> NetworkPolicy {
    let mut policy = NetworkPolicy {
        allow_host,
        allow_net,
        ..NetworkPolicy::default()
    };
    if allow_metadata {
        policy.deny_net.clear();
    }
    policy.deny_net.extend(deny_net);
    policy
}

fn parse_env(entries: &[String]) -> Result<Vec<(String, String)>, String> {
    entries
        .iter()
        .map(|e| match e.split_once('=') {
            Some(("", _)) => Err(format!(
                "-e {e}: the variable has no name; expected KEY=VALUE"
            )),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => std::env::var(e)
                .map(|v| (e.clone(), v))
                .map_err(|_| format!("-e {e}: expected KEY=VALUE")),
        })
        .collect()
}

/// `BOX:/path` → (BOX, /path). Host paths with a colon can be written ./a:b.
fn box_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':')
}

fn info_json(info: &BoxInfo) -> serde_json::Value {
    serde_json::json!({
        "id": info.id,
        "name": info.name,
        "status": info.status.as_str(),
        "created_at": info.created_at,
        "last_updated": info.last_updated,
        "pid": info.pid,
        "image": info.image,
        "cpus": info.cpus,
        "memory_mib": info.memory_mib,
        "labels": info.labels,
        "engine": info.engine,
    })
}

async fn run(cli: Cli) -> Result<u8, String> {
    let rt = BoxliteRuntime::new(BoxliteOptions {
        home_dir: cli.home.unwrap_or_else(boxlite::runtime::default_home),
        image_registries: cli.registries,
    })
    .map_err(|e| e.to_string())?;
    // RUST_LOG=debug (or boxlite=trace, ...) shows what the library does on stderr; warnings
    // otherwise. The home's logs/boxlite.log keeps RUST_LOG's levels (info when unset); the
    // home is checked (ours, private) by now.
    boxlite::logging::install(rt.home(), "warn");
    let e = |err: boxlite::BoxliteError| err.to_string();
    match cli.command {
        Command::Run {
            rm,
            detach,
            interactive,
            create,
            image,
            cmd,
        } => {
            let mut options = BoxOptions::with_rootfs(RootfsSpec::from_reference(&image));
            options.cpus = Some(create.cpus);
            options.memory_mib = Some(create.memory);
            // A box the CLI runs belongs to the home, not to this process (docker's model):
            // it runs on after `run` returns, and stays when stopped unless --rm.
            options.detach = true;
            options.auto_remove = false;
            options.env = parse_env(&create.env)?;
            options.working_dir = create.workdir;
            options.engine = create.engine;
            options.ports = create.ports;
            options.network = create.network;
            options.network_policy = network_policy(
                create.allow_host,
                create.allow_net,
                create.deny_net,
                create.allow_metadata,
            );
            options.volumes = create
                .volumes
                .into_iter()
                .map(|mut v| {
                    // Relative host paths are relative to here, as with docker -v ./dir:/x.
                    if Path::new(&v.host_path).is_relative() {
                        if let Ok(cwd) = std::env::current_dir() {
                            v.host_path = cwd.join(&v.host_path).display().to_string();
                        }
                    }
                    v
                })
                .collect();
            let b = rt.create(options, create.name).await.map_err(e)?;
            let run_config = b.image_config();
            let args: Vec<String> = run_config
                .entrypoint
                .iter()
                .cloned()
                .chain(if cmd.is_empty() {
                    run_config.cmd.clone()
                } else {
                    cmd
                })
                .collect();
            if args.is_empty() {
                return Err(format!(
                    "{image} has no command; give one after the image name"
                ));
            }
            let command = BoxCommand::new(&args[0])
                .args(&args[1..])
                .stdin(interactive && !detach);
            let execution = match b.exec(command).await {
                Ok(execution) => execution,
                Err(err) => {
                    // Nothing runs in the box: no VM is left behind (docker leaves a
                    // container that is not running, too).
                    if rm {
                        let _ = rt.remove(b.id(), true).await;
                    } else {
                        let _ = b.stop().await;
                    }
                    return exec_failure(err);
                }
            };
            if detach {
                // Its output goes to the box's log on the host: the command never blocks on it.
                execution.send_output_to_log().await.map_err(e)?;
                println!("{}", b.id());
                eprintln!(
                    "exec {}: its output goes to the box's log: `boxlite logs [-f] {}`",
                    execution.id(),
                    b.id(),
                );
                return Ok(0);
            }
            let code = stream(&execution, interactive).await;
            if rm {
                rt.remove(b.id(), true).await.map_err(e)?;
            }
            code
        }
        Command::Exec {
            interactive,
            tty,
            env,
            workdir,
            user,
            target,
            cmd,
        } => {
            let b = find(&rt, &target).await?;
            let mut command = BoxCommand::new(&cmd[0])
                .args(&cmd[1..])
                .stdin(interactive)
                .tty(tty);
            for (k, v) in parse_env(&env)? {
                command = command.env(k, v);
            }
            if let Some(dir) = workdir {
                command = command.working_dir(dir);
            }
            if let Some(user) = user {
                command = command.user(user);
            }
            let execution = match b.exec(command).await {
                Ok(execution) => execution,
                Err(err) => return exec_failure(err),
            };
            // With -t and a terminal here: raw mode while it runs, and its size follows ours.
            let _raw = if tty {
                terminal::RawMode::enter()
            } else {
                None
            };
            if tty {
                terminal::follow_window_size(&execution).await;
            }
            stream(&execution, interactive).await
        }
        Command::Attach { target, exec_id } => {
            let b = find(&rt, &target).await?;
            let execution = b.attach(&exec_id).await.map_err(e)?;
            stream(&execution, false).await
        }
        Command::Logs {
            follow,
            tail,
            target,
        } => {
            let b = find(&rt, &target).await?;
            let (lines, mut reader) = b.logs(tail).map_err(e)?;
            print_log_lines(&lines)?;
            if !follow {
                return Ok(0);
            }
            // Until the box stops (and what it wrote last is shown), or Ctrl-C.
            loop {
                let lines = reader
                    .read_new()
                    .map_err(|err| format!("reading the log: {err}"))?;
                print_log_lines(&lines)?;
                if lines.is_empty() {
                    if !b.info().status.is_active() {
                        print_log_lines(&reader.read_new().map_err(|err| err.to_string())?)?;
                        return Ok(0);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
        Command::Ls { all, json } => {
            let boxes: Vec<BoxInfo> = rt
                .list_info()
                .await
                .map_err(e)?
                .into_iter()
                .filter(|b| all || b.status.is_active())
                .collect();
            if json {
                let list: Vec<_> = boxes.iter().map(info_json).collect();
                println!("{}", serde_json::to_string_pretty(&list).expect("json"));
            } else {
                println!(
                    "{:<26}  {:<16}  {:<10}  {:>7}  IMAGE",
                    "ID", "NAME", "STATUS", "PID"
                );
                for b in boxes {
                    let pid = b.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
                    println!(
                        "{:<26}  {:<16}  {:<10}  {:>7}  {}",
                        b.id,
                        b.name.as_deref().unwrap_or("-"),
                        b.status.as_str(),
                        pid,
                        b.image
                    );
                }
            }
            Ok(0)
        }
        Command::Inspect { target } => {
            let b = find(&rt, &target).await?;
            let info = b.info();
            let options = b.options().await.map_err(e)?;
            let mut json = info_json(&info);
            json["network"] = serde_json::json!(options.network);
            json["network_policy"] = serde_json::json!(options.network_policy);
            json["ports"] = serde_json::json!(options.ports);
            json["volumes"] = serde_json::json!(options.volumes);
            println!("{}", serde_json::to_string_pretty(&json).expect("json"));
            Ok(0)
        }
        Command::Start { targets } => {
            for target in targets {
                let b = find(&rt, &target).await?;
                b.start().await.map_err(e)?;
                println!("{target}");
            }
            Ok(0)
        }
        Command::Stop { targets } => {
            for target in targets {
                let b = find(&rt, &target).await?;
                b.stop().await.map_err(e)?;
                println!("{target}");
            }
            Ok(0)
        }
        Command::Rm { force, targets } => {
            // Every box is tried; the failures are reported together.
            let mut failures = Vec::new();
            for target in targets {
                match rt.remove(&target, force).await {
                    Ok(()) => println!("{target}"),
                    Err(err) => failures.push(format!("{target}: {err}")),
                }
            }
            if failures.is_empty() {
                Ok(0)
            } else {
                Err(failures.join("\nboxlite: "))
            }
        }
        Command::Cp { src, dest } => {
            let stats = match (box_path(&src), box_path(&dest)) {
                (Some((target, path)), None) => {
                    find(&rt, target)
                        .await?
                        .copy_out(path, &dest, CopyOptions::default())
                        .await
                }
                (None, Some((target, path))) => {
                    find(&rt, target)
                        .await?
                        .copy_into(&src, path, CopyOptions::default())
                        .await
                }
                _ => {
                    return Err(
                        "cp copies between a box and this host: one of SRC and DEST must be \
                         BOX:PATH, the other a host path"
                            .into(),
                    )
                }
            }
            .map_err(e)?;
            eprintln!("copied {} entries, {} bytes", stats.entries, stats.bytes);
            Ok(0)
        }
        Command::Stats { json, targets } => {
            let targets = if targets.is_empty() {
                rt.list_info()
                    .await
                    .map_err(e)?
                    .into_iter()
                    .filter(|b| b.status.is_running())
                    .map(|b| b.id)
                    .collect()
            } else {
                targets
            };
            // Each box is sampled for 200 ms; all at once.
            let mut samples = tokio::task::JoinSet::new();
            for target in targets {
                let b = find(&rt, &target).await?;
                samples.spawn(async move {
                    (
                        b.id().to_string(),
                        b.name().map(str::to_string),
                        b.metrics().await,
                    )
                });
            }
            let mut rows = Vec::new();
            while let Some(joined) = samples.join_next().await {
                let (id, name, metrics) = joined.map_err(|e| e.to_string())?;
                rows.push((id, name, metrics.map_err(e)?));
            }
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(id, name, m)| {
                        serde_json::json!({
                            "id": id,
                            "name": name,
                            "engine": m.engine(),
                            "cpu_percent": m.cpu_percent(),
                            "memory_bytes": m.memory_bytes(),
                            "memory_pss_bytes": m.memory_pss_bytes(),
                            "guest_boot_duration_ms": m.guest_boot_duration_ms(),
                            "spawn_to_ready_ms": m.spawn_to_ready_ms(),
                            "start_mode": m.start_mode(),
                            "template_miss": m.template_miss(),
                            "execs_started": m.commands_executed_total(),
                            "bytes_in": m.bytes_sent_total(),
                            "bytes_out": m.bytes_received_total(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list).expect("json"));
            } else {
                println!(
                    "{:<26}  {:<16}  {:>6}  {:>9}  {:>6}  {:>10}  {:>10}  BOOT",
                    "ID", "NAME", "CPU %", "MEM MiB", "EXECS", "IN", "OUT"
                );
                for (id, name, m) in rows {
                    println!(
                        "{id:<26}  {:<16}  {:>6.1}  {:>9.1}  {:>6}  {:>10}  {:>10}  {} ms",
                        name.unwrap_or_default(),
                        m.cpu_percent().unwrap_or_default(),
                        m.memory_bytes().unwrap_or_default() as f64 / (1 << 20) as f64,
                        m.commands_executed_total(),
                        m.bytes_sent_total(),
                        m.bytes_received_total(),
                        m.guest_boot_duration_ms().unwrap_or_default()
                    );
                }
            }
            Ok(0)
        }
        Command::Pull { image } => {
            let pulled = rt
                .pull_image_with_progress(&image, Some(progress_bar()))
                .await
                .map_err(e)?;
            println!("{} {}", pulled.reference, pulled.manifest_digest);
            Ok(0)
        }
        Command::Pause { targets } => {
            for target in targets {
                find(&rt, &target).await?.pause().await.map_err(e)?;
                println!("{target}");
            }
            Ok(0)
        }
        Command::Resume { targets } => {
            for target in targets {
                find(&rt, &target).await?.resume().await.map_err(e)?;
                println!("{target}");
            }
            Ok(0)
        }
        Command::Fork { source, name } => {
            let fork = find(&rt, &source).await?.fork(&name).await.map_err(e)?;
            println!("{}", fork.id());
            Ok(0)
        }
        Command::Snapshot { action } => snapshot_command(&rt, action).await,
        Command::Standby { action } => {
            match action {
                StandbyCommand::Ls => println!("{} ready", rt.standbys_ready()),
                StandbyCommand::Retire => println!("{} retired", rt.retire_standbys().await),
            }
            Ok(0)
        }
        Command::Images => {
            println!("{:<50}  {:<20}  {:>10}", "REFERENCE", "DIGEST", "SIZE");
            for image in rt.list_images().map_err(e)? {
                println!(
                    "{:<50}  {:<20}  {:>10}",
                    image.reference,
                    &image.manifest_digest[..19.min(image.manifest_digest.len())],
                    image.size
                );
            }
            Ok(0)
        }
        Command::Rmi { images } => {
            for image in images {
                rt.remove_image(&image).await.map_err(e)?;
                println!("{image}");
            }
            Ok(0)
        }
    }
}

/// A progress bar of downloaded bytes, drawn on stderr only when it is a terminal.
fn progress_bar() -> boxlite::images::ProgressFn {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:20} {bytes:>10} / {total_bytes:10} {bar:30} {bytes_per_sec}",
        )
        .expect("a valid template"),
    );
    let blobs = std::sync::Mutex::new(std::collections::HashMap::<String, (u64, u64)>::new());
    boxlite::images::ProgressFn(std::sync::Arc::new(
        move |p: &boxlite::images::PullProgress| {
            let mut blobs = blobs.lock().expect("progress lock");
            blobs.insert(p.digest.clone(), (p.received, p.total));
            bar.set_length(blobs.values().map(|(_, total)| total).sum());
            bar.set_position(blobs.values().map(|(received, _)| received).sum());
            bar.set_message(p.digest.chars().take(19).collect::<String>());
        },
    ))
}

/// The box named or numbered `target`.
async fn snapshot_command(rt: &BoxliteRuntime, action: SnapshotCommand) -> Result<u8, String> {
    let e = |err: boxlite::BoxliteError| err.to_string();
    match action {
        SnapshotCommand::Save { target, name } => {
            let info = find(rt, &target).await?.snapshot(&name).await.map_err(e)?;
            println!("{}", info.name);
        }
        SnapshotCommand::Ls { json } => {
            let list = rt.list_snapshots().map_err(e)?;
            if json {
                let text = serde_json::to_string_pretty(&list).map_err(|err| err.to_string())?;
                println!("{text}");
            } else {
                println!(
                    "{:<24}  {:<24}  {:<30}  {:>10}  CREATED",
                    "NAME", "SOURCE", "IMAGE", "SIZE"
                );
                for s in list {
                    println!(
                        "{:<24}  {:<24}  {:<30}  {:>10}  {}",
                        s.name,
                        s.source_name.as_deref().unwrap_or(&s.source_id),
                        s.image,
                        s.size_bytes,
                        s.created_at.to_rfc3339()
                    );
                }
            }
        }
        SnapshotCommand::Rm { names } => {
            for name in names {
                rt.remove_snapshot(&name).map_err(e)?;
                println!("{name}");
            }
        }
        SnapshotCommand::Restore { name, new } => {
            let b = rt.create_from_snapshot(&name, Some(new)).await.map_err(e)?;
            println!("{}", b.id());
        }
        SnapshotCommand::Revert { target, name } => {
            let b = find(rt, &target).await?;
            b.restore(&name).await.map_err(e)?;
            println!("{}", b.id());
        }
    }
    Ok(0)
}

async fn find(rt: &BoxliteRuntime, target: &str) -> Result<boxlite::LiteBox, String> {
    rt.get(target)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no box {target:?}"))
}

/// Copies the command's output to ours (and our stdin to it with -i) and returns its exit
/// code the way a shell reports it.
async fn stream(execution: &Execution, interactive: bool) -> Result<u8, String> {
    let stdin = async {
        if !interactive {
            return Ok::<(), String>(());
        }
        let mut input = tokio::io::stdin();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = input
                .read(&mut buf)
                .await
                .map_err(|e| format!("reading stdin: {e}"))?;
            if n == 0 {
                return execution.close_stdin().await.map_err(|e| e.to_string());
            }
            execution
                .write_stdin(&buf[..n])
                .await
                .map_err(|e| e.to_string())?;
        }
    };
    let stdout = async {
        while let Some(chunk) = execution.read_stdout().await.map_err(|e| e.to_string())? {
            let mut out = std::io::stdout().lock();
            out.write_all(&chunk)
                .and_then(|_| out.flush())
                .map_err(|e| format!("writing stdout: {e}"))?;
        }
        Ok::<(), String>(())
    };
    let stderr = async {
        while let Some(chunk) = execution.read_stderr().await.map_err(|e| e.to_string())? {
            let _ = std::io::stderr().lock().write_all(&chunk);
        }
        Ok::<(), String>(())
    };
    // Output ends when the command does; stdin is pumped meanwhile and abandoned then, even
    // if it stays open (the command may end without reading all of it: not our failure).
    let output = async {
        let (out, err) = tokio::join!(stdout, stderr);
        out.and(err)
    };
    tokio::pin!(output, stdin);
    let mut stdin_done = false;
    loop {
        tokio::select! {
            result = &mut output => break result?,
            _ = &mut stdin, if !stdin_done => stdin_done = true,
        }
    }
    let result = execution
        .clone_handle()
        .wait()
        .await
        .map_err(|e| e.to_string())?;
    Ok(if result.signal != 0 {
        (128 + result.signal) as u8
    } else {
        result.exit_code as u8
    })
}

/// The local terminal, for `exec -t`.
mod terminal {
    use std::os::fd::AsFd;

    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

    /// Raw mode on stdin until dropped; `None` when stdin is not a terminal.
    pub struct RawMode(Termios);

    impl RawMode {
        pub fn enter() -> Option<Self> {
            let stdin = std::io::stdin();
            let saved = tcgetattr(stdin.as_fd()).ok()?;
            let mut raw = saved.clone();
            cfmakeraw(&mut raw);
            tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
            Some(Self(saved))
        }
    }

    impl Drop for RawMode {
        fn drop(&mut self) {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.0);
        }
    }

    fn window_size() -> Option<(u16, u16)> {
        let mut size = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into the valid pointer.
        let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) };
        (rc == 0 && size.ws_row > 0).then_some((size.ws_row, size.ws_col))
    }

    /// Sends our window size now and whenever it changes (SIGWINCH).
    pub async fn follow_window_size(execution: &boxlite::Execution) {
        let Some((rows, cols)) = window_size() else {
            return;
        };
        let _ = execution.resize(rows, cols).await;
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        let execution = execution.clone_handle();
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some((rows, cols)) = window_size() {
                    let _ = execution.resize(rows, cols).await;
                }
            }
        });
    }
}
