//! The one error type of the sandbox crate.
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting, inspecting or stopping a sandbox.
///
/// Each variant names what it was doing (which server, which command, which file), so the
/// message alone is enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file system operation failed.
    #[error("{context}: {error}")]
    Io {
        /// What was being done, including the path.
        context: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A required program (mariadbd, mariadb-install-db, mariadb) was not found.
    #[error("cannot find `{program}` (looked in PATH, /usr/sbin, /usr/local/sbin, /usr/bin); install mariadb-server and mariadb-client")]
    MissingProgram {
        /// The program's name.
        program: String,
    },
    /// An external command could not be started.
    #[error("cannot run `{command}`: {error}")]
    Spawn {
        /// The command line.
        command: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// An external command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr (or the tail of its log).
        output: String,
    },
    /// A mariadbd process did not come up.
    #[error("server {server} failed to start: {reason}\n--- last lines of {} ---\n{log_tail}", log.display())]
    ServerStart {
        /// The server's name (db1, db2, ...).
        server: String,
        /// What was observed (exited with status ..., timed out, ...).
        reason: String,
        /// Its error log.
        log: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },
    /// A query through the `mariadb` client failed.
    #[error("query on {server} failed: {query}: {output}")]
    Query {
        /// The server's name.
        server: String,
        /// The SQL that was sent.
        query: String,
        /// The client's stderr.
        output: String,
    },
    /// A server's output could not be understood.
    #[error("unexpected output from {server}: {detail}")]
    Parse {
        /// The server's name.
        server: String,
        /// What was wrong.
        detail: String,
    },
    /// No server with this name is in the sandbox.
    #[error("no server named {name:?} in this sandbox (known: {known})")]
    UnknownServer {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The server is already running.
    #[error("server {server} is already running (pid {pid})")]
    AlreadyRunning {
        /// The server's name.
        server: String,
        /// Its pid.
        pid: u32,
    },
    /// The server is not running.
    #[error("server {server} is not running")]
    NotRunning {
        /// The server's name.
        server: String,
    },
    /// A pid recorded for a server no longer belongs to that server's mariadbd.
    #[error("refusing to signal pid {pid} for {server}: {reason}")]
    NotOurs {
        /// The server's name.
        server: String,
        /// The recorded pid.
        pid: u32,
        /// Why it is not ours.
        reason: String,
    },
    /// Sending a signal failed.
    #[error("cannot send SIG{signal} to {server} (pid {pid}): {error}")]
    Signal {
        /// The server's name.
        server: String,
        /// The pid.
        pid: u32,
        /// The signal's name.
        signal: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// Something did not happen in time.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited, with the last thing observed.
        what: String,
        /// How long was waited.
        timeout: Duration,
    },
    /// sandbox.json is missing or unreadable.
    #[error("bad sandbox state in {}: {reason}", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The options given to `up` cannot work.
    #[error("invalid sandbox options: {0}")]
    InvalidOptions(String),
    /// The user that must run the Galera nodes does not exist.
    #[error("no user {user:?} to run the Galera nodes as: running as root, the sandbox runs mariadbd as {user:?} (rsync SST fails for a root mariadbd); install mariadb-server, which creates it, or run the sandbox as a non-root user")]
    NoSuchUser {
        /// The user's name (`mysql`).
        user: String,
    },
    /// A directory on the way to the sandbox is closed to the user running the Galera nodes.
    #[error("{} is not traversable by the user {user:?} that runs the Galera nodes (it needs search permission on every directory above the sandbox); chmod o+x it or use a --dir elsewhere, e.g. under /tmp", path.display())]
    NotTraversable {
        /// The directory.
        path: PathBuf,
        /// The user (`mysql`).
        user: String,
    },
}

impl SandboxError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, error: std::io::Error) -> SandboxError {
        SandboxError::Io {
            context: context.into(),
            error,
        }
    }
}

/// Shorthand for results in this crate.
pub(crate) type Result<T, E = SandboxError> = std::result::Result<T, E>;
