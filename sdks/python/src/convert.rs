//! Between Python values and the core's types. The Python layer (`boxlite/options.py`) turns
//! the reference's option classes into a plain dict of the keys read here; what comes back is
//! plain dicts and tuples, which the Python layer turns into its result classes.

use std::collections::BTreeMap;
use std::time::Duration;

use boxlite::{
    BoxInfo, BoxMetrics, BoxOptions, BoxliteOptions, CopyOptions, ExecResult, IpNet, NetworkSpec,
    PortSpec, RootfsSpec, RuntimeMetrics, SecurityOptions, SnapshotInfo, VolumeSpec,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::invalid;

/// `dict[key]` converted, `None` when absent or None.
fn get<'py, T: FromPyObjectOwned<'py>>(
    dict: &Bound<'py, PyDict>,
    key: &str,
) -> PyResult<Option<T>> {
    match dict.get_item(key)? {
        Some(value) if !value.is_none() => value
            .extract::<T>()
            .map(Some)
            .map_err(|e| invalid(format!("{key}: {}", Into::<PyErr>::into(e)))),
        _ => Ok(None),
    }
}

pub fn runtime_options(home_dir: Option<String>, registries: Vec<String>) -> BoxliteOptions {
    let mut options = BoxliteOptions::default();
    if let Some(home) = home_dir {
        options.home_dir = home.into();
    }
    if !registries.is_empty() {
        options.image_registries = registries;
    }
    options
}

/// The options dict of `boxlite.options.BoxOptions._to_native`.
pub fn box_options(dict: &Bound<'_, PyDict>) -> PyResult<BoxOptions> {
    box_options_over(BoxOptions::default(), dict)
}

/// `dict` over `base` (a box type's defaults): what the dict leaves out stays as in `base`.
pub fn box_options_over(mut options: BoxOptions, dict: &Bound<'_, PyDict>) -> PyResult<BoxOptions> {
    match (
        get::<String>(dict, "image")?,
        get::<String>(dict, "rootfs_path")?,
    ) {
        (Some(_), Some(_)) => return Err(invalid("give image or rootfs_path, not both")),
        (Some(image), None) => options.rootfs = RootfsSpec::from_reference(&image),
        (None, Some(path)) => options.rootfs = RootfsSpec::RootfsPath(path),
        (None, None) => {}
    }
    options.cpus = get(dict, "cpus")?.or(options.cpus);
    options.memory_mib = get(dict, "memory_mib")?.or(options.memory_mib);
    options.disk_size_gb = get(dict, "disk_size_gb")?.or(options.disk_size_gb);
    options.working_dir = get(dict, "working_dir")?.or(options.working_dir);
    options
        .env
        .extend(get::<Vec<(String, String)>>(dict, "env")?.unwrap_or_default());
    options.volumes.extend(
        get::<Vec<(String, String, bool)>>(dict, "volumes")?
            .unwrap_or_default()
            .into_iter()
            .map(|(host_path, guest_path, read_only)| VolumeSpec {
                host_path,
                guest_path,
                read_only,
            }),
    );
    if let Some(network) = get::<String>(dict, "network")? {
        options.network = network
            .parse::<NetworkSpec>()
            .map_err(|e| invalid(format!("network: {e}")))?;
    }
    for port in get::<Vec<String>>(dict, "ports")?.unwrap_or_default() {
        options.ports.push(
            port.parse::<PortSpec>()
                .map_err(|e| invalid(format!("ports: {e}")))?,
        );
    }
    if let Some(auto_remove) = get(dict, "auto_remove")? {
        options.auto_remove = auto_remove;
    }
    if let Some(detach) = get(dict, "detach")? {
        options.detach = detach;
    }
    if let Some(security) = dict.get_item("security")? {
        if !security.is_none() {
            options.security = security_options(security.cast::<PyDict>()?)?;
        }
    }
    if let Some(allow_host) = get(dict, "allow_host")? {
        options.network_policy.allow_host = allow_host;
    }
    let nets = |key: &str| -> PyResult<Option<Vec<IpNet>>> {
        get::<Vec<String>>(dict, key)?
            .map(|list| {
                list.iter()
                    .map(|n| {
                        n.parse::<IpNet>()
                            .map_err(|e| invalid(format!("{key}: {e}")))
                    })
                    .collect()
            })
            .transpose()
    };
    if let Some(allow) = nets("allow_net")? {
        options.network_policy.allow_net = allow;
    }
    if let Some(deny) = nets("deny_net")? {
        options.network_policy.deny_net = deny;
    }
    if let Some(seconds) = get::<f64>(dict, "ready_timeout")? {
        options.ready_timeout = Duration::try_from_secs_f64(seconds)
            .map_err(|e| invalid(format!("ready_timeout: {e}")))?;
    }
    if let Some(engine) = get::<String>(dict, "engine")? {
        options.engine = Some(
            engine
                .parse()
                .map_err(|e: String| invalid(format!("engine: {e}")))?,
        );
    }
    options
        .labels
        .extend(get::<BTreeMap<String, String>>(dict, "labels")?.unwrap_or_default());
    Ok(options)
}

fn security_options(dict: &Bound<'_, PyDict>) -> PyResult<SecurityOptions> {
    let mut security = SecurityOptions::standard();
    let flag = |key: &str, into: &mut bool| -> PyResult<()> {
        if let Some(value) = get(dict, key)? {
            *into = value;
        }
        Ok(())
    };
    flag("jailer_enabled", &mut security.jailer_enabled)?;
    flag("seccomp_enabled", &mut security.seccomp_enabled)?;
    flag("network_enabled", &mut security.network_enabled)?;
    flag("close_fds", &mut security.close_fds)?;
    flag("sanitize_env", &mut security.sanitize_env)?;
    let limits = &mut security.resource_limits;
    limits.max_open_files = get(dict, "max_open_files")?;
    limits.max_file_size = get(dict, "max_file_size")?;
    limits.max_processes = get(dict, "max_processes")?;
    limits.max_memory = get(dict, "max_memory")?;
    limits.max_cpu_time = get(dict, "max_cpu_time")?;
    Ok(security)
}

pub fn copy_options(dict: Option<&Bound<'_, PyDict>>) -> PyResult<CopyOptions> {
    let mut options = CopyOptions::default();
    if let Some(dict) = dict {
        for (key, into) in [
            ("recursive", &mut options.recursive),
            ("overwrite", &mut options.overwrite),
            ("follow_symlinks", &mut options.follow_symlinks),
            ("include_parent", &mut options.include_parent),
        ] {
            if let Some(value) = get(dict, key)? {
                *into = value;
            }
        }
    }
    Ok(options)
}

/// Plain values of a box's info, for `boxlite.BoxInfo`.
pub fn box_info<'py>(py: Python<'py>, info: &BoxInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("id", &info.id)?;
    dict.set_item("name", &info.name)?;
    dict.set_item("status", info.status.as_str())?;
    dict.set_item("created_at", info.created_at.to_rfc3339())?;
    dict.set_item("last_updated", info.last_updated.to_rfc3339())?;
    dict.set_item("pid", info.pid)?;
    dict.set_item("image", &info.image)?;
    dict.set_item("cpus", info.cpus)?;
    dict.set_item("memory_mib", info.memory_mib)?;
    dict.set_item("engine", &info.engine)?;
    dict.set_item("labels", info.labels.clone())?;
    Ok(dict)
}

