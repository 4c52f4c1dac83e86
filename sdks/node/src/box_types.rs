//! The box types of the core for `index.js`'s `CodeBox`, `BrowserBox`, `ComputerBox` and
//! `InteractiveBox`: made by `NativeRuntime.create*Box(optionsJson, ...)` over the type's own
//! defaults; each gives its box (`box()`) for what every box does, and `remove()` ends it.

use std::sync::Arc;
use std::time::Duration;

use boxlite::{
    BoxCommand, BrowserBox, CodeBox, ComputerBox, ErrorKind, InteractiveBox, ScrollDirection,
};
use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::runtime::{NativeBox, NativeRuntime};
use crate::{invalid, kind_error, options, JsResult};

/// A box type's value, shared by the calls in flight and taken by `remove()`.
type Shared<T> = Arc<tokio::sync::RwLock<Option<T>>>;

fn shared<T>(value: T) -> Shared<T> {
    Arc::new(tokio::sync::RwLock::new(Some(value)))
}

fn removed(what: &str) -> napi::Error {
    kind_error(
        ErrorKind::InvalidState,
        format!("this {what} was removed; create a new one"),
    )
}

fn seconds(value: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|e| invalid(format!("{what} {value}: {e}")))
}

/// Runs `$body` on the box type's value, or fails when it was removed.
macro_rules! with {
    ($self:ident, $what:literal, |$value:ident| $body:expr) => {{
        let guard = $self.value.read().await;
        let $value = guard.as_ref().ok_or_else(|| removed($what))?;
        // Bound first: temporaries of `$body` (a lock guard) end before `guard` does.
        let result = $body;
        result
    }};
}

#[napi]
impl NativeRuntime {
    #[napi]
    pub async fn create_code_box(&self, options_json: String) -> Result<NativeCodeBox> {
        let options = options::box_options(CodeBox::default_options(), &options_json)?;
        let code = CodeBox::with_options(&self.inner, options).await.js()?;
        Ok(NativeCodeBox {
            litebox: code.litebox().clone(),
            value: shared(code),
        })
    }

    #[napi]
    pub async fn create_browser_box(&self, options_json: String) -> Result<NativeBrowserBox> {
        let options = options::box_options(BrowserBox::default_options(), &options_json)?;
        let browser = BrowserBox::with_options(&self.inner, options).await.js()?;
        Ok(NativeBrowserBox {
            litebox: browser.litebox().clone(),
            value: shared(browser),
        })
    }

    #[napi]
    pub async fn create_computer_box(
        &self,
        options_json: String,
        width: u32,
        height: u32,
    ) -> Result<NativeComputerBox> {
        let options = options::box_options(ComputerBox::default_options(), &options_json)?;
        let computer = ComputerBox::with_options(&self.inner, options, (width, height))
            .await
            .js()?;
        Ok(NativeComputerBox {
            litebox: computer.litebox().clone(),
            value: shared(computer),
        })
    }

    #[napi]
    pub async fn create_interactive_box(
        &self,
        options_json: String,
        shell: String,
    ) -> Result<NativeInteractiveBox> {
        let options = options::box_options(boxlite::BoxOptions::default(), &options_json)?;
        let interactive = InteractiveBox::with_shell(&self.inner, options, BoxCommand::new(shell))
            .await
            .js()?;
        Ok(NativeInteractiveBox {
            litebox: interactive.litebox().clone(),
            value: shared(tokio::sync::Mutex::new(interactive)),
        })
    }
}

#[napi]
pub struct NativeCodeBox {
    litebox: boxlite::LiteBox,
    value: Shared<CodeBox>,
}

#[napi]
impl NativeCodeBox {
    #[napi(js_name = "box")]
    pub fn litebox(&self) -> NativeBox {
        NativeBox::new(self.litebox.clone(), true)
    }

    /// Runs `code`; the result as JSON (stdout, stderr, result, display, error).
    #[napi]
    pub async fn run(&self, code: String, timeout_secs: Option<f64>) -> Result<String> {
        let timeout = timeout_secs.map(|t| seconds(t, "timeout")).transpose()?;
        with!(self, "CodeBox", |code_box| {
            let result = match timeout {
                Some(timeout) => code_box.run_with_timeout(&code, timeout).await,
                None => code_box.run(&code).await,
            }
            .js()?;
            Ok(serde_json::to_string(&result).expect("a CodeResult serialises"))
        })
    }

