//! The JSON of the C API: box options in (the reference's schema, every field optional), box
//! info, metrics and snapshots out.

use std::collections::BTreeMap;
use std::time::Duration;

use boxlite_core::{
    BoxInfo, BoxMetrics, BoxOptions, NetworkSpec, PortSpec, Protocol, RootfsSpec, RuntimeMetrics,
    SnapshotInfo, VolumeSpec,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::Failure;

/// `boxlite_create_box`'s options. The reference's fields, each with a default when left
/// out: `rootfs` (`{"Image": REF}` — also `oci:PATH:TAG` — or `{"RootfsPath": DIR}`; default
/// the runtime's default image), `cpus`, `memory_mib`, `disk_size_gb`, `working_dir`, `env`
/// (`[[K, V], ...]`), `volumes` (`[{"host_path", "guest_path", "readonly"}]`), `network`
/// (`"Isolated"`: the box's own user-mode network; `"None"`: loopback only), `ports`
/// (`[{"host_port", "guest_port", "protocol": "Tcp"|"Udp"}]`), `auto_remove` (true). Beyond it:
/// `detach` (false), `ready_timeout_secs`, `labels`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CBoxOptions {
    rootfs: Option<CRootfs>,
    cpus: Option<u8>,
    memory_mib: Option<u32>,
    disk_size_gb: Option<u64>,
    working_dir: Option<String>,
    env: Vec<(String, String)>,
    volumes: Vec<CVolume>,
    network: Option<String>,
    ports: Vec<CPort>,
    auto_remove: Option<bool>,
    detach: Option<bool>,
    ready_timeout_secs: Option<f64>,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
enum CRootfs {
    Image(String),
    RootfsPath(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CVolume {
    host_path: String,
    guest_path: String,
    #[serde(default, alias = "read_only")]
    readonly: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CPort {
    host_port: Option<u16>,
    guest_port: u16,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    host_ip: Option<String>,
}

/// Box options from the caller's JSON, with what it names checked.
pub fn box_options(text: &str) -> Result<BoxOptions, Failure> {
    let given: CBoxOptions =
        serde_json::from_str(text).map_err(|e| Failure::invalid(format!("options_json: {e}")))?;
    let mut options = BoxOptions::default();
    match given.rootfs {
        Some(CRootfs::Image(image)) => options.rootfs = RootfsSpec::from_reference(&image),
        Some(CRootfs::RootfsPath(path)) => options.rootfs = RootfsSpec::RootfsPath(path),
        None => {}
    }
    options.cpus = given.cpus;
    options.memory_mib = given.memory_mib;
    options.disk_size_gb = given.disk_size_gb;
    options.working_dir = given.working_dir;
    options.env = given.env;
    options.volumes = given
        .volumes
        .into_iter()
        .map(|v| VolumeSpec {
            host_path: v.host_path,
            guest_path: v.guest_path,
            read_only: v.readonly,
        })
        .collect();
    if let Some(network) = given.network {
        options.network = match network.to_ascii_lowercase().as_str() {
            "isolated" | "user" | "enabled" => NetworkSpec::User,
            "none" | "disabled" => NetworkSpec::None,
            other => {
                return Err(Failure::invalid(format!(
                    "options_json: network {other:?}: expected \"Isolated\" or \"None\""
                )))
            }
        };
    }
    for port in given.ports {
        let protocol = match port
            .protocol
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some(other) => {
                return Err(Failure::invalid(format!(
                    "options_json: port protocol {other:?}: expected \"Tcp\" or \"Udp\""
                )))
            }
        };
        let host_ip = match port.host_ip {
            None => std::net::Ipv4Addr::LOCALHOST,
            Some(ip) => ip
                .parse()
                .map_err(|_| Failure::invalid(format!("options_json: host_ip {ip:?}")))?,
        };
        options.ports.push(PortSpec {
            host_port: port.host_port,
            guest_port: port.guest_port,
            protocol,
            host_ip,
        });
    }
    if let Some(auto_remove) = given.auto_remove {
        options.auto_remove = auto_remove;
    }
    if let Some(detach) = given.detach {
        options.detach = detach;
    }
    if let Some(seconds) = given.ready_timeout_secs {
        options.ready_timeout = Duration::try_from_secs_f64(seconds)
            .map_err(|e| Failure::invalid(format!("options_json: ready_timeout_secs: {e}")))?;
    }
    options.labels = given.labels;
    Ok(options)
}

/// A box's info as the reference's C SDK shows it (plus the engine and the last change).
pub fn box_info(info: &BoxInfo) -> Value {
    json!({
        "id": info.id,
        "name": info.name,
        "state": {
            "status": info.status.as_str(),
            "running": info.status.is_running(),
            "pid": info.pid,
        },
        "created_at": info.created_at.to_rfc3339(),
        "last_updated": info.last_updated.to_rfc3339(),
        "image": info.image,
        "cpus": info.cpus,
        "memory_mib": info.memory_mib,
        "engine": info.engine,
    })
}

/// A snapshot, with the reference's keys (`box_id`, `created_at` in Unix seconds,
/// `container_disk_bytes`) and boxlite's own.
pub fn snapshot_info(info: &SnapshotInfo) -> Value {
    json!({
        "id": info.id,
        "box_id": info.source_id,
        "box_name": info.source_name,
        "name": info.name,
        "created_at": info.created_at.timestamp(),
        "container_disk_bytes": info.disk_bytes,
        "size_bytes": info.size_bytes,
        "image": info.image,
        "cpus": info.cpus,
        "memory_mib": info.memory_mib,
    })
}

pub fn snapshot_list(list: &[SnapshotInfo]) -> Value {
    Value::Array(list.iter().map(snapshot_info).collect())
}

pub fn box_metrics(m: &BoxMetrics) -> Value {
    json!({
        "cpu_percent": m.cpu_percent(),
        "memory_bytes": m.memory_bytes(),
        "commands_executed_total": m.commands_executed_total(),
        "bytes_sent_total": m.bytes_sent_total(),
        "bytes_received_total": m.bytes_received_total(),
        "guest_boot_duration_ms": m.guest_boot_duration_ms().map(|v| v as u64),
        "spawn_to_ready_ms": m.spawn_to_ready_ms().map(|v| v as u64),
        "start_mode": m.start_mode(),
        "template_miss": m.template_miss(),
    })
}

pub fn runtime_metrics(m: &RuntimeMetrics) -> Value {
    json!({
        "boxes_created_total": m.boxes_created_total(),
        "boxes_failed_total": m.boxes_failed_total(),
        "num_running_boxes": m.num_running_boxes(),
        "total_commands_executed": m.total_commands_executed(),
        "total_exec_errors": m.total_exec_errors(),
    })
}
