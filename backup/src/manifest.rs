//! The manifest (`manifest.json`) every backup directory holds: where and when it was
//! taken, the exact GTID position, every file with its size and sha256, and each table's
//! row count and `CHECKSUM TABLE` as the paused replica had them.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::BackupError;

/// The manifest's file name inside a backup directory.
pub const MANIFEST: &str = "manifest.json";

/// The manifest format this version writes.
pub const FORMAT: u32 = 1;

/// What a backup holds and how it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// The backup's id: its start time, local (`YYYYMMDD-HHMMSS`), also its directory name.
    pub id: String,
    /// Where the backup is in its life.
    pub state: State,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When a restore test last matched every table (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
    /// Why the last restore test did not match, if it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_error: Option<String>,
    /// The server the data came from.
    pub source: String,
    /// Its address.
    pub source_address: String,
    /// Whether the source was a paused replica (`replica`), a held Galera node
    /// (`galera node`) or the master (`master`).
    pub source_role: String,
    /// The master's name when the backup began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// `@@gtid_current_pos` of the source while frozen: what a server restored from this
    /// backup holds, and where its replication starts.
    pub gtid_position: String,
    /// `@@gtid_slave_pos` and `@@gtid_binlog_pos` of the source, for the record.
    pub gtid_slave_pos: String,
    /// See `gtid_slave_pos`.
    pub gtid_binlog_pos: String,
    /// A Galera source's `wsrep_local_state_uuid:wsrep_last_committed` while held: the
    /// cluster's history and the last write set in the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera_position: Option<String>,
    /// `@@version` of the source.
    pub server_version: String,
    /// When it began (RFC 3339, local time with offset).
    pub started: String,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// How long the replica's SQL thread was paused, in milliseconds.
    pub paused_ms: u64,
    /// The kohaproxy version that wrote it.
    pub kohaproxy_version: String,
    /// The zstd level of the files.
    pub compression_level: i32,
    /// Every file, in restore order.
    pub files: Vec<FileEntry>,
    /// Every base table with what it held when dumped.
    pub tables: Vec<TableEntry>,
}

/// A backup's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being written (or interrupted, if no process holds the lock).
    Running,
    /// Did not complete; only the manifest is kept.
    Failed,
    /// Complete: every file written, synced and listed with its sha256.
    Ok,
}

/// What a file holds, which decides when a restore loads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A database's tables, views, routines and events (no data, no triggers).
    Schema,
    /// One table's rows (or, from a master, every table's in one consistent stream).
    Data,
    /// A database's triggers (loaded after the data, so loading fires none).
    Triggers,
    /// Accounts and grants of the non-system users.
    Users,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the backup directory.
    pub path: String,
    /// What it holds.
    pub kind: FileKind,
    /// The database it belongs to (for data files, the one to load it into).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The table, for a data file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Size on disk (compressed).
    pub bytes: u64,
    /// Size of the SQL it decompresses to.
    pub raw_bytes: u64,
    /// sha256 of the file on disk, lowercase hex.
    pub sha256: String,
}

/// A table as the source held it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// Database.
    pub database: String,
    /// Table.
    pub table: String,
    /// `COUNT(*)`.
    pub rows: u64,
    /// `CHECKSUM TABLE` (None if the server could not compute one).
    pub checksum: Option<u64>,
}

impl Manifest {
    /// Total size on disk of the files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// What `SHOW BACKUPS` and `backup list` call its state: running, failed, ok,
    /// verified, or verify-failed.
    pub fn status(&self) -> &'static str {
        match self.state {
            State::Running => "running",
            State::Failed => "failed",
            State::Ok if self.verify_error.is_some() => "verify-failed",
            State::Ok if self.verified.is_some() => "verified",
            State::Ok => "ok",
        }
    }

    /// Reads `dir/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest, BackupError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read(&path).map_err(|e| BackupError::io(&path, e))?;
        serde_json::from_slice(&text).map_err(|e| BackupError::Manifest {
            path,
            message: e.to_string(),
        })
    }

    /// Writes `dir/manifest.json` through a temporary file, synced and renamed, so a
    /// reader sees the old manifest or the new one, never half of one.
    pub fn write(&self, dir: &Path) -> Result<(), BackupError> {
        let path = dir.join(MANIFEST);
        let tmp = dir.join(".manifest.json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| BackupError::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&text)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(dir)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            BackupError::io(&path, e)
        })
    }
}

/// Makes a directory's entries (a rename, a new file) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format: FORMAT,
            id: "20261125-023000".into(),
            state: State::Ok,
            error: None,
            verified: None,
            verify_error: None,
            source: "db2".into(),
            source_address: "127.0.0.1:3307".into(),
            source_role: "replica".into(),
            master: Some("db1".into()),
            gtid_position: "0-1-42".into(),
            gtid_slave_pos: "0-1-42".into(),
            gtid_binlog_pos: "0-1-42".into(),
            galera_position: None,
            server_version: "10.11".into(),
            started: "2026-11-25T02:30:00+01:00".into(),
            finished: Some("2026-11-25T02:30:09+01:00".into()),
            duration_ms: 9000,
            paused_ms: 8000,
            kohaproxy_version: "0.1.0".into(),
            compression_level: 3,
            files: vec![FileEntry {
                path: "koha/biblio.sql.zst".into(),
                kind: FileKind::Data,
                database: Some("koha".into()),
                table: Some("biblio".into()),
                bytes: 10,
                raw_bytes: 40,
                sha256: "ab".into(),
            }],
            tables: vec![TableEntry {
                database: "koha".into(),
                table: "biblio".into(),
                rows: 3,
                checksum: Some(7),
            }],
        }
    }

    #[test]
    fn round_trips_through_its_file_and_says_its_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = sample();
        m.write(dir.path()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
        assert_eq!(m.status(), "ok");
        m.verified = Some("now".into());
        assert_eq!(m.status(), "verified");
        m.verify_error = Some("differs".into());
        assert_eq!(m.status(), "verify-failed");
        m.state = State::Failed;
        assert_eq!(m.status(), "failed");
        assert_eq!(m.bytes(), 10);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [MANIFEST], "no temporary file is left");
    }

    #[test]
    fn a_broken_manifest_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST), "{\"format\":").unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("manifest.json: not a valid manifest"), "{err}");
    }
}
