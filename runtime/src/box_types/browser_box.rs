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
            rootfs: RootfsSpec::from_reference(&super::local_image(IMAGE_ENV, "browser")),
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
        // The forward lives as long as the box; Chromium may be started again (`restart`).
        let forward = simple
            .litebox()
            .exec(
                BoxCommand::new("socat")
                    .arg(format!("TCP-LISTEN:{GUEST_CDP_PORT},fork,reuseaddr"))
                    .arg(format!("TCP:127.0.0.1:{CHROMIUM_PORT}")),
            )
            .await?;
        forward.send_output_to_log().await?;
        let browser = launch_chromium(simple.litebox()).await?;
        let mut browser_box = Self {
            simple,
            host_port,
            browser,
            websocket: String::new(),
        };
        browser_box.websocket = browser_box.wait_until_ready().await?;
        Ok(browser_box)
    }

    /// Whether Chromium answers on its DevTools port now (it may have crashed, or been
    /// killed by the code it ran out of memory).
    pub async fn is_running(&self) -> bool {
        let port = self.host_port;
        tokio::task::spawn_blocking(move || version(port))
            .await
            .is_ok_and(|answer| answer.is_ok())
    }

    /// Starts Chromium again (whatever state the old one is in, it is killed first) and
    /// waits until it answers; [`BrowserBox::endpoint`] is then the new browser's URL. For a
    /// browser that crashed: CDP clients connected to the old one must connect again.
    pub async fn restart(&mut self) -> BoxliteResult<()> {
        // Already gone is fine: the point is that no old Chromium holds the profile or port.
        let _ = self.browser.kill().await;
        let _ = self.browser.wait().await;
        self.browser = launch_chromium(self.litebox()).await?;
        self.websocket = self.wait_until_ready().await?;
        Ok(())
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
        // Only an exit of the browser counts; a wait that failed (a busy guest's agent missing
        // a deadline) just stops being watched.
        let mut ended = Some(tokio::spawn(async move { browser.wait().await }));
        loop {
            let attempt = tokio::task::spawn_blocking(move || version(port))
                .await
                .map_err(|e| ExecutionError::Browser(format!("asking Chromium: {e}")))?;
            let last = match attempt {
                Ok(url) => {
                    if let Some(watch) = ended.take() {
                        watch.abort();
                    }
                    return Ok(url);
                }
                Err(last) => last,
            };
            if tokio::time::Instant::now() > deadline {
                return Err(ExecutionError::Browser(format!(
                    "Chromium did not answer on its DevTools port within {READY_TIMEOUT:?} \
                     ({last}); its output is in `boxlite logs {}`",
                    self.litebox().id()
                ))
                .into());
            }
            // Another look in 200 ms, unless the browser ends first.
            let pause = tokio::time::sleep(Duration::from_millis(200));
            match ended.as_mut() {
                None => pause.await,
                Some(watch) => tokio::select! {
                    result = watch => {
                        ended = None;
                        if let Ok(Ok(result)) = result {
                            return Err(ExecutionError::Browser(format!(
                                "Chromium ended before it was ready (exit code {}); its \
                                 output is in `boxlite logs {}`",
                                result.exit_code,
                                self.litebox().id()
                            ))
                            .into());
                        }
                    }
                    _ = pause => {}
                },
            }
        }
    }
}

/// Starts headless Chromium in `litebox`, its output to the box's log (its chatter must not
/// fill the agent's buffers while nobody reads it).
async fn launch_chromium(litebox: &LiteBox) -> BoxliteResult<Execution> {
    let browser = litebox
        .exec(BoxCommand::new("chromium").args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            &format!("--remote-debugging-port={CHROMIUM_PORT}"),
            "--user-data-dir=/tmp/chromium",
            "about:blank",
        ]))
        .await?;
    browser.send_output_to_log().await?;
    Ok(browser)
}

/// `GET /json/version` on 127.0.0.1:`port`: the browser's WebSocket URL. HTTP/1.1 with the
/// body read by its Content-Length: Chromium's DevTools server drops HTTP/1.0 requests and
/// keeps connections open.
fn version(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    const MAX: usize = 1 << 20;
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(
            format!(
                "GET /json/version HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("no Content-Length in the answer")?;
            if length > MAX {
                return Err(format!("an answer of {length} bytes"));
            }
            if response.len() >= end + 4 + length {
                let body = &response[end + 4..end + 4 + length];
                let json: serde_json::Value =
                    serde_json::from_slice(body).map_err(|e| e.to_string())?;
                return json
                    .get("webSocketDebuggerUrl")
                    .and_then(|u| u.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| "no webSocketDebuggerUrl in /json/version".to_string());
            }
        }
        if response.len() > MAX {
            return Err("an answer without an end".into());
        }
        let read = stream.read(&mut buffer).map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("no HTTP answer yet".into());
        }
        response.extend_from_slice(&buffer[..read]);
    }
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
