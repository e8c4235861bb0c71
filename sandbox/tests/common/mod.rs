//! Helpers shared by the sandbox's end-to-end tests.

use std::path::Path;
use std::process::Command;

/// What a test returns.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs a statement as the `koha` app user on a port; returns (success, stderr).
pub fn as_koha(port: u16, sql: &str) -> Result<(bool, String), std::io::Error> {
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-ukoha",
            "-pkoha",
        ])
        .args(["--protocol=TCP", "-N", "-B", "-e", sql])
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Processes whose command line mentions `dir`, other than zombies.
pub fn processes_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            !zombie && String::from_utf8_lossy(&cmdline).contains(&needle)
        })
        .collect()
}
