//! Loading a backup into a server: every file's sha256 checked first, then the schemas,
//! the tables' rows in parallel, the triggers and the accounts, each through the `mariadb`
//! client with binary logging off for the load (the restored server's own history stays
//! empty, so it can replicate from the backup's GTID position). Then the statements that
//! make it a replica.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::info;

use crate::dump::{client_args, password_file};
use crate::error::BackupError;
use crate::manifest::{FileEntry, FileKind, Manifest};
use crate::pipe;
use crate::progress::Progress;
use crate::source::{self, Endpoint};

/// The server a backup is loaded into.
pub type Target = Endpoint;

/// How a restore runs.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The `mariadb` client program.
    pub program: PathBuf,
    /// Files loaded at once.
    pub parallel: usize,
    /// Keep binary logging on during the load (off by default: the load would otherwise
    /// become the restored server's own transactions, and it could not replicate from the
    /// backup's position).
    pub binlog: bool,
    /// Show a progress bar on a terminal.
    pub bar: bool,
    /// Load the backup's accounts. A rebuilt cluster member keeps its own instead: its
    /// `mysql` schema is not emptied, and a half-loaded accounts file (its user may not
    /// be allowed to grant) would have replaced the very account the rebuild runs as.
    pub accounts: bool,
}

/// Checks every file of the backup in `dir` against the manifest (size and sha256);
/// the problems found, empty if none.
pub fn check_files(dir: &Path, manifest: &Manifest) -> Vec<String> {
    let mut problems = Vec::new();
    for f in &manifest.files {
        let path = dir.join(&f.path);
        match pipe::hash_file(&path) {
            Ok((bytes, sha)) if bytes == f.bytes && sha == f.sha256 => {}
            Ok((bytes, _)) if bytes != f.bytes => problems.push(format!(
                "{}: {bytes} bytes, the manifest says {}",
                f.path, f.bytes
            )),
            Ok(_) => problems.push(format!("{}: sha256 differs from the manifest", f.path)),
            Err(e) => problems.push(format!("{}: {e}", f.path)),
        }
    }
    problems
}

/// Loads the backup in `dir` into `target`.
pub async fn restore(
    dir: &Path,
    manifest: &Manifest,
    target: &Target,
    options: &RestoreOptions,
) -> Result<(), BackupError> {
    let problems = check_files(dir, manifest);
    if !problems.is_empty() {
        return Err(BackupError::Mismatch {
            id: manifest.id.clone(),
            problems: problems.join("; "),
        });
    }
    let secret = Arc::new(password_file(&target.password)?);
    let progress = Arc::new(Progress::new(
        format!("restore of {} into {}", manifest.id, target.address()),
        manifest.files.len() as u64,
        options.bar,
    ));
    let by_kind = |k: FileKind| -> Vec<FileEntry> {
        manifest
            .files
            .iter()
            .filter(|f| f.kind == k)
            .cloned()
            .collect()
    };
    // Schemas one after the other (a view may use another database's table), rows in
    // parallel, then triggers (loading rows fires none) and accounts.
    for (kind, parallel) in [
        (FileKind::Schema, 1),
        (FileKind::Data, options.parallel),
        (FileKind::Triggers, 1),
        (FileKind::Users, 1),
    ] {
        if kind == FileKind::Users && !options.accounts {
            continue;
        }
        let files = by_kind(kind);
        load_all(dir, files, target, options, parallel, &secret, &progress).await?;
    }
    progress.finish();
    info!(id = %manifest.id, target = %target.address(), "backup restored");
    Ok(())
}

