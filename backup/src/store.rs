//! The backup directory: one directory per backup, named by its start time, written as
//! `<id>.partial/` and renamed to `<id>/` only when complete; failed backups kept as
//! `<id>.failed/` with their manifest only. A lock file lets one backup run at a time,
//! across processes (the proxy's scheduler and `kohaproxy backup run`), and a marker file
//! records a paused replica so the next start can resume it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::BackupError;
use crate::manifest::{sync_dir, Manifest, State};

const LOCK: &str = ".lock";
const PAUSED: &str = ".paused.json";
const PARTIAL: &str = ".partial";
const FAILED: &str = ".failed";

/// The backup directory (`backup.dir`).
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The lock that makes one backup run at a time; released when dropped.
#[derive(Debug)]
pub struct Lock {
    file: File,
}

/// One backup as `list` sees it.
#[derive(Debug, Clone)]
pub struct Listing {
    /// Its id.
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its manifest (None if unreadable; `problem` says why).
    pub manifest: Option<Manifest>,
    /// running, failed, ok, verified, verify-failed, interrupted or unreadable.
    pub status: String,
    /// Why it is unreadable or failed.
    pub problem: Option<String>,
}

impl Listing {
    /// When the backup started (None if its manifest is unreadable).
    pub fn started(&self) -> Option<DateTime<FixedOffset>> {
        let m = self.manifest.as_ref()?;
        DateTime::parse_from_rfc3339(&m.started).ok()
    }
}

/// A replica whose SQL thread a backup paused (written before the pause, removed after
/// the resume): if the process dies between, the next start resumes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PausedMark {
    /// The backup that paused it.
    pub id: String,
    /// Server name.
    pub server: String,
    /// Its address.
    pub address: String,
}

