//! Writes the seed corpus, `fuzz/corpus/<target>/<name>`: a few valid inputs of each kind a
//! target reads, so that the fuzzer starts from well-formed tar streams and messages instead
//! of having to discover the formats. Deterministic (fixed mtimes, owners and ids): running it
//! again rewrites the same bytes.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_corpus [OUT_DIR]`

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use boxlite_protocol::agent::{
    CopyRequest, Empty, ExecRequest, ExecResponse, OutputStream, PingRequest, PingResponse,
    ReadOutputRequest, ReadOutputResponse, ResizeTtyRequest, ShutdownRequest, SignalRequest,
    WaitRequest, WaitResponse, WriteStdinRequest,
};
use boxlite_protocol::shim::{StateResponse, StopResponse};
use protobuf::Message;
use tar::{EntryType, Header};

const MTIME: u64 = 1_700_000_000;

/// A tar stream built entry by entry.
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Tar(tar::Builder::new(Vec::new()))
    }

    fn header(kind: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(MTIME);
        h
    }

    fn dir(mut self, path: &str) -> Self {
        let mut h = Self::header(EntryType::Directory, 0o755, 0);
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = Self::header(EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }

    /// A symlink or hard link; long targets get a GNU long-link header.
    fn link(mut self, kind: EntryType, path: &str, target: &str) -> Self {
        let mut h = Self::header(kind, 0o777, 0);
        self.0.append_link(&mut h, path, target).unwrap();
        self
    }

    fn special(mut self, kind: EntryType, path: &str, major: u32, minor: u32) -> Self {
        let mut h = Self::header(kind, 0o644, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.0.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// A PAX extended header for the next entry.
    fn pax(mut self, records: &[(&str, &[u8])]) -> Self {
        self.0
            .append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
            .unwrap();
        self
    }

    /// A member whose name is written as given, bypassing the builder's path checks: the
    /// archives a hostile peer sends (`..`, absolute paths).
    fn raw(mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> Self {
        let mut h = Self::header(kind, 0o644, data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 19).unwrap()
}

/// The copy a box's `copy_out` sends for a single file.
fn copy_file() -> Vec<u8> {
    Tar::new().file("a", 0o644, b"hello\n").finish()
}

/// A tree with a symlink inside it, an executable, and a set-user-ID file.
fn copy_tree() -> Vec<u8> {
    Tar::new()
        .dir("a")
        .dir("a/sub")
        .file("a/sub/f.txt", 0o640, b"contents\n")
        .file("a/run", 0o4755, b"#!/bin/sh\n")
        .link(EntryType::Symlink, "a/link", "sub/f.txt")
        .link(EntryType::Symlink, "a/sub/up", "../run")
        .finish()
}

/// Names past the 100 bytes of a tar header: a GNU long name and long link, and a PAX path.
fn copy_long_names() -> Vec<u8> {
    let deep = format!("a/{}/{}", "d".repeat(120), "f".repeat(150));
    let target = format!("{}/{}", "d".repeat(120), "f".repeat(150));
    let pax_name = format!("a/{}", "p".repeat(180));
    Tar::new()
        .dir("a")
        .dir(&format!("a/{}", "d".repeat(120)))
        .file(&deep, 0o644, b"deep\n")
        .link(EntryType::Symlink, "a/long-link", &target)
        .pax(&[("path", pax_name.as_bytes()), ("mtime", b"1700000000.5")])
        .file("a/placeholder", 0o644, b"pax\n")
        .finish()
}

/// Archives a copy must refuse, one refusal each (the first stops the extraction): climbing
/// out, absolute, a symlink out, a hard link, a device node.
fn copy_hostile() -> Vec<(&'static str, Vec<u8>)> {
    let cases: [(&str, EntryType, &[u8], &[u8]); 4] = [
        ("dotdot", EntryType::Regular, b"a/../escaped", b""),
        ("absolute", EntryType::Regular, b"/abs", b""),
        (
            "symlink-out",
            EntryType::Symlink,
            b"a/out",
            b"../../outside",
        ),
        ("hard-link", EntryType::Link, b"a/hard", b"a"),
    ];
    let mut archives: Vec<_> = cases
        .into_iter()
        .map(|(what, kind, name, link)| {
            let tar = Tar::new().dir("a").raw(kind, name, link, b"x");
            (what, tar.finish())
        })
        .collect();
    let device = Tar::new().dir("a").special(EntryType::Char, "a/null", 1, 3);
    archives.push(("device", device.finish()));
    archives
}

/// An image layer on top of the sandbox's image root: whiteouts (one of a lower file, an
/// opaque directory), a hard link, writes through the lower `lib -> usr/lib`, device nodes and
/// a FIFO, xattrs and owners.
fn layer() -> Vec<u8> {
    Tar::new()
        .dir("etc")
        .file("etc/hosts", 0o644, b"127.0.0.1 localhost\n")
        .file("etc/.wh.passwd", 0o644, b"")
        .dir("usr/bin")
        .file("usr/bin/tool", 0o755, b"\x7fELF")
        .link(EntryType::Link, "usr/bin/tool2", "usr/bin/tool")
        .link(EntryType::Symlink, "bin", "usr/bin")
        .file("lib/libz.so", 0o644, b"z")
        .dir("opaque")
        .file("opaque/.wh..wh..opq", 0o644, b"")
        .file("opaque/new", 0o600, b"upper")
        .special(EntryType::Char, "dev/null", 1, 3)
        .special(EntryType::Fifo, "run/fifo", 0, 0)
        .pax(&[("SCHILY.xattr.user.fuzz", b"value")])
        .file("etc/with-xattr", 0o644, b"x")
        .link(EntryType::Symlink, "abs-link", "/etc/hosts")
        .finish()
}

/// Layers with one odd entry each: absolute paths and paths through the root's symlinks
/// (which stay inside), `..` out of the root, a hard link out of it, a whiteout of `..`, the
/// root directory itself.
fn layer_hostile() -> Vec<(&'static str, Vec<u8>)> {
    let cases: [(&str, EntryType, &[u8], &[u8]); 8] = [
        ("absolute", EntryType::Regular, b"/etc/abs", b""),
        ("dotdot", EntryType::Regular, b"../../escaped", b""),
        ("through-symlink", EntryType::Regular, b"up/through", b""),
        (
            "through-abs-symlink",
            EntryType::Regular,
            b"abs/secret",
            b"",
        ),
        ("hard-link-out", EntryType::Link, b"hard", b"up/secret"),
        ("whiteout-dotdot", EntryType::Regular, b".wh...", b""),
        (
            "whiteout-through",
            EntryType::Regular,
            b"dotdot/.wh.outside",
            b"",
        ),
        ("root-dir", EntryType::Directory, b"./", b""),
    ];
    cases
        .into_iter()
        .map(|(what, kind, name, link)| (what, Tar::new().raw(kind, name, link, b"").finish()))
        .collect()
}

fn prefixed(kind: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(bytes);
    out
}

fn message(kind: u8, message: &impl Message) -> Vec<u8> {
    prefixed(kind, &message.write_to_bytes().unwrap())
}

struct Corpus {
    dir: PathBuf,
    written: usize,
}

impl Corpus {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.dir.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
        self.written += bytes.len();
    }
}

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));
    let mut corpus = Corpus { dir, written: 0 };

    // copy_unpack: a selector byte (0/1 copy into a new path / an existing directory, 2/3 the
    // same expecting the top entry "a", 4 an image layer), then the stream.
    for (name, tar) in [
        ("file", copy_file()),
        ("tree", copy_tree()),
        ("long-names", copy_long_names()),
    ] {
        corpus.put(
            "copy_unpack",
            &format!("{name}-new.tar"),
            &prefixed(0, &tar),
        );
        corpus.put(
            "copy_unpack",
            &format!("{name}-expected-into.tar"),
            &prefixed(3, &tar),
        );
    }
    for (name, tar) in copy_hostile() {
        corpus.put(
            "copy_unpack",
            &format!("hostile-{name}.tar"),
            &prefixed(1, &tar),
        );
    }
    corpus.put("copy_unpack", "layer.tar", &prefixed(4, &layer()));
    for (name, tar) in layer_hostile() {
        corpus.put(
            "copy_unpack",
            &format!("layer-{name}.tar"),
            &prefixed(4, &tar),
        );
    }

    // layer_apply: the blob as a registry serves it.
    corpus.put("layer_apply", "layer.tar", &layer());
    corpus.put("layer_apply", "layer.tar.gz", &gzip(&layer()));
    corpus.put("layer_apply", "layer.tar.zst", &zstd(&layer()));
    for (name, tar) in layer_hostile() {
        corpus.put("layer_apply", &format!("{name}.tar.gz"), &gzip(&tar));
    }
    corpus.put(
        "layer_apply",
        "long-names.tar.zst",
        &zstd(&copy_long_names()),
    );

    agent_requests(&mut corpus);
    agent_replies(&mut corpus);
    guest_frames(&mut corpus);
    eprintln!(
        "make_corpus: {} bytes written under {}",
        corpus.written,
        corpus.dir.display()
    );
}

