//! The `boxlite` command, run as a user would: real processes, a real home, real VMs.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use boxlite_tests::{agent_binary, cli_bin_dir, oci_layout, TestHome};

struct Cli {
    home: TestHome,
}

impl Cli {
    fn new() -> Self {
        Self {
            home: TestHome::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(cli_bin_dir().join("boxlite"));
        command
            .arg("--home")
            .arg(self.home.path())
            .args(args)
            .env("BOXLITE_AGENT", agent_binary())
            .env_remove("BOXLITE_SHIM")
            .env_remove("RUST_LOG");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn run_exec_ls_stop_rm_through_the_cli() {
    let cli = Cli::new();
    let image = format!("oci:{}:opaque", oci_layout().display());

    // run: exit code, env, workdir, and the image's config.
    let out = cli.run(&[
        "run",
        "--name",
        "web",
        "-e",
        "EXTRA=e",
        "--memory",
        "256",
        &image,
        "sh",
        "-c",
        "echo $GREETING $EXTRA; pwd; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from-image e\n/srv\n");
    // The home keeps the runtime's log (info without RUST_LOG), not on stderr.
    let log = std::fs::read_to_string(cli.home.path().join("logs/boxlite.log")).unwrap();
    assert!(
        log.contains("created box") && log.contains("started box"),
        "{log}"
    );
    assert!(!text(&out.stderr).contains("created box"));

    // exec with stdin: `echo x | boxlite exec -i web cat`.
    let mut child = cli
        .command(&["exec", "-i", "web", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"x\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        (out.status.code(), text(&out.stdout).as_str()),
        (Some(0), "x\n")
    );

    let out = cli.run(&["exec", "-w", "/etc", "web", "pwd"]);
    assert_eq!(text(&out.stdout), "/etc\n");

    // cp both ways.
    let host_file = cli.home.path().join("note.txt");
    std::fs::write(&host_file, "carried\n").unwrap();
    let out = cli.run(&["cp", &host_file.display().to_string(), "web:/srv/note.txt"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = cli.run(&["exec", "web", "cat", "/srv/note.txt"]);
    assert_eq!(text(&out.stdout), "carried\n");
    let back = cli.home.path().join("back.txt");
    let out = cli.run(&["cp", "web:/srv/note.txt", &back.display().to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "carried\n");
    let out = cli.run(&["stats", "--json", "web"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        stats[0]["memory_bytes"].as_u64().unwrap() > 10 << 20,
        "{stats}"
    );
    assert!(stats[0]["execs_started"].as_u64().unwrap() >= 5, "{stats}");
    assert!(stats[0]["bytes_in"].as_u64().unwrap() > 0, "{stats}");
    let out = cli.run(&["stats"]);
    assert!(text(&out.stdout).contains("web"), "{}", text(&out.stdout));
    let out = cli.run(&["cp", "/a", "/b"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("BOX:PATH"),
        "{}",
        text(&out.stderr)
    );

    // -t: the command runs on a terminal inside the box.
    let out = cli.run(&[
        "exec",
        "-t",
        "web",
        "sh",
        "-c",
        "tty; test -t 1 && echo yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("yes\r\n"),
        "{}",
        text(&out.stdout)
    );

    let out = cli.run(&["ls", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["name"], "web");
    assert_eq!(listed[0]["status"], "running");

    // run -d: the output goes to the box's log on the host; attach gives the exit code.
    let out = cli.run(&[
        "run",
        "-d",
        "--name",
        "bg",
        "--memory",
        "256",
        &image,
        "sh",
        "-c",
        "echo first; echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let hint = text(&out.stderr);
    let exec_id = hint
        .split_whitespace()
        .nth(1)
        .expect("run -d names the exec")
        .trim_end_matches(':')
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = cli.run(&["logs", "bg"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        if (text(&out.stdout), text(&out.stderr)) == ("first\nout\n".into(), "err\n".into()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "logs: {:?} {:?}",
            text(&out.stdout),
            text(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The last line of the log: the order of lines across stdout and stderr is the order in
    // which the box's two pipes were read, so it is `out` or `err`, never `first`.
    let out = cli.run(&["logs", "--tail", "1", "bg"]);
    let last = (text(&out.stdout), text(&out.stderr));
    assert!(
        last == ("out\n".into(), "".into()) || last == ("".into(), "err\n".into()),
        "{last:?}"
    );
    let out = cli.run(&["attach", "bg", &exec_id]);
    assert_eq!(out.status.code(), Some(3), "{hint}");
    let out = cli.run(&["attach", "bg", "no-such-exec"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("no exec with id"),
        "{}",
        text(&out.stderr)
    );

    // Commands that cannot start: docker's exit codes, the reason named, no VM left running.
    let out = cli.run(&["exec", "bg", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let out = cli.run(&["exec", "-w", "/no/such/dir", "bg", "true"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/no/such/dir"),
        "{}",
        text(&out.stderr)
    );
    let out = cli.run(&[
        "run",
        "--name",
        "dud",
        "--memory",
        "256",
        &image,
        "no-such-program",
    ]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let out = cli.run(&["inspect", "dud"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        info["status"], "stopped",
        "run stops the box it could not use"
    );
    let out = cli.run(&["run", "-e", "=x", &image, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("no name"),
        "{}",
        text(&out.stderr)
    );
    // rm tries every box it is given, and says which failed.
    let out = cli.run(&["rm", "no-such-box", "dud"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("no-such-box"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "dud\n");
    assert!(cli.run(&["rm", "-f", "bg"]).status.success());

    // Bad input: clear errors, nothing changed.
    let out = cli.run(&["exec", "nope", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("no box \"nope\""),
        "{}",
        text(&out.stderr)
    );
    let out = cli.run(&["run", "--name", "web", &image, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    let out = cli
        .command(&["run", &image, "true"])
        .env("BOXLITE_ENGINE", "kvm")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("BOXLITE_ENGINE: unknown engine \"kvm\""),
        "{}",
        text(&out.stderr)
    );
    let out = cli
        .command(&["ls"])
        .env("BOXLITE_TMPDIR", "relative/tmp")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("BOXLITE_TMPDIR: relative/tmp is not an existing directory"),
        "{}",
        text(&out.stderr)
    );
    let unusable = if boxlite_tests::test_engine_kind() == boxlite::EngineKind::Krun {
        None
    } else {
        Some("krun")
    };
    if let Some(engine) = unusable {
        let out = cli.run(&["run", "--rm", "--engine", engine, &image, "true"]);
        assert_eq!(out.status.code(), Some(125));
        assert!(
            text(&out.stderr).contains("the krun engine cannot run here"),
            "{}",
            text(&out.stderr)
        );
    }
    // Usage errors are boxlite's own failures (125, as docker), not the command's codes.
    for bad in [
        &["run", "--no-such-flag", &image][..],
        &["bogus"],
        &["logs", "--tail", "x", "web"],
    ] {
        let out = cli.run(bad);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{bad:?}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(cli.run(&["--help"]).status.code(), Some(0));
    let out = cli.run(&["run", "--memory", "4000000000", &image, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("more than this host has"),
        "{}",
        text(&out.stderr)
    );
    let out = cli.run(&["run", "--cpus", "0", &image, "true"]);
    assert!(text(&out.stderr).contains("cpus"), "{}", text(&out.stderr));
    let out = cli.run(&["rm", "web"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("is running"),
        "{}",
        text(&out.stderr)
    );

    assert!(cli.run(&["stop", "web"]).status.success());
    let out = cli.run(&["ls"]);
    assert!(
        !text(&out.stdout).contains("web"),
        "ls shows only running boxes"
    );
    let out = cli.run(&["ls", "-a"]);
    assert!(text(&out.stdout).contains("stopped"));
    let out = cli.run(&["inspect", "web"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["status"], "stopped");
    assert_eq!(info["engine"], boxlite_tests::test_engine_kind().name());
    assert_eq!(info["network"], "user");
    assert_eq!(info["ports"], serde_json::json!([]));

    // rmi refuses an image a box uses.
    let out = cli.run(&["rmi", &format!("{}:opaque", oci_layout().display())]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out.stderr));

    assert!(cli.run(&["rm", "web"]).status.success());
    let out = cli.run(&["ls", "-a", "--json"]);
    assert_eq!(text(&out.stdout).trim(), "[]");

    // run --rm leaves nothing.
    let out = cli.run(&["run", "--rm", "--memory", "256", &image, "true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli.run(&["ls", "-a", "--json"]);
    assert_eq!(text(&out.stdout).trim(), "[]");
}

#[test]
fn pull_images_rmi_through_the_cli() {
    let registry = boxlite_tests::TestRegistry::start();
    registry.push(oci_layout(), "busybox", "test/img");
    let cli = Cli::new();
    let reference = format!("{}/test/img:busybox", registry.host());
    let out = cli.run(&["pull", &reference]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("{reference} sha256:")));
    let out = cli.run(&["images"]);
    assert!(text(&out.stdout).contains(&reference));
    // Unqualified, through --registry.
    let out = cli.run(&["--registry", &registry.host(), "pull", "test/img:busybox"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = cli.run(&["pull", &format!("{}/test/nope:1", registry.host())]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
    assert!(cli
        .run(&["rmi", &reference, "test/img:busybox"])
        .status
        .success());
    let out = cli.run(&["images"]);
    assert!(
        !text(&out.stdout).contains("test/img"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn pause_snapshot_and_fork_through_the_cli() {
    let cli = Cli::new();
    let image = format!("oci:{}:opaque", oci_layout().display());
    let ok = |out: &Output| {
        assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
        text(&out.stdout)
    };
    ok(&cli.run(&[
        "run",
        "-d",
        "--name",
        "src",
        "--memory",
        "256",
        &image,
        "sh",
        "-c",
        "echo kept > /state; sleep 1000",
    ]));
    ok(&cli.run(&[
        "exec",
        "src",
        "sh",
        "-c",
        "test -f /state || sleep 1; cat /state",
    ]));
    ok(&cli.run(&["pause", "src"]));
    let out = cli.run(&["ls", "--json"]);
    let boxes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(boxes[0]["status"], "paused", "{boxes}");
    let out = cli.run(&["exec", "src", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("paused; resume it first"),
        "{}",
        text(&out.stderr)
    );
    // A snapshot of a paused box; the box stays paused.
    assert_eq!(
        ok(&cli.run(&["snapshot", "save", "src", "snap1"])),
        "snap1\n"
    );
    ok(&cli.run(&["resume", "src"]));
    let listed = ok(&cli.run(&["snapshot", "ls"]));
    assert!(
        listed.contains("snap1") && listed.contains("src"),
        "{listed}"
    );
    ok(&cli.run(&["snapshot", "restore", "snap1", "copy"]));
    assert_eq!(ok(&cli.run(&["exec", "copy", "cat", "/state"])), "kept\n");
    // Back in place: the source returns to its snapshot; a copy cannot take it.
    ok(&cli.run(&["exec", "src", "sh", "-c", "echo changed > /state"]));
    ok(&cli.run(&["snapshot", "revert", "src", "snap1"]));
    assert_eq!(ok(&cli.run(&["exec", "src", "cat", "/state"])), "kept\n");
    let out = cli.run(&["snapshot", "revert", "copy", "snap1"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("not of box"),
        "{}",
        text(&out.stderr)
    );
    ok(&cli.run(&["fork", "src", "child"]));
    assert_eq!(ok(&cli.run(&["exec", "child", "hostname"])), "child\n");
    let out = cli.run(&["fork", "src", "child"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    ok(&cli.run(&["snapshot", "rm", "snap1"]));
    let out = cli.run(&["snapshot", "rm", "snap1"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("no snapshot"),
        "{}",
        text(&out.stderr)
    );
    let out = cli.run(&["stats", "--json", "child"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats[0]["start_mode"], "snapshot", "{stats}");
    ok(&cli.run(&["rm", "-f", "src", "copy", "child"]));
}

#[test]
fn standbys_through_the_cli() {
    let cli = Cli::new();
    let image = format!("oci:{}:opaque", oci_layout().display());
    let run = |args: &[&str]| {
        let out = cli
            .command(args)
            .env(boxlite::STANDBY_ENV, "1")
            .env(boxlite::TEMPLATES_ENV, "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let one_ready = || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while run(&["standby", "ls"]) != "1 ready\n" {
            assert!(std::time::Instant::now() < deadline, "no standby ready");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    // The first box of its kind starts from the template and leaves a standby warming, even
    // though the command that started it has ended.
    assert_eq!(run(&["run", "--rm", &image, "echo", "one"]), "one\n");
    one_ready();
    run(&["run", "-d", "--name", "two", &image, "sleep", "1000"]);
    assert_eq!(run(&["exec", "two", "hostname"]), "two\n");
    let stats: serde_json::Value = serde_json::from_str(&run(&["stats", "--json", "two"])).unwrap();
    assert_eq!(stats[0]["start_mode"], "standby", "{stats}");
    one_ready();
    assert_eq!(run(&["standby", "retire"]), "1 retired\n");
    assert_eq!(run(&["standby", "ls"]), "0 ready\n");
    run(&["rm", "-f", "two"]);
    assert!(cli.home.box_processes().is_empty());
}
