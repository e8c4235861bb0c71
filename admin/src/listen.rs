//! The console's listeners: the Unix socket (created mode 0600, a stale file replaced only
//! when nothing answers on it) and the optional TCP port, and their accept loops.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kohaproxy_proxy::Shared;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::shim::{self, Access, Conn};
use crate::AdminError;

/// Most admin connections open at once; further ones are closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// What every accept loop shares.
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    backups: kohaproxy_backup::Backups,
    slots: Arc<Semaphore>,
    next_id: AtomicU32,
}

impl Ctx {
    pub fn new(shared: Arc<Shared>) -> Arc<Ctx> {
        Arc::new(Ctx {
            backups: crate::backups_of(&shared),
            shared,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            next_id: AtomicU32::new(1),
        })
    }

    /// Serves `stream` on its own task, if under the connection limit.
    fn spawn<S>(self: &Arc<Self>, stream: S, access: Access, host: String)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            info!(client = %host, "admin connection refused: {MAX_CONNECTIONS} already open");
            return;
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        let backups = self.backups.clone();
        tokio::spawn(async move {
            shim::serve(stream, shared, backups, Conn { id, access, host }).await;
            drop(permit);
        });
    }
}

/// The socket file this process created; removed when dropped, unless another process has
/// replaced it since.
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if m.dev() == self.dev && m.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A private (0700) directory beside the socket, removed with its content when dropped.
struct PrivateDir(PathBuf);

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join("s"));
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Binds the Unix socket at `path` with mode 0600.
///
/// The socket is bound inside a fresh 0700 directory beside `path`, made 0600, then linked
/// to `path`: no other user can connect in between, and the process umask is untouched
/// (it is process-wide, and other threads create files).
pub(crate) fn bind_unix(
    path: &Path,
) -> Result<(std::os::unix::net::UnixListener, SocketFile), AdminError> {
    let err = |source: io::Error| AdminError::Socket {
        path: path.to_path_buf(),
        source,
    };
    clear_stale(path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let private = PrivateDir(dir.join(format!(".kpadm{:08x}", rand::random::<u32>())));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private.0)
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => AdminError::NoDirectory {
                path: path.to_path_buf(),
                dir: dir.clone(),
            },
            _ => err(source),
        })?;
    let inner = private.0.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&inner).map_err(err)?;
    std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    match std::fs::hard_link(&inner, path) {
        Ok(()) => {}
        // Someone bound it since the stale check.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(AdminError::InUse {
                path: path.to_path_buf(),
            })
        }
        // A file system without hard links: move it instead.
        Err(_) => std::fs::rename(&inner, path).map_err(err)?,
    }
    drop(private);
    let m = std::fs::symlink_metadata(path).map_err(err)?;
    listener.set_nonblocking(true).map_err(err)?;
    let file = SocketFile {
        path: path.to_path_buf(),
        dev: m.dev(),
        ino: m.ino(),
    };
    Ok((listener, file))
}

/// Removes a socket file nothing listens on (left by a killed process); refuses when
/// something answers on it or the path is not a socket.
fn clear_stale(path: &Path) -> Result<(), AdminError> {
    let err = |source: io::Error| AdminError::Socket {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(AdminError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(AdminError::InUse {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(err)?;
            info!(path = %path.display(), "removed a stale admin socket (nothing listened on it)");
            Ok(())
        }
        Err(e) => Err(err(e)),
    }
}

/// Binds the TCP admin port.
pub(crate) fn bind_tcp(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, AdminError> {
    let err = |source| AdminError::Bind { addr, source };
    let l = std::net::TcpListener::bind(addr).map_err(err)?;
    l.set_nonblocking(true).map_err(err)?;
    Ok(l)
}

/// Accepts on the Unix socket forever; the socket file is removed when this ends.
pub(crate) async fn accept_unix(
    listener: tokio::net::UnixListener,
    file: SocketFile,
    ctx: Arc<Ctx>,
) {
    let _file = file;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => ctx.spawn(stream, Access::Socket, "localhost".to_string()),
            Err(e) => backoff(e).await,
        }
    }
}

/// Accepts on the TCP port forever; logins need `password`.
pub(crate) async fn accept_tcp(
    listener: tokio::net::TcpListener,
    password: kohaproxy_config::PasswordHash,
    ctx: Arc<Ctx>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                ctx.spawn(
                    stream,
                    Access::Password(password.clone()),
                    peer.ip().to_string(),
                )
            }
            Err(e) => backoff(e).await,
        }
    }
}

/// Out of file descriptors and the like: wait instead of spinning.
async fn backoff(e: io::Error) {
    warn!("admin accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_is_0600_replaces_a_stale_file_and_refuses_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let (l, file) = bind_unix(&path).unwrap();
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert!(m.file_type().is_socket());
        // Only the socket is left in the directory (the private one is gone).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let e = bind_unix(&path).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "admin socket {} is in use by another process",
                path.display()
            )
        );

        // A killed process leaves the file behind: nothing listens, it is replaced.
        drop(l);
        std::mem::forget(file);
        assert!(path.exists());
        let (_l, file) = bind_unix(&path).unwrap();
        drop(file);
        assert!(!path.exists(), "removed when the service ends");
    }

    #[test]
    fn errors_name_the_path_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope/admin.sock");
        let e = bind_unix(&missing).err().unwrap().to_string();
        assert!(e.contains(&missing.display().to_string()), "{e}");
        assert!(e.contains("does not exist"), "{e}");

        let plain = dir.path().join("file");
        std::fs::write(&plain, b"x").unwrap();
        let e = bind_unix(&plain).err().unwrap().to_string();
        assert!(e.contains("exists and is not a socket"), "{e}");
        assert!(plain.exists(), "a regular file is never removed");
    }
}
