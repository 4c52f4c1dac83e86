//! The box's network policy applied to each Ethernet frame the guest sends. Frames come from a
//! hostile guest: every length is checked before it is read, and what cannot be parsed is
//! dropped. Only ARP, IPv4 and IPv6 pass; an IP packet passes when its destination is allowed
//! (see [`NetworkPolicy`] for the order of the rules) or when it answers a connection made to
//! one of the box's forwarded ports: those arrive from the gateway (a client on the host's
//! loopback) or from anywhere (a published address), and their answers must get back whatever
//! the policy says about starting connections there. A refused TCP or UDP packet over IPv4
//! is answered with ICMP "communication administratively prohibited", so the guest's
//! `connect` fails at once with "host unreachable" instead of hanging until its timeout;
//! anything else refused is dropped.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use boxlite_shim_api::network_policy::NetworkPolicy;
use boxlite_shim_api::spec::{NetworkSpec, Protocol, GUEST_DNS, GUEST_GATEWAY};

const ETH_HEADER: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const IPV4_HEADER_MIN: usize = 20;
const IPV6_HEADER: usize = 40;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;
/// Connections to forwarded ports remembered at once; the oldest is forgotten first.
pub const MAX_INBOUND_FLOWS: usize = 4096;

/// A connection made into the box through a forwarded port, as the guest answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct InboundFlow {
    protocol: u8,
    peer: Ipv4Addr,
    peer_port: u16,
    guest_port: u16,
}

/// The transport facts of an IPv4 packet that the filter uses.
#[derive(Debug, Clone, Copy)]
struct Ipv4Packet {
    protocol: u8,
    source: Ipv4Addr,
    destination: Ipv4Addr,
    /// Source and destination ports, and TCP flags (0 for UDP), when the packet is the
    /// first fragment of a TCP or UDP packet with its ports present.
    ports: Option<(u16, u16, u8)>,
}

/// Parses the IPv4 packet of an Ethernet frame; `None` when malformed. Also gives the
/// header's length.
fn parse_ipv4(frame: &[u8]) -> Option<(Ipv4Packet, usize)> {
    let ip = frame.get(ETH_HEADER..)?;
    if ip.len() < IPV4_HEADER_MIN || ip[0] >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    if header_len < IPV4_HEADER_MIN || header_len > ip.len() {
        return None;
    }
    let protocol = ip[9];
    let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
    let transport = &ip[header_len..];
    let port_pair = |t: &[u8]| {
        (
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        )
    };
    // A truncated header gives no ports: the packet is judged by its addresses alone.
    let ports = match protocol {
        PROTO_TCP if first_fragment && transport.len() >= 14 => {
            let (source, destination) = port_pair(transport);
            Some((source, destination, transport[13]))
        }
        PROTO_UDP if first_fragment && transport.len() >= 4 => {
            let (source, destination) = port_pair(transport);
            Some((source, destination, 0))
        }
        _ => None,
    };
    let packet = Ipv4Packet {
        protocol,
        source: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        destination: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        ports,
    };
    Some((packet, header_len))
}

/// What to do with one frame from the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// On to the network.
    Pass,
    /// Refused without an answer.
    Drop,
    /// Refused; this frame goes back to the guest instead.
    Reject(Vec<u8>),
}

/// A box's policy, ready to check frames, and the connections made into the box.
#[derive(Debug, Clone)]
pub struct FrameFilter {
    policy: NetworkPolicy,
    /// The host's own addresses: reaching them is reaching the host.
    host_addresses: Vec<IpAddr>,
    /// Forwarded guest ports, as (IP protocol number, port).
    forwarded: Vec<(u8, u16)>,
    inbound: HashSet<InboundFlow>,
    inbound_order: VecDeque<InboundFlow>,
}

impl FrameFilter {
    pub fn new(network: &NetworkSpec, host_addresses: Vec<IpAddr>) -> Self {
        let forwarded = network
            .forwards
            .iter()
            .map(|f| {
                let protocol = match f.protocol {
                    Protocol::Tcp => PROTO_TCP,
                    Protocol::Udp => PROTO_UDP,
                };
                (protocol, f.guest_port)
            })
            .collect();
        Self {
            policy: network.policy.clone(),
            host_addresses,
            forwarded,
            inbound: HashSet::new(),
            inbound_order: VecDeque::new(),
        }
    }