impl Store {
    /// The backup directory at `dir` (created when a backup begins).
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the lock, or says which backup holds it.
    pub fn lock(&self) -> Result<Lock, BackupError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| BackupError::io(&self.dir, e))?;
        let path = self.dir.join(LOCK);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| BackupError::io(&path, e))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {
                // A holder that runs no backup (recovery, a listing) names none: the id a
                // killed backup left here must not make its leftovers look running.
                let _ = file.set_len(0);
                Ok(Lock { file })
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                Err(BackupError::Busy(if holder.is_empty() {
                    "started by another process".to_owned()
                } else {
                    holder.to_owned()
                }))
            }
            Err(e) => Err(BackupError::io(&path, e.into())),
        }
    }

    /// The id of the backup a process holds the lock for now, if any (a process that holds
    /// it for something else, such as recovering after a killed backup, names none).
    fn running_id(&self) -> Option<String> {
        match self.lock() {
            Err(BackupError::Busy(holder)) => Some(holder),
            _ => None,
        }
    }

    /// A new backup id for `now` (its local start time, to the second; `-N` added when
    /// backups of that second exist, N above theirs).
    pub fn new_id(&self, now: DateTime<chrono::Local>) -> String {
        let base = now.format("%Y%m%d-%H%M%S").to_string();
        let taken = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let id = name
                    .strip_suffix(PARTIAL)
                    .or_else(|| name.strip_suffix(FAILED))
                    .unwrap_or(&name);
                if id == base {
                    Some(0)
                } else {
                    id.strip_prefix(&base)?
                        .strip_prefix('-')?
                        .parse::<u32>()
                        .ok()
                }
            })
            .max();
        match taken {
            None => base,
            Some(n) => format!("{base}-{}", n + 1),
        }
    }

    /// Creates `<id>.partial/` under the lock, and records the id in the lock file.
    pub fn begin(&self, lock: &mut Lock, id: &str) -> Result<PathBuf, BackupError> {
        let lock_path = self.dir.join(LOCK);
        let record = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(id.as_bytes())
        };
        record(&mut lock.file).map_err(|e| BackupError::io(&lock_path, e))?;
        let partial = self.partial(id);
        std::fs::create_dir(&partial).map_err(|e| BackupError::io(&partial, e))?;
        Ok(partial)
    }

    /// Where backup `id` is written.
    pub fn partial(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}{PARTIAL}"))
    }

    /// Makes a complete backup visible: `<id>.partial/` becomes `<id>/`.
    pub fn finish(&self, id: &str) -> Result<PathBuf, BackupError> {
        let done = self.dir.join(id);
        std::fs::rename(self.partial(id), &done).map_err(|e| BackupError::io(&done, e))?;
        sync_dir(&self.dir).map_err(|e| BackupError::io(&self.dir, e))?;
        Ok(done)
    }

    /// Records a failed backup: its files are removed, its manifest (with the reason) is
    /// kept as `<id>.failed/`. If even that cannot be written (a full disk), the partial
    /// directory is removed and the failure is only logged.
    pub fn fail(&self, manifest: &Manifest) {
        let partial = self.partial(&manifest.id);
        let failed = self.dir.join(format!("{}{FAILED}", manifest.id));
        let keep = || -> Result<(), BackupError> {
            if let Ok(entries) = std::fs::read_dir(&partial) {
                for e in entries.flatten() {
                    let p = e.path();
                    let _ = if p.is_dir() {
                        std::fs::remove_dir_all(&p)
                    } else {
                        std::fs::remove_file(&p)
                    };
                }
            }
            std::fs::create_dir_all(&partial).map_err(|e| BackupError::io(&partial, e))?;
            manifest.write(&partial)?;
            std::fs::rename(&partial, &failed).map_err(|e| BackupError::io(&failed, e))
        };
        if let Err(e) = keep() {
            warn!(id = %manifest.id, "could not keep the failed backup's manifest ({e}); removing it");
            let _ = std::fs::remove_dir_all(&partial);
        }
    }

    /// Every backup, newest first.
    pub fn list(&self) -> Result<Vec<Listing>, BackupError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BackupError::io(&self.dir, e)),
        };
        let running = self.running_id();
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let (id, kind) = if let Some(id) = name.strip_suffix(PARTIAL) {
                (id, Some(PARTIAL))
            } else if let Some(id) = name.strip_suffix(FAILED) {
                (id, Some(FAILED))
            } else {
                (name.as_str(), None)
            };
            let dir = entry.path();
            let read = Manifest::read(&dir);
            let (manifest, problem) = match read {
                Ok(m) => {
                    let problem = m.error.clone().or_else(|| m.verify_error.clone());
                    (Some(m), problem)
                }
                Err(e) => (None, Some(e.to_string())),
            };
            let status = match (kind, &manifest) {
                (Some(PARTIAL), _) if running.as_deref() == Some(id) => "running".to_owned(),
                (Some(PARTIAL), _) => "interrupted".to_owned(),
                (Some(_), _) => "failed".to_owned(),
                (None, Some(m)) => m.status().to_owned(),
                (None, None) => "unreadable".to_owned(),
            };
            out.push(Listing {
                id: id.to_owned(),
                dir,
                manifest,
                status,
                problem,
            });
        }
        // Newest first: by start time (ids of one second differ only by suffix).
        out.sort_by(|a, b| (b.started(), &b.id).cmp(&(a.started(), &a.id)));
        Ok(out)
    }

    /// A complete backup and its manifest.
    pub fn find(&self, id: &str) -> Result<(PathBuf, Manifest), BackupError> {
        let dir = self.dir.join(id);
        if id.is_empty() || id.contains('/') || id.starts_with('.') || !dir.is_dir() {
            return Err(BackupError::NotFound(format!(
                "{id} in {} (see `kohaproxy backup list`)",
                self.dir.display()
            )));
        }
        let m = Manifest::read(&dir)?;
        Ok((dir, m))
    }

    /// Marks backups left `.partial` by a process that stopped as failed. Needs the lock.
    pub fn recover(&self, _lock: &Lock) {
        let Ok(list) = self.list_unlocked() else {
            return;
        };
        for (id, manifest) in list {
            let mut m = manifest.unwrap_or_else(|| crate::runner::blank_manifest(&id));
            m.state = State::Failed;
            m.error = Some("interrupted: the process taking it stopped".into());
            warn!(id = %id, "backup was interrupted; recorded as failed");
            self.fail(&m);
        }
    }

    /// `.partial` backups and their manifests, ignoring the lock.
    fn list_unlocked(&self) -> std::io::Result<Vec<(String, Option<Manifest>)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(PARTIAL) {
                out.push((id.to_owned(), Manifest::read(&entry.path()).ok()));
            }
        }
        Ok(out)
    }

    /// Applies retention after a successful backup: keeps the `keep` newest complete
    /// backups and any younger than `keep_days`; removes older complete backups and failed
    /// records older than the oldest kept one. Returns the ids removed.
    pub fn retain(
        &self,
        keep: u32,
        keep_days: Option<u32>,
        now: DateTime<FixedOffset>,
    ) -> Result<Vec<String>, BackupError> {
        let list = self.list()?;
        let complete: Vec<(String, Option<DateTime<FixedOffset>>)> = list
            .iter()
            .filter(|l| l.manifest.as_ref().is_some_and(|m| m.state == State::Ok))
            .map(|l| (l.id.clone(), l.started()))
            .collect();
        let remove = to_remove(&complete, keep, keep_days, now);
        let oldest_kept = complete
            .iter()
            .filter(|(id, _)| !remove.contains(id))
            .filter_map(|(_, started)| *started)
            .min();
        let mut removed = Vec::new();
        for l in &list {
            let complete = remove.contains(&l.id) && !l.status.eq("failed");
            let old_failure = l.status == "failed"
                && matches!((l.started(), oldest_kept), (Some(t), Some(oldest)) if t < oldest);
            if complete || old_failure {
                std::fs::remove_dir_all(&l.dir).map_err(|e| BackupError::io(&l.dir, e))?;
                info!(id = %l.id, "old backup removed (retention)");
                removed.push(l.id.clone());
            }
        }
        Ok(removed)
    }

    /// Records that backup `id` paused `server` (before the pause).
    pub fn mark_paused(&self, mark: &PausedMark) -> Result<(), BackupError> {
        let path = self.dir.join(PAUSED);
        let text = serde_json::to_vec(mark).unwrap_or_default();
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&path)?;
            f.write_all(&text)?;
            f.sync_all()?;
            sync_dir(&self.dir)
        };
        write().map_err(|e| BackupError::io(&path, e))
    }

    /// The paused replica a stopped process left, if any.
    pub fn paused(&self) -> Option<PausedMark> {
        let text = std::fs::read(self.dir.join(PAUSED)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Forgets the paused replica (after it was resumed).
    pub fn clear_paused(&self) {
        let _ = std::fs::remove_file(self.dir.join(PAUSED));
    }
}

/// Which complete backups (id, start time; newest first or in any order) retention
/// removes: all but the `keep` newest, except those younger than `keep_days`.
pub fn to_remove(
    complete: &[(String, Option<DateTime<FixedOffset>>)],
    keep: u32,
    keep_days: Option<u32>,
    now: DateTime<FixedOffset>,
) -> Vec<String> {
    let mut sorted: Vec<&(String, Option<DateTime<FixedOffset>>)> = complete.iter().collect();
    sorted.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
    sorted
        .into_iter()
        .skip(keep as usize)
        .filter(|(_, started)| match (keep_days, started) {
            (Some(days), Some(t)) => now.signed_duration_since(*t).num_days() >= i64::from(days),
            _ => true,
        })
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<DateTime<FixedOffset>> {
        Some(DateTime::parse_from_rfc3339(s).unwrap())
    }

    #[test]
    fn retention_keeps_the_newest_and_the_young() {
        let now = at("2026-11-25T12:00:00+00:00").unwrap();
        let list = vec![
            (
                "20261120-010000".to_owned(),
                at("2026-11-20T01:00:00+00:00"),
            ),
            (
                "20261125-010000".to_owned(),
                at("2026-11-25T01:00:00+00:00"),
            ),
            (
                "20261110-010000".to_owned(),
                at("2026-11-10T01:00:00+00:00"),
            ),
            (
                "20261124-010000".to_owned(),
                at("2026-11-24T01:00:00+00:00"),
            ),
        ];
        assert_eq!(
            to_remove(&list, 2, None, now),
            ["20261120-010000", "20261110-010000"]
        );
        assert_eq!(to_remove(&list, 2, Some(7), now), ["20261110-010000"]);
        assert_eq!(to_remove(&list, 10, None, now), Vec::<String>::new());
        assert_eq!(to_remove(&list, 1, Some(30), now), Vec::<String>::new());
    }

    #[test]
    fn one_lock_at_a_time_and_the_holder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("b"));
        let mut lock = store.lock().unwrap();
        store.begin(&mut lock, "20261125-010000").unwrap();
        match store.lock() {
            Err(BackupError::Busy(who)) => assert_eq!(who, "20261125-010000"),
            other => panic!("{other:?}"),
        }
        let list = store.list().unwrap();
        assert_eq!(list[0].status, "running");
        drop(lock);
        assert_eq!(store.list().unwrap()[0].status, "interrupted");
        // Another test of this binary may fork (to run a program) while this one holds
        // the lock file open: the child keeps the lock until it execs. Wait that out.
        let lock = (0..200)
            .find_map(|_| {
                store
                    .lock()
                    .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(5)))
                    .ok()
            })
            .expect("the lock, once no forked child holds it");
        assert_eq!(
            store.list().unwrap()[0].status,
            "interrupted",
            "a lock taken to recover is not the killed backup running"
        );
        store.recover(&lock);
        let list = store.list().unwrap();
        assert_eq!(
            (list[0].id.as_str(), list[0].status.as_str()),
            ("20261125-010000", "failed")
        );
        assert!(dir
            .path()
            .join("b/20261125-010000.failed/manifest.json")
            .is_file());
    }

    #[test]
    fn ids_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let now = chrono::Local::now();
        let a = store.new_id(now);
        std::fs::create_dir(dir.path().join(format!("{a}.failed"))).unwrap();
        let b = store.new_id(now);
        assert_eq!(b, format!("{a}-1"));
        std::fs::create_dir(dir.path().join(format!("{a}-7"))).unwrap();
        assert_eq!(store.new_id(now), format!("{a}-8"));
    }
}
