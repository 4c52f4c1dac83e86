//! A QMP client for the QEMU engine: one command at a time, every answer and every event
//! awaited with a deadline. QEMU is ours, but what it says is still parsed as untrusted
//! input: lines are bounded and anything unexpected is an error, never a panic.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Mutex};

/// Longest line QEMU may send (its answers here are a few KiB).
const MAX_LINE: usize = 1 << 20;
/// How long one command may take to be answered.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("QMP: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP: QEMU closed the monitor")]
    Closed,
    #[error("QMP: no answer to {command} within {waited:?}")]
    Timeout { command: String, waited: Duration },
    #[error("QMP: {command} failed: {message}")]
    Command { command: String, message: String },
    #[error("QMP: unexpected message {0}")]
    Protocol(String),
}

/// An event QEMU sent: its name and data.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// A connected, negotiated QMP session.
pub struct Qmp {
    /// Set once a command went unanswered: its late answer would be taken for the next
    /// one's, so the session is not used again.
    broken: std::sync::atomic::AtomicBool,
    writer: Mutex<OwnedWriteHalf>,
    answers: Mutex<mpsc::Receiver<Result<Value, String>>>,
    events: Mutex<mpsc::UnboundedReceiver<Event>>,
}

impl Qmp {
    /// Connects to QEMU's monitor socket, retrying until `deadline` while it does not exist
    /// yet, and leaves capability negotiation done.
    pub async fn connect(path: &Path, deadline: tokio::time::Instant) -> Result<Qmp, QmpError> {
        let stream = loop {
            match UnixStream::connect(path).await {
                Ok(stream) => break stream,
                Err(source) if tokio::time::Instant::now() >= deadline => {
                    return Err(QmpError::Connect {
                        path: path.display().to_string(),
                        source,
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        };
        let (read, write) = stream.into_split();
        let (answer_tx, answer_rx) = mpsc::channel(1);
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        tokio::spawn(read_messages(read, answer_tx, event_tx));
        let qmp = Qmp {
            broken: Default::default(),
            writer: Mutex::new(write),
            answers: Mutex::new(answer_rx),
            events: Mutex::new(event_rx),
        };
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok(qmp)
    }

    /// Runs one command and returns its `return` value.
    pub async fn execute(&self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        use std::sync::atomic::Ordering;
        let mut answers = self.answers.lock().await;
        if self.broken.load(Ordering::Relaxed) {
            return Err(QmpError::Protocol(
                "an earlier command went unanswered; the monitor is not used again".into(),
            ));
        }
        let mut line = serde_json::to_vec(&json!({"execute": command, "arguments": arguments}))
            .map_err(|e| QmpError::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.writer.lock().await.write_all(&line).await?;
        match tokio::time::timeout(COMMAND_TIMEOUT, answers.recv()).await {
            Err(_) => {
                self.broken.store(true, Ordering::Relaxed);
                Err(QmpError::Timeout {
                    command: command.to_string(),
                    waited: COMMAND_TIMEOUT,
                })
            }
            Ok(None) => Err(QmpError::Closed),
            Ok(Some(Ok(value))) => Ok(value),
            Ok(Some(Err(message))) => Err(QmpError::Command {
                command: command.to_string(),
                message,
            }),
        }
    }

    /// Waits until an event for which `wanted` is true arrives (events before it are
    /// dropped), or fails at `deadline`.
    pub async fn wait_event(
        &self,
        what: &str,
        deadline: tokio::time::Instant,
        mut wanted: impl FnMut(&Event) -> bool,
    ) -> Result<Event, QmpError> {
        let mut events = self.events.lock().await;
        let started = tokio::time::Instant::now();
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => {
                    return Err(QmpError::Timeout {
                        command: what.to_string(),
                        waited: started.elapsed(),
                    })
                }
                Ok(None) => return Err(QmpError::Closed),
                Ok(Some(event)) if wanted(&event) => return Ok(event),
                Ok(Some(_)) => {}
            }
        }
    }

    /// Polls `query-migrate` until the migration in either direction has completed; its
    /// failure is an error with QEMU's reason.
    pub async fn wait_migration(&self, deadline: tokio::time::Instant) -> Result<(), QmpError> {
        let started = tokio::time::Instant::now();
        loop {
            let info = self.execute("query-migrate", json!({})).await?;
            match info.get("status").and_then(Value::as_str) {
                Some("completed") => return Ok(()),
                Some("failed") | Some("cancelled") => {
                    let reason = info
                        .get("error-desc")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given");
                    return Err(QmpError::Command {
                        command: "migrate".into(),
                        message: reason.to_string(),
                    });
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(QmpError::Timeout {
                    command: "migrate (query-migrate never said completed)".into(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Splits QEMU's messages into answers (in order) and events, until the socket closes.
async fn read_messages(
    read: OwnedReadHalf,
    answers: mpsc::Sender<Result<Value, String>>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) if !line.ends_with(b"\n") => return,
            Ok(_) => {}
        }
        let Ok(message) = serde_json::from_slice::<Value>(&line) else {
            return;
        };
        if let Some(value) = message.get("return") {
            if answers.send(Ok(value.clone())).await.is_err() {
                return;
            }
        } else if let Some(error) = message.get("error") {
            let text = error
                .get("desc")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_string();
            if answers.send(Err(text)).await.is_err() {
                return;
            }
        } else if let Some(name) = message.get("event").and_then(Value::as_str) {
            let data = message.get("data").cloned().unwrap_or(Value::Null);
            let _ = events.send(Event {
                name: name.to_string(),
                data,
            });
        }
        // The greeting ({"QMP": ...}) and anything else carry nothing we wait for.
    }
}