async fn load_all(
    dir: &Path,
    files: Vec<FileEntry>,
    target: &Target,
    options: &RestoreOptions,
    parallel: usize,
    secret: &Arc<tempfile::NamedTempFile>,
    progress: &Arc<Progress>,
) -> Result<(), BackupError> {
    let mut files = files;
    // Popped from the end: the biggest first, so the last to finish is a small one.
    files.sort_by_key(|f| f.raw_bytes);
    let queue = Arc::new(Mutex::new(files));
    let abort = Arc::new(AtomicBool::new(false));
    let first: Arc<Mutex<Option<BackupError>>> = Arc::new(Mutex::new(None));
    let mut workers = Vec::new();
    for _ in 0..parallel.max(1) {
        let (queue, abort, first) = (queue.clone(), abort.clone(), first.clone());
        let (secret, progress) = (secret.clone(), progress.clone());
        let (dir, target, options) = (dir.to_path_buf(), target.clone(), options.clone());
        workers.push(tokio::task::spawn_blocking(move || loop {
            if abort.load(Ordering::Relaxed) {
                return;
            }
            let next = queue.lock().ok().and_then(|mut q| q.pop());
            let Some(file) = next else { return };
            let mut cmd = Command::new(&options.program);
            client_args(&mut cmd, secret.path(), &target);
            cmd.arg("--batch");
            if !options.binlog {
                cmd.arg("--init-command=SET SESSION sql_log_bin = 0");
            }
            if file.kind != FileKind::Schema {
                if let Some(db) = &file.database {
                    cmd.arg(format!("--database={db}"));
                }
            }
            let path = dir.join(&file.path);
            match pipe::load_file(cmd, &path, &file.path, &abort) {
                Ok(()) => progress.step(&file.path, file.raw_bytes),
                Err(e) => {
                    abort.store(true, Ordering::Relaxed);
                    if let Ok(mut f) = first.lock() {
                        f.get_or_insert(e);
                    }
                    return;
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let err = first.lock().ok().and_then(|mut f| f.take());
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The statements that make a server restored from `manifest` a replica of the master
/// at `master` (address), from the backup's position. `password` may be a placeholder
/// when the statements are only printed.
pub fn replica_statements(
    manifest: &Manifest,
    master: &str,
    user: &str,
    password: &str,
) -> Vec<String> {
    vec![
        "STOP SLAVE".to_owned(),
        "RESET SLAVE ALL".to_owned(),
        format!(
            "SET GLOBAL gtid_slave_pos = {}",
            kohaproxy_health::literal(&manifest.gtid_position)
        ),
        kohaproxy_health::change_master(master, user, password, "slave_pos"),
        "START SLAVE".to_owned(),
    ]
}

/// Which of `servers` (the cluster's, other than the target itself) has the target's
/// `server_id`, if any, as a sentence. A replica skips every event that carries its own
/// `server_id`, so a restored server sharing one with a cluster member would silently
/// miss that member's writes (or, sharing the master's, be refused by it). Servers that
/// cannot be reached are skipped.
pub async fn server_id_clash(
    target: &Target,
    servers: &[Endpoint],
) -> Result<Option<String>, BackupError> {
    const SQL: &str = "SELECT @@server_id";
    let mut conn = target.connect().await?;
    let id = source::value(&mut conn, &target.name, SQL).await?;
    let _ = conn.disconnect().await;
    for s in servers.iter().filter(|s| s.address() != target.address()) {
        let Ok(mut c) = s.connect().await else {
            continue;
        };
        let theirs = source::value(&mut c, &s.name, SQL).await;
        let _ = c.disconnect().await;
        if let (Ok(theirs), Some(id)) = (theirs, &id) {
            if theirs.as_ref() == Some(id) {
                return Ok(Some(format!(
                    "{} has server_id {id}, as {} ({}) does: give it a server_id of its own \
                     (SET GLOBAL server_id, and server_id in its configuration file)",
                    target.address(),
                    s.name,
                    s.address()
                )));
            }
        }
    }
    Ok(None)
}

/// Runs [`replica_statements`] on `target`.
pub async fn make_replica(
    target: &Target,
    manifest: &Manifest,
    master: &str,
    user: &str,
    password: &str,
) -> Result<(), BackupError> {
    let mut conn = target.connect().await?;
    for sql in replica_statements(manifest, master, user, password) {
        source::exec(&mut conn, &target.name, &sql).await?;
    }
    Ok(())
}