    /// The filter for `network` on this host (its addresses read from its interfaces).
    pub fn for_this_host(network: &NetworkSpec) -> Self {
        Self::new(network, host_addresses())
    }

    /// Notes a frame on its way to the guest: a connection to a forwarded port (a TCP SYN, or
    /// any UDP datagram) may be answered.
    pub fn saw_inbound(&mut self, frame: &[u8]) {
        if frame.get(12..ETH_HEADER) != Some(&ETHERTYPE_IPV4.to_be_bytes()[..]) {
            return;
        }
        let Some((packet, _)) = parse_ipv4(frame) else {
            return;
        };
        let Some((peer_port, guest_port, flags)) = packet.ports else {
            return;
        };
        let opens = match packet.protocol {
            PROTO_TCP => flags & (TCP_SYN | TCP_ACK) == TCP_SYN,
            _ => true,
        };
        if !opens || !self.forwarded.contains(&(packet.protocol, guest_port)) {
            return;
        }
        let flow = InboundFlow {
            protocol: packet.protocol,
            peer: packet.source,
            peer_port,
            guest_port,
        };
        if self.inbound.insert(flow) {
            self.inbound_order.push_back(flow);
            if self.inbound_order.len() > MAX_INBOUND_FLOWS {
                if let Some(oldest) = self.inbound_order.pop_front() {
                    self.inbound.remove(&oldest);
                }
            }
        }
    }

    /// Whether the guest's packet answers a connection made to a forwarded port. A TCP SYN
    /// without ACK never does: that would be the guest opening a connection of its own.
    fn answers_inbound(&self, packet: &Ipv4Packet) -> bool {
        let Some((guest_port, peer_port, flags)) = packet.ports else {
            return false;
        };
        if packet.protocol == PROTO_TCP && flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            return false;
        }
        self.inbound.contains(&InboundFlow {
            protocol: packet.protocol,
            peer: packet.destination,
            peer_port,
            guest_port,
        })
    }

    /// Whether the guest may send to `destination`.
    pub fn allows(&self, destination: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address reaches the IPv4 address through a dual-stack socket.
        let destination = match destination {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if destination == IpAddr::V4(GUEST_DNS) {
            return true;
        }
        if self.policy.deny_net.iter().any(|n| n.contains(destination)) {
            return false;
        }
        if self.is_host(destination) {
            return self.policy.allow_host;
        }
        self.policy.allow_net.is_empty()
            || self
                .policy
                .allow_net
                .iter()
                .any(|n| n.contains(destination))
    }

    fn is_host(&self, ip: IpAddr) -> bool {
        ip == IpAddr::V4(GUEST_GATEWAY)
            || ip.is_loopback()
            || ip.is_unspecified()
            || self.host_addresses.contains(&ip)
    }

    /// The verdict on one Ethernet frame from the guest.
    pub fn check(&self, frame: &[u8]) -> Verdict {
        let Some(ethertype) = frame.get(12..ETH_HEADER) else {
            return Verdict::Drop;
        };
        match u16::from_be_bytes([ethertype[0], ethertype[1]]) {
            ETHERTYPE_ARP => Verdict::Pass,
            ETHERTYPE_IPV4 => self.check_ipv4(frame),
            ETHERTYPE_IPV6 => self.check_ipv6(frame),
            // VLAN tags and other protocols: nothing a box needs, and a way around the checks.
            _ => Verdict::Drop,
        }
    }

    fn check_ipv4(&self, frame: &[u8]) -> Verdict {
        let Some((packet, header_len)) = parse_ipv4(frame) else {
            return Verdict::Drop;
        };
        if self.allows(IpAddr::V4(packet.destination)) || self.answers_inbound(&packet) {
            return Verdict::Pass;
        }
        match packet.protocol {
            PROTO_TCP | PROTO_UDP => Verdict::Reject(icmp_prohibited(frame, header_len)),
            _ => Verdict::Drop,
        }
    }

    fn check_ipv6(&self, frame: &[u8]) -> Verdict {
        let ip = &frame[ETH_HEADER..];
        if ip.len() < IPV6_HEADER || ip[0] >> 4 != 6 {
            return Verdict::Drop;
        }
        let mut destination = [0u8; 16];
        destination.copy_from_slice(&ip[24..40]);
        if self.allows(IpAddr::V6(Ipv6Addr::from(destination))) {
            Verdict::Pass
        } else {
            Verdict::Drop
        }
    }
}

