//! Reading and driving kohaproxy's admin console from tests and benchmarks, through the
//! `mariadb` command-line client on the console's Unix socket.

use std::path::Path;
use std::process::Command;

/// Runs one admin statement on the console at `socket`; its output (tab-separated, no
/// headers), or the error text the console answered.
pub fn admin(socket: &Path, sql: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .args(["-uadmin", "-N", "-B", "-e", sql])
        .output()
        .map_err(|e| format!("cannot run mariadb: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The master the proxy routes writes to (`SHOW TOPOLOGY`), if any.
pub fn proxy_master(socket: &Path) -> Option<String> {
    let out = admin(socket, "SHOW TOPOLOGY").ok()?;
    let first = out.lines().next()?.split('\t').next()?.to_string();
    (first != "NULL").then_some(first)
}

/// What `SHOW SERVERS` says of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRow {
    /// `master`, `replica`, `standalone`, `stale`, `down`, `unknown`.
    pub role: String,
    /// `ON`, `OFF` or `NULL`.
    pub read_only: String,
    /// The monitor's note (fenced, diverged, rejoined, maintenance), or `NULL`.
    pub note: String,
}

/// Where `SHOW SERVERS` puts the note (name, address, role, state, read_only, lag_s,
/// behind_trx, gtid, connections, statements, last_error, note, wsrep).
pub const NOTE_COLUMN: usize = 11;

/// `SHOW SERVERS`'s row for server `name`.
pub fn server_row(socket: &Path, name: &str) -> Option<ServerRow> {
    let table = admin(socket, "SHOW SERVERS").ok()?;
    table.lines().find_map(|line| {
        let cols: Vec<&str> = line.split('\t').collect();
        (cols.first() == Some(&name) && cols.len() > 4).then(|| ServerRow {
            role: cols[2].to_string(),
            read_only: cols[4].to_string(),
            note: cols.get(NOTE_COLUMN).copied().unwrap_or("").to_string(),
        })
    })
}