    #[napi]
    pub async fn run_script(&self, path: String) -> Result<String> {
        with!(self, "CodeBox", |code_box| {
            let result = code_box.run_script(&path).await.js()?;
            Ok(serde_json::to_string(&result).expect("a CodeResult serialises"))
        })
    }

    /// pip's output.
    #[napi]
    pub async fn install_packages(&self, packages: Vec<String>) -> Result<String> {
        with!(self, "CodeBox", |code_box| {
            let names: Vec<&str> = packages.iter().map(String::as_str).collect();
            Ok(code_box.install_packages(&names).await.js()?.stdout)
        })
    }

    #[napi]
    pub async fn remove(&self) -> Result<()> {
        match self.value.write().await.take() {
            Some(code_box) => code_box.remove().await.js(),
            None => Ok(()),
        }
    }
}

#[napi]
pub struct NativeBrowserBox {
    litebox: boxlite::LiteBox,
    value: Shared<BrowserBox>,
}

#[napi]
impl NativeBrowserBox {
    #[napi(js_name = "box")]
    pub fn litebox(&self) -> NativeBox {
        NativeBox::new(self.litebox.clone(), true)
    }

    /// The CDP WebSocket URL on this host.
    #[napi]
    pub async fn endpoint(&self) -> Result<String> {
        with!(self, "BrowserBox", |browser| Ok(browser
            .endpoint()
            .to_string()))
    }

    /// The CDP HTTP endpoint on this host (`connectOverCDP` takes it too).
    #[napi]
    pub async fn http_endpoint(&self) -> Result<String> {
        with!(self, "BrowserBox", |browser| Ok(browser.http_endpoint()))
    }

    #[napi]
    pub async fn is_running(&self) -> Result<bool> {
        with!(self, "BrowserBox", |browser| Ok(browser.is_running().await))
    }

    /// Starts the browser again (after a crash); the endpoint changes.
    #[napi]
    pub async fn restart(&self) -> Result<()> {
        let mut guard = self.value.write().await;
        let browser = guard.as_mut().ok_or_else(|| removed("BrowserBox"))?;
        browser.restart().await.js()
    }

    #[napi]
    pub async fn remove(&self) -> Result<()> {
        match self.value.write().await.take() {
            Some(browser) => browser.remove().await.js(),
            None => Ok(()),
        }
    }
}

#[napi(object)]
pub struct NativeScreenshot {
    pub png: Buffer,
    pub width: u32,
    pub height: u32,
}

#[napi]
pub struct NativeComputerBox {
    litebox: boxlite::LiteBox,
    value: Shared<ComputerBox>,
}

#[napi]
impl NativeComputerBox {
    #[napi(js_name = "box")]
    pub fn litebox(&self) -> NativeBox {
        NativeBox::new(self.litebox.clone(), true)
    }

    #[napi]
    pub async fn wait_until_ready(&self, timeout_secs: f64) -> Result<()> {
        let timeout = seconds(timeout_secs, "timeout")?;
        with!(self, "ComputerBox", |c| c
            .wait_until_ready(timeout)
            .await
            .js())
    }

    #[napi]
    pub async fn screenshot(&self) -> Result<NativeScreenshot> {
        with!(self, "ComputerBox", |c| {
            let shot = c.screenshot().await.js()?;
            Ok(NativeScreenshot {
                png: shot.png.into(),
                width: shot.width,
                height: shot.height,
            })
        })
    }

    #[napi]
    pub async fn mouse_move(&self, x: u32, y: u32) -> Result<()> {
        with!(self, "ComputerBox", |c| c.mouse_move(x, y).await.js())
    }

    #[napi]
    pub async fn left_click(&self) -> Result<()> {
        with!(self, "ComputerBox", |c| c.left_click().await.js())
    }

    #[napi]
    pub async fn right_click(&self) -> Result<()> {
        with!(self, "ComputerBox", |c| c.right_click().await.js())
    }

    #[napi]
    pub async fn middle_click(&self) -> Result<()> {
        with!(self, "ComputerBox", |c| c.middle_click().await.js())
    }

