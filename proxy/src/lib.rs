//! The data path: accepts MySQL clients, authenticates them, and carries their sessions to
//! the backend servers, forwarding packets verbatim.
//!
//! Tasks: one accept loop (`serve`), one task per client session (`session::serve`).
#![forbid(unsafe_code)]

pub mod auth;
pub mod backend;
pub mod background;
pub mod io;
pub mod kill;
pub mod phase;
pub mod protocol;
pub mod refusal;
pub mod route;
pub mod session;
pub mod stats;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use kohaproxy_config::Config;
use kohaproxy_health::{Acked, Control, Monitor, TopologyHandle};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tracing::{info, warn};

use crate::auth::Credential;
use crate::backend::{Backend, BackendError, Login};
use crate::protocol::handshake::HandshakeV10;
use crate::refusal::{Refusal, Stage};

/// Why the proxy stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The TLS certificate or key was refused.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A runtime or thread could not be started.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// A service beside the proxy (the admin console) could not start.
    #[error("{0}")]
    Service(String),
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
    /// TLS toward clients, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The last greeting a master sent: its version and capabilities are what clients are
    /// offered.
    greeting: ArcSwapOption<HandshakeV10>,
    next_id: AtomicU32,
    /// Cancelled when shutdown begins; sessions close at their next idle point outside a
    /// transaction, a running backup stops and resumes its replica.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The open client sessions (for KILL and the admin console). Locked at login,
    /// logout and KILL only, never per packet.
    pub sessions: stats::Registry,
    /// Counters for the admin console.
    pub stats: stats::Stats,
    /// Acknowledged writes and what replicas are known to have applied (causal reads).
    pub causal: route::causal::Causal,
    /// Commands to the monitor (switchover, failover, maintenance).
    pub control: Control,
    /// Work shutdown waits for after the sessions (a backup resuming its replica).
    pub background: background::Background,
}

