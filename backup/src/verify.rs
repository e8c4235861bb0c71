//! Proving a backup restores: every file's sha256, and with a restore test, a load into
//! a throw-away server (a one-server sandbox) whose tables must have the row counts and
//! `CHECKSUM TABLE` values the manifest recorded from the paused replica.

use std::path::Path;

use tracing::info;

use crate::dump::table_stats;
use crate::error::BackupError;
use crate::manifest::Manifest;
use crate::restore::{self, check_files, RestoreOptions};
use crate::source::Endpoint;

/// Checks the files of the backup in `dir`; with `restore_test`, also restores it into a
/// throw-away server and compares every table. Records the outcome of a restore test in
/// the manifest (`verified` or `verify_error`).
pub async fn verify(
    dir: &Path,
    manifest: &mut Manifest,
    restore_test: Option<&RestoreOptions>,
) -> Result<String, BackupError> {
    let problems = check_files(dir, manifest);
    if !problems.is_empty() {
        return Err(BackupError::Mismatch {
            id: manifest.id.clone(),
            problems: problems.join("; "),
        });
    }
    let files = format!(
        "{} files, {} bytes: sizes and sha256 match",
        manifest.files.len(),
        manifest.bytes()
    );
    let Some(options) = restore_test else {
        return Ok(files);
    };
    let outcome = restore_test_into_sandbox(dir, manifest, options).await;
    match &outcome {
        Ok(_) => {
            let now = chrono::Local::now();
            manifest.verified = Some(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, false));
            manifest.verify_error = None;
            manifest.write(dir)?;
        }
        Err(BackupError::Mismatch { problems, .. }) => {
            manifest.verify_error = Some(problems.clone());
            manifest.write(dir)?;
        }
        // The test could not run (no throw-away server): nothing new to record.
        Err(_) => {}
    }
    outcome.map(|tables| format!("{files}; restore test: {tables}"))
}

async fn restore_test_into_sandbox(
    dir: &Path,
    manifest: &Manifest,
    options: &RestoreOptions,
) -> Result<String, BackupError> {
    let scratch = tempfile::Builder::new()
        .prefix("kohaproxy-restore-test-")
        .tempdir()
        .map_err(|e| BackupError::io(std::env::temp_dir(), e))?;
    let mut up = kohaproxy_sandbox::UpOptions::new(scratch.path());
    up.replicas = 0;
    up.buffer_pool_mb = 256;
    let sandbox = tokio::task::spawn_blocking(move || kohaproxy_sandbox::Sandbox::up(&up))
        .await
        .map_err(|e| BackupError::Sandbox(e.to_string()))?
        .map_err(|e| BackupError::Sandbox(e.to_string()))?;
    let guard = kohaproxy_sandbox::SandboxGuard(sandbox);
    let address = guard.servers()[0].address();
    info!(id = %manifest.id, server = %address, "restore test: throw-away server started");
    let target = Endpoint::new("restore-test", &address, "root", "");
    let compared = async {
        restore::restore(dir, manifest, &target, options).await?;
        compare(&target, manifest).await
    }
    .await;
    tokio::task::spawn_blocking(move || drop(guard))
        .await
        .map_err(|e| BackupError::Sandbox(e.to_string()))?;
    compared
}

/// Compares every table the manifest lists with `target`'s.
pub async fn compare(target: &Endpoint, manifest: &Manifest) -> Result<String, BackupError> {
    let mut conn = target.connect().await?;
    let mut problems = Vec::new();
    let mut rows = 0u64;
    for t in &manifest.tables {
        let name = format!("{}.{}", t.database, t.table);
        match table_stats(&mut conn, &target.name, &t.database, &t.table).await {
            Ok(got) if got.rows != t.rows => problems.push(format!(
                "{name}: {} rows, the backup recorded {}",
                got.rows, t.rows
            )),
            Ok(got) if got.checksum != t.checksum => problems.push(format!(
                "{name}: checksum {:?}, the backup recorded {:?}",
                got.checksum, t.checksum
            )),
            Ok(got) => rows += got.rows,
            Err(e) => problems.push(format!("{name}: {e}")),
        }
    }
    let _ = conn.disconnect().await;
    if problems.is_empty() && manifest.tables.is_empty() {
        Ok(
            "restored; no per-table counts to compare (the backup was taken from the master, \
            whose data moves)"
                .to_owned(),
        )
    } else if problems.is_empty() {
        Ok(format!(
            "{} tables, {rows} rows: counts and checksums match",
            manifest.tables.len()
        ))
    } else {
        Err(BackupError::Mismatch {
            id: manifest.id.clone(),
            problems: problems.join("; "),
        })
    }
}
