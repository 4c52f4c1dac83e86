//! `LiteBox`: one box of a runtime.

use super::*;

/// One box of a runtime.
#[derive(Clone)]
pub struct LiteBox {
    pub(crate) id: String,
    pub(crate) name: Option<String>,
    pub(crate) runtime: BoxliteRuntime,
}

impl std::fmt::Debug for LiteBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteBox")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("home", &self.runtime.home())
            .finish()
    }
}

impl LiteBox {
    /// The box's id (a ULID).
    pub fn id(&self) -> &BoxID {
        &self.id
    }

    /// The box's output log (commands whose output was sent there with
    /// [`Execution::send_output_to_log`]): everything kept, or its last `tail` lines. Keep the
    /// reader and call `read_new` on it to follow what is written after.
    pub fn logs(&self, tail: Option<usize>) -> Result<(Vec<LogLine>, OutputLogReader)> {
        let dir = self.dir();
        let mut reader = OutputLogReader::new(&dir);
        let lines = reader.read_all(tail).map_err(io_err(&dir))?;
        Ok((lines, reader))
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub(crate) fn dir(&self) -> PathBuf {
        self.runtime.box_dir(&self.id)
    }

    pub(crate) fn record(&self) -> Result<BoxRecord> {
        self.runtime
            .record(&self.id)?
            .ok_or_else(|| BoxliteError::NotFound(self.id.clone()))
    }

    /// What the home's database says about the box now (no VM is started). A box that was
    /// removed, or whose row cannot be read, reads as Unknown.
    pub fn info(&self) -> BoxInfo {
        match self.record() {
            Ok(record) => record.info,
            Err(err) => {
                tracing::warn!("box {}: {err}", self.id);
                BoxInfo {
                    id: self.id.clone(),
                    name: self.name.clone(),
                    status: BoxStatus::Unknown,
                    created_at: from_ms(0),
                    last_updated: from_ms(now_ms() as i64),
                    pid: None,
                    image: String::new(),
                    cpus: 0,
                    memory_mib: 0,
                    labels: Default::default(),
                    engine: None,
                }
            }
        }
    }

    /// The box's dynamic state.
    pub fn state(&self) -> BoxState {
        let info = self.info();
        BoxState {
            status: info.status,
            pid: info.pid,
            container_id: Some(ContainerID::of_box(&self.id)),
            last_updated: info.last_updated,
            lock_id: Some(LockId(self.dir().join("lock"))),
        }
    }

    /// The options the box was created with.
    pub async fn options(&self) -> Result<BoxOptions> {
        Ok(self.record()?.options)
    }

    /// Boots the box; a no-op when it runs already.
    pub async fn start(&self) -> Result<()> {
        if self.record()?.info.status.is_running() {
            return Ok(());
        }
        let _lock = self.runtime.lock_box(&self.id).await?;
        let record = self.record()?;
        let status = record.info.status;
        if status.is_running() {
            return Ok(());
        }
        if status.is_paused() {
            return Err(StateError::Paused(self.id.clone()).into());
        }
        if !status.can_start() {
            return Err(StateError::Wrong {
                id: self.id.clone(),
                action: "start",
                status,
            }
            .into());
        }
        // A shim left serving this directory by a start cut short (a taker killed between
        // taking a standby and recording the box, or a launcher that died before adopting
        // it) must not share the box's disk with the one started now.
        let dir = self.dir();
        if let Some(stale) = live_shim(&dir) {
            tracing::warn!(box_id = %self.id, shim = stale.pid, "ending a shim the box's record does not know");
            kill_and_wait(&dir, stale).await;
        }
        let pending_restore = dir.join(super::snapshots::PENDING_RESTORE);
        let (vm, template_miss) = self.vm_to_start(&record, &dir, &pending_restore).await?;
        // At its first start, a box may take a warm standby of its kind (`standby`).
        let standby = self.standby_kind(&record, &vm).await;
        if let Some(kind) = &standby {
            if self.take_standby(&record, kind).await? {
                self.top_up_standbys(kind.clone());
                return Ok(());
            }
        }
        self.prepare_disk(&record).await?;
        let config = ShimConfig {
            vm,
            ready_timeout_ms: record.options.ready_timeout.as_millis() as u64,
            engine: match record.options.engine {
                Some(engine) => Some(engine),
                None => engine_from_env()?,
            },
            // Until this process records the box as Running and adopts the shim, the shim
            // powers the VM off if this process dies (or this future is dropped for good); a
            // box that is not detached stays tied to this process after that too.
            launcher: ProcessId::current(),
            stop_with_launcher: !record.options.detach,
            template_miss,
            standby: None,
        };
        let launched = launch(
            &shim_binary(),
            &dir,
            &config,
            &record.options.security.launch_options(),
        )
        .await;
        // Restored or not, the saved state is not used again: the disk has moved on.
        let _ = std::fs::remove_file(&pending_restore);
        let launched = match launched {
            Ok(launched) => launched,
            Err(err) => {
                Counters::bump(&self.runtime.inner.counters.boxes_failed);
                return Err(err.into());
            }
        };
        self.record_started(status, launched.process, &launched.client, &launched.engine)
            .await?;
        if let Some(kind) = standby {
            self.top_up_standbys(kind);
        }
        Ok(())
    }

    /// The VM to start the box in `dir` with, and why no template serves it if none does: a
    /// box created from a snapshot continues from it (`pending_restore`), once; any other
    /// from its shape's template where one can serve.
    async fn vm_to_start(
        &self,
        record: &BoxRecord,
        dir: &Path,
        pending_restore: &Path,
    ) -> Result<(VmSpec, Option<String>)> {
        let mut vm = self.vm_spec_for(&record.options, record.info.name.as_deref(), dir)?;
        let mut template_miss = None;
        if pending_restore.is_file() {
            vm.start = VmStart::FromSnapshot {
                state: pending_restore.to_path_buf(),
            };
        } else if let Some(reason) = super::templates::unsuitable(&record.options, &vm) {
            template_miss = Some(reason);
        } else {
            match super::templates::ensure(
                &self.runtime.inner.home,
                &vm,
                record.options.ready_timeout,
            )
            .await
            {
                Ok(template) => {
                    vm.start = VmStart::FromTemplate {
                        ram_file: template.ram_file,
                        state: template.state,
                    }
                }
                Err(reason) => {
                    tracing::warn!(box_id = %self.id, "no template: {reason}");
                    template_miss = Some(reason);
                }
            }
        }
        Ok((vm, template_miss))
    }

    /// Records a box whose shim serves it as Running and adopts the shim; kills the shim
    /// when the box's row changed meanwhile (removed by force, say), since a VM nobody
    /// records must not keep running.
    async fn record_started(
        &self,
        status: BoxStatus,
        process: ProcessId,
        client: &ShimClient,
        engine: &str,
    ) -> Result<()> {
        let dir = self.dir();
        // Only shown by inspect: a failure to note it must not fail the start.
        let _ = self.runtime.inner.db.record_engine(&self.id, engine);
        let recorded = self.runtime.inner.db.transition(
            &self.id,
            &[status],
            BoxStatus::Running,
            Some(process),
        );
        match recorded {
            Ok((_, true)) => {
                tracing::info!(box_id = %self.id, %engine, shim = process.pid, "started box");
                Ok(client.adopt().await?)
            }
            Ok((found, false)) => {
                kill_and_wait(&dir, process).await;
                Err(match found {
                    None => BoxliteError::NotFound(self.id.clone()),
                    Some(status) => StateError::Wrong {
                        id: self.id.clone(),
                        action: "start",
                        status,
                    }
                    .into(),
                })
            }
            Err(err) => {
                kill_and_wait(&dir, process).await;
                Err(err.into())
            }
        }
    }

    /// The kind of standby this box could take, when the home keeps standbys and this is
    /// the box's first start from an image, from its shape's template (`vm`).
    async fn standby_kind(
        &self,
        record: &BoxRecord,
        vm: &VmSpec,
    ) -> Option<super::standby::StandbyKind> {
        // Boxes of an image: a prepared root filesystem is copied into a disk of its own.
        let of_image = matches!(
            record.options.rootfs,
            RootfsSpec::Image(_) | RootfsSpec::Layout { .. }
        );
        if super::standby::wanted() == 0
            || !of_image
            || !matches!(vm.start, VmStart::FromTemplate { .. })
        {
            return None;
        }
        let dir = self.dir();
        if dir.join(BOX_DISK).exists() || dir.join(ROOTFS_IMAGE).exists() {
            return None;
        }
        // A standby's passt would hold the host ports while it waits, which the box that
        // started it (or any other) may be using.
        if vm.network.as_ref().is_some_and(|n| !n.forwards.is_empty()) {
            return None;
        }
        let image = self.stored_image(record)?;
        let images = self.runtime.inner.images.clone();
        let base = tokio::task::spawn_blocking(move || images.ensure_base(&image))
            .await
            .ok()?
            .ok()?;
        Some(super::standby::StandbyKind::of(vm, &base, &record.options))
    }

    /// Takes a ready standby of `kind` for this box and records the box as Running; false
    /// when none was ready, or the one taken could not serve (it is then killed and its
    /// directory removed, and the box starts as usual).
    async fn take_standby(
        &self,
        record: &BoxRecord,
        kind: &super::standby::StandbyKind,
    ) -> Result<bool> {
        let dir = self.dir();
        if !super::standby::take(&self.runtime.inner.home, kind, &dir) {
            return Ok(false);
        }
        let shim = ProcessId::read(&dir.join(boxlite_shim_api::files::PID));
        let assigned = async {
            let launcher = ProcessId::current().ok_or("reading this process's start time")?;
            let client = ShimClient::connect(&dir).await.map_err(|e| e.to_string())?;
            let hostname = hostname_for(record.info.name.as_deref(), &self.id);
            client
                .assign(&hostname, launcher, !record.options.detach)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(client)
        }
        .await;
        let (client, shim) = match (assigned, shim) {
            (Ok(client), Some(shim)) => (client, shim),
            (assigned, shim) => {
                let reason = assigned.err().unwrap_or_else(|| "it wrote no pid".into());
                tracing::warn!(box_id = %self.id, "the standby taken could not serve: {reason}");
                if let Some(shim) = shim {
                    kill_and_wait(&dir, shim).await;
                }
                super::standby::clear_box_dir(&dir);
                return Ok(false);
            }
        };
        let image = self.stored_image(record);
        if let Err(err) = write_box_config(&dir, &self.id, record, image.as_ref()) {
            kill_and_wait(&dir, shim).await;
            super::standby::clear_box_dir(&dir);
            return Err(io_err(&dir)(err));
        }
        self.record_started(record.info.status, shim, &client, EngineKind::Qemu.name())
            .await?;
        Ok(true)
    }

    /// Starts standbys of `kind` until the home has as many as it keeps, in the background.
    fn top_up_standbys(&self, kind: super::standby::StandbyKind) {
        let runtime = Arc::clone(&self.runtime.inner);
        tokio::task::spawn_blocking(move || {
            super::standby::refill(&runtime.home, &kind, &runtime.shut_down)
        });
    }

    /// The VM a box of `options` named `name` boots, with its files in `dir`.
    pub(crate) fn vm_spec_for(
        &self,
        options: &BoxOptions,
        name: Option<&str>,
        dir: &Path,
    ) -> Result<VmSpec> {
        let assets = GuestAssets::prepare(&self.runtime.inner.home, None, None)?;
        let shared_root = match &options.rootfs {
            RootfsSpec::SharedPath(path) => Some(SharedDir {
                host_path: path.clone(),
                guest_path: SharedDir::ROOT.to_string(),
                read_only: false,
            }),
            _ => None,
        };
        Ok(VmSpec {
            kernel: assets.kernel,
            initramfs: assets.initramfs,
            cpus: options.effective_cpus(),
            memory_mib: options.effective_memory_mib(),
            root_disk: shared_root.is_none().then(|| DiskSpec {
                path: dir.join(BOX_DISK),
                format: DiskFormat::Qcow2,
                read_only: false,
            }),
            agent_port: boxlite_protocol::AGENT_VSOCK_PORT,
            run_dir: dir.to_path_buf(),
            extra_cmdline: Vec::new(),
            hostname: Some(hostname_for(name, &self.id)),
            network: network_spec(options)?,
            volumes: options
                .volumes
                .iter()
                .map(|v| SharedDir {
                    host_path: v.host_path.clone().into(),
                    guest_path: v.guest_path.clone(),
                    read_only: v.read_only,
                })
                .chain(shared_root)
                .collect(),
            start: VmStart::Boot,
        })
    }

    /// Powers the box off (killing it after 10 s). It can be started again, unless its
    /// options say `auto_remove` (the default), which removes it once stopped.
    pub async fn stop(&self) -> Result<()> {
        self.stop_within(STOP_TIMEOUT).await
    }

    /// [`LiteBox::stop`], killing the VM after `timeout`.
    pub async fn stop_within(&self, timeout: Duration) -> Result<()> {
        let record = self.record()?;
        if !record.info.status.can_stop() {
            if record.options.auto_remove && record.info.status.can_remove() {
                return self.runtime.remove(&self.id, false).await;
            }
            return Ok(());
        }
        self.power_off(timeout).await?;
        tracing::info!(box_id = %self.id, "stopped box");
        Counters::bump(&self.runtime.inner.counters.boxes_stopped);
        if record.options.auto_remove {
            self.runtime.remove(&self.id, false).await?;
        }
        Ok(())
    }

    pub(super) async fn power_off(&self, timeout: Duration) -> Result<()> {
        let _lock = self.runtime.lock_box(&self.id).await?;
        let record = self.record()?;
        if !record.info.status.can_stop() {
            return Ok(());
        }
        self.runtime.inner.db.transition(
            &self.id,
            &[BoxStatus::Running, BoxStatus::Paused],
            BoxStatus::Stopping,
            record.shim,
        )?;
        if let Ok(client) = ShimClient::connect(&self.dir()).await {
            let _ = client.stop(timeout).await;
        }
        if let Some(shim) = record.shim {
            // The shim exits once its VM is gone; make sure of it.
            if !wait_gone(shim, Duration::from_secs(2)).await {
                kill_and_wait(&self.dir(), shim).await;
            }
        }
        self.runtime.inner.db.transition(
            &self.id,
            &[BoxStatus::Stopping],
            BoxStatus::Stopped,
            None,
        )?;
        Ok(())
    }

    /// Runs a command, starting the box first if needed.
    pub async fn exec(&self, command: BoxCommand) -> Result<Execution> {
        self.start().await?;
        let record = self.record()?;
        let run = self.image_config();

        let mut env = run.env.clone();
        let mut set = |key: &str, value: &str| {
            env.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
            env.push(format!("{key}={value}"));
        };
        for (k, v) in record.options.env.iter().chain(&command.env) {
            set(k, v);
        }
        let options = ExecOptions {
            args: command.args,
            env,
            working_dir: command
                .working_dir
                .or(record.options.working_dir)
                .unwrap_or(run.working_dir),
            stdin: command.stdin,
            user: command.user.unwrap_or(run.user),
            timeout: command.timeout,
            tty: command.tty,
        };
        let client = ShimClient::connect(&self.dir()).await?;
        let id = new_id();
        let counters = &self.runtime.inner.counters;
        if let Err(err) = client.agent().exec(&id, &options).await {
            Counters::bump(&counters.exec_errors);
            return Err(exec_start_error(err));
        }
        Counters::bump(&counters.commands_executed);
        Ok(Execution::new(id, client, options.stdin, command.timeout))
    }

    /// What the box's image says about running it (env, workdir, user, entrypoint, cmd).
    pub fn image_config(&self) -> ImageRunConfig {
        self.record()
            .ok()
            .and_then(|record| self.stored_image(&record))
            .map(|image| image.run)
            .unwrap_or_default()
    }

    /// The image the box was made from, as its row (or, for boxes made before rows held
    /// it, its config.json) records it.
    pub(crate) fn stored_image(&self, record: &BoxRecord) -> Option<StoredImage> {
        if let Some(json) = &record.image_json {
            return serde_json::from_str(json).ok();
        }
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.dir().join("config.json")).ok()?).ok()?;
        serde_json::from_value(config["image"].clone()).ok()
    }

    /// Makes the box's disk (a qcow2 overlay of its image's base, or of its own rootfs
    /// image; none for a shared root) and config.json the first time it starts. Under the
    /// box lock.
    async fn prepare_disk(&self, record: &BoxRecord) -> Result<()> {
        let dir = self.dir();
        let disk = dir.join(BOX_DISK);
        // A shared root is the box's disk: the box is ready once its config is written.
        let shared_root = matches!(record.options.rootfs, RootfsSpec::SharedPath(_));
        if disk.exists() || (shared_root && dir.join("config.json").exists()) {
            return Ok(());
        }
        let image = self
            .stored_image(record)
            .ok_or_else(|| BoxliteError::Internal(format!("box {} records no image", self.id)))?;
        let own_rootfs = dir.join(ROOTFS_IMAGE);
        let base = if shared_root {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            None
        } else if own_rootfs.exists() {
            Some(own_rootfs)
        } else {
            let images = self.runtime.inner.images.clone();
            let image = image.clone();
            Some(
                tokio::task::spawn_blocking(move || images.ensure_base(&image))
                    .await
                    .expect("base build panicked")?,
            )
        };
        write_box_config(&dir, &self.id, record, Some(&image)).map_err(io_err(&dir))?;
        let Some(base) = base else {
            return Ok(());
        };
        // Last: a disk that exists is a box that is ready to boot.
        let partial = dir.join(format!("{BOX_DISK}.tmp"));
        create_box_disk(&base, &partial)?;
        std::fs::rename(&partial, &disk).map_err(io_err(&disk))
    }

    /// Re-attaches to an exec started earlier, by any process, by its id.
    pub async fn attach(&self, exec_id: &str) -> Result<Execution> {
        let client = ShimClient::connect(&self.dir()).await?;
        Ok(Execution::attached(exec_id.to_string(), client))
    }
}

/// A box's hostname: its name, else its id in lower case.
fn hostname_for(name: Option<&str>, id: &str) -> String {
    // Names are [a-zA-Z0-9_.-] (validate_name), safe on the command line; a hostname holds
    // 63 bytes at most.
    name.map(str::to_string)
        .unwrap_or_else(|| id.to_lowercase())
        .chars()
        .take(63)
        .collect()
}

/// Writes `config.json`, what the box was made from, into its directory.
fn write_box_config(
    dir: &Path,
    id: &str,
    record: &BoxRecord,
    image: Option<&StoredImage>,
) -> std::io::Result<()> {
    let config = serde_json::json!({
        "id": id,
        "name": record.info.name,
        "options": record.options,
        "image": image,
    });
    // The options hold environment values, which may be secrets: owner only.
    write_private(
        &dir.join("config.json"),
        &serde_json::to_vec_pretty(&config).expect("config serializes"),
    )
}
