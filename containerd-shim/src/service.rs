//! containerd's task API (`containerd.task.v2.Task`) served for one container: each
//! request maps onto the box's runtime calls; every change is published back as a task event
//! (CRI learns of exits from `/tasks/exit`, not from `Wait`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use boxlite::{BoxliteOptions, BoxliteRuntime};
use containerd_shim::api;
use containerd_shim::asynchronous::{spawn, ExitSignal, Shim};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskPaused, TaskResumed,
    TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::topics;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{
    Config, Context, DeleteResponse, Flags, StartOpts, Task, TtrpcContext, TtrpcResult,
};
use tokio::sync::{Mutex, OnceCell};

use crate::container::{box_name, Container};
use crate::error::ShimError;
use crate::process::{Exit, Phase, Process, Stdio};
use crate::spec;

/// The home of the boxes containerd runs, unless `BOXLITE_HOME` names another: apart from
/// users' own `~/.boxlite`, and kept across reboots like containerd's own state.
pub const DEFAULT_HOME: &str = "/var/lib/boxlite-containerd";

/// What this binary is, for `Connect` and logs.
const VERSION: &str = concat!("boxlite ", env!("CARGO_PKG_VERSION"));

fn home() -> PathBuf {
    std::env::var_os(boxlite::HOME_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_HOME))
}

fn open_runtime() -> Result<BoxliteRuntime, ShimError> {
    Ok(BoxliteRuntime::new(BoxliteOptions {
        home_dir: home(),
        ..Default::default()
    })?)
}

/// The shim process: `start` spawns the serving daemon, `delete` cleans up after one that
/// died, and the daemon serves [`TaskService`].
pub struct BoxliteShim {
    id: String,
    namespace: String,
    exit: Arc<ExitSignal>,
}

#[async_trait]
impl Shim for BoxliteShim {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Self {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            exit: Arc::default(),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // One daemon per container: each container is its own VM.
        let id = opts.id.clone();
        spawn(opts, &id, Vec::new()).await
    }

    async fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        // The daemon died without deleting its task: its box (powered off with it) and its
        // rootfs mount are still there.
        let name = box_name(&self.namespace, &self.id);
        match open_runtime() {
            Ok(runtime) => {
                if let Err(err) = runtime.remove(&name, true).await {
                    if !matches!(err, boxlite::BoxliteError::NotFound(_)) {
                        log::warn!("removing box {name}: {err}");
                    }
                }
            }
            Err(err) => log::warn!("opening the boxlite home: {err}"),
        }
        if let Ok(bundle) = std::env::current_dir() {
            crate::container::unmount(&bundle.join("rootfs"));
        }
        let mut response = DeleteResponse::new();
        response.exit_status = 128 + libc::SIGKILL as u32;
        response.exited_at = MessageField::some(Timestamp::now());
        Ok(response)
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        TaskService {
            inner: Arc::new(Inner {
                namespace: self.namespace.clone(),
                exit: self.exit.clone(),
                publisher,
                runtime: OnceCell::new(),
                container: Mutex::new(None),
                in_flight: Default::default(),
            }),
        }
    }
}

#[derive(Clone)]
pub struct TaskService {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    exit: Arc<ExitSignal>,
    publisher: RemotePublisher,
    runtime: OnceCell<BoxliteRuntime>,
    container: Mutex<Option<Arc<Container>>>,
    /// Requests being answered: Shutdown lets them finish before the server goes.
    in_flight: Arc<InFlight>,
}

/// How long Shutdown waits for requests still being answered.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Default)]
struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One request being answered, until dropped.
struct Request(Arc<InFlight>);

impl Drop for Request {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl InFlight {
    fn begin(self: &Arc<Self>) -> Request {
        self.count.fetch_add(1, Ordering::SeqCst);
        Request(self.clone())
    }

    /// Until no request is being answered, or `limit` passed.
    async fn wait_idle(&self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let idle = self.idle.notified();
                if self.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
    }
}

fn timestamp(at: SystemTime) -> MessageField<Timestamp> {
    MessageField::some(Timestamp::from(at))
}

impl Inner {
    async fn runtime(&self) -> Result<&BoxliteRuntime, ShimError> {
        self.runtime
            .get_or_try_init(|| async { open_runtime() })
            .await
    }

