//! The benchmarks' markdown reports: several runs gathered into one, printed and kept
//! under `target/bench-results/`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Runs `run` on each item and joins the reports (a failed run's report says why);
/// true if any run failed.
pub fn run_all<T>(
    items: impl IntoIterator<Item = T>,
    mut run: impl FnMut(T) -> Result<String, String>,
) -> (String, bool) {
    let mut report = String::new();
    let mut failed = false;
    for item in items {
        match run(item) {
            Ok(md) => report.push_str(&md),
            Err(md) => {
                report.push_str(&md);
                failed = true;
            }
        }
        report.push('\n');
    }
    (report, failed)
}

/// Writes `report` to `<dir>/<name>-<unix seconds>.md` (creating `dir`); the path, or
/// `None` if it could not be written (the report is on stdout anyway).
pub fn save(dir: &Path, name: &str, report: &str) -> Option<PathBuf> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let path = dir.join(format!("{name}-{stamp}.md"));
    std::fs::create_dir_all(dir).ok()?;
    std::fs::write(&path, report).ok()?;
    Some(path)
}

/// Prints `report`, keeps it under `dir` as `<name>-<unix seconds>.md`, and exits the
/// process: status 1 if `failed`, else 0 (the end of a benchmark's `main`).
pub fn finish(dir: &Path, name: &str, report: &str, failed: bool) -> ! {
    println!("{report}");
    save(dir, name, report);
    std::process::exit(i32::from(failed))
}
