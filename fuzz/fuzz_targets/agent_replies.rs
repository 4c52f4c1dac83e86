//! What the host reads that a box (or a box's files) can shape:
//!
//! - a ttrpc frame from the agent channel (`ttrpc::proto::GenMessage::read_from`, then the
//!   `Response` envelope and its status, as the generated client reads them), and the agent's
//!   response messages (decoded, and checked to round-trip);
//! - a `ReadOutputResponse` the way the host-side client and the shim's output log take it
//!   (`agent_client::OutputChunk`, `output_log::LineSplitter`, `OutputLog`, read back with
//!   `OutputLogReader`: every line written must be read back as written);
//! - the box directory's files: `output.log` as any content (`OutputLogReader`), `vmm.pid` and
//!   `shim.pid` (`process::read_all`, `ProcessId::read`) and `shim.json` (`ShimConfig`, whose
//!   kernel command line the agent must read back as the host meant it).
//!
//! Input: one byte choosing what the rest is, then that.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use boxlite_fuzz::agent::net;
use boxlite_fuzz::proto::decode;
use boxlite_protocol::agent::{
    Empty, ExecResponse, PingResponse, ReadOutputResponse, WaitResponse,
};
use boxlite_protocol::boot::BootParams;
use boxlite_protocol::shim::{StateResponse, StopResponse};
use boxlite_shim_api::agent_client::{ExitStatus, OutputChunk};
use boxlite_shim_api::output_log::{
    LineSplitter, LogLine, LogStream, OutputLog, OutputLogReader, MAX_RECORD, OUTPUT_LOG,
};
use boxlite_shim_api::process::{self, ProcessId};
use boxlite_shim_api::ShimConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((kind, rest)) = boxlite_fuzz::selector(data, 12) else {
        return;
    };
    match kind {
        0 => drop(decode::<PingResponse>(rest)),
        1 => drop(decode::<ExecResponse>(rest)),
        2 => read_output(rest, LogStream::Stdout),
        3 => read_output(rest, LogStream::Stderr),
        4 => {
            if let Some(resp) = decode::<WaitResponse>(rest) {
                let _ = ExitStatus {
                    code: resp.exit_code,
                    signal: resp.signal,
                    timed_out: resp.timed_out,
                };
            }
        }
        5 => drop(decode::<Empty>(rest)),
        6 => frame(rest),
        7 => shim_json(rest),
        8 => pid_file(rest),
        9 => output_log_file(rest),
        10 => drop(decode::<StateResponse>(rest)),
        _ => drop(decode::<StopResponse>(rest)),
    }
});

/// All the response payloads an agent answers with.
fn decode_any_response(payload: &[u8]) {
    let _ = decode::<PingResponse>(payload);
    let _ = decode::<ExecResponse>(payload);
    let _ = decode::<ReadOutputResponse>(payload);
    let _ = decode::<WaitResponse>(payload);
    let _ = decode::<Empty>(payload);
}

/// One frame off the agent channel, as the ttrpc client reads and unpacks it.
fn frame(bytes: &[u8]) {
    // A byte slice is always ready, so the read completes on its first poll; no runtime.
    let mut read = pin!(ttrpc::proto::GenMessage::read_from(bytes));
    let Poll::Ready(Ok(message)) = read.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    else {
        return;
    };
    let Some(response) = decode::<ttrpc::Response>(&message.payload) else {
        return;
    };
    let status = response.status();
    if status.code() != ttrpc::Code::OK {
        // What the caller's error says (`AgentError::Rpc` carries code and message).
        let _ = ttrpc::Error::RpcStatus((*status).clone()).to_string();
        return;
    }
    decode_any_response(&response.payload);
}

/// `AgentClient::read` and the shim's `log_stream` on one response: the chunk, its lines,
/// the output log they are written to, and that log read back.
fn read_output(bytes: &[u8], stream: LogStream) {
    let Some(resp) = decode::<ReadOutputResponse>(bytes) else {
        return;
    };
    if resp.eof && resp.data.is_empty() {
        return; // the end of the stream
    }
    let chunk = OutputChunk {
        offset: resp.offset,
        data: resp.data,
    };
    // Where the next read starts (`AgentClient::drain`, the runtime's output pump).
    let _ = chunk.end();

    let mut splitter = LineSplitter::default();
    let mut lines = splitter.push(&chunk.data);
    lines.extend(splitter.finish());
    let dir = tempfile::tempdir().expect("a temporary box directory");
    // The smallest rotation size, so that rotation happens within an input.
    let mut log = OutputLog::new(dir.path(), 0);
    let mut records = Vec::new();
    for line in &lines {
        log.write_line(stream, line)
            .expect("writing the output log");
        let pieces: Vec<&[u8]> = if line.is_empty() {
            vec![&[]]
        } else {
            line.chunks(MAX_RECORD).collect()
        };
        records.extend(pieces.into_iter().map(|piece| LogLine {
            stream,
            data: piece.to_vec(),
        }));
    }
    let read = OutputLogReader::new(dir.path())
        .read_all(None)
        .expect("reading the output log");
    // Rotation keeps the newest lines: what is read is the end of what was written.
    assert!(
        records.ends_with(&read),
        "the output log read back {} lines that are not the last of the {} written",
        read.len(),
        records.len()
    );
    // A record is its tag, its bytes and a newline; a log that never reached the rotation
    // size keeps every one.
    let written: u64 = records.iter().map(|r| r.data.len() as u64 + 3).sum();
    if written <= log.max_file_bytes() {
        assert_eq!(
            read.len(),
            records.len(),
            "lines were lost without a rotation"
        );
    }
}