    async fn container(&self, id: &str) -> Result<Arc<Container>, ShimError> {
        match &*self.container.lock().await {
            Some(c) if c.id == id => Ok(c.clone()),
            _ => Err(ShimError::NoContainer(id.to_string())),
        }
    }

    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(err) = self
            .publisher
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            log::warn!("publishing {topic}: {err}");
        }
    }

    /// Records a process's end and tells containerd; the init's end also powers the VM off
    /// (its other processes end with it, as in a container whose init died).
    async fn exited(
        self: &Arc<Self>,
        container: &Arc<Container>,
        process: &Arc<Process>,
        status: u32,
    ) {
        let Some(exit) = process.set_exited(status) else {
            return;
        };
        self.publish_exit(container, process, exit).await;
        if process.exec_id.is_empty() {
            if let Some(vm) = &container.vm {
                if let Err(err) = vm.stop().await {
                    log::warn!("stopping the box after its init exited: {err}");
                }
            }
            // Whatever still ran in the box ended with it.
            let execs: Vec<_> = container
                .execs
                .lock()
                .expect("poisoned")
                .values()
                .cloned()
                .collect();
            for exec in execs {
                if let Some(exit) = exec.set_exited(128 + libc::SIGKILL as u32) {
                    self.publish_exit(container, &exec, exit).await;
                }
            }
        }
    }

    async fn publish_exit(&self, container: &Container, process: &Process, exit: Exit) {
        self.publish(
            topics::TASK_EXIT_EVENT_TOPIC,
            Box::new(TaskExit {
                container_id: container.id.clone(),
                id: if process.exec_id.is_empty() {
                    container.id.clone()
                } else {
                    process.exec_id.clone()
                },
                pid: container.pid,
                exit_status: exit.status,
                exited_at: timestamp(exit.at),
                ..Default::default()
            }),
        )
        .await;
    }

    async fn start(
        self: &Arc<Self>,
        container: &Arc<Container>,
        process: &Arc<Process>,
    ) -> Result<(), ShimError> {
        if !process.exec_id.is_empty() && container.init.phase() != Phase::Running {
            return Err(ShimError::FailedPrecondition(format!(
                "container {:?} is not running",
                container.id
            )));
        }
        match &container.vm {
            None => process.mark_started()?,
            Some(vm) => {
                let ended = process.start_in(vm).await?;
                let (inner, container, process) =
                    (self.clone(), container.clone(), process.clone());
                tokio::spawn(async move {
                    let status = ended.await;
                    inner.exited(&container, &process, status).await;
                });
            }
        }
        Ok(())
    }
}

