//! The guest's network, as the engine's kernel command line describes it: loopback always;
//! with `boxlite.net=ADDR/PREFIX,GATEWAY,DNS` the first other interface gets the address, a
//! default route through the gateway, and the box's /etc/resolv.conf names the DNS server.
//! Without it the box has loopback only.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("boxlite.net={0:?} is not ADDR/PREFIX,GATEWAY,DNS")]
    BadParam(String),
    #[error("no network interface besides lo appeared")]
    NoInterface,
    #[error("{what} on {interface}: {source}")]
    Ioctl {
        what: &'static str,
        interface: String,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Resolv {
        path: String,
        source: std::io::Error,
    },
}

/// `boxlite.net=10.0.2.15/24,10.0.2.2,10.0.2.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetParams {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub dns: Ipv4Addr,
}

impl NetParams {
    pub fn parse(value: &str) -> Result<Self, NetError> {
        let bad = || NetError::BadParam(value.to_string());
        let mut parts = value.split(',');
        let (cidr, gateway, dns) = (
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
            parts.next().ok_or_else(bad)?,
        );
        let (address, prefix) = cidr.split_once('/').ok_or_else(bad)?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 || parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            address: address.parse().map_err(|_| bad())?,
            prefix,
            gateway: gateway.parse().map_err(|_| bad())?,
            dns: dns.parse().map_err(|_| bad())?,
        })
    }

    fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0))
    }
}

/// An AF_INET datagram socket, the handle the interface ioctls need.
fn control_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2) has no memory arguments; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(interface: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(interface.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    req
}

fn sockaddr_in(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads it by family.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// One interface ioctl; `req` is read and written by the kernel.
fn ioctl(
    sock: &OwnedFd,
    request: libc::c_ulong,
    req: &mut libc::ifreq,
    what: &'static str,
    interface: &str,
) -> Result<(), NetError> {
    // SAFETY: `req` is a valid ifreq for the duration of the call, as these requests expect.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut libc::ifreq) } < 0 {
        return Err(NetError::Ioctl {
            what,
            interface: interface.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn bring_up(sock: &OwnedFd, interface: &str) -> Result<(), NetError> {
    let mut req = ifreq(interface);
    ioctl(
        sock,
        libc::SIOCGIFFLAGS,
        &mut req,
        "reading flags",
        interface,
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
    ioctl(sock, libc::SIOCSIFFLAGS, &mut req, "bringing up", interface)
}

/// The first interface other than lo, waiting briefly for its driver.
fn first_ethernet() -> Option<String> {
    for _ in 0..200 {
        if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lo")
                .collect();
            names.sort();
            if let Some(name) = names.into_iter().next() {
                return Some(name);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    None
}

/// Loopback up; then, with `params`, the box's interface, default route and DNS.
pub fn configure(params: Option<&NetParams>, rootfs: &Path) -> Result<(), NetError> {
    configure_interfaces(params)?;
    match params {
        Some(params) => write_resolv_conf(rootfs, params.dns),
        None => Ok(()),
    }
}

/// Loopback up; then, with `params`, the box's interface and default route: all of
/// [`configure`] but the box's resolv.conf, which needs the box disk.
pub fn configure_interfaces(params: Option<&NetParams>) -> Result<(), NetError> {
    let sock = control_socket().map_err(|source| NetError::Ioctl {
        what: "opening a control socket",
        interface: "lo".into(),
        source,
    })?;
    bring_up(&sock, "lo")?;
    let Some(params) = params else {
        return Ok(());
    };
    let interface = first_ethernet().ok_or(NetError::NoInterface)?;
    let mut req = ifreq(&interface);
    req.ifr_ifru.ifru_addr = sockaddr_in(params.address);
    ioctl(
        &sock,
        libc::SIOCSIFADDR,
        &mut req,
        "setting the address",
        &interface,
    )?;
    let mut req = ifreq(&interface);
    req.ifr_ifru.ifru_netmask = sockaddr_in(params.netmask());
    ioctl(
        &sock,
        libc::SIOCSIFNETMASK,
        &mut req,
        "setting the netmask",
        &interface,
    )?;
    bring_up(&sock, &interface)?;
    add_default_route(&sock, params.gateway, &interface)
}

fn add_default_route(sock: &OwnedFd, gateway: Ipv4Addr, interface: &str) -> Result<(), NetError> {
    let device = CString::new(interface).expect("interface names have no NUL");
    // SAFETY: rtentry is plain old data; all-zero is a valid value.
    let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
    route.rt_dst = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    route.rt_genmask = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    route.rt_gateway = sockaddr_in(gateway);
    route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    route.rt_dev = device.as_ptr() as *mut libc::c_char;
    // SAFETY: `route` and the device name it points to live across the call.
    if unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCADDRT as _,
            &mut route as *mut libc::rtentry,
        )
    } < 0
    {
        return Err(NetError::Ioctl {
            what: "adding the default route",
            interface: interface.to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// The box's /etc/resolv.conf, as a plain file (a symlink there would be followed outside the
/// box: the agent is not chrooted).
pub fn write_resolv_conf(rootfs: &Path, dns: Ipv4Addr) -> Result<(), NetError> {
    let etc = rootfs.join("etc");
    let path = etc.join("resolv.conf");
    let err = |source| NetError::Resolv {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&etc).map_err(err)?;
    if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
        std::fs::remove_file(&path).map_err(err)?;
    }
    std::fs::write(&path, format!("nameserver {dns}\n")).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_form_is_parsed_and_checked() {
        let params = NetParams::parse("10.0.2.15/24,10.0.2.2,10.0.2.3").unwrap();
        assert_eq!(params.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(params.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(params.gateway, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(params.dns, Ipv4Addr::new(10, 0, 2, 3));
        assert_eq!(
            NetParams::parse("1.2.3.4/0,1.1.1.1,8.8.8.8")
                .unwrap()
                .netmask(),
            Ipv4Addr::UNSPECIFIED
        );
        for bad in [
            "",
            "10.0.2.15,10.0.2.2,10.0.2.3",
            "10.0.2.15/33,a,b",
            "x/24,1.1.1.1,1.1.1.1",
        ] {
            assert!(NetParams::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolv_conf_replaces_a_symlink_instead_of_following_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        let outside = dir.path().join("outside");
        std::os::unix::fs::symlink(&outside, dir.path().join("etc/resolv.conf")).unwrap();
        write_resolv_conf(dir.path(), Ipv4Addr::new(10, 0, 2, 3)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/resolv.conf")).unwrap(),
            "nameserver 10.0.2.3\n"
        );
        assert!(!outside.exists());
    }
}