/// `output.log.1 \0 output.log` as found in a box directory (a guest's output, or damage).
fn output_log_file(bytes: &[u8]) {
    let Some((&tail, bytes)) = bytes.split_first() else {
        return;
    };
    let (rotated, current) = match bytes.iter().position(|b| *b == 0) {
        Some(nul) => (Some(&bytes[..nul]), &bytes[nul + 1..]),
        None => (None, bytes),
    };
    let dir = tempfile::tempdir().expect("a temporary box directory");
    std::fs::write(dir.path().join(OUTPUT_LOG), current).expect("writing output.log");
    if let Some(rotated) = rotated {
        std::fs::write(dir.path().join(format!("{OUTPUT_LOG}.1")), rotated).expect("writing");
    }
    let tail = (tail != 0).then_some(tail as usize);
    let mut reader = OutputLogReader::new(dir.path());
    let lines = reader.read_all(tail).expect("reading the output log");
    assert!(
        tail.is_none_or(|tail| lines.len() <= tail),
        "tail not honoured"
    );
    for line in &lines {
        assert!(!line.data.contains(&b'\n'), "a record holds a newline");
    }
    assert!(
        reader.read_new().expect("following the log").is_empty(),
        "following a log nobody writes to produced lines"
    );
}

/// `vmm.pid` / `shim.pid`: "PID START_TIME" lines.
fn pid_file(bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("a temporary box directory");
    let path = dir.path().join("vmm.pid");
    std::fs::write(&path, bytes).expect("writing the pid file");
    let ids = process::read_all(&path);
    assert_eq!(ProcessId::read(&path), ids.first().copied());
    // What is read is what writing it again gives back.
    let again = dir.path().join("again.pid");
    process::write_all(&again, &ids).expect("writing the pid file");
    assert_eq!(process::read_all(&again), ids);
}

/// `shim.json`: the shim's configuration, and the kernel command line it makes from it, which
/// the agent must read back as meant.
fn shim_json(bytes: &[u8]) {
    let Ok(config) = serde_json::from_slice::<ShimConfig>(bytes) else {
        return;
    };
    let _ = config.ready_timeout();
    let value = serde_json::to_value(&config).expect("a config serializes");
    let again: ShimConfig = serde_json::from_value(value.clone()).expect("and deserializes");
    assert_eq!(serde_json::to_value(&again).expect("serializes"), value);

    let vm = &config.vm;
    // What the runtime never writes: extra words of the agent's own (`boxlite.*`), and a
    // hostname with whitespace (box names are `[a-zA-Z0-9_.-]`, `validate_name`).
    let spaced = |s: &str| s.chars().any(char::is_whitespace);
    if vm.extra_cmdline.iter().any(|w| w.contains("boxlite."))
        || vm.hostname.as_deref().is_some_and(spaced)
    {
        return;
    }
    let (params, malformed) = BootParams::parse(&vm.guest_cmdline().join(" "));
    assert_eq!(params.vsock_port, Some(vm.agent_port));
    assert_eq!(params.root_device.is_some(), vm.root_disk.is_some());
    assert_eq!(params.hostname, vm.hostname);
    if vm.network.is_some() {
        let net = params
            .net
            .as_deref()
            .expect("boxlite.net is on the command line");
        net::NetParams::parse(net).expect("the engine's boxlite.net parses");
    }
    // The agent refuses (and reports) volumes whose guest path is not absolute; all others
    // arrive intact.
    let (absolute, relative): (Vec<_>, Vec<_>) = vm
        .volumes
        .iter()
        .enumerate()
        .map(|(index, volume)| volume.mount(index))
        .partition(|mount| mount.guest_path.starts_with('/'));
    assert_eq!(
        params.volumes, absolute,
        "the agent reads other volumes than the host passed"
    );
    assert_eq!(malformed.len(), relative.len(), "{malformed:?}");
}
