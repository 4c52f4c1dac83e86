//! What the guest agent parses: the protobuf requests of `protocol/proto/agent.proto` (decoded
//! as the ttrpc glue does, and checked to round-trip), the exec's `user` resolved against the
//! box's /etc/passwd and /etc/group (`users::resolve`), and the kernel command line the shim
//! writes (`boot::BootParams::parse`, which must read back what it took the same way after
//! `to_cmdline_words`, and `net::NetParams::parse`). The agent's own source files are compiled
//! in (`boxlite_fuzz::agent`). Nothing is spawned or mounted: the rest of each request's
//! handling starts processes.
//!
//! Input: one byte choosing what the rest is (a request message, a user spec with the files it
//! is resolved against, or a kernel command line), then that.

#![no_main]

use std::path::Path;

use boxlite_fuzz::agent::{net, users};
use boxlite_fuzz::proto::decode;
use boxlite_protocol::agent::{
    CopyRequest, ExecRequest, OutputStream, PingRequest, ReadOutputRequest, ResizeTtyRequest,
    ShutdownRequest, SignalRequest, WaitRequest, WriteStdinRequest,
};
use boxlite_protocol::boot::BootParams;
use libfuzzer_sys::fuzz_target;

/// A box's files as an image would have them, for users named by decoded requests.
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
    daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
    www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
    nohome:x:1000:1000::\n\
    broken line without fields\n";
const GROUP: &str = "root:x:0:\nstaff:x:50:alice,bob\nwww-data:x:33:\n";

fuzz_target!(|data: &[u8]| {
    let Some((kind, rest)) = boxlite_fuzz::selector(data, 11) else {
        return;
    };
    match kind {
        0 => {
            if let Some(req) = decode::<ExecRequest>(rest) {
                // What `ExecTable::spawn` does with the user before it starts the command.
                let _ = users::resolve_with(&req.user, PASSWD, GROUP);
            }
        }
        1 => {
            if let Some(req) = decode::<CopyRequest>(rest) {
                // The name the copy's stream gives its top entry.
                let _ = boxlite_copy::archive_name(Path::new(&req.path));
            }
        }
        2 => {
            if let Some(req) = decode::<ReadOutputRequest>(rest) {
                // An unknown stream number reads as the default, as the agent's handler does.
                let _: OutputStream = req.stream.enum_value_or_default();
            }
        }
        3 => drop(decode::<WriteStdinRequest>(rest)),
        4 => drop(decode::<WaitRequest>(rest)),
        5 => drop(decode::<SignalRequest>(rest)),
        6 => drop(decode::<ResizeTtyRequest>(rest)),
        7 => drop(decode::<PingRequest>(rest)),
        8 => drop(decode::<ShutdownRequest>(rest)),
        9 => user_files(rest),
        _ => {
            // The shim writes the command line; the agent reads it from /proc/cmdline.
            let cmdline = String::from_utf8_lossy(rest);
            let (params, _malformed) = BootParams::parse(&cmdline);
            if let Some(value) = params.net.as_deref() {
                let _ = net::NetParams::parse(value);
            }
            // Whatever the agent took from a command line, the shim's writer says the same way.
            let again = BootParams::parse(&params.to_cmdline_words().join(" "));
            assert_eq!(
                again,
                (params, vec![]),
                "boot parameters changed in a round trip"
            );
        }
    }
});

/// `SPEC \0 PASSWD \0 GROUP`: the files written into a box root, then `users::resolve`.
fn user_files(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == 0);
    let (Some(spec), Some(passwd), Some(group)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let Ok(spec) = std::str::from_utf8(spec) else {
        return;
    };
    let root = tempfile::tempdir().expect("a temporary box root");
    std::fs::create_dir(root.path().join("etc")).expect("creating etc");
    // Raw bytes: a file that is not UTF-8 reads as empty, as in the agent.
    std::fs::write(root.path().join("etc/passwd"), passwd).expect("writing passwd");
    std::fs::write(root.path().join("etc/group"), group).expect("writing group");
    let _ = users::resolve(root.path(), spec);
}
