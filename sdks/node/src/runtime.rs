//! `NativeRuntime` (a home) and `NativeBox` (one box); `index.js` wraps them as `JsBoxlite`
//! and `JsBox`.

use std::time::Duration;

use boxlite::{BoxCommand, BoxOptions, BoxliteOptions, BoxliteRuntime, CopyOptions, LiteBox};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::execution::NativeExecution;
use crate::{install, invalid, options, JsResult};

#[napi]
pub struct NativeRuntime {
    pub(crate) inner: BoxliteRuntime,
}

fn open(options: BoxliteOptions) -> Result<BoxliteRuntime> {
    install()?;
    let runtime = BoxliteRuntime::new(options).js()?;
    // The home's logs/boxlite.log and RUST_LOG, once per process.
    static LOGGING: std::sync::Once = std::sync::Once::new();
    LOGGING.call_once(|| {
        boxlite::logging::install(runtime.home(), "warn");
    });
    Ok(runtime)
}

fn runtime_options(home_dir: Option<String>, registries: Vec<String>) -> BoxliteOptions {
    let mut options = BoxliteOptions::default();
    if let Some(home) = home_dir {
        options.home_dir = home.into();
    }
    if !registries.is_empty() {
        options.image_registries = registries;
    }
    options
}

#[napi]
impl NativeRuntime {
    #[napi(constructor)]
    pub fn new(home_dir: Option<String>, registries: Vec<String>) -> Result<Self> {
        Ok(Self {
            inner: open(runtime_options(home_dir, registries))?,
        })
    }

    /// The process's default runtime (`BOXLITE_HOME`, else `~/.boxlite`).
    #[napi(factory)]
    pub fn with_default_config() -> Result<Self> {
        install()?;
        if boxlite::try_default_runtime().is_none() {
            boxlite::init_default_runtime(BoxliteOptions::default()).js()?;
        }
        Ok(Self {
            inner: boxlite::default_runtime().clone(),
        })
    }

    /// Sets the default runtime's options before its first use.
    #[napi]
    pub fn init_default(home_dir: Option<String>, registries: Vec<String>) -> Result<()> {
        install()?;
        boxlite::init_default_runtime(runtime_options(home_dir, registries)).js()
    }

    #[napi(getter)]
    pub fn home_dir(&self) -> String {
        self.inner.home().display().to_string()
    }

    #[napi]
    pub async fn create(&self, options_json: String, name: Option<String>) -> Result<NativeBox> {
        let options = options::box_options(BoxOptions::default(), &options_json)?;
        let litebox = self.inner.create(options, name).await.js()?;
        Ok(NativeBox::new(litebox, true))
    }

    /// The box named `name`, or a new one; its `created` says which.
    #[napi]
    pub async fn get_or_create(
        &self,
        options_json: String,
        name: Option<String>,
    ) -> Result<NativeBox> {
        let options = options::box_options(BoxOptions::default(), &options_json)?;
        let (litebox, created) = self.inner.get_or_create(options, name).await.js()?;
        Ok(NativeBox::new(litebox, created))
    }

    #[napi]
    pub async fn get(&self, id_or_name: String) -> Result<Option<NativeBox>> {
        let found = self.inner.get(&id_or_name).await.js()?;
        Ok(found.map(|b| NativeBox::new(b, false)))
    }

    /// The box's info as JSON, or null.
    #[napi]
    pub async fn get_info(&self, id_or_name: String) -> Result<Option<String>> {
        let info = self.inner.get_info(&id_or_name).await.js()?;
        Ok(info.map(|i| options::box_info(&i).to_string()))
    }

    /// Every box's info, a JSON array.
    #[napi]
    pub async fn list_info(&self) -> Result<String> {
        let infos = self.inner.list_info().await.js()?;
        Ok(serde_json::Value::Array(infos.iter().map(options::box_info).collect()).to_string())
    }

    #[napi]
    pub async fn remove(&self, id_or_name: String, force: Option<bool>) -> Result<()> {
        self.inner
            .remove(&id_or_name, force.unwrap_or(false))
            .await
            .js()
    }

    #[napi]
    pub async fn metrics(&self) -> Result<String> {
        Ok(options::runtime_metrics(&self.inner.metrics().await).to_string())
    }

