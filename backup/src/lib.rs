//! Backups taken off a paused replica: the replica is taken out of read rotation, its SQL
//! thread paused (its IO thread keeps receiving), every non-system database dumped per
//! table in parallel with `mariadb-dump` into zstd files with a manifest, and replication
//! resumed. Also retention, verification (checksums, and a restore into a throw-away
//! server) and parallel restore.
//!
//! A backup directory is `<backup.dir>/<id>/` only once complete; while it is written it
//! is `<id>.partial/`, and a failed one is kept as `<id>.failed/` holding only its
//! manifest (the reason). See `docs/ARCHITECTURE.md`.
#![forbid(unsafe_code)]

pub mod cli;
mod dump;
mod error;
pub mod manifest;
mod pipe;
mod priority;
mod progress;
pub mod rebuild;
pub mod restore;
mod runner;
pub mod schedule;
pub mod source;
pub mod store;
pub mod verify;

pub use error::BackupError;
pub use manifest::{FileEntry, FileKind, Manifest, State, TableEntry};
pub use restore::{RestoreOptions, Target};
pub use runner::{Backups, Hold, InProxy, ServerLoad};
pub use source::Endpoint;
pub use store::{Listing, Store};
