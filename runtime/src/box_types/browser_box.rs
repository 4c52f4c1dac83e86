//! `BrowserBox`: headless Chromium in a box, driven over the Chrome DevTools Protocol from
//! the host. Chromium listens on the box's loopback (it only ever binds the debugging port
//! there); `socat` in the box forwards the box's CDP port to it, and a port forward brings
//! that to 127.0.0.1 on the host. [`BrowserBox::endpoint`] is the WebSocket URL a CDP client
//! (playwright's `connectOverCDP`, puppeteer's `connect`) takes.
//!
//! Chromium runs with `--no-sandbox`: its own sandbox needs user namespaces and seccomp
//! setup that buy nothing here, because the VM is the sandbox (the page can reach only what
//! the box can, under the box's network policy).

use std::time::Duration;

use crate::runtime::{
    BoxCommand, BoxliteResult, BoxliteRuntime, Execution, ExecutionError, LiteBox,
};
use crate::simple_box::SimpleBox;
use crate::{BoxOptions, PortSpec, RootfsSpec};

/// The CDP port in the box that the host's port forward reaches (socat → Chromium).
pub const GUEST_CDP_PORT: u16 = 9223;
/// Chromium's own debugging port, on the box's loopback.
const CHROMIUM_PORT: u16 = 9222;
/// How long Chromium may take to answer on its debugging port after the box starts.
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// The image a `BrowserBox` runs when its options name none: `BOXLITE_BROWSERBOX_IMAGE`,
/// else the browser image `scripts/build-images.sh browser` builds.
pub const IMAGE_ENV: &str = "BOXLITE_BROWSERBOX_IMAGE";

/// A box running headless Chromium with its DevTools endpoint on a host port. Removed when
/// dropped, like [`SimpleBox`].
pub struct BrowserBox {
    simple: SimpleBox,
    host_port: u16,
    browser: Execution,
    websocket: String,
}

impl BrowserBox {
    /// A box of [`BrowserBox::default_options`], with Chromium ready.
    pub async fn new(runtime: &BoxliteRuntime) -> BoxliteResult<Self> {
        Self::with_options(runtime, Self::default_options()).await
    }

    /// The default image (see [`IMAGE_ENV`]) with 2 GiB of memory and 2 vCPUs: Chromium's
    /// renderer, GPU and browser processes want them.
    pub fn default_options() -> BoxOptions {
        BoxOptions {
            rootfs: RootfsSpec::Image(super::local_image(IMAGE_ENV, "browser")),
            memory_mib: Some(2048),
            cpus: Some(2),
            ..BoxOptions::default()
        }
    }

    /// A box of `options` (any image with `chromium` and `socat`); the CDP port is forwarded
    /// from a free port on the host's 127.0.0.1.
    pub async fn with_options(
        runtime: &BoxliteRuntime,
        mut options: BoxOptions,
    ) -> BoxliteResult<Self> {
        let host_port = free_local_port()?;
        options.ports.push(PortSpec::tcp(host_port, GUEST_CDP_PORT));
        let simple = SimpleBox::new(runtime, options).await?;
        let browser = simple
            .litebox()
            .exec(BoxCommand::new("sh").args([
                "-c",
                &format!(
                    "socat TCP-LISTEN:{GUEST_CDP_PORT},fork,reuseaddr TCP:127.0.0.1:{CHROMIUM_PORT} & \
                     exec chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
                     --no-first-run --no-default-browser-check \
                     --remote-debugging-port={CHROMIUM_PORT} --user-data-dir=/tmp/chromium \
                     about:blank"
                ),
            ]))
            .await?;
        // Chromium's chatter must not fill the agent's buffers while nobody reads it.
        browser.send_output_to_log().await?;
        let mut browser_box = Self {
            simple,
            host_port,
            browser,
            websocket: String::new(),
        };
        browser_box.websocket = browser_box.wait_until_ready().await?;
        Ok(browser_box)
    }

    /// The box underneath.
    pub fn litebox(&self) -> &LiteBox {
        self.simple.litebox()
    }

    /// The browser's CDP WebSocket URL on this host (`ws://127.0.0.1:PORT/devtools/browser/…`).
    pub fn endpoint(&self) -> &str {
        &self.websocket
    }

    /// The CDP HTTP endpoint on this host (`http://127.0.0.1:PORT`: `/json/version`,
    /// `/json/list`), which `connectOverCDP` also accepts.
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.host_port)
    }

    /// Removes the box now, reporting what went wrong.
    pub async fn remove(self) -> BoxliteResult<()> {
        self.simple.remove().await
    }

    /// Waits until Chromium answers `/json/version` through the forward; its WebSocket URL.
    async fn wait_until_ready(&self) -> BoxliteResult<String> {
        let port = self.host_port;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut browser = self.browser.clone_handle();
        let mut ended = tokio::spawn(async move { browser.wait().await });
        loop {
            let attempt = tokio::task::spawn_blocking(move || version(port))
                .await
                .map_err(|e| ExecutionError::Browser(format!("asking Chromium: {e}")))?;
            match attempt {
                Ok(url) => return Ok(url),
                Err(last) if tokio::time::Instant::now() > deadline => {
                    return Err(ExecutionError::Browser(format!(
                        "Chromium did not answer on its DevTools port within {READY_TIMEOUT:?} \
                         ({last}); its output is in `boxlite logs {}`",
                        self.litebox().id()
                    ))
                    .into())
                }
                Err(_) => {
                    // Another look in 200 ms, unless the browser ends first.
                    tokio::select! {
                        result = &mut ended => {
                            let how = match result {
                                Ok(Ok(r)) => format!("exit code {}", r.exit_code),
                                Ok(Err(e)) => e.to_string(),
                                Err(e) => e.to_string(),
                            };
                            return Err(ExecutionError::Browser(format!(
                                "Chromium ended before it was ready ({how}); its output is in \
                                 `boxlite logs {}`",
                                self.litebox().id()
                            ))
                            .into());
                        }
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }
}

/// `GET /json/version` on 127.0.0.1:`port`: the browser's WebSocket URL.
fn version(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!("GET /json/version HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .ok_or("no HTTP answer yet")?;
    let json: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    json.get("webSocketDebuggerUrl")
        .and_then(|u| u.as_str())
        .map(str::to_string)
        .ok_or_else(|| "no webSocketDebuggerUrl in /json/version".to_string())
}

/// A port on 127.0.0.1 that nothing listens on now.
fn free_local_port() -> BoxliteResult<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| ExecutionError::Browser(format!("finding a free host port: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| ExecutionError::Browser(format!("finding a free host port: {e}")))?
        .port();
    Ok(port)
}