/// A snapshot, with the reference's keys (`box_id`, `created_at` in Unix seconds,
/// `container_disk_bytes`) and boxlite's own.
pub fn snapshot_info<'py>(py: Python<'py>, info: &SnapshotInfo) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("id", &info.id)?;
    dict.set_item("box_id", &info.source_id)?;
    dict.set_item("box_name", &info.source_name)?;
    dict.set_item("name", &info.name)?;
    dict.set_item("created_at", info.created_at.timestamp())?;
    dict.set_item("container_disk_bytes", info.disk_bytes)?;
    dict.set_item("size_bytes", info.size_bytes)?;
    dict.set_item("image", &info.image)?;
    dict.set_item("cpus", info.cpus)?;
    dict.set_item("memory_mib", info.memory_mib)?;
    Ok(dict)
}

pub fn snapshot_list(py: Python<'_>, list: &[SnapshotInfo]) -> PyResult<Py<PyAny>> {
    let items = list
        .iter()
        .map(|info| snapshot_info(py, info))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(pyo3::types::PyList::new(py, items)?.into_any().unbind())
}

pub fn box_metrics<'py>(py: Python<'py>, m: &BoxMetrics) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("cpu_percent", m.cpu_percent())?;
    dict.set_item("memory_bytes", m.memory_bytes())?;
    dict.set_item(
        "guest_boot_duration_ms",
        m.guest_boot_duration_ms().map(|v| v as u64),
    )?;
    dict.set_item("spawn_to_ready_ms", m.spawn_to_ready_ms().map(|v| v as u64))?;
    dict.set_item("shim_pid", m.shim_pid())?;
    dict.set_item("engine", m.engine())?;
    dict.set_item("start_mode", m.start_mode())?;
    dict.set_item("template_miss", m.template_miss())?;
    dict.set_item("commands_executed_total", m.commands_executed_total())?;
    dict.set_item("bytes_sent_total", m.bytes_sent_total())?;
    dict.set_item("bytes_received_total", m.bytes_received_total())?;
    Ok(dict)
}

pub fn runtime_metrics<'py>(py: Python<'py>, m: &RuntimeMetrics) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("boxes_created_total", m.boxes_created_total())?;
    dict.set_item("boxes_failed_total", m.boxes_failed_total())?;
    dict.set_item("boxes_stopped_total", m.boxes_stopped_total())?;
    dict.set_item("num_running_boxes", m.num_running_boxes())?;
    dict.set_item("total_commands_executed", m.total_commands_executed())?;
    dict.set_item("total_exec_errors", m.total_exec_errors())?;
    dict.set_item("boxes_total", m.boxes_total())?;
    Ok(dict)
}

/// `(exit_code, error_message, signal, timed_out)` of a finished command.
pub type ExecEnd = (i32, Option<String>, i32, bool);

pub fn exec_end(result: ExecResult) -> ExecEnd {
    (
        result.exit_code,
        result.error_message,
        result.signal,
        result.timed_out,
    )
}
