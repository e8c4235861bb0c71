//! What can go wrong with a backup, a verification or a restore.

use std::path::PathBuf;

/// A backup, verification or restore that could not be done, and why.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The configuration file could not be loaded.
    #[error("{0}")]
    Config(String),
    /// `backup.dir` is not set.
    #[error("no backup directory: set backup.dir in the config")]
    NoDirectory,
    /// Another backup holds the backup directory's lock.
    #[error("a backup is already running ({0})")]
    Busy(String),
    /// A file or directory could not be read or written (disk full, permissions).
    #[error("{}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// A statement on a server failed.
    #[error("{server}: {message}")]
    Sql {
        /// Server name or address.
        server: String,
        /// What failed (the statement's first words and the server's error).
        message: String,
    },
    /// `mariadb-dump` or `mariadb` failed.
    #[error("{program} ({what}) failed: {message}")]
    Tool {
        /// The program.
        program: String,
        /// Which file or table it worked on.
        what: String,
        /// Its exit status and the end of its error output.
        message: String,
    },
    /// No server can be the source.
    #[error("{0}")]
    NoSource(String),
    /// No backup has this id.
    #[error("no backup {0}")]
    NotFound(String),
    /// A backup's files or contents do not match its manifest.
    #[error("backup {id} does not match its manifest: {problems}")]
    Mismatch {
        /// The backup.
        id: String,
        /// What differs, `; `-separated.
        problems: String,
    },
    /// A manifest could not be read.
    #[error("{}: not a valid manifest: {message}", path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The throw-away server for a restore test could not be started.
    #[error("the throw-away server for the restore test: {0}")]
    Sandbox(String),
    /// The server a backup would be restored into cannot take it as asked.
    #[error("restore target {0}")]
    Target(String),
    /// The backup was stopped (the proxy shut down).
    #[error("stopped: {0}")]
    Stopped(String),
}

impl BackupError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> BackupError {
        BackupError::Io {
            path: path.into(),
            source,
        }
    }

    /// A failed statement on `server`.
    pub(crate) fn sql(server: &str, sql: &str, e: impl std::fmt::Display) -> BackupError {
        let words: Vec<&str> = sql.split_whitespace().take(3).collect();
        BackupError::Sql {
            server: server.to_owned(),
            message: format!("{}: {e}", words.join(" ")),
        }
    }
}