fn exit_fields(exit: Option<Exit>) -> (u32, MessageField<Timestamp>) {
    match exit {
        Some(exit) => (exit.status, timestamp(exit.at)),
        None => (0, MessageField::none()),
    }
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let _request = self.inner.in_flight.begin();
        let inner = &self.inner;
        let mut slot = inner.container.lock().await;
        if slot.is_some() {
            return Err(ShimError::ContainerExists(req.id).into());
        }
        let runtime = inner.runtime().await?;
        let container = Arc::new(Container::create(runtime, &inner.namespace, &req).await?);
        let pid = container.pid;
        *slot = Some(container);
        drop(slot);
        inner
            .publish(
                topics::TASK_CREATE_EVENT_TOPIC,
                Box::new(TaskCreate {
                    container_id: req.id.clone(),
                    bundle: req.bundle.clone(),
                    rootfs: req.rootfs.clone(),
                    pid,
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let _request = self.inner.in_flight.begin();
        let inner = &self.inner;
        let container = inner.container(&req.id).await?;
        let process = container.process(&req.exec_id)?;
        inner.start(&container, &process).await?;
        if req.exec_id.is_empty() {
            inner
                .publish(
                    topics::TASK_START_EVENT_TOPIC,
                    Box::new(TaskStart {
                        container_id: req.id.clone(),
                        pid: container.pid,
                        ..Default::default()
                    }),
                )
                .await;
        } else {
            inner
                .publish(
                    topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                    Box::new(TaskExecStarted {
                        container_id: req.id.clone(),
                        exec_id: req.exec_id.clone(),
                        pid: container.pid,
                        ..Default::default()
                    }),
                )
                .await;
        }
        Ok(api::StartResponse {
            pid: container.pid,
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let _request = self.inner.in_flight.begin();
        let container = self.inner.container(&req.id).await?;
        let process = container.process(&req.exec_id)?;
        let status = match process.phase() {
            Phase::Created => api::Status::CREATED,
            Phase::Running if container.paused.load(Ordering::SeqCst) => api::Status::PAUSED,
            Phase::Running => api::Status::RUNNING,
            Phase::Exited => api::Status::STOPPED,
        };
        let (exit_status, exited_at) = exit_fields(process.exit());
        Ok(api::StateResponse {
            id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            bundle: container.bundle.to_string_lossy().into_owned(),
            pid: container.pid,
            status: status.into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status,
            exited_at,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let _request = self.inner.in_flight.begin();
        let inner = &self.inner;
        let container = inner.container(&req.id).await?;
        let process = container.process(&req.exec_id)?;
        if !req.exec_id.is_empty() {
            if process.phase() == Phase::Running {
                return Err(ShimError::FailedPrecondition(format!(
                    "process {:?} is still running: kill it first",
                    req.exec_id
                ))
                .into());
            }
            container
                .execs
                .lock()
                .expect("poisoned")
                .remove(&req.exec_id);
        } else {
            if process.phase() == Phase::Running {
                return Err(ShimError::FailedPrecondition(format!(
                    "container {:?} is still running: kill it first",
                    req.id
                ))
                .into());
            }
            container.destroy(inner.runtime().await?).await?;
            *inner.container.lock().await = None;
        }
        // A process deleted before it ran counts as killed, as with runc.
        let exit = process.exit().unwrap_or(Exit {
            status: 128 + libc::SIGKILL as u32,
            at: SystemTime::now(),
        });
        if req.exec_id.is_empty() {
            inner
                .publish(
                    topics::TASK_DELETE_EVENT_TOPIC,
                    Box::new(TaskDelete {
                        container_id: req.id.clone(),
                        pid: container.pid,
                        exit_status: exit.status,
                        exited_at: timestamp(exit.at),
                        ..Default::default()
                    }),
                )
                .await;
        }
        Ok(api::DeleteResponse {
            pid: container.pid,
            exit_status: exit.status,
            exited_at: timestamp(exit.at),
            ..Default::default()
        })
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let _request = self.inner.in_flight.begin();
        let container = self.inner.container(&req.id).await?;
        let info = containerd_shim::protos::types::task::ProcessInfo {
            pid: container.pid,
            ..Default::default()
        };
        Ok(api::PidsResponse {
            processes: vec![info],
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        let _request = self.inner.in_flight.begin();
        self.set_paused(&req.id, true).await?;
        Ok(api::Empty::new())
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResumeRequest,
    ) -> TtrpcResult<api::Empty> {
        let _request = self.inner.in_flight.begin();
        self.set_paused(&req.id, false).await?;
        Ok(api::Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        let _request = self.inner.in_flight.begin();
        Err(ShimError::Unimplemented(
            "checkpoint: containerd checkpoints are CRIU images of host processes; a box's state is a VM snapshot (boxlite snapshot)".into(),
        )
        .into())
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let _request = self.inner.in_flight.begin();
        let inner = &self.inner;
        let container = inner.container(&req.id).await?;
        let process = container.process(&req.exec_id)?;
        match process.phase() {
            Phase::Exited => {
                return Err(ShimError::NoProcess {
                    id: req.id.clone(),
                    exec_id: format!("{} (it already exited)", req.exec_id),
                }
                .into())
            }
            // Nothing runs yet: the kill ends it, as runc's does a created container.
            Phase::Created => inner.exited(&container, &process, 128 + req.signal).await,
            Phase::Running if container.vm.is_none() => {
                // A pod sandbox holds namespaces only; like pause, it ends on any signal it
                // would not ignore: cleanly on TERM and INT, killed otherwise.
                let status = match req.signal as i32 {
                    libc::SIGTERM | libc::SIGINT => 0,
                    signal => 128 + signal as u32,
                };
                inner.exited(&container, &process, status).await;
            }
            Phase::Running => {
                if container.paused.load(Ordering::SeqCst) && req.signal as i32 == libc::SIGKILL {
                    // A paused VM cannot deliver the signal: SIGKILL ends it all.
                    inner.exited(&container, &process, 128 + req.signal).await;
                } else {
                    process.signal(req.signal).await?;
                }
            }
        }
        Ok(api::Empty::new())
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        let _request = self.inner.in_flight.begin();
        let inner = &self.inner;
        let container = inner.container(&req.id).await?;
        if container.vm.is_none() {
            return Err(ShimError::FailedPrecondition(
                "a pod sandbox has no VM to run processes in".into(),
            )
            .into());
        }
        if req.exec_id.is_empty() {
            return Err(ShimError::InvalidArgument("exec_id is empty".into()).into());
        }
        let spec = spec::Process::from_json(&req.spec.value)?;
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        {
            let mut execs = container.execs.lock().expect("poisoned");
            if execs.contains_key(&req.exec_id) {
                return Err(ShimError::ProcessExists(req.exec_id).into());
            }
            execs.insert(req.exec_id.clone(), Process::new(&req.exec_id, stdio, spec));
        }
        inner
            .publish(
                topics::TASK_EXEC_ADDED_EVENT_TOPIC,
                Box::new(TaskExecAdded {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    ..Default::default()
                }),
            )
            .await;
        Ok(api::Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let _request = self.inner.in_flight.begin();
        let container = self.inner.container(&req.id).await?;
        let process = container.process(&req.exec_id)?;
        process.resize(req.width, req.height).await?;
        Ok(api::Empty::new())
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        let _request = self.inner.in_flight.begin();
        let container = self.inner.container(&req.id).await?;
        let process = container.process(&req.exec_id)?;
        if req.stdin && process.phase() == Phase::Running && !process.stdio.stdin.is_empty() {
            process.close_stdin()?;
        }
        Ok(api::Empty::new())
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        _req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        let _request = self.inner.in_flight.begin();
        Err(ShimError::Unimplemented(
            "update: a box's vCPUs and memory are fixed when its VM starts".into(),
        )
        .into())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let _request = self.inner.in_flight.begin();
        let container = self.inner.container(&req.id).await?;
        let process = container.process(&req.exec_id)?;
        let exit = process.wait().await;
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: timestamp(exit.at),
            ..Default::default()
        })
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let _request = self.inner.in_flight.begin();
        use containerd_shim::protos::cgroups_v2::metrics::{MemoryStat, Metrics, PidsStat};
        let container = self.inner.container(&req.id).await?;
        let mut metrics = Metrics::new();
        if let Some(vm) = &container.vm {
            let box_metrics = vm.metrics().await.map_err(ShimError::from)?;
            // What the VM costs the host: the VMM's resident memory, guest RAM it touched
            // included (a container's own usage is inside the guest).
            metrics.memory = MessageField::some(MemoryStat {
                usage: box_metrics.memory_bytes().unwrap_or_default(),
                ..Default::default()
            });
        }
        metrics.pids = MessageField::some(PidsStat {
            current: 1 + container.execs.lock().expect("poisoned").len() as u64,
            ..Default::default()
        });
        let stats = containerd_shim::util::convert_to_any(Box::new(metrics))
            .map_err(|e| ShimError::InvalidArgument(format!("encoding stats: {e}")))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let _request = self.inner.in_flight.begin();
        let task_pid = match self.inner.container(&req.id).await {
            Ok(container) => container.pid,
            Err(_) => 0,
        };
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: VERSION.to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        // containerd asks after each delete; the shim stays while its container does.
        if !req.now && self.inner.container.lock().await.is_some() {
            return Ok(api::Empty::new());
        }
        // Answers still being written (a Kill whose exit event led containerd to delete
        // and shut down before the Kill's reply was out) go out first: the server cuts its
        // connections when it stops.
        let (in_flight, exit) = (self.inner.in_flight.clone(), self.inner.exit.clone());
        tokio::spawn(async move {
            in_flight.wait_idle(SHUTDOWN_GRACE).await;
            exit.signal();
        });
        Ok(api::Empty::new())
    }
}

impl TaskService {
    async fn set_paused(&self, id: &str, paused: bool) -> Result<(), ShimError> {
        let inner = &self.inner;
        let container = inner.container(id).await?;
        let Some(vm) = &container.vm else {
            return Err(ShimError::Unimplemented(
                "pausing a pod sandbox: it has no VM; pause its containers".into(),
            ));
        };
        if paused {
            vm.pause().await?;
        } else {
            vm.resume().await?;
        }
        container.paused.store(paused, Ordering::SeqCst);
        let container_id = id.to_string();
        if paused {
            inner
                .publish(
                    topics::TASK_PAUSED_EVENT_TOPIC,
                    Box::new(TaskPaused {
                        container_id,
                        ..Default::default()
                    }),
                )
                .await;
        } else {
            inner
                .publish(
                    topics::TASK_RESUMED_EVENT_TOPIC,
                    Box::new(TaskResumed {
                        container_id,
                        ..Default::default()
                    }),
                )
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_requests_being_answered_within_its_grace() {
        let in_flight = Arc::new(InFlight::default());
        // Idle: at once.
        in_flight
            .wait_idle(std::time::Duration::from_secs(60))
            .await;

        let request = in_flight.begin();
        let waiter = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move {
                in_flight
                    .wait_idle(std::time::Duration::from_secs(60))
                    .await
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(request);
        tokio::time::timeout(std::time::Duration::from_secs(60), waiter)
            .await
            .expect("the last request's end wakes the waiter")
            .unwrap();

        // A request that never ends holds shutdown for the grace only.
        let _stuck = in_flight.begin();
        in_flight
            .wait_idle(std::time::Duration::from_millis(20))
            .await;
    }
}