    #[napi]
    pub async fn double_click(&self) -> Result<()> {
        with!(self, "ComputerBox", |c| c.double_click().await.js())
    }

    #[napi]
    pub async fn triple_click(&self) -> Result<()> {
        with!(self, "ComputerBox", |c| c.triple_click().await.js())
    }

    #[napi]
    pub async fn left_click_drag(
        &self,
        start_x: u32,
        start_y: u32,
        end_x: u32,
        end_y: u32,
    ) -> Result<()> {
        with!(self, "ComputerBox", |c| c
            .left_click_drag((start_x, start_y), (end_x, end_y))
            .await
            .js())
    }

    #[napi]
    pub async fn cursor_position(&self) -> Result<Vec<u32>> {
        with!(self, "ComputerBox", |c| {
            let (x, y) = c.cursor_position().await.js()?;
            Ok(vec![x, y])
        })
    }

    #[napi(js_name = "type")]
    pub async fn type_text(&self, text: String) -> Result<()> {
        with!(self, "ComputerBox", |c| c.r#type(&text).await.js())
    }

    #[napi]
    pub async fn key(&self, keys: String) -> Result<()> {
        with!(self, "ComputerBox", |c| c.key(&keys).await.js())
    }

    #[napi]
    pub async fn scroll(&self, x: u32, y: u32, direction: String, amount: u32) -> Result<()> {
        let direction: ScrollDirection = direction
            .parse()
            .map_err(|e: boxlite::InvalidArgument| crate::js_error(e.into()))?;
        with!(self, "ComputerBox", |c| c
            .scroll(x, y, direction, amount)
            .await
            .js())
    }

    #[napi]
    pub async fn get_screen_size(&self) -> Result<Vec<u32>> {
        with!(self, "ComputerBox", |c| {
            let (w, h) = c.get_screen_size().await.js()?;
            Ok(vec![w, h])
        })
    }

    #[napi]
    pub async fn remove(&self) -> Result<()> {
        match self.value.write().await.take() {
            Some(computer) => computer.remove().await.js(),
            None => Ok(()),
        }
    }
}

#[napi]
pub struct NativeInteractiveBox {
    litebox: boxlite::LiteBox,
    value: Shared<tokio::sync::Mutex<InteractiveBox>>,
}

#[napi]
impl NativeInteractiveBox {
    #[napi(js_name = "box")]
    pub fn litebox(&self) -> NativeBox {
        NativeBox::new(self.litebox.clone(), true)
    }

    #[napi]
    pub async fn write(&self, data: Buffer) -> Result<()> {
        let data = data.to_vec();
        with!(self, "InteractiveBox", |shell| shell
            .lock()
            .await
            .write(&data)
            .await
            .js())
    }

    /// The next terminal output; null once the shell ended and everything was read.
    #[napi]
    pub async fn read(&self) -> Result<Option<Buffer>> {
        with!(self, "InteractiveBox", |shell| Ok(shell
            .lock()
            .await
            .read()
            .await
            .js()?
            .map(Buffer::from)))
    }

    #[napi]
    pub async fn read_until(&self, pattern: String, timeout_secs: f64) -> Result<String> {
        let timeout = seconds(timeout_secs, "timeout")?;
        with!(self, "InteractiveBox", |shell| shell
            .lock()
            .await
            .read_until(&pattern, timeout)
            .await
            .js())
    }

    #[napi]
    pub async fn resize(&self, rows: u32, cols: u32) -> Result<()> {
        let size = |n: u32| u16::try_from(n).map_err(|_| invalid(format!("{n} rows/cols")));
        let (rows, cols) = (size(rows)?, size(cols)?);
        with!(self, "InteractiveBox", |shell| shell
            .lock()
            .await
            .resize(rows, cols)
            .await
            .js())
    }

    /// JSON `{exitCode, ...}` once the shell ended.
    #[napi]
    pub async fn wait(&self) -> Result<String> {
        with!(self, "InteractiveBox", |shell| Ok(options::exec_end(
            &shell.lock().await.wait().await.js()?
        )
        .to_string()))
    }

    #[napi]
    pub async fn remove(&self) -> Result<()> {
        match self.value.write().await.take() {
            Some(shell) => shell.into_inner().remove().await.js(),
            None => Ok(()),
        }
    }
}
