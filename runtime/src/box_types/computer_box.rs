//! `ComputerBox`: a desktop in a box (Xvfb, a window manager) and the 14 methods an agent
//! uses to operate it: screenshots, the mouse, the keyboard, the screen's size. Every method
//! is one `xdotool` (or ImageMagick `import`) run in the box on display `:1`; coordinates
//! are checked against the screen first, so a click outside it is an error that says where
//! the screen ends rather than a click at its edge.

use std::time::Duration;

use crate::runtime::{
    BoxCommand, BoxliteResult, BoxliteRuntime, ExecutionError, InvalidArgument, LiteBox,
};
use crate::simple_box::{ExecOutput, SimpleBox};
use crate::{BoxOptions, RootfsSpec};

/// The X display the desktop runs on.
pub const DISPLAY: &str = ":1";
/// The screen a `ComputerBox` gets unless told otherwise.
pub const DEFAULT_SCREEN: (u32, u32) = (1024, 768);
/// How long the desktop may take to come up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The image a `ComputerBox` runs when its options name none: `BOXLITE_COMPUTERBOX_IMAGE`,
/// else the desktop image `scripts/build-images.sh desktop` builds.
pub const IMAGE_ENV: &str = "BOXLITE_COMPUTERBOX_IMAGE";
/// The largest screenshot accepted from the box (a PNG of the whole screen).
pub const MAX_SCREENSHOT_BYTES: usize = 64 << 20;

/// A PNG of the screen and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screenshot {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Which way [`ComputerBox::scroll`] turns the wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrollDirection {
    Up,
    Down,
    Left,
    Right,
}

impl ScrollDirection {
    /// The X pointer button of one wheel step this way.
    fn button(self) -> &'static str {
        match self {
            ScrollDirection::Up => "4",
            ScrollDirection::Down => "5",
            ScrollDirection::Left => "6",
            ScrollDirection::Right => "7",
        }
    }
}

impl std::str::FromStr for ScrollDirection {
    type Err = InvalidArgument;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "up" => Ok(ScrollDirection::Up),
            "down" => Ok(ScrollDirection::Down),
            "left" => Ok(ScrollDirection::Left),
            "right" => Ok(ScrollDirection::Right),
            other => Err(InvalidArgument::Desktop(format!(
                "scroll direction {other:?}: expected up, down, left or right"
            ))),
        }
    }
}

/// A box with a desktop. Removed when dropped, like [`SimpleBox`].
pub struct ComputerBox {
    simple: SimpleBox,
    screen: (u32, u32),
}

impl ComputerBox {
    /// A box of [`ComputerBox::default_options`] with its desktop ready.
    pub async fn new(runtime: &BoxliteRuntime) -> BoxliteResult<Self> {
        Self::with_options(runtime, Self::default_options(), DEFAULT_SCREEN).await
    }

    /// The default image (see [`IMAGE_ENV`]) with 1 GiB of memory.
    pub fn default_options() -> BoxOptions {
        BoxOptions {
            rootfs: RootfsSpec::from_reference(&super::local_image(IMAGE_ENV, "desktop")),
            memory_mib: Some(1024),
            ..BoxOptions::default()
        }
    }

    /// A box of `options` (any image with Xvfb, xdotool, xdpyinfo, ImageMagick and
    /// matchbox-window-manager) with a `width`×`height` screen, ready.
    pub async fn with_options(
        runtime: &BoxliteRuntime,
        options: BoxOptions,
        (width, height): (u32, u32),
    ) -> BoxliteResult<Self> {
        if !(64..=8192).contains(&width) || !(64..=8192).contains(&height) {
            return Err(InvalidArgument::Desktop(format!(
                "screen {width}x{height}: each side must be 64 to 8192 pixels"
            ))
            .into());
        }
        let simple = SimpleBox::new(runtime, options).await?;
        let desktop = simple
            .litebox()
            .exec(BoxCommand::new("sh").args([
                "-c",
                &format!(
                    "Xvfb {DISPLAY} -screen 0 {width}x{height}x24 -nolisten tcp & \
                     for i in $(seq 100); do xdpyinfo -display {DISPLAY} >/dev/null 2>&1 && break; \
                     sleep 0.1; done; \
                     DISPLAY={DISPLAY} matchbox-window-manager -use_titlebar no & wait"
                ),
            ]))
            .await?;
        // Nobody reads the desktop's own output: to the box's log, so it never blocks.
        desktop.send_output_to_log().await?;
        let computer = Self {
            simple,
            screen: (width, height),
        };
        computer.wait_until_ready(READY_TIMEOUT).await?;
        Ok(computer)
    }

