//! The guest agent's exec machinery, run as an ordinary host process (`--listen unix://`):
//! fast checks of everything that does not need a VM. The same binary is PID 1 in the VMs.

use std::process::{Child, Command};
use std::time::Duration;

use boxlite_protocol::agent::OutputStream;
use boxlite_shim::agent_client::{AgentClient, Code, ExecOptions, ExitStatus};
use boxlite_tests::{agent_binary, scratch_root};
use tokio::net::UnixStream;

struct HostAgent {
    child: Child,
    _dir: tempfile::TempDir,
    client: AgentClient,
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_agent() -> HostAgent {
    let dir = tempfile::Builder::new()
        .prefix("a")
        .tempdir_in(scratch_root())
        .unwrap();
    let socket = dir.path().join("agent.sock");
    let mut child = Command::new(agent_binary())
        .arg("--listen")
        .arg(format!("unix://{}", socket.display()))
        .spawn()
        .expect("starting the agent");
    for _ in 0..500 {
        if let Ok(stream) = UnixStream::connect(&socket).await {
            let client = AgentClient::new(stream);
            return HostAgent {
                child,
                _dir: dir,
                client,
            };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the agent did not listen on {}", socket.display());
}

async fn output(agent: &AgentClient, id: &str) -> (String, String, ExitStatus) {
    let output = agent.output(id).await.unwrap();
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
        output.status,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_command_is_waited_for() {
    let agent = start_agent().await;
    let c = &agent.client;
    c.exec(
        "slow",
        &ExecOptions::new(["sh", "-c", "sleep 2; echo done; exit 3"]),
    )
    .await
    .unwrap();
    let (out, _, status) = output(c, "slow").await;
    assert_eq!(out, "done\n");
    assert_eq!(
        status,
        ExitStatus {
            code: 3,
            signal: 0,
            timed_out: false
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_exit_at_once_lose_no_output() {
    let agent = start_agent().await;
    let c = &agent.client;
    for i in 0..50 {
        let id = format!("quick-{i}");
        c.exec(
            &id,
            &ExecOptions::new([
                "sh",
                "-c",
                &format!("echo line-{i}; echo err-{i} >&2; exit {}", i % 4),
            ]),
        )
        .await
        .unwrap();
    }
    for i in 0..50 {
        let (out, err, status) = output(c, &format!("quick-{i}")).await;
        assert_eq!((out, err), (format!("line-{i}\n"), format!("err-{i}\n")));
        assert_eq!(status.code, i % 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_slower_than_the_command_gets_every_byte() {
    let agent = start_agent().await;
    let c = &agent.client;
    // 20 MiB, far past the agent's 4 MiB per-stream buffer: the command must wait for us.
    c.exec(
        "big",
        &ExecOptions::new(["head", "-c", "20971520", "/dev/zero"]),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut total = 0usize;
    let mut all_zero = true;
    c.drain("big", OutputStream::STDOUT, |chunk| {
        total += chunk.len();
        all_zero &= chunk.iter().all(|b| *b == 0);
    })
    .await
    .unwrap();
    c.drain("big", OutputStream::STDERR, |_| {}).await.unwrap();
    assert_eq!(total, 20 * 1024 * 1024);
    assert!(all_zero);
    assert_eq!(c.wait("big").await.unwrap().code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let agent = start_agent().await;
    let c = &agent.client;

    let err = c.wait("nope").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::NOT_FOUND));
    assert!(err.to_string().contains("\"nope\""), "{err}");

    let err = c
        .exec("x", &ExecOptions::new(["/no/such/program"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::NOT_FOUND));
    assert!(err.to_string().contains("/no/such/program"), "{err}");

    let err = c
        .exec("x", &ExecOptions::new(Vec::<String>::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::INVALID_ARGUMENT));

    c.exec("dup", &ExecOptions::new(["sleep", "30"]))
        .await
        .unwrap();
    let err = c
        .exec("dup", &ExecOptions::new(["true"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::ALREADY_EXISTS));

    let err = c.write_stdin("dup", b"x", false).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::INVALID_ARGUMENT));
    assert!(err.to_string().contains("without stdin"), "{err}");

    let err = c.signal("dup", 12345).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::INVALID_ARGUMENT));
    c.signal("dup", 15).await.unwrap();
    let (_, _, status) = output(c, "dup").await;
    assert_eq!(
        status,
        ExitStatus {
            code: -1,
            signal: 15,
            timed_out: false
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_streamed_and_closed() {
    let agent = start_agent().await;
    let c = &agent.client;
    let mut options = ExecOptions::new(["sha256sum"]);
    options.stdin = true;
    c.exec("sum", &options).await.unwrap();
    let chunk = vec![b'x'; 256 * 1024];
    for _ in 0..16 {
        c.write_stdin("sum", &chunk, false).await.unwrap();
    }
    c.write_stdin("sum", b"", true).await.unwrap();
    let err = c.write_stdin("sum", b"late", false).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::FAILED_PRECONDITION));
    let (out, _, status) = output(c, "sum").await;
    assert_eq!(status.code, 0);
    use sha2::{Digest, Sha256};
    let expected = hex::encode(Sha256::digest(vec![b'x'; 16 * 256 * 1024]));
    assert!(out.starts_with(&expected), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_sends_sigterm_then_sigkill() {
    let agent = start_agent().await;
    let c = &agent.client;
    let mut options = ExecOptions::new(["sleep", "30"]);
    options.timeout = Some(Duration::from_millis(200));
    c.exec("polite", &options).await.unwrap();
    let (_, _, status) = output(c, "polite").await;
    assert_eq!(
        status,
        ExitStatus {
            code: -1,
            signal: 15,
            timed_out: true
        }
    );

    // A command that ignores SIGTERM is killed after the grace period.
    let mut options = ExecOptions::new([
        "sh",
        "-c",
        "trap '' TERM; echo ready; while :; do sleep 0.1; done",
    ]);
    options.timeout = Some(Duration::from_millis(200));
    c.exec("stubborn", &options).await.unwrap();
    let (out, _, status) = output(c, "stubborn").await;
    assert_eq!(out, "ready\n");
    assert_eq!((status.signal, status.timed_out), (9, true));

    // One that finishes in time is not marked.
    let mut options = ExecOptions::new(["true"]);
    options.timeout = Some(Duration::from_secs(30));
    c.exec("quick", &options).await.unwrap();
    let (_, _, status) = output(c, "quick").await;
    assert_eq!((status.code, status.timed_out), (0, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_as_the_user_asked_for() {
    let agent = start_agent().await;
    let c = &agent.client;
    let mut options = ExecOptions::new(["sh", "-c", "id -u; id -g; echo $HOME"]);
    options.user = "4242:4343".into();
    c.exec("as-user", &options).await.unwrap();
    let (out, err, status) = output(c, "as-user").await;
    assert_eq!(status.code, 0, "{err}");
    assert_eq!(out, "4242\n4343\n/\n");

    let mut options = ExecOptions::new(["true"]);
    options.user = "no-such-user-here".into();
    let err = c.exec("bad-user", &options).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::INVALID_ARGUMENT));
    assert!(err.to_string().contains("no-such-user-here"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tty_exec_gets_a_terminal_that_can_be_resized() {
    let agent = start_agent().await;
    let c = &agent.client;
    let mut options = ExecOptions::new([
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo on-a-tty; read line; stty size; echo got:$line",
    ]);
    options.tty = true;
    c.exec("term", &options).await.unwrap();
    c.resize("term", 40, 100).await.unwrap();
    c.write_stdin("term", b"hello\n", false).await.unwrap();
    let (out, err, status) = output(c, "term").await;
    assert_eq!(status.code, 0, "{out}");
    assert!(err.is_empty(), "a terminal has no separate stderr: {err:?}");
    assert!(out.contains("on-a-tty\r\n"), "{out:?}");
    assert!(out.contains("40 100\r\n"), "{out:?}");
    assert!(out.contains("got:hello\r\n"), "{out:?}");

    // Closing a terminal's stdin sends EOF: cat ends.
    let mut options = ExecOptions::new(["cat"]);
    options.tty = true;
    c.exec("eof", &options).await.unwrap();
    c.write_stdin("eof", b"", true).await.unwrap();
    assert_eq!(output(c, "eof").await.2.code, 0);

    // Resizing something without a terminal is refused.
    c.exec("plain", &ExecOptions::new(["sleep", "5"]))
        .await
        .unwrap();
    let err = c.resize("plain", 1, 1).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::INVALID_ARGUMENT));
    c.signal("plain", 9).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_a_reader_never_acknowledged_is_sent_again() {
    let agent = start_agent().await;
    let c = &agent.client;
    let script = "printf first; sleep 0.3; printf second";
    c.exec("acked", &ExecOptions::new(["sh", "-c", script]))
        .await
        .unwrap();
    let first = c
        .read("acked", OutputStream::STDOUT, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.offset, &first.data[..]), (0, &b"first"[..]));
    // A reader that died with that response unacknowledged: the next one gets it again.
    let again = c
        .read("acked", OutputStream::STDOUT, 0)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, first);
    // Acknowledging past what was sent is refused and changes nothing.
    let err = c.read("acked", OutputStream::STDOUT, 99).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::OUT_OF_RANGE), "{err}");
    assert!(err.to_string().contains("only 5 bytes were sent"), "{err}");
    let second = c
        .read("acked", OutputStream::STDOUT, first.end())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.offset, &second.data[..]), (5, &b"second"[..]));
    assert_eq!(
        c.read("acked", OutputStream::STDOUT, second.end())
            .await
            .unwrap(),
        None
    );
}
