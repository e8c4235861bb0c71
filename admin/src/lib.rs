//! The admin console: a small MySQL-protocol server (opensrv-mysql) on the Unix socket
//! `[admin] socket` and, optionally, the TCP address `[admin] listen`, so any MySQL client
//! is the console: `mariadb -S /run/kohaproxy/admin.sock -e 'SHOW SERVERS'`.
//!
//! Access: on the socket, its file mode (0600) is the access control and any user and
//! password are accepted; on TCP, `[admin] password` is required (mysql_native_password,
//! a random salt per connection), and a wrong one gets error 1045.
//!
//! Tasks: one accept loop per listener, on the proxy's main runtime (started by
//! [`services`]), and one task per admin connection. The console only reads the proxy's
//! shared state (topology snapshot, counters, session registry); a broken admin client
//! ends its own connection and nothing else.
//!
//! Modules: [`command`] (statement text to [`Command`], pure), [`tables`] (the result
//! sets, pure), `shim` (one connection; logins are checked by the proxy's own
//! mysql_native_password code, `kohaproxy_proxy::auth`), `listen` (the listeners).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod command;
mod listen;
mod shim;
pub mod tables;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use kohaproxy_proxy::{Service, Shared};
use tracing::info;

pub use command::{parse, Command, Probe, UnknownCommand, KNOWN_COMMANDS};
pub use listen::MAX_CONNECTIONS;

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Something answers on the socket path: another proxy (or anything else) uses it.
    #[error("admin socket {} is in use by another process", path.display())]
    InUse {
        /// The configured socket path.
        path: PathBuf,
    },
    /// The path exists and is a regular file, directory, ...: it is never removed.
    #[error("admin socket {} exists and is not a socket (not removed)", path.display())]
    NotASocket {
        /// The configured socket path.
        path: PathBuf,
    },
    /// The socket's directory is missing.
    #[error("cannot create admin socket {}: directory {} does not exist", path.display(), dir.display())]
    NoDirectory {
        /// The configured socket path.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// Creating, binding or linking the socket failed.
    #[error("cannot create admin socket {}: {source}", path.display())]
    Socket {
        /// The configured socket path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TCP admin address could not be bound.
    #[error("cannot listen on admin address {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Called outside a tokio runtime with I/O enabled.
    #[error("the admin console must be started inside the proxy's runtime")]
    NoRuntime,
}

/// The proxy's backups: the monitor's topology and control, the proxy's per-server load
/// (a backup waits for the reads on its replica to finish before pausing it) and its
/// shutdown (a running backup stops, resumes its replica, and the proxy waits for that).
pub fn backups_of(shared: &Arc<Shared>) -> kohaproxy_backup::Backups {
    let stats = shared.clone();
    let load: kohaproxy_backup::ServerLoad = Arc::new(move |i| {
        stats.stats.servers.get(i).map_or(0, |s| {
            s.outstanding.load(std::sync::atomic::Ordering::Relaxed)
        })
    });
    let background = shared.background.clone();
    let hold: kohaproxy_backup::Hold = Arc::new(move || Box::new(background.enter()));
    kohaproxy_backup::Backups::in_proxy(
        Arc::new(shared.config.clone()),
        kohaproxy_backup::InProxy {
            topology: shared.topology.clone(),
            control: shared.control.clone(),
            load,
            stop: shared.shutdown.clone(),
            hold,
        },
    )
}

/// Binds the configured admin listeners and returns their accept loops, for
/// [`kohaproxy_proxy::run`]: no `[admin]` socket or listen address, no service. The error
/// says which path or address and why.
pub fn services(shared: Arc<Shared>) -> Result<Vec<Service>, String> {
    start(shared).map_err(|e| e.to_string())
}

/// [`services`] with a typed error. Must run inside a tokio runtime with I/O enabled
/// (listeners are registered with it).
pub fn start(shared: Arc<Shared>) -> Result<Vec<Service>, AdminError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(AdminError::NoRuntime);
    }
    let admin = shared.config.admin.clone();
    let ctx = listen::Ctx::new(shared);
    let mut out: Vec<Service> = Vec::new();
    if let Some(path) = &admin.socket {
        let (std_listener, file) = listen::bind_unix(path)?;
        let listener = tokio::net::UnixListener::from_std(std_listener).map_err(|source| {
            AdminError::Socket {
                path: path.clone(),
                source,
            }
        })?;
        info!(socket = %path.display(), "admin console listening");
        out.push(Box::pin(listen::accept_unix(listener, file, ctx.clone())));
    }
    if let Some(addr) = admin.listen {
        // The config refuses `listen` without a non-empty password; never serve TCP open.
        let Some(password) = admin.password.clone().filter(|p| !p.is_empty()) else {
            return Err(AdminError::Bind {
                addr,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "admin.password is required with admin.listen",
                ),
            });
        };
        let std_listener = listen::bind_tcp(addr)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|source| AdminError::Bind { addr, source })?;
        info!(%addr, "admin console listening");
        let password = kohaproxy_config::PasswordHash::from_plain(&password);
        out.push(Box::pin(listen::accept_tcp(listener, password, ctx)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