    #[napi]
    pub async fn shutdown(&self, timeout: Option<i32>) -> Result<()> {
        self.inner.shutdown(timeout).await.js()
    }

    #[napi]
    pub async fn pull_image(&self, reference: String) -> Result<()> {
        self.inner.pull_image(&reference).await.js()
    }

    /// Standbys of the home ready to be taken by a box's first start (`BOXLITE_STANDBY`).
    #[napi]
    pub fn standbys_ready(&self) -> u32 {
        self.inner.standbys_ready() as u32
    }

    /// Powers every standby of the home off; how many were running.
    #[napi]
    pub async fn retire_standbys(&self) -> u32 {
        self.inner.retire_standbys().await as u32
    }

    /// Every snapshot of the home, a JSON array, oldest first.
    #[napi]
    pub async fn list_snapshots(&self) -> Result<String> {
        Ok(options::snapshot_list(&self.inner.list_snapshots().js()?))
    }

    #[napi]
    pub async fn remove_snapshot(&self, name: String) -> Result<()> {
        self.inner.remove_snapshot(&name).js()
    }

    /// A new box from snapshot `snapshot`, started: it continues from that moment.
    #[napi]
    pub async fn create_from_snapshot(
        &self,
        snapshot: String,
        name: Option<String>,
    ) -> Result<NativeBox> {
        let litebox = self
            .inner
            .create_from_snapshot(&snapshot, name)
            .await
            .js()?;
        Ok(NativeBox::new(litebox, true))
    }

    /// The stored images, a JSON array of `{reference, id, sizeBytes, cachedAt}`.
    #[napi]
    pub fn list_images(&self) -> Result<String> {
        let images = self.inner.list_images().js()?;
        let list: Vec<_> = images
            .iter()
            .map(|i| {
                serde_json::json!({
                    "reference": i.reference,
                    "id": i.manifest_digest,
                    "sizeBytes": i.size,
                    "cachedAt": i.pulled_at,
                })
            })
            .collect();
        Ok(serde_json::Value::Array(list).to_string())
    }
}

#[napi]
pub struct NativeBox {
    pub(crate) litebox: LiteBox,
    created: bool,
}

impl NativeBox {
    pub(crate) fn new(litebox: LiteBox, created: bool) -> Self {
        Self { litebox, created }
    }
}

/// A command as `index.js` gives it.
#[allow(clippy::too_many_arguments)]
fn command(
    program: String,
    args: Vec<String>,
    env: Vec<Vec<String>>,
    tty: bool,
    user: Option<String>,
    timeout_secs: Option<f64>,
    working_dir: Option<String>,
    stdin: bool,
) -> Result<BoxCommand> {
    let mut command = BoxCommand::new(program).args(args).tty(tty).stdin(stdin);
    for pair in env {
        let [key, value]: [String; 2] = pair
            .try_into()
            .map_err(|_| invalid("env: each entry is [key, value]"))?;
        command = command.env(key, value);
    }
    if let Some(user) = user {
        command = command.user(user);
    }
    if let Some(dir) = working_dir {
        command = command.working_dir(dir);
    }
    if let Some(seconds) = timeout_secs {
        command = command.timeout(
            Duration::try_from_secs_f64(seconds)
                .map_err(|e| invalid(format!("timeoutSecs {seconds}: {e}")))?,
        );
    }
    Ok(command)
}

fn copy_options(json: Option<String>) -> Result<CopyOptions> {
    let mut options = CopyOptions::default();
    if let Some(json) = json {
        let given: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&json).map_err(|e| invalid(format!("copy options: {e}")))?;
        for (key, into) in [
            ("recursive", &mut options.recursive),
            ("overwrite", &mut options.overwrite),
            ("followSymlinks", &mut options.follow_symlinks),
            ("includeParent", &mut options.include_parent),
        ] {
            if let Some(value) = given.get(key).and_then(|v| v.as_bool()) {
                *into = value;
            }
        }
    }
    Ok(options)
}

