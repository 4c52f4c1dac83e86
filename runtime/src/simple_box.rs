//! `SimpleBox`: a box for running commands and collecting what they print, removed when the
//! handle goes (or with [`SimpleBox::remove`]).

use crate::runtime::{BoxCommand, BoxliteResult, BoxliteRuntime, LiteBox};
use crate::BoxOptions;

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// stdout, with invalid UTF-8 replaced.
    pub stdout: String,
    pub stderr: String,
    /// The exit code, or -1 when a signal ended the command.
    pub exit_code: i32,
    /// Why it did not end by itself (a signal, its timeout), as `ExecResult::error_message`.
    pub error_message: Option<String>,
}

impl ExecOutput {
    /// It exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0 && self.error_message.is_none()
    }
}

/// A started box that runs commands to completion and is removed when dropped.
///
/// Dropping it removes the box (its VM is killed); outside an async runtime the drop waits
/// for that, inside one it happens on a thread of its own. [`SimpleBox::remove`] does it now
/// and reports errors. A process that exits without either leaves nothing either: the box is
/// not detached, so its shim powers it off, and it is removed when stopped.
pub struct SimpleBox {
    runtime: BoxliteRuntime,
    litebox: Option<LiteBox>,
}

impl SimpleBox {
    /// Creates and starts a box of `options` (with `detach` off and `auto_remove` on, as
    /// `BoxOptions::default()` has them).
    pub async fn new(runtime: &BoxliteRuntime, options: BoxOptions) -> BoxliteResult<Self> {
        Self::named(runtime, options, None).await
    }

    /// [`SimpleBox::new`] with a name.
    pub async fn named(
        runtime: &BoxliteRuntime,
        mut options: BoxOptions,
        name: Option<String>,
    ) -> BoxliteResult<Self> {
        options.detach = false;
        options.auto_remove = true;
        let litebox = runtime.create(options, name).await?;
        let simple = Self {
            runtime: runtime.clone(),
            litebox: Some(litebox),
        };
        simple.litebox().start().await?;
        Ok(simple)
    }

    /// The box underneath, for everything else (copies, metrics, streaming execs).
    pub fn litebox(&self) -> &LiteBox {
        self.litebox.as_ref().expect("present until removed")
    }

    pub fn id(&self) -> &str {
        self.litebox().id()
    }

    /// Runs `program` with `args` and collects its output.
    pub async fn exec<I, S>(&self, program: &str, args: I) -> BoxliteResult<ExecOutput>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.run(BoxCommand::new(program).args(args)).await
    }

    /// Runs `command` and collects its output.
    pub async fn run(&self, command: BoxCommand) -> BoxliteResult<ExecOutput> {
        run_to_completion(self.litebox(), command).await
    }

    /// Removes the box now (killing its VM), reporting what went wrong.
    pub async fn remove(mut self) -> BoxliteResult<()> {
        let litebox = self.litebox.take().expect("present until removed");
        self.runtime.remove(litebox.id(), true).await
    }
}

/// Runs `command` in `litebox` and collects its output (for both `SimpleBox`es).
pub(crate) async fn run_to_completion(
    litebox: &LiteBox,
    command: BoxCommand,
) -> BoxliteResult<ExecOutput> {
    let execution = litebox.exec(command).await?;
    let (stdout, stderr, result) = execution.output().await?;
    Ok(ExecOutput {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        exit_code: result.exit_code,
        error_message: result.error_message,
    })
}

impl Drop for SimpleBox {
    fn drop(&mut self) {
        let Some(litebox) = self.litebox.take() else {
            return;
        };
        let runtime = self.runtime.clone();
        let id = litebox.id().clone();
        let remove = move || {
            let removing = id.clone();
            let removed =
                crate::blocking::block_on(async move { runtime.remove(&removing, true).await });
            if let Err(err) = removed {
                tracing::warn!("removing box {id} of a dropped SimpleBox: {err}");
            }
        };
        // Blocking a thread of the caller's async runtime would stall it: there, the removal
        // runs on a thread of its own.
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::spawn(remove);
        } else {
            remove();
        }
    }
}
