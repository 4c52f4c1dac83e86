//! The shim's network filter (`boxlite-shim`'s `engine::netfilter`) on what a hostile guest
//! sends and what the network sends back: any sequence of frames in either direction, under
//! each kind of policy, with a forwarded port. Nothing may panic; every rejection is a
//! well-formed ICMP answer addressed to the frame's sender; nothing the guest sends to the
//! host's loopback range passes unless the policy allows the host or it answers a connection
//! made to the forwarded port.
//!
//! Input: one byte choosing the policy, then records of a direction byte (even: from the
//! guest, odd: to the guest), a 2-byte big-endian length and that many bytes of frame.

#![no_main]

use boxlite_fuzz::netfilter::{FrameFilter, Verdict};
use boxlite_shim_api::network_policy::NetworkPolicy;
use boxlite_shim_api::spec::{NetworkSpec, PortForward, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((choice, mut records)) = boxlite_fuzz::selector(data, 4) else {
        return;
    };
    let policy = match choice {
        0 => NetworkPolicy::default(),
        1 => NetworkPolicy {
            allow_host: true,
            ..NetworkPolicy::default()
        },
        2 => NetworkPolicy {
            allow_net: vec!["198.51.100.0/24".parse().unwrap()],
            ..NetworkPolicy::default()
        },
        _ => NetworkPolicy::unrestricted(),
    };
    let allow_host = policy.allow_host;
    let network = NetworkSpec {
        forwards: vec![PortForward {
            host_ip: std::net::Ipv4Addr::LOCALHOST,
            host_port: 18000,
            guest_port: 8000,
            protocol: Protocol::Tcp,
        }],
        policy,
    };
    let mut filter = FrameFilter::new(&network, vec!["192.0.2.2".parse().unwrap()]);
    while records.len() >= 3 {
        let direction = records[0];
        let len = usize::from(u16::from_be_bytes([records[1], records[2]]));
        let rest = &records[3..];
        let frame = &rest[..len.min(rest.len())];
        records = &rest[frame.len()..];
        if direction % 2 == 1 {
            filter.saw_inbound(frame);
            continue;
        }
        match filter.check(frame) {
            Verdict::Pass => {
                let to_loopback = frame.len() >= 34
                    && frame[12..14] == [0x08, 0x00]
                    && frame[14] >> 4 == 4
                    && frame[30] == 127;
                let from_forwarded_port = frame.len() >= 14 + 24
                    && usize::from(frame[14] & 0x0f) * 4 == 20
                    && frame[14 + 9] == 6
                    && frame[34..36] == 8000u16.to_be_bytes();
                assert!(
                    !to_loopback || allow_host || from_forwarded_port,
                    "a frame to the host's loopback passed"
                );
            }
            Verdict::Drop => {}
            Verdict::Reject(answer) => {
                assert!(answer.len() <= 14 + 20 + 8 + 60 + 8, "answer too long");
                assert_eq!(answer[0..6], frame[6..12], "answer to the sender");
                let ip = &answer[14..];
                assert_eq!(checksum(&ip[..20]), 0, "IP checksum");
                assert_eq!(checksum(&ip[20..]), 0, "ICMP checksum");
                assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
            }
        }
    }
});

/// RFC 1071's checksum, written here again on purpose: the oracle must not be the filter's
/// own function it checks.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