    /// The box underneath.
    pub fn litebox(&self) -> &LiteBox {
        self.simple.litebox()
    }

    /// Waits until the X server answers, within `timeout`.
    pub async fn wait_until_ready(&self, timeout: Duration) -> BoxliteResult<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let probe = self.x(&["xdpyinfo", "-display", DISPLAY]).await?;
            if probe.success() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ExecutionError::Desktop(format!(
                    "the desktop did not come up within {timeout:?}: {}",
                    probe.stderr.trim()
                ))
                .into());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// A PNG of the whole screen.
    pub async fn screenshot(&self) -> BoxliteResult<Screenshot> {
        let execution = self
            .litebox()
            .exec(
                BoxCommand::new("import")
                    .args(["-display", DISPLAY, "-window", "root", "png:-"])
                    .env("DISPLAY", DISPLAY),
            )
            .await?;
        let mut png = Vec::new();
        while let Some(bytes) = execution.read_stdout().await? {
            png.extend_from_slice(&bytes);
            if png.len() > MAX_SCREENSHOT_BYTES {
                let _ = execution.signal(libc::SIGKILL).await;
                return Err(ExecutionError::Desktop(format!(
                    "the screenshot is larger than {MAX_SCREENSHOT_BYTES} bytes"
                ))
                .into());
            }
        }
        let (_, stderr, result) = execution.output().await?;
        let (width, height) = png_size(&png).ok_or_else(|| {
            ExecutionError::Desktop(format!(
                "the screenshot is not a PNG (exit code {}): {}",
                result.exit_code,
                String::from_utf8_lossy(&stderr).trim()
            ))
        })?;
        Ok(Screenshot { png, width, height })
    }

    /// Moves the pointer to (`x`, `y`).
    pub async fn mouse_move(&self, x: u32, y: u32) -> BoxliteResult<()> {
        self.on_screen(x, y)?;
        self.xdotool(&["mousemove", &x.to_string(), &y.to_string()])
            .await
    }

    /// Clicks the left button where the pointer is.
    pub async fn left_click(&self) -> BoxliteResult<()> {
        self.xdotool(&["click", "1"]).await
    }

    pub async fn right_click(&self) -> BoxliteResult<()> {
        self.xdotool(&["click", "3"]).await
    }

    pub async fn middle_click(&self) -> BoxliteResult<()> {
        self.xdotool(&["click", "2"]).await
    }

    pub async fn double_click(&self) -> BoxliteResult<()> {
        self.xdotool(&["click", "--repeat", "2", "1"]).await
    }

    pub async fn triple_click(&self) -> BoxliteResult<()> {
        self.xdotool(&["click", "--repeat", "3", "1"]).await
    }

    /// Presses the left button at (`from`), moves to (`to`) and releases it there.
    pub async fn left_click_drag(&self, from: (u32, u32), to: (u32, u32)) -> BoxliteResult<()> {
        self.on_screen(from.0, from.1)?;
        self.on_screen(to.0, to.1)?;
        self.xdotool(&[
            "mousemove",
            &from.0.to_string(),
            &from.1.to_string(),
            "mousedown",
            "1",
            "mousemove",
            &to.0.to_string(),
            &to.1.to_string(),
            "mouseup",
            "1",
        ])
        .await
    }

    /// Where the pointer is.
    pub async fn cursor_position(&self) -> BoxliteResult<(u32, u32)> {
        let out = self.x(&["xdotool", "getmouselocation", "--shell"]).await?;
        let value = |key: &str| {
            out.stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        match (value("X="), value("Y=")) {
            (Some(x), Some(y)) if out.success() => Ok((x, y)),
            _ => Err(ExecutionError::Desktop(format!(
                "xdotool did not say where the pointer is: {}{}",
                out.stdout.trim(),
                out.stderr.trim()
            ))
            .into()),
        }
    }

    /// Types `text` as key presses into the focused window.
    pub async fn r#type(&self, text: &str) -> BoxliteResult<()> {
        if text.contains('\0') {
            return Err(
                InvalidArgument::Desktop("text with a NUL byte cannot be typed".into()).into(),
            );
        }
        self.xdotool(&["type", "--delay", "20", "--", text]).await
    }

    /// Presses a key or chord by X keysym names: `Return`, `ctrl+c`, `alt+Tab`.
    pub async fn key(&self, keys: &str) -> BoxliteResult<()> {
        if keys.is_empty() || keys.starts_with('-') || keys.contains(char::is_whitespace) {
            return Err(InvalidArgument::Desktop(format!(
                "{keys:?} is not a key: name one keysym or chord such as Return or ctrl+c"
            ))
            .into());
        }
        self.xdotool(&["key", "--", keys]).await
    }

    /// Turns the wheel `amount` steps in `direction` with the pointer at (`x`, `y`).
    pub async fn scroll(
        &self,
        x: u32,
        y: u32,
        direction: ScrollDirection,
        amount: u32,
    ) -> BoxliteResult<()> {
        self.on_screen(x, y)?;
        if amount == 0 || amount > 1000 {
            return Err(InvalidArgument::Desktop(format!(
                "scroll amount {amount}: 1 to 1000 steps"
            ))
            .into());
        }
        self.xdotool(&[
            "mousemove",
            &x.to_string(),
            &y.to_string(),
            "click",
            "--repeat",
            &amount.to_string(),
            direction.button(),
        ])
        .await
    }

    /// The screen's width and height, as the X server reports them.
    pub async fn get_screen_size(&self) -> BoxliteResult<(u32, u32)> {
        let out = self.x(&["xdotool", "getdisplaygeometry"]).await?;
        let mut parts = out.stdout.split_whitespace().map(str::parse::<u32>);
        match (parts.next(), parts.next()) {
            (Some(Ok(w)), Some(Ok(h))) if out.success() => Ok((w, h)),
            _ => Err(ExecutionError::Desktop(format!(
                "xdotool did not give the screen's size: {}",
                out.stderr.trim()
            ))
            .into()),
        }
    }

    /// Removes the box now, reporting what went wrong.
    pub async fn remove(self) -> BoxliteResult<()> {
        self.simple.remove().await
    }

    fn on_screen(&self, x: u32, y: u32) -> BoxliteResult<()> {
        let (width, height) = self.screen;
        if x >= width || y >= height {
            return Err(InvalidArgument::Desktop(format!(
                "({x}, {y}) is outside the {width}x{height} screen (0..{width}, 0..{height})"
            ))
            .into());
        }
        Ok(())
    }

    async fn xdotool(&self, args: &[&str]) -> BoxliteResult<()> {
        let mut command = vec!["xdotool"];
        command.extend_from_slice(args);
        let out = self.x(&command).await?;
        if out.success() {
            Ok(())
        } else {
            Err(ExecutionError::Desktop(format!(
                "xdotool {}: {}",
                args.join(" "),
                out.stderr.trim()
            ))
            .into())
        }
    }

    /// Runs an X client in the box on the desktop's display.
    async fn x(&self, command: &[&str]) -> BoxliteResult<ExecOutput> {
        self.simple
            .run(
                BoxCommand::new(command[0])
                    .args(command[1..].iter().copied())
                    .env("DISPLAY", DISPLAY),
            )
            .await
    }
}

/// Width and height from a PNG's IHDR chunk; `None` if `png` is not a PNG.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || &png[..8] != b"\x89PNG\r\n\x1a\n" || &png[12..16] != b"IHDR" {
        return None;
    }
    let word = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    Some((word(16), word(20)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_sizes_come_from_the_header() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&1024u32.to_be_bytes());
        png.extend_from_slice(&768u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((1024, 768)));
        assert_eq!(png_size(b"GIF89a"), None);
        assert_eq!(png_size(&png[..20]), None);
        assert_eq!(
            "down".parse::<ScrollDirection>().unwrap(),
            ScrollDirection::Down
        );
        assert!("sideways".parse::<ScrollDirection>().is_err());
    }
}
