//! Where a box's network traffic may go. The runtime stores a [`NetworkPolicy`] with the box;
//! the shim enforces it on every frame the guest sends, between the VMM's network device and
//! passt (the shim's `engine::netfilter`), so a hostile guest cannot route around it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `fd00:ec2::254/128`); a bare
/// address is a network of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The network of `addr` with `prefix` leading bits; longer prefixes than the address has
    /// bits are refused.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, String> {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return Err(format!(
                "prefix /{prefix} is longer than the {bits} bits of {addr}"
            ));
        }
        Ok(Self { addr, prefix })
    }

    /// The network of exactly one address.
    pub fn host(addr: IpAddr) -> Self {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { addr, prefix }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network (an IPv4 network never holds an IPv6 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{s:?} is not an IP network: use an address or CIDR such as 10.0.0.0/8 or fd00::/8"
            )
        };
        match s.split_once('/') {
            None => s.parse().map(Self::host).map_err(|_| bad()),
            Some((addr, prefix)) => {
                let addr: IpAddr = addr.parse().map_err(|_| bad())?;
                let prefix: u8 = prefix.parse().map_err(|_| bad())?;
                Self::new(addr, prefix).map_err(|e| format!("{s:?}: {e}"))
            }
        }
    }
}

impl serde::Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Cloud instance metadata services, which hand out the host's credentials to anyone who
/// asks from the host's network: the link-local range (AWS, GCP, Azure, Oracle, OpenStack at
/// 169.254.169.254), Alibaba's 100.100.100.200, Oracle's legacy 192.0.0.192 and AWS's IPv6
/// fd00:ec2::254.
pub fn metadata_networks() -> Vec<IpNet> {
    vec![
        IpNet {
            addr: IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)),
            prefix: 16,
        },
        IpNet::host(IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200))),
        IpNet::host(IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192))),
        IpNet::host(IpAddr::V6(Ipv6Addr::new(
            0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254,
        ))),
    ]
}

/// Where a box with a network may send traffic. Checked in this order for each packet:
/// the box's DNS server is always reachable; `deny_net` is never reachable; the host itself
/// (its loopback through the gateway address, and its own addresses) only with `allow_host`;
/// anything else when `allow_net` is empty or holds it.
///
/// The default lets a box reach the internet but not the host's services nor cloud metadata:
/// code in a box is untrusted, and a developer's machine listens on loopback for things
/// (databases, dev servers, agents) that assume only its own user can reach them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct NetworkPolicy {
    /// Let the box reach services on the host: its loopback through the gateway address
    /// (10.0.2.2) and the host's own addresses. Default `false`.
    pub allow_host: bool,
    /// When not empty, the only networks the box may reach (besides its DNS server and, with
    /// `allow_host`, the host). Default empty: anywhere not denied.
    pub allow_net: Vec<IpNet>,
    /// Networks the box may never reach. Default: [`metadata_networks`].
    pub deny_net: Vec<IpNet>,
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        Self {
            allow_host: false,
            allow_net: Vec::new(),
            deny_net: metadata_networks(),
        }
    }
}

impl NetworkPolicy {
    /// Everything reachable: the host and metadata included. For trusted code only.
    pub fn unrestricted() -> Self {
        Self {
            allow_host: true,
            allow_net: Vec::new(),
            deny_net: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_print_and_contain() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert_eq!(net.to_string(), "10.1.0.0/16");
        assert!(net.contains("10.1.255.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let one: IpNet = "192.0.2.7".parse().unwrap();
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.9".parse().unwrap()));
        let v6: IpNet = "fd00:ec2::254".parse().unwrap();
        assert!(v6.contains("fd00:ec2::254".parse().unwrap()));
        assert!(!v6.contains("fd00:ec2::255".parse().unwrap()));
        let any6: IpNet = "::/0".parse().unwrap();
        assert!(any6.contains("2001:db8::1".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/",
            "1.2.3.4/-1",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&net).unwrap();
        assert_eq!(json, "\"10.1.0.0/16\"");
        assert_eq!(serde_json::from_str::<IpNet>(&json).unwrap(), net);
        assert!(serde_json::from_str::<IpNet>("\"10.0.0.0/40\"").is_err());
    }

    #[test]
    fn the_default_policy_denies_the_host_and_metadata() {
        let policy = NetworkPolicy::default();
        assert!(!policy.allow_host);
        assert!(policy
            .deny_net
            .iter()
            .any(|n| n.contains("169.254.169.254".parse().unwrap())));
        // Rows written before the policy existed read as the default.
        let old: NetworkPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(old, policy);
    }
}