/// Selector bytes as in fuzz_targets/agent_requests.rs.
fn agent_requests(corpus: &mut Corpus) {
    let t = "agent_requests";
    let exec = ExecRequest {
        exec_id: "e1".into(),
        args: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
        env: vec!["PATH=/bin".into(), "TERM=xterm".into()],
        working_dir: "/root".into(),
        stdin: true,
        user: "www-data:staff".into(),
        tty: true,
        timeout_ms: 5000,
        ..Default::default()
    };
    corpus.put(t, "exec", &message(0, &exec));
    let copy = CopyRequest {
        exec_id: "c1".into(),
        path: "/etc/hosts".into(),
        ..Default::default()
    };
    corpus.put(t, "copy", &message(1, &copy));
    let read = ReadOutputRequest {
        exec_id: "e1".into(),
        stream: OutputStream::STDERR.into(),
        max_bytes: 65536,
        offset: 10,
        ..Default::default()
    };
    corpus.put(t, "read-output", &message(2, &read));
    let write = WriteStdinRequest {
        exec_id: "e1".into(),
        data: b"input\n".to_vec(),
        close: true,
        ..Default::default()
    };
    corpus.put(t, "write-stdin", &message(3, &write));
    let wait = WaitRequest {
        exec_id: "e1".into(),
        ..Default::default()
    };
    corpus.put(t, "wait", &message(4, &wait));
    let signal = SignalRequest {
        exec_id: "e1".into(),
        signal: 15,
        ..Default::default()
    };
    corpus.put(t, "signal", &message(5, &signal));
    let resize = ResizeTtyRequest {
        exec_id: "e1".into(),
        rows: 24,
        cols: 80,
        ..Default::default()
    };
    corpus.put(t, "resize", &message(6, &resize));
    corpus.put(t, "ping", &message(7, &PingRequest::new()));
    corpus.put(t, "shutdown", &message(8, &ShutdownRequest::new()));
    corpus.put(
        t,
        "user-files",
        &prefixed(
            9,
            b"www:staff\0root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n\0\
              root:x:0:\nstaff:x:50:alice\n",
        ),
    );
    corpus.put(
        t,
        "cmdline",
        &prefixed(
            10,
            b"console=hvc0 panic=-1 boxlite.port=1024 boxlite.root=/dev/vda \
              boxlite.rootfstype=ext4 boxlite.net=10.0.2.15/24,10.0.2.2,10.0.2.3 \
              boxlite.vol=vol0,ro,2f64617461 boxlite.vol=vol1,rw,2f6d6e742f78 \
              boxlite.hostname=box1",
        ),
    );
}