impl Shared {
    /// Shared state for `config`, reading topology from `topology`.
    pub fn new(
        config: Config,
        topology: TopologyHandle,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Arc<Self> {
        Shared::monitored(config, topology, Control::detached(), Acked::default(), tls)
    }

    /// Shared state for `config` with the monitor's control channel and the acknowledged
    /// position the monitor checks before it promotes.
    pub fn monitored(
        config: Config,
        topology: TopologyHandle,
        control: Control,
        acked: Acked,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            stats: stats::Stats::new(config.servers.iter().map(|s| s.name.as_str())),
            causal: route::causal::Causal::new(config.servers.len(), acked),
            control,
            config,
            topology,
            tls,
            greeting: ArcSwapOption::empty(),
            next_id: AtomicU32::new(kill::FIRST_SESSION_ID),
            sessions: stats::Registry::default(),
            shutdown: tokio_util::sync::CancellationToken::new(),
            background: background::Background::default(),
        })
    }

    /// The greeting to base a client's on: cached, or read from the master.
    pub async fn greeting(&self) -> Result<Arc<HandshakeV10>, BackendError> {
        if let Some(g) = self.greeting.load_full() {
            return Ok(g);
        }
        let topology = self.topology.load();
        let master = topology
            .master()
            .ok_or_else(|| no_master_error(&topology))?;
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

    /// Opens a connection to the master, logged in as `login`, waiting up to
    /// `monitor.failover_hold` for one while there is none (a failover or switchover under
    /// way) or it refuses connections (it just died and the monitor has not noticed yet).
    /// Returns the connection, its login OK, the term and the master's config index.
    pub async fn connect_master(
        &self,
        login: &Login,
    ) -> Result<(Backend, bytes::BytesMut, u64, Option<usize>), BackendError> {
        let deadline = tokio::time::Instant::now() + self.config.monitor.failover_hold;
        let mut changes = self.topology.subscribe();
        loop {
            changes.borrow_and_update();
            let topology = self.topology.load();
            let error = match topology.master() {
                Some(master) => {
                    match backend::connect(
                        &master.name,
                        &master.address,
                        login,
                        self.config.proxy.connect_timeout,
                    )
                    .await
                    {
                        Ok((backend, ok)) => {
                            self.remember_greeting(&backend);
                            return Ok((backend, ok, topology.term, topology.master));
                        }
                        Err(e @ BackendError::Refused { .. }) => return Err(e),
                        Err(e) => e,
                    }
                }
                None => no_master_error(&topology),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(error);
            }
            // Wake on the next publish, or retry soon anyway.
            let retry = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(retry.min(deadline)) => {}
            }
        }
    }

    /// Keeps the newest master greeting (its version and capabilities are offered to
    /// clients).
    fn remember_greeting(&self, backend: &Backend) {
        let cached = self.greeting.load();
        let stale = cached.as_ref().is_none_or(|g| {
            g.server_version != backend.greeting.server_version || g.caps != backend.greeting.caps
        });
        if stale {
            self.greeting
                .store(Some(Arc::new(backend.greeting.clone())));
        }
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

    /// The master connection's thread of proxy session `id`, if it is one of ours.
    pub(crate) fn backend_thread(&self, id: u64) -> Option<u32> {
        let id = u32::try_from(id).ok()?;
        Some(
            self.sessions
                .get(id)?
                .master_thread
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }
}

/// There is no master (or Galera writer); the monitor's reason, if it gave one (a
/// refusal, a topology problem, a Galera cluster out of its Primary component).
fn no_master_error(topology: &kohaproxy_health::Topology) -> BackendError {
    let why = match (&topology.operation, &topology.problem) {
        (Some(reason), _) | (None, Some(reason)) => format!("no writable server found: {reason}"),
        (None, None) => "no writable server found".to_string(),
    };
    BackendError::Connect {
        server: "master".into(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, why),
    }
}

/// A task that runs beside the proxy for its whole life (the admin console).
pub type Service = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts the services that run beside the proxy, given its shared state; called once,
/// inside the proxy's main runtime, before clients are accepted.
pub type StartServices<'a> = Box<dyn FnOnce(Arc<Shared>) -> Result<Vec<Service>, String> + 'a>;

/// Runs the proxy until SIGINT or SIGTERM, blocking the calling thread.
///
/// Threads: the calling thread runs the monitor and the accept loop on one exclusive
/// listener (a second process cannot silently share the port, as it could with
/// SO_REUSEPORT). Accepted connections are dealt round-robin to `proxy.threads` workers
/// (default one per core), each a single-threaded tokio runtime: a session lives and dies
/// on one thread, and its packets never wake another thread.
///
/// `services` starts what runs beside it (the admin console); an error there stops the
/// start.
pub fn run(config: Config, services: StartServices<'_>) -> Result<(), ProxyError> {
    let main = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProxyError::Runtime)?;
    main.block_on(async move {
        let tls = config.proxy.tls.as_ref().map(tls::acceptor).transpose()?;
        let acked = Acked::default();
        let (topology, control) = Monitor::spawn_with(&config, acked.clone()).await;
        match topology.load().master() {
            Some(m) => info!(master = %m.name, address = %m.address, "master found"),
            None => warn!("no master found yet; clients are refused until one is"),
        }
        let threads = match config.proxy.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let addr = config.proxy.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ProxyError::Bind { addr, source })?;
        let shared = Shared::monitored(config, topology, control, acked, tls);
        for service in services(shared.clone()).map_err(ProxyError::Service)? {
            tokio::spawn(service);
        }
        tokio::spawn(log_causal_reads(shared.clone()));
        let mut workers = Vec::with_capacity(threads);
        for n in 0..threads {
            workers.push(spawn_worker(n, shared.clone())?);
        }
        let max = shared.config.proxy.max_connections;
        let slots = Arc::new(Semaphore::new(max));
        info!(%addr, threads, "accepting MySQL clients");
        tokio::select! {
            // The workers' senders stay here: dropping them would end the worker runtimes
            // and every session on them, before the drain below.
            () = accept_loop(listener, shared.clone(), &workers, slots.clone()) => {}
            () = shutdown_signal() => {}
        }
        drain(&shared, &slots, max).await;
        Ok(())
    })
}

