//! The data path: accepts MySQL clients, authenticates them, and carries their sessions to
//! the backend servers, forwarding packets verbatim.
//!
//! Tasks: one accept loop (`serve`), one task per client session (`session::serve`).
#![forbid(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod io;
pub mod kill;
pub mod protocol;
pub mod session;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use kohaproxy_config::Config;
use kohaproxy_health::{Monitor, TopologyHandle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::auth::Credential;
use crate::backend::{Backend, BackendError, Login};
use crate::protocol::handshake::HandshakeV10;
use crate::protocol::packets::ErrPacket;

/// Why the proxy stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What every session shares: the config, the topology, and the greeting to copy.
pub struct Shared {
    /// The validated configuration.
    pub config: Config,
    /// The monitor's snapshots.
    pub topology: TopologyHandle,
    /// The last greeting a master sent: its version and capabilities are what clients are
    /// offered.
    greeting: ArcSwapOption<HandshakeV10>,
    next_id: AtomicU32,
    /// Proxy session id -> thread id of its backend connection (for KILL). Touched at
    /// login, logout and KILL only, never per packet.
    sessions: Mutex<HashMap<u32, u32>>,
}

impl Shared {
    /// Shared state for `config`, reading topology from `topology`.
    pub fn new(config: Config, topology: TopologyHandle) -> Arc<Self> {
        Arc::new(Shared {
            config,
            topology,
            greeting: ArcSwapOption::empty(),
            next_id: AtomicU32::new(kill::FIRST_SESSION_ID),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    /// The greeting to base a client's on: cached, or read from the master.
    pub async fn greeting(&self) -> Result<Arc<HandshakeV10>, BackendError> {
        if let Some(g) = self.greeting.load_full() {
            return Ok(g);
        }
        let topology = self.topology.load();
        let master = topology.master().ok_or_else(no_master_error)?;
        let g = Arc::new(
            backend::greeting(
                &master.name,
                &master.address,
                self.config.proxy.connect_timeout,
            )
            .await?,
        );
        self.greeting.store(Some(g.clone()));
        Ok(g)
    }

    /// Checks a user's response to `salt`; returns the credential for backends.
    pub fn authenticate(&self, user: &str, salt: &[u8], response: &[u8]) -> Option<Credential> {
        let u = self.config.user(user)?;
        auth::verify(&u.password, salt, response)
    }

    /// Opens a connection to the current master, logged in as `login`.
    pub async fn connect_master(
        &self,
        login: &Login,
    ) -> Result<(Backend, bytes::BytesMut), BackendError> {
        let topology = self.topology.load();
        let master = topology.master().ok_or_else(no_master_error)?;
        let (backend, ok) = backend::connect(
            &master.name,
            &master.address,
            login,
            self.config.proxy.connect_timeout,
        )
        .await?;
        let cached = self.greeting.load();
        let stale = cached.as_ref().is_none_or(|g| {
            g.server_version != backend.greeting.server_version || g.caps != backend.greeting.caps
        });
        if stale {
            self.greeting
                .store(Some(Arc::new(backend.greeting.clone())));
        }
        Ok((backend, ok))
    }

    fn next_session_id(&self) -> u32 {
        // Wraps back to the start of the proxy's range, never into server thread ids.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if id < kill::FIRST_SESSION_ID {
            self.next_id
                .store(kill::FIRST_SESSION_ID + 1, Ordering::Relaxed);
            return kill::FIRST_SESSION_ID;
        }
        id
    }

    /// Records that session `id` runs on backend thread `thread_id`.
    pub(crate) fn register(&self, id: u32, thread_id: u32) {
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(id, thread_id);
        }
    }

    /// Forgets session `id`.
    pub(crate) fn unregister(&self, id: u32) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(&id);
        }
    }

    /// The backend thread of proxy session `id`, if it is one of ours.
    pub(crate) fn backend_thread(&self, id: u64) -> Option<u32> {
        let id = u32::try_from(id).ok()?;
        self.sessions.lock().ok()?.get(&id).copied()
    }
}

fn no_master_error() -> BackendError {
    BackendError::Connect {
        server: "master".into(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no writable server found"),
    }
}

/// Runs the proxy until SIGINT or SIGTERM: starts the monitor, binds the listener, serves.
pub async fn run(config: Config) -> Result<(), ProxyError> {
    let topology = Monitor::spawn(&config).await;
    match topology.load().master() {
        Some(m) => info!(master = %m.name, address = %m.address, "master found"),
        None => warn!("no master found yet; clients are refused until one is"),
    }
    let addr = config.proxy.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ProxyError::Bind { addr, source })?;
    info!(%addr, "accepting MySQL clients");
    let shared = Shared::new(config, topology);
    tokio::select! {
        () = serve(listener, shared) => {}
        () = shutdown_signal() => info!("shutting down"),
    }
    Ok(())
}

/// Accepts clients forever, each in its own task, at most `proxy.max_connections` at once.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.config.proxy.max_connections));
    loop {
        let (mut stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let err = ErrPacket::new(1040, "08004", "Too many connections");
                let _ = stream.write_all(&err.to_packet(0)).await;
            });
            continue;
        };
        let shared = shared.clone();
        let id = shared.next_session_id();
        tokio::spawn(async move {
            session::serve(shared, stream, peer, id).await;
            drop(permit);
        });
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