/// Selector bytes as in fuzz_targets/agent_replies.rs.
/// guest_frames: a policy byte, then (direction, 2-byte length, frame) records.
fn guest_frames(corpus: &mut Corpus) {
    fn tcp(from: ([u8; 4], u16), to: ([u8; 4], u16), flags: u8) -> Vec<u8> {
        let mut frame = vec![0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55, 0x52, 0x54, 0, 0x12, 0x34, 0x56];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        frame.extend_from_slice(&from.0);
        frame.extend_from_slice(&to.0);
        frame.extend_from_slice(&from.1.to_be_bytes());
        frame.extend_from_slice(&to.1.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        frame
    }
    fn record(direction: u8, frame: &[u8]) -> Vec<u8> {
        let mut out = vec![direction];
        out.extend_from_slice(&(frame.len() as u16).to_be_bytes());
        out.extend_from_slice(frame);
        out
    }
    let guest = ([10, 0, 2, 15], 8000);
    let client = ([10, 0, 2, 2], 50000);
    let mut inbound = vec![0u8];
    inbound.extend(record(1, &tcp(client, guest, 0x02)));
    inbound.extend(record(0, &tcp(guest, client, 0x12)));
    inbound.extend(record(0, &tcp(guest, client, 0x02)));
    corpus.put("guest_frames", "inbound-connection", &inbound);
    for (policy, name) in [(0u8, "default"), (1, "allow-host"), (2, "allow-net"), (3, "open")] {
        let mut out = vec![policy];
        for destination in [[10, 0, 2, 2], [127, 0, 0, 1], [169, 254, 169, 254], [203, 0, 113, 5]] {
            out.extend(record(0, &tcp((guest.0, 40000), (destination, 80), 0x02)));
        }
        corpus.put("guest_frames", &format!("outbound-{name}"), &out);
    }
}

fn agent_replies(corpus: &mut Corpus) {
    let t = "agent_replies";
    let ping = PingResponse {
        agent_version: "0.1.0".into(),
        uptime_ms: 1234,
        ready_at_ms: 900,
        ..Default::default()
    };
    corpus.put(t, "ping", &message(0, &ping));
    let exec = ExecResponse {
        pid: 42,
        ..Default::default()
    };
    corpus.put(t, "exec", &message(1, &exec));
    let output = ReadOutputResponse {
        data: b"line one\nline two\n\npartial".to_vec(),
        eof: false,
        offset: 4096,
        ..Default::default()
    };
    corpus.put(t, "read-output-stdout", &message(2, &output));
    let last = ReadOutputResponse {
        data: b"error: done\n".to_vec(),
        eof: true,
        offset: 0,
        ..Default::default()
    };
    corpus.put(t, "read-output-stderr", &message(3, &last));
    let wait = WaitResponse {
        exit_code: -1,
        signal: 9,
        timed_out: true,
        ..Default::default()
    };
    corpus.put(t, "wait", &message(4, &wait));
    corpus.put(t, "empty", &message(5, &Empty::new()));

    // ttrpc frames: a response carrying a PingResponse, and an error status.
    let frame = |response: &ttrpc::Response| {
        let payload = response.write_to_bytes().unwrap();
        let header = ttrpc::MessageHeader::new_response(1, payload.len() as u32);
        let mut bytes: Vec<u8> = header.into();
        bytes.extend_from_slice(&payload);
        prefixed(6, &bytes)
    };
    let mut ok = ttrpc::Response::new();
    ok.payload = ping.write_to_bytes().unwrap();
    corpus.put(t, "frame-ok", &frame(&ok));
    let mut failed = ttrpc::Response::new();
    let mut status = ttrpc::Status::new();
    status.code = ttrpc::Code::NOT_FOUND.into();
    status.message = "no exec with id \"e1\"".into();
    failed.status = protobuf::MessageField::some(status);
    corpus.put(t, "frame-error", &frame(&failed));

    let shim_json = serde_json::json!({
        "vm": {
            "kernel": "/var/lib/boxlite/kernel/vmlinuz",
            "initramfs": "/var/lib/boxlite/initramfs.cpio.gz",
            "cpus": 2,
            "memory_mib": 512,
            "root_disk": {"path": "/var/lib/boxlite/boxes/b1/disk.qcow2", "format": "Qcow2",
                          "read_only": false},
            "agent_port": 1024,
            "run_dir": "/run/boxlite/b1",
            "extra_cmdline": ["quiet"],
            "hostname": "web-1",
            "network": {"forwards": [{"host_ip": "127.0.0.1", "host_port": 8080,
                                      "guest_port": 80, "protocol": "tcp"}]},
            "volumes": [{"host_path": "/srv/data", "guest_path": "/data", "read_only": true},
                        {"host_path": "/srv/x", "guest_path": "/mnt/x y", "read_only": false}]
        },
        "engine": "qemu",
        "ready_timeout_ms": 30000,
        "launcher": {"pid": 4321, "start_time": 98765}
    });
    let shim_json = serde_json::to_vec_pretty(&shim_json).unwrap();
    // Caught here rather than by a fuzzer that never gets past the parser.
    serde_json::from_slice::<boxlite_shim_api::ShimConfig>(&shim_json)
        .expect("the seed shim.json is a valid ShimConfig");
    corpus.put(t, "shim-json", &prefixed(7, &shim_json));
    corpus.put(t, "vmm-pid", &prefixed(8, b"1234 5678\n99 100\n"));
    corpus.put(
        t,
        "output-log",
        &prefixed(9, b"\x03O old line\nE old error\n\0O hello\nE err\nO part"),
    );
    let state = StateResponse {
        shim_pid: 100,
        vmm_pids: vec![101, 102],
        engine: "qemu".into(),
        agent_version: "0.1.0".into(),
        spawn_to_ready_ms: 350,
        ..Default::default()
    };
    corpus.put(t, "state", &message(10, &state));
    let stop = StopResponse {
        clean: true,
        ..Default::default()
    };
    corpus.put(t, "stop", &message(11, &stop));
}
