//! The JSON between the addon and `index.js`: box options in (the reference's `JsBoxOptions`
//! fields, normalised by `index.js`), box info and metrics out, in the reference's camelCase.

use std::collections::BTreeMap;
use std::time::Duration;

use boxlite::{
    BoxInfo, BoxMetrics, BoxOptions, IpNet, NetworkSpec, PortSpec, Protocol, RootfsSpec,
    RuntimeMetrics, SecurityOptions, SnapshotInfo, VolumeSpec,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::invalid;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct JsBoxOptions {
    image: Option<String>,
    rootfs_path: Option<String>,
    cpus: Option<u8>,
    memory_mib: Option<u32>,
    disk_size_gb: Option<u64>,
    working_dir: Option<String>,
    env: Vec<(String, String)>,
    volumes: Vec<JsVolume>,
    network: Option<String>,
    allow_net: Option<Vec<String>>,
    deny_net: Option<Vec<String>>,
    allow_host: Option<bool>,
    ports: Vec<JsPort>,
    auto_remove: Option<bool>,
    detach: Option<bool>,
    security: Option<JsSecurity>,
    ready_timeout_secs: Option<f64>,
    engine: Option<String>,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsVolume {
    host_path: String,
    guest_path: String,
    #[serde(default)]
    read_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JsPort {
    host_port: Option<u16>,
    guest_port: u16,
    protocol: Option<String>,
    host_ip: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct JsSecurity {
    jailer_enabled: Option<bool>,
    seccomp_enabled: Option<bool>,
    max_open_files: Option<u64>,
    max_file_size: Option<u64>,
    max_processes: Option<u64>,
    max_memory: Option<u64>,
    max_cpu_time: Option<u64>,
    network_enabled: Option<bool>,
    close_fds: Option<bool>,
}

/// `json` over `base` (a box type's defaults): what it leaves out stays as in `base`.
pub fn box_options(base: BoxOptions, json: &str) -> napi::Result<BoxOptions> {
    let given: JsBoxOptions =
        serde_json::from_str(json).map_err(|e| invalid(format!("box options: {e}")))?;
    let mut options = base;
    match (given.image, given.rootfs_path) {
        (Some(_), Some(_)) => return Err(invalid("give image or rootfsPath, not both")),
        (Some(image), None) => options.rootfs = RootfsSpec::from_reference(&image),
        (None, Some(path)) => options.rootfs = RootfsSpec::RootfsPath(path),
        (None, None) => {}
    }
    options.cpus = given.cpus.or(options.cpus);
    options.memory_mib = given.memory_mib.or(options.memory_mib);
    options.disk_size_gb = given.disk_size_gb.or(options.disk_size_gb);
    options.working_dir = given.working_dir.or(options.working_dir);
    options.env.extend(given.env);
    options
        .volumes
        .extend(given.volumes.into_iter().map(|v| VolumeSpec {
            host_path: v.host_path,
            guest_path: v.guest_path,
            read_only: v.read_only,
        }));
    if let Some(network) = given.network {
        options.network = match network.as_str() {
            "enabled" | "user" => NetworkSpec::User,
            "disabled" | "none" => NetworkSpec::None,
            other => {
                return Err(invalid(format!(
                    "network mode {other:?}: enabled or disabled"
                )))
            }
        };
    }
    let nets = |list: Option<Vec<String>>, what: &str| -> napi::Result<Option<Vec<IpNet>>> {
        list.map(|l| {
            l.iter()
                .map(|n| {
                    n.parse::<IpNet>()
                        .map_err(|e| invalid(format!("{what}: {e}")))
                })
                .collect()
        })
        .transpose()
    };
    if let Some(allow) = nets(given.allow_net, "allowNet")? {
        options.network_policy.allow_net = allow;
    }
    if let Some(deny) = nets(given.deny_net, "denyNet")? {
        options.network_policy.deny_net = deny;
    }
    if let Some(allow_host) = given.allow_host {
        options.network_policy.allow_host = allow_host;
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
            Some(other) => return Err(invalid(format!("port protocol {other:?}: tcp or udp"))),
        };
        let host_ip = match port.host_ip {
            None => std::net::Ipv4Addr::LOCALHOST,
            Some(ip) => ip.parse().map_err(|_| invalid(format!("hostIp {ip:?}")))?,
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
    if let Some(security) = given.security {
        options.security = security_options(security);
    }
    if let Some(seconds) = given.ready_timeout_secs {
        options.ready_timeout = Duration::try_from_secs_f64(seconds)
            .map_err(|e| invalid(format!("readyTimeoutSecs: {e}")))?;
    }
    if let Some(engine) = given.engine {
        options.engine = Some(
            engine
                .parse()
                .map_err(|e: String| invalid(format!("engine: {e}")))?,
        );
    }
    options.labels.extend(given.labels);
    Ok(options)
}

fn security_options(given: JsSecurity) -> SecurityOptions {
    let mut security = SecurityOptions::standard();
    let flags = [
        (given.jailer_enabled, &mut security.jailer_enabled),
        (given.seccomp_enabled, &mut security.seccomp_enabled),
        (given.network_enabled, &mut security.network_enabled),
        (given.close_fds, &mut security.close_fds),
    ];
    for (value, into) in flags {
        if let Some(value) = value {
            *into = value;
        }
    }
    let limits = &mut security.resource_limits;
    limits.max_open_files = given.max_open_files;
    limits.max_file_size = given.max_file_size;
    limits.max_processes = given.max_processes;
    limits.max_memory = given.max_memory;
    limits.max_cpu_time = given.max_cpu_time;
    security
}

/// The reference's `JsBoxInfo` shape (and the engine).
pub fn box_info(info: &BoxInfo) -> Value {
    json!({
        "id": info.id,
        "name": info.name,
        "state": {
            "status": info.status.as_str(),
            "running": info.status.is_running(),
            "pid": info.pid,
        },
        "createdAt": info.created_at.to_rfc3339(),
        "lastUpdated": info.last_updated.to_rfc3339(),
        "image": info.image,
        "cpus": info.cpus,
        "memoryMib": info.memory_mib,
        "engine": info.engine,
        "network": null,
    })
}

/// The reference's `JsSnapshotInfo` shape (`createdAt` in Unix seconds), and boxlite's own
/// fields.
pub fn snapshot_info(info: &SnapshotInfo) -> Value {
    json!({
        "id": info.id,
        "boxId": info.source_id,
        "boxName": info.source_name,
        "name": info.name,
        "createdAt": info.created_at.timestamp(),
        "containerDiskBytes": info.disk_bytes,
        "sizeBytes": info.size_bytes,
        "image": info.image,
        "cpus": info.cpus,
        "memoryMib": info.memory_mib,
    })
}

pub fn snapshot_list(list: &[SnapshotInfo]) -> String {
    Value::Array(list.iter().map(snapshot_info).collect()).to_string()
}

pub fn box_metrics(m: &BoxMetrics) -> Value {
    json!({
        "commandsExecutedTotal": m.commands_executed_total(),
        "bytesSentTotal": m.bytes_sent_total(),
        "bytesReceivedTotal": m.bytes_received_total(),
        "guestBootDurationMs": m.guest_boot_duration_ms().map(|v| v as u64),
        "cpuPercent": m.cpu_percent(),
        "memoryBytes": m.memory_bytes(),
        "startMode": m.start_mode(),
        "templateMiss": m.template_miss(),
    })
}

pub fn runtime_metrics(m: &RuntimeMetrics) -> Value {
    json!({
        "boxesCreatedTotal": m.boxes_created_total(),
        "boxesFailedTotal": m.boxes_failed_total(),
        "numRunningBoxes": m.num_running_boxes(),
        "totalCommandsExecuted": m.total_commands_executed(),
        "totalExecErrors": m.total_exec_errors(),
    })
}

/// `{exitCode, errorMessage, signal, timedOut}` of a finished command.
pub fn exec_end(result: &boxlite::ExecResult) -> Value {
    json!({
        "exitCode": result.exit_code,
        "errorMessage": result.error_message,
        "signal": result.signal,
        "timedOut": result.timed_out,
    })
}