#[napi]
impl NativeBox {
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.litebox.id().to_string()
    }

    #[napi(getter)]
    pub fn name(&self) -> Option<String> {
        self.litebox.name().map(str::to_string)
    }

    /// Whether `getOrCreate` made it.
    #[napi(getter)]
    pub fn created(&self) -> bool {
        self.created
    }

    /// The box's info as JSON.
    #[napi]
    pub async fn info(&self) -> Result<String> {
        Ok(options::box_info(&self.litebox.info()).to_string())
    }

    #[napi]
    pub async fn start(&self) -> Result<()> {
        self.litebox.start().await.js()
    }

    #[napi]
    pub async fn stop(&self) -> Result<()> {
        self.litebox.stop().await.js()
    }

    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub async fn exec(
        &self,
        command: String,
        args: Vec<String>,
        env: Vec<Vec<String>>,
        tty: bool,
        user: Option<String>,
        timeout_secs: Option<f64>,
        working_dir: Option<String>,
        stdin: bool,
    ) -> Result<NativeExecution> {
        let command = self::command(
            command,
            args,
            env,
            tty,
            user,
            timeout_secs,
            working_dir,
            stdin,
        )?;
        let execution = self.litebox.exec(command).await.js()?;
        Ok(NativeExecution::new(execution))
    }

    /// Runs a command to its end: JSON `{stdout, stderr, exitCode, errorMessage, signal,
    /// timedOut}` (output decoded as UTF-8).
    #[napi]
    pub async fn run(
        &self,
        command: String,
        args: Vec<String>,
        env: Vec<Vec<String>>,
        user: Option<String>,
        timeout_secs: Option<f64>,
        working_dir: Option<String>,
    ) -> Result<String> {
        let command = self::command(
            command,
            args,
            env,
            false,
            user,
            timeout_secs,
            working_dir,
            false,
        )?;
        let execution = self.litebox.exec(command).await.js()?;
        let (stdout, stderr, result) = execution.output().await.js()?;
        let mut end = options::exec_end(&result);
        end["stdout"] = String::from_utf8_lossy(&stdout).into();
        end["stderr"] = String::from_utf8_lossy(&stderr).into();
        Ok(end.to_string())
    }

    /// A command started earlier, by any process, by its id.
    #[napi]
    pub async fn attach(&self, execution_id: String) -> Result<NativeExecution> {
        let execution = self.litebox.attach(&execution_id).await.js()?;
        Ok(NativeExecution::new(execution))
    }

    #[napi]
    pub async fn copy_in(
        &self,
        host_path: String,
        container_dest: String,
        options_json: Option<String>,
    ) -> Result<()> {
        let options = copy_options(options_json)?;
        self.litebox
            .copy_into(&host_path, &container_dest, options)
            .await
            .js()
            .map(drop)
    }

    #[napi]
    pub async fn copy_out(
        &self,
        container_src: String,
        host_dest: String,
        options_json: Option<String>,
    ) -> Result<()> {
        let options = copy_options(options_json)?;
        self.litebox
            .copy_out(&container_src, &host_dest, options)
            .await
            .js()
            .map(drop)
    }

    #[napi]
    pub async fn metrics(&self) -> Result<String> {
        Ok(options::box_metrics(&self.litebox.metrics().await.js()?).to_string())
    }

    #[napi]
    pub async fn pause(&self) -> Result<()> {
        self.litebox.pause().await.js()
    }

    #[napi]
    pub async fn resume(&self) -> Result<()> {
        self.litebox.resume().await.js()
    }

    /// Saves the running or paused box (memory, devices, disk) as snapshot `name`; its info
    /// as JSON.
    #[napi]
    pub async fn snapshot_create(&self, name: String) -> Result<String> {
        let info = self.litebox.snapshot(&name).await.js()?;
        Ok(options::snapshot_info(&info).to_string())
    }

    /// This box's snapshots, a JSON array, oldest first.
    #[napi]
    pub async fn snapshots(&self) -> Result<String> {
        Ok(options::snapshot_list(&self.litebox.snapshots().js()?))
    }

    #[napi]
    pub async fn snapshot_remove(&self, name: String) -> Result<()> {
        self.litebox.remove_snapshot(&name).js()
    }

    /// Puts the box back to its snapshot `name`; it runs on from that moment.
    #[napi]
    pub async fn snapshot_restore(&self, name: String) -> Result<()> {
        self.litebox.restore(&name).await.js()
    }

    /// A second box, `name`, continuing from this moment of this one.
    #[napi]
    pub async fn fork(&self, name: String) -> Result<NativeBox> {
        let forked = self.litebox.fork(&name).await.js()?;
        Ok(NativeBox::new(forked, true))
    }
}