/// How often the causal-read summary is logged.
const CAUSAL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Logs, once a minute when any read waited or went to the master for causality, how
/// many did and why (the same counters as SHOW STATS).
async fn log_causal_reads(shared: Arc<Shared>) {
    let mut last = shared.stats.causal.read();
    let mut tick = tokio::time::interval(CAUSAL_LOG_EVERY);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = shared.stats.causal.read();
        if let Some(line) = now.summary_since(&last) {
            info!(
                "causal reads in the last {} s: {line}",
                CAUSAL_LOG_EVERY.as_secs()
            );
        }
        last = now;
    }
}

/// A connection handed from the accept loop to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: std::net::SocketAddr,
    id: u32,
    permit: tokio::sync::OwnedSemaphorePermit,
}

/// Starts worker thread `n`: a single-threaded runtime serving the sessions it is handed.
fn spawn_worker(
    n: usize,
    shared: Arc<Shared>,
) -> Result<mpsc::UnboundedSender<Accepted>, ProxyError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ProxyError::Runtime)?;
    std::thread::Builder::new()
        .name(format!("kohaproxy-worker-{n}"))
        .spawn(move || {
            runtime.block_on(async move {
                while let Some(a) = rx.recv().await {
                    let stream = match tokio::net::TcpStream::from_std(a.stream) {
                        Ok(s) => s,
                        Err(e) => {
                            warn!("cannot adopt a client connection: {e}");
                            continue;
                        }
                    };
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        session::serve(shared, stream, a.peer, a.id).await;
                        drop(a.permit);
                    });
                }
            })
        })
        .map_err(ProxyError::Runtime)?;
    Ok(tx)
}

/// Accepts clients forever and deals them to the workers; at most
/// `proxy.max_connections` sessions exist at once (further clients get error 1040).
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    workers: &[mpsc::UnboundedSender<Accepted>],
    slots: Arc<Semaphore>,
) {
    let mut next = 0usize;
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
            let shared = shared.clone();
            tokio::spawn(async move {
                let refusal = Refusal::TooManyConnections;
                let _ = session::send_refusal(&mut stream, &shared.stats, refusal, 0, Stage::Login)
                    .await;
            });
            continue;
        };
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                warn!("cannot hand over a client connection: {e}");
                continue;
            }
        };
        let id = shared.next_session_id();
        let worker = &workers[next % workers.len()];
        next = next.wrapping_add(1);
        if worker
            .send(Accepted {
                stream,
                peer,
                id,
                permit,
            })
            .is_err()
        {
            warn!("a worker thread has stopped; connection dropped");
        }
    }
}

/// Shutdown, in phases, each logged: the listener is already closed (no new clients);
/// sessions are told to close at their next idle point outside a transaction, so a
/// transaction in flight can still commit; after `proxy.shutdown_grace_s` whatever is left
/// is cut off (the servers roll those transactions back).
async fn drain(shared: &Shared, slots: &Semaphore, max: usize) {
    let open = max - slots.available_permits();
    info!(
        sessions = open,
        "shutting down: no new clients; idle sessions close now, open transactions may finish"
    );
    shared.shutdown.cancel();
    // Every session holds one slot: all of them free means every session closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    match tokio::time::timeout(shared.config.proxy.shutdown_grace, slots.acquire_many(all)).await {
        Ok(_) => info!("all sessions closed"),
        Err(_) => {
            let left = max - slots.available_permits();
            warn!(
                sessions = left,
                "grace period over: closing sessions still in a transaction"
            );
        }
    }
    if !shared.background.wait(BACKGROUND_BOUND).await {
        warn!("background work (a backup) still running; exiting anyway");
    }
}

/// How long shutdown waits for background work (a backup stopping and resuming its
/// replica) once the sessions are closed.
const BACKGROUND_BOUND: std::time::Duration = std::time::Duration::from_secs(15);

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
