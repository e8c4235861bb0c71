//! Progress of long operations: a bar on a terminal (indicatif), log lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

/// How often progress is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts finished steps (files) of an operation.
pub(crate) struct Progress {
    what: String,
    total: u64,
    bar: Option<ProgressBar>,
    logged: Mutex<(Instant, u64)>,
}

impl Progress {
    /// An operation called `what` of `total` steps; a bar only if `bar` is allowed and
    /// stderr is a terminal (the proxy's own backups only log).
    pub fn new(what: impl Into<String>, total: u64, bar: bool) -> Progress {
        let what = what.into();
        let bar = (bar && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} files",
            ) {
                b.set_style(style);
            }
            b.set_message(what.clone());
            b
        });
        Progress {
            what,
            total,
            bar,
            logged: Mutex::new((Instant::now(), 0)),
        }
    }

    /// One more step done (`name` is the file).
    pub fn step(&self, name: &str, raw_bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(1);
            b.set_message(format!("{}: {name}", self.what));
            return;
        }
        let Ok(mut logged) = self.logged.lock() else {
            return;
        };
        logged.1 += 1;
        let done = logged.1;
        if logged.0.elapsed() >= LOG_EVERY || done == self.total {
            logged.0 = Instant::now();
            info!(
                "{}: {done}/{} files ({name}, {} KiB)",
                self.what,
                self.total,
                raw_bytes / 1024
            );
        }
    }

    /// Ends the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