/// The ICMP "destination unreachable: communication administratively prohibited" answer to
/// the IPv4 packet in `frame` (whose IP header is `header_len` bytes, already checked), from
/// the gateway, quoting the packet's header and first 8 bytes as RFC 792 asks.
fn icmp_prohibited(frame: &[u8], header_len: usize) -> Vec<u8> {
    let packet = &frame[ETH_HEADER..];
    let quoted = &packet[..packet.len().min(header_len + 8)];
    let icmp_len = 8 + quoted.len();
    let total_len = IPV4_HEADER_MIN + icmp_len;
    let mut reply = Vec::with_capacity(ETH_HEADER + total_len);
    // Ethernet: back to the sender, from whoever it addressed.
    reply.extend_from_slice(&frame[6..12]);
    reply.extend_from_slice(&frame[0..6]);
    reply.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    // IPv4 header.
    let ip_start = reply.len();
    reply.extend_from_slice(&[0x45, 0]);
    // At most 14 + 60 + 8 bytes are quoted, so the length fits.
    reply.extend_from_slice(&(total_len as u16).to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0, 64, PROTO_ICMP, 0, 0]);
    reply.extend_from_slice(&GUEST_GATEWAY.octets());
    reply.extend_from_slice(&packet[12..16]);
    let sum = internet_checksum(&reply[ip_start..]);
    reply[ip_start + 10..ip_start + 12].copy_from_slice(&sum.to_be_bytes());
    // ICMP: type 3 (destination unreachable), code 13 (administratively prohibited).
    let icmp_start = reply.len();
    reply.extend_from_slice(&[3, 13, 0, 0, 0, 0, 0, 0]);
    reply.extend_from_slice(quoted);
    let sum = internet_checksum(&reply[icmp_start..]);
    reply[icmp_start + 2..icmp_start + 4].copy_from_slice(&sum.to_be_bytes());
    reply
}

