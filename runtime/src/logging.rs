//! The runtime's log in its home, `logs/boxlite.log` (rotated to `boxlite.log.1` at
//! [`MAX_LOG_BYTES`]), and `RUST_LOG` on stderr. The library only emits `tracing` events; a
//! program (the CLI, an SDK) calls [`install`] once to have them recorded. Each box's shim
//! logs to the box's own `shim.log`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use boxlite_shim_api::rotating::RotatingFile;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// The log's file name in the home's `logs/`.
pub const LOG_FILE: &str = "boxlite.log";
/// Size at which the log is rotated: the home keeps at most twice this.
pub const MAX_LOG_BYTES: u64 = 8 << 20;

/// The log file of `home`.
pub fn log_path(home: &Path) -> PathBuf {
    home.join("logs").join(LOG_FILE)
}

/// Installs the process's `tracing` subscriber, unless the program already has one: events
/// go to `<home>/logs/boxlite.log` at `RUST_LOG`'s levels (`info` when unset) and to stderr
/// at `RUST_LOG`'s levels (`stderr_default`, such as `warn`, when unset). Returns whether it
/// was installed. Call it with the home of an open runtime ([`crate::BoxliteRuntime::home`]),
/// which has checked that the home is the caller's and private.
pub fn install(home: &Path, stderr_default: &str) -> bool {
    let filter = |default: &str| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default))
    };
    let mut layers = vec![fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter(stderr_default))
        .boxed()];
    if home.join("logs").is_dir() {
        let file = HomeLog(Arc::new(Mutex::new(RotatingFile::new(
            log_path(home),
            MAX_LOG_BYTES,
        ))));
        layers.push(
            fmt::layer()
                .with_ansi(false)
                .with_writer(file)
                .with_filter(filter("info"))
                .boxed(),
        );
    }
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok()
}

/// The home's log file, shared by the subscriber's writers.
#[derive(Clone)]
struct HomeLog(Arc<Mutex<RotatingFile>>);

impl<'a> fmt::MakeWriter<'a> for HomeLog {
    type Writer = HomeLog;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Write for HomeLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .write_stream(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
