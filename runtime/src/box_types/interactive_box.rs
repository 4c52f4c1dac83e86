//! `InteractiveBox`: a shell on a pseudo-terminal in a box, driven by a program: write keys,
//! read what the terminal shows, resize it, wait for the shell to end. What a user types at
//! `boxlite exec -it BOX sh`, as an API (and what an agent driving a terminal needs).

use std::time::Duration;

use crate::runtime::{
    BoxCommand, BoxliteResult, BoxliteRuntime, ExecResult, ExecStdin, Execution, ExecutionError,
    InvalidArgument, LiteBox,
};
use crate::simple_box::SimpleBox;
use crate::BoxOptions;

/// The most terminal output [`InteractiveBox::read_until`] keeps while it looks for its
/// pattern.
pub const MAX_READ_UNTIL_BYTES: usize = 16 << 20;

/// A box with a shell on a pseudo-terminal. Removed when dropped, like [`SimpleBox`].
pub struct InteractiveBox {
    simple: SimpleBox,
    shell: Execution,
    stdin: ExecStdin,
    /// Terminal output read past what `read_until` returned.
    pending: Vec<u8>,
}

impl InteractiveBox {
    /// A box of `options` running `sh` on an 24×80 terminal.
    pub async fn new(runtime: &BoxliteRuntime, options: BoxOptions) -> BoxliteResult<Self> {
        Self::with_shell(runtime, options, BoxCommand::new("sh")).await
    }

    /// A box of `options` running `shell` (its tty and stdin are turned on).
    pub async fn with_shell(
        runtime: &BoxliteRuntime,
        options: BoxOptions,
        shell: BoxCommand,
    ) -> BoxliteResult<Self> {
        let simple = SimpleBox::new(runtime, options).await?;
        let mut shell = simple.litebox().exec(shell.tty(true).stdin(true)).await?;
        let stdin = shell
            .stdin()
            .ok_or_else(|| ExecutionError::Stdin("the shell has no stdin".into()))?;
        Ok(Self {
            simple,
            shell,
            stdin,
            pending: Vec::new(),
        })
    }

    /// The box underneath.
    pub fn litebox(&self) -> &LiteBox {
        self.simple.litebox()
    }

    /// Types `data` into the terminal (a line needs its `\n`; Ctrl-C is `\x03`).
    pub async fn write(&mut self, data: &[u8]) -> BoxliteResult<()> {
        self.stdin.write_all(data).await
    }

    /// [`InteractiveBox::write`] of text.
    pub async fn write_str(&mut self, text: &str) -> BoxliteResult<()> {
        self.write(text.as_bytes()).await
    }

    /// The next terminal output (with the terminal's echo of what was typed, and its
    /// escape sequences); `None` once the shell has ended and everything was read.
    pub async fn read(&mut self) -> BoxliteResult<Option<Vec<u8>>> {
        if !self.pending.is_empty() {
            return Ok(Some(std::mem::take(&mut self.pending)));
        }
        self.shell.read_stdout().await
    }

    /// Terminal output up to and including the first `pattern` seen within `timeout`.
    /// What came after it is kept for the next read.
    pub async fn read_until(&mut self, pattern: &str, timeout: Duration) -> BoxliteResult<String> {
        let wanted = pattern.as_bytes();
        // The output stays in `pending` while it is searched, so a timeout loses none of it.
        let search = async {
            loop {
                if let Some(at) = find(&self.pending, wanted) {
                    let rest = self.pending.split_off(at + wanted.len());
                    let shown = std::mem::replace(&mut self.pending, rest);
                    return Ok(String::from_utf8_lossy(&shown).into_owned());
                }
                if self.pending.len() > MAX_READ_UNTIL_BYTES {
                    return Err(ExecutionError::Stdin(format!(
                        "{pattern:?} did not appear in {MAX_READ_UNTIL_BYTES} bytes of terminal \
                         output"
                    ))
                    .into());
                }
                match self.shell.read_stdout().await? {
                    Some(bytes) => self.pending.extend_from_slice(&bytes),
                    None => {
                        return Err(ExecutionError::Stdin(format!(
                            "the shell ended before {pattern:?} appeared; it showed: {}",
                            String::from_utf8_lossy(&self.pending)
                        ))
                        .into())
                    }
                }
            }
        };
        tokio::time::timeout(timeout, search).await.map_err(|_| {
            ExecutionError::Stdin(format!(
                "{pattern:?} did not appear on the terminal within {timeout:?}"
            ))
        })?
    }

    /// Resizes the terminal (the shell gets SIGWINCH).
    pub async fn resize(&self, rows: u16, cols: u16) -> BoxliteResult<()> {
        if rows == 0 || cols == 0 {
            return Err(InvalidArgument::TerminalSize(format!("{rows}x{cols}")).into());
        }
        self.shell.resize_tty(rows, cols).await
    }

    /// Waits for the shell to end (after `exit`, or a signal).
    pub async fn wait(&mut self) -> BoxliteResult<ExecResult> {
        self.shell.wait().await
    }

    /// Removes the box now, reporting what went wrong.
    pub async fn remove(self) -> BoxliteResult<()> {
        self.simple.remove().await
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}