/// RFC 1071's one's-complement sum.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The addresses of this host's interfaces (empty if they cannot be read: the gateway and
/// loopback rules still hold).
pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut addresses: Vec<IpAddr> = interfaces
        .filter_map(|interface| {
            let address = interface.address?;
            if let Some(v4) = address.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;
    use boxlite_shim_api::network_policy::IpNet;

    const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const PASST_MAC: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];

    /// A TCP SYN frame from the guest to `destination:port`.
    fn tcp_syn(destination: Ipv4Addr, port: u16) -> Vec<u8> {
        tcp_segment(
            (Ipv4Addr::new(10, 0, 2, 15), 40000),
            (destination, port),
            TCP_SYN,
        )
    }

    /// A TCP segment with `flags` between two (address, port) ends.
    fn tcp_segment(from: (Ipv4Addr, u16), to: (Ipv4Addr, u16), flags: u8) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&PASST_MAC);
        frame.extend_from_slice(&GUEST_MAC);
        frame.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 40, 0x12, 0x34, 0x40, 0, 64, PROTO_TCP, 0, 0];
        ip.extend_from_slice(&from.0.octets());
        ip.extend_from_slice(&to.0.octets());
        let sum = internet_checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend_from_slice(&ip);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&from.1.to_be_bytes());
        tcp[2..4].copy_from_slice(&to.1.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        frame.extend_from_slice(&tcp);
        frame
    }

    fn ipv6_frame(destination: Ipv6Addr) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&PASST_MAC);
        frame.extend_from_slice(&GUEST_MAC);
        frame.extend_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        let mut ip = vec![0x60, 0, 0, 0, 0, 0, PROTO_UDP, 64];
        ip.extend_from_slice(&[0u8; 16]);
        ip.extend_from_slice(&destination.octets());
        frame.extend_from_slice(&ip);
        frame
    }

    fn host_filter(policy: NetworkPolicy) -> FrameFilter {
        let network = NetworkSpec {
            forwards: Vec::new(),
            policy,
        };
        FrameFilter::new(&network, vec!["192.0.2.2".parse().unwrap()])
    }

    #[test]
    fn the_default_policy_refuses_the_host_and_metadata_and_passes_the_rest() {
        let filter = host_filter(NetworkPolicy::default());
        for refused in [
            GUEST_GATEWAY,
            Ipv4Addr::LOCALHOST,
            Ipv4Addr::new(127, 9, 9, 9),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(192, 0, 2, 2),
            Ipv4Addr::new(169, 254, 169, 254),
            Ipv4Addr::new(100, 100, 100, 200),
        ] {
            assert!(
                matches!(filter.check(&tcp_syn(refused, 80)), Verdict::Reject(_)),
                "{refused}"
            );
        }
        for passed in [GUEST_DNS, Ipv4Addr::new(203, 0, 113, 5)] {
            assert_eq!(
                filter.check(&tcp_syn(passed, 53)),
                Verdict::Pass,
                "{passed}"
            );
        }
        for refused in [
            "::1",
            "::ffff:127.0.0.1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            let frame = ipv6_frame(refused.parse().unwrap());
            assert_eq!(filter.check(&frame), Verdict::Drop, "{refused}");
        }
        assert_eq!(
            filter.check(&ipv6_frame("2001:db8::1".parse().unwrap())),
            Verdict::Pass
        );
    }

    #[test]
    fn allow_host_allow_net_and_deny_net_apply_in_order() {
        let mut policy = NetworkPolicy {
            allow_host: true,
            ..NetworkPolicy::default()
        };
        let filter = host_filter(policy.clone());
        assert_eq!(filter.check(&tcp_syn(GUEST_GATEWAY, 22)), Verdict::Pass);
        assert_eq!(
            filter.check(&tcp_syn(Ipv4Addr::new(192, 0, 2, 2), 22)),
            Verdict::Pass
        );
        // Denied beats the host.
        policy.deny_net.push(IpNet::host(IpAddr::V4(GUEST_GATEWAY)));
        let filter = host_filter(policy.clone());
        assert!(matches!(
            filter.check(&tcp_syn(GUEST_GATEWAY, 22)),
            Verdict::Reject(_)
        ));
        // An allow list admits only what it holds; DNS stays reachable.
        policy.allow_net = vec!["198.51.100.0/24".parse().unwrap()];
        let filter = host_filter(policy);
        assert_eq!(
            filter.check(&tcp_syn(Ipv4Addr::new(198, 51, 100, 9), 443)),
            Verdict::Pass
        );
        assert!(matches!(
            filter.check(&tcp_syn(Ipv4Addr::new(203, 0, 113, 5), 443)),
            Verdict::Reject(_)
        ));
        assert_eq!(filter.check(&tcp_syn(GUEST_DNS, 53)), Verdict::Pass);
        // Unrestricted: metadata too.
        let filter = host_filter(NetworkPolicy::unrestricted());
        assert_eq!(
            filter.check(&tcp_syn(Ipv4Addr::new(169, 254, 169, 254), 80)),
            Verdict::Pass
        );
    }

    #[test]
    fn connections_to_forwarded_ports_are_answered_whatever_the_policy() {
        let network = NetworkSpec {
            forwards: vec![boxlite_shim_api::spec::PortForward {
                host_ip: Ipv4Addr::LOCALHOST,
                host_port: 18000,
                guest_port: 8000,
                protocol: Protocol::Tcp,
            }],
            policy: NetworkPolicy::default(),
        };
        let mut filter = FrameFilter::new(&network, Vec::new());
        let guest = (Ipv4Addr::new(10, 0, 2, 15), 8000);
        let client = (GUEST_GATEWAY, 50000);
        let answer = tcp_segment(guest, client, TCP_SYN | TCP_ACK);
        // Before the client's SYN the answer is refused like any packet to the host.
        assert!(matches!(filter.check(&answer), Verdict::Reject(_)));
        filter.saw_inbound(&tcp_segment(client, guest, TCP_SYN));
        assert_eq!(filter.check(&answer), Verdict::Pass);
        assert_eq!(
            filter.check(&tcp_segment(guest, client, TCP_ACK)),
            Verdict::Pass
        );
        // Not a way out: the guest opening the same pair, another port of the client, or a
        // SYN to a port that is not forwarded.
        assert!(matches!(
            filter.check(&tcp_segment(guest, client, TCP_SYN)),
            Verdict::Reject(_)
        ));
        assert!(matches!(
            filter.check(&tcp_segment(guest, (GUEST_GATEWAY, 50001), TCP_ACK)),
            Verdict::Reject(_)
        ));
        let other = (Ipv4Addr::new(10, 0, 2, 15), 9000);
        filter.saw_inbound(&tcp_segment(client, other, TCP_SYN));
        assert!(matches!(
            filter.check(&tcp_segment(other, client, TCP_SYN | TCP_ACK)),
            Verdict::Reject(_)
        ));
        // The table is bounded: the oldest connection is forgotten first.
        for port in 1..=MAX_INBOUND_FLOWS as u16 {
            filter.saw_inbound(&tcp_segment((GUEST_GATEWAY, port), guest, TCP_SYN));
        }
        assert_eq!(filter.inbound.len(), MAX_INBOUND_FLOWS);
        assert!(matches!(filter.check(&answer), Verdict::Reject(_)));
    }

    #[test]
    fn the_rejection_is_a_valid_icmp_answer_to_the_sender() {
        let filter = host_filter(NetworkPolicy::default());
        let syn = tcp_syn(GUEST_GATEWAY, 5432);
        let Verdict::Reject(reply) = filter.check(&syn) else {
            panic!("not rejected");
        };
        assert_eq!(&reply[0..6], &GUEST_MAC);
        assert_eq!(&reply[6..12], &PASST_MAC);
        let ip = &reply[ETH_HEADER..];
        assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), ip.len());
        assert_eq!(internet_checksum(&ip[..20]), 0, "IP checksum");
        assert_eq!(ip[9], PROTO_ICMP);
        assert_eq!(&ip[12..16], &GUEST_GATEWAY.octets());
        assert_eq!(&ip[16..20], &[10, 0, 2, 15]);
        let icmp = &ip[20..];
        assert_eq!((icmp[0], icmp[1]), (3, 13));
        assert_eq!(internet_checksum(icmp), 0, "ICMP checksum");
        // The quote: the original IP header and the first 8 bytes (the ports) of TCP.
        assert_eq!(&icmp[8..], &syn[ETH_HEADER..ETH_HEADER + 28]);
    }

    #[test]
    fn malformed_and_foreign_frames_are_dropped() {
        let filter = host_filter(NetworkPolicy::default());
        let syn = tcp_syn(Ipv4Addr::new(203, 0, 113, 5), 80);
        for len in 0..ETH_HEADER + IPV4_HEADER_MIN {
            assert_eq!(filter.check(&syn[..len]), Verdict::Drop, "{len} bytes");
        }
        let mut bad_ihl = syn.clone();
        bad_ihl[ETH_HEADER] = 0x4f;
        assert_eq!(filter.check(&bad_ihl[..ETH_HEADER + 40]), Verdict::Drop);
        bad_ihl[ETH_HEADER] = 0x44;
        assert_eq!(filter.check(&bad_ihl), Verdict::Drop);
        let mut vlan = syn.clone();
        vlan[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        assert_eq!(filter.check(&vlan), Verdict::Drop);
        let mut arp = syn[..ETH_HEADER].to_vec();
        arp[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        assert_eq!(filter.check(&arp), Verdict::Pass);
        // A refused packet that is not TCP or UDP is dropped without an answer (no ICMP
        // about ICMP).
        let mut ping = tcp_syn(GUEST_GATEWAY, 0);
        ping[ETH_HEADER + 9] = PROTO_ICMP;
        assert_eq!(filter.check(&ping), Verdict::Drop);
    }

    #[test]
    fn this_host_has_addresses() {
        assert!(host_addresses().iter().any(|ip| ip.is_loopback()));
    }
}
