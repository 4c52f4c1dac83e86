//! What the host tells the guest agent on the kernel command line: one typed struct, written
//! by the shim (`BootParams::to_cmdline_words`) and read by the agent (`BootParams::parse`),
//! so that both sides agree by construction. Words are `boxlite.KEY=VALUE`; other words
//! (the kernel's own) are ignored by `parse`.

/// `boxlite.template=1`: the agent mounts and configures nothing and waits for `Setup` with
/// the settings of the box that continues from it.
pub const TEMPLATE_PARAM: &str = "boxlite.template";

/// The agent's settings for one boot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootParams {
    /// `boxlite.root`: the block device holding the box's root filesystem.
    pub root_device: Option<String>,
    /// `boxlite.rootfstype`: its filesystem (ext4 when absent).
    pub root_fstype: Option<String>,
    /// `boxlite.port`: the agent's vsock port.
    pub vsock_port: Option<u32>,
    /// `boxlite.net`: the box's address/prefix, gateway and DNS server, comma-separated.
    pub net: Option<String>,
    /// `boxlite.hostname`: the box's name (or short id).
    pub hostname: Option<String>,
    /// `boxlite.vol`, one per volume.
    pub volumes: Vec<VolumeMount>,
}

/// A virtio-fs share to mount in the box: `boxlite.vol=TAG,ro|rw,HEX(GUEST_PATH)` (hex, so
/// that any path survives the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    pub tag: String,
    pub read_only: bool,
    /// Absolute.
    pub guest_path: String,
}

impl VolumeMount {
    /// The value of its `boxlite.vol` word.
    pub fn to_value(&self) -> String {
        let hex: String = self
            .guest_path
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mode = if self.read_only { "ro" } else { "rw" };
        format!("{},{mode},{hex}", self.tag)
    }

    /// A `boxlite.vol` value; `None` when malformed or not an absolute path.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(',');
        let (tag, mode, hex) = (parts.next()?, parts.next()?, parts.next()?);
        if tag.is_empty() || hex.len() % 2 != 0 || parts.next().is_some() {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect();
        let guest_path = String::from_utf8(bytes?).ok()?;
        let read_only = match mode {
            "ro" => true,
            "rw" => false,
            _ => return None,
        };
        guest_path.starts_with('/').then(|| Self {
            tag: tag.to_string(),
            read_only,
            guest_path,
        })
    }
}

impl BootParams {
    /// The command line words that carry these settings. Values must not contain spaces:
    /// the ones here never do (devices, numbers, addresses, names, hex).
    pub fn to_cmdline_words(&self) -> Vec<String> {
        let mut words = Vec::new();
        let mut push = |key: &str, value: &Option<String>| {
            if let Some(value) = value {
                words.push(format!("boxlite.{key}={value}"));
            }
        };
        push("root", &self.root_device);
        push("rootfstype", &self.root_fstype);
        push("port", &self.vsock_port.map(|p| p.to_string()));
        push("net", &self.net);
        push("hostname", &self.hostname);
        words.extend(
            self.volumes
                .iter()
                .map(|v| format!("boxlite.vol={}", v.to_value())),
        );
        words
    }

    /// The settings in a kernel command line. Malformed volume words are skipped (and
    /// returned, for the agent to report).
    pub fn parse(cmdline: &str) -> (Self, Vec<String>) {
        let mut params = Self::default();
        let mut malformed = Vec::new();
        for word in cmdline.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "boxlite.root" => params.root_device = Some(value.to_string()),
                "boxlite.rootfstype" => params.root_fstype = Some(value.to_string()),
                "boxlite.port" => params.vsock_port = value.parse().ok(),
                "boxlite.net" => params.net = Some(value.to_string()),
                "boxlite.hostname" => params.hostname = Some(value.to_string()),
                "boxlite.vol" => match VolumeMount::parse(value) {
                    Some(volume) => params.volumes.push(volume),
                    None => malformed.push(word.to_string()),
                },
                _ => {}
            }
        }
        (params, malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_survives_the_round_trip() {
        let params = BootParams {
            root_device: Some("/dev/vda".into()),
            root_fstype: Some("ext4".into()),
            vsock_port: Some(1024),
            net: Some("10.0.2.15/24,10.0.2.2,10.0.2.3".into()),
            hostname: Some("web-1".into()),
            volumes: vec![
                VolumeMount {
                    tag: "vol0".into(),
                    read_only: true,
                    guest_path: "/data with spaces/ünï".into(),
                },
                VolumeMount {
                    tag: "vol1".into(),
                    read_only: false,
                    guest_path: "/w".into(),
                },
            ],
        };
        let cmdline = format!(
            "console=ttyS0 quiet {} x=y",
            params.to_cmdline_words().join(" ")
        );
        assert_eq!(BootParams::parse(&cmdline), (params, vec![]));
        assert_eq!(
            BootParams::parse("").0,
            BootParams::default(),
            "nothing asked, nothing set"
        );
    }

    #[test]
    fn malformed_words_are_skipped_and_named() {
        let (params, malformed) = BootParams::parse(
            "boxlite.port=notanumber boxlite.vol=bad boxlite.vol=v,rw,7 boxlite.vol=v,xx,2f \
             boxlite.vol=v,ro,61 boxlite.vol=v,ro,2f",
        );
        assert_eq!(params.vsock_port, None);
        assert_eq!(params.volumes.len(), 1);
        assert_eq!(malformed.len(), 4, "{malformed:?}");
    }
}
