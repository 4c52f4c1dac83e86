//! A container as this shim runs it: a box (one VM) whose root is the rootfs containerd's
//! snapshotter prepared, shared into the VM over virtio-fs; or, for a CRI pod's sandbox
//! container, nothing at all (it only holds the pod's network namespace, which this shim
//! process itself has joined).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use boxlite::{BoxOptions, BoxliteRuntime, LiteBox, RootfsSpec};
use containerd_shim::api::CreateTaskRequest;

use crate::error::ShimError;
use crate::process::{Process, Stdio};
use crate::spec::Spec;

/// Labels on every box this shim makes, so an operator can tell them apart in `boxlite ls`.
pub const NAMESPACE_LABEL: &str = "io.containerd.namespace";
pub const CONTAINER_LABEL: &str = "io.containerd.container";

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    /// The VM; `None` for a pod sandbox.
    pub vm: Option<LiteBox>,
    /// Where containerd's rootfs mounts were mounted (unmounted at delete).
    rootfs_mount: Option<PathBuf>,
    pub init: Arc<Process>,
    pub execs: Mutex<HashMap<String, Arc<Process>>>,
    /// The pid containerd records for every process: the VMM's host process (a pod
    /// sandbox: this shim, which holds the pod's namespaces).
    pub pid: u32,
    pub paused: std::sync::atomic::AtomicBool,
}

/// The box's name in the home: one per containerd namespace and container id. Both may hold
/// dots, so the namespace's length leads: `6.k8s.io.ID` is never also another pair's name.
pub fn box_name(namespace: &str, id: &str) -> String {
    let name = format!("{}.{namespace}.{id}", namespace.len());
    if boxlite::options::validate_name(&name).is_ok() {
        return name;
    }
    use sha2::Digest;
    format!("ctr-{}", hex::encode(sha2::Sha256::digest(name.as_bytes())))
}

impl Container {
    pub async fn create(
        runtime: &BoxliteRuntime,
        namespace: &str,
        req: &CreateTaskRequest,
    ) -> Result<Self, ShimError> {
        if !req.checkpoint.is_empty() || !req.parent_checkpoint.is_empty() {
            return Err(ShimError::Unimplemented(
                "creating a task from a checkpoint: boxlite's snapshots are not containerd checkpoints".into(),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let spec = Spec::load(&bundle)?;
        let process = spec.process.clone().unwrap_or_default();
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let init = Process::new("", stdio, process);
        if spec.is_pod_sandbox() {
            return Ok(Self {
                id: req.id.clone(),
                bundle,
                vm: None,
                rootfs_mount: None,
                init,
                execs: Mutex::default(),
                pid: std::process::id(),
                paused: Default::default(),
            });
        }
        let rootfs = bundle.join("rootfs");
        let rootfs_mount = mount_rootfs(req, &rootfs)?;
        let created = create_box(runtime, namespace, &req.id, &spec, &rootfs).await;
        let vm = match created {
            Ok(vm) => vm,
            Err(err) => {
                if let Some(target) = &rootfs_mount {
                    unmount(target);
                }
                return Err(err);
            }
        };
        let pid = vm.info().pid.unwrap_or_default();
        Ok(Self {
            id: req.id.clone(),
            bundle,
            vm: Some(vm),
            rootfs_mount,
            init,
            execs: Mutex::default(),
            pid,
            paused: Default::default(),
        })
    }

    pub fn process(&self, exec_id: &str) -> Result<Arc<Process>, ShimError> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        self.execs
            .lock()
            .expect("poisoned")
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ShimError::NoProcess {
                id: self.id.clone(),
                exec_id: exec_id.to_string(),
            })
    }

    /// Stops and removes the box, then unmounts the rootfs: nothing of the container is left.
    pub async fn destroy(&self, runtime: &BoxliteRuntime) -> Result<(), ShimError> {
        if let Some(vm) = &self.vm {
            match runtime.remove(vm.id(), true).await {
                Ok(()) | Err(boxlite::BoxliteError::NotFound(_)) => {}
                Err(err) => return Err(err.into()),
            }
        }
        if let Some(target) = &self.rootfs_mount {
            unmount(target);
        }
        Ok(())
    }
}

async fn create_box(
    runtime: &BoxliteRuntime,
    namespace: &str,
    id: &str,
    spec: &Spec,
    rootfs: &Path,
) -> Result<LiteBox, ShimError> {
    let name = box_name(namespace, id);
    // A box of this name is a leftover of a shim that was killed before containerd deleted
    // its task: containerd's ids are unique, so it is nobody's any more.
    if runtime.exists(&name).await? {
        log::warn!("removing the leftover box {name}");
        runtime.remove(&name, true).await?;
    }
    let options = BoxOptions {
        // Shared, not copied: the container's writes land in containerd's snapshot, and
        // nothing is copied at create.
        rootfs: RootfsSpec::SharedPath(rootfs.to_path_buf()),
        cpus: spec.cpus()?,
        memory_mib: spec.memory_mib()?,
        labels: [
            (NAMESPACE_LABEL.to_string(), namespace.to_string()),
            (CONTAINER_LABEL.to_string(), id.to_string()),
        ]
        .into(),
        // The VM powers off if this shim dies: a killed shim leaks no VM.
        detach: false,
        // Removed at the task's delete, not when it stops: containerd still asks for its
        // state and exit status in between.
        auto_remove: false,
        ..Default::default()
    };
    let vm = runtime.create(options, Some(name.clone())).await?;
    if let Err(err) = vm.start().await {
        let _ = runtime.remove(&name, true).await;
        return Err(err.into());
    }
    Ok(vm)
}

/// Mounts containerd's rootfs mounts (the snapshotter's overlay or bind mount) on `target`,
/// as runc's shim does; `None` when containerd mounted it already (no mounts given).
fn mount_rootfs(req: &CreateTaskRequest, target: &Path) -> Result<Option<PathBuf>, ShimError> {
    if req.rootfs.is_empty() {
        return Ok(None);
    }
    std::fs::create_dir_all(target).map_err(|source| ShimError::Io {
        what: format!("creating {}", target.display()),
        source,
    })?;
    for (done, mount) in req.rootfs.iter().enumerate() {
        let kind = (!mount.type_.is_empty()).then_some(mount.type_.as_str());
        let source = (!mount.source.is_empty()).then_some(mount.source.as_str());
        if let Err(err) = containerd_shim::mount::mount_rootfs(kind, source, &mount.options, target)
        {
            for _ in 0..done {
                unmount(target);
            }
            return Err(ShimError::Mount(format!(
                "{} {} on {}: {err}",
                mount.type_,
                mount.source,
                target.display()
            )));
        }
    }
    Ok(Some(target.to_path_buf()))
}

/// Detaches every mount on `target` (best effort: a busy mount goes when its last user does).
pub fn unmount(target: &Path) {
    while nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_names_are_valid_and_one_per_namespace_and_id() {
        assert_eq!(box_name("k8s.io", "abc"), "6.k8s.io.abc");
        assert_ne!(box_name("a", "b.c"), box_name("a.b", "c"));
        // Past what a box name holds (128): a digest of both, still unique and valid.
        let long = "x".repeat(120);
        let name = box_name("k8s.io", &long);
        assert!(boxlite::options::validate_name(&name).is_ok(), "{name}");
        assert_ne!(name, box_name("k8s.io", &"y".repeat(120)));
    }
}
