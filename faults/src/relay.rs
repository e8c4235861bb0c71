//! [`FaultRelay`]: a TCP relay that can cut, blackhole and heal the link it carries.
//!
//! It stands where a firewall rule would: between a client and the proxy, the proxy and a
//! backend, or a replica and its master (point `CHANGE MASTER` at the relay's port). It
//! needs no root and no iptables.
//!
//! The relay runs on its own OS thread with a single-threaded tokio runtime, so it works the
//! same from a synchronous test and from async code, and never depends on (or blocks) the
//! caller's runtime. Dropping the [`FaultRelay`] stops that thread and closes every socket.
//!
//! The three modes:
//!
//! | mode | existing connections | new connections |
//! |---|---|---|
//! | normal ([`heal`](FaultRelay::heal)) | forwarded | connected to the target and forwarded |
//! | [`cut`](FaultRelay::cut) | reset (RST) on both sides at once | accepted, then reset at once |
//! | [`blackhole`](FaultRelay::blackhole) | kept open, nothing forwarded | kept open, not connected to the target |
//!
//! Like a network partition that heals, a blackholed connection **resumes** forwarding
//! after [`heal`](FaultRelay::heal): the bytes sent meanwhile waited in the kernel buffers
//! (or in the relay's buffer, for a chunk already read) and are then delivered, in order,
//! as TCP retransmission would. A connection accepted during the blackhole connects to the
//! target only when healed. A blackholed connection that is then [`cut`](FaultRelay::cut)
//! is reset. Connections closed by a cut stay closed.
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// How long the relay waits for the target to accept a connection before giving up on it
/// (the client's connection is then closed).
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The relay's read buffer per direction.
const CHUNK: usize = 64 * 1024;

/// What the relay does with traffic; see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayMode {
    /// Forward everything.
    Normal,
    /// Reset every connection, accept-and-reset new ones.
    Cut,
    /// Forward nothing, close nothing.
    Blackhole,
}

/// A TCP relay on 127.0.0.1 to one target, with fault controls. See the [module docs](self).
///
/// Every control takes `&self`, may be called from any thread, and is idempotent. The
/// relay stops (its thread is joined, every socket closed) when this value is dropped.
#[derive(Debug)]
pub struct FaultRelay {
    addr: SocketAddr,
    target: String,
    mode: watch::Sender<RelayMode>,
    live: Arc<AtomicUsize>,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultRelay {
    /// Listens on 127.0.0.1 on a free port and relays every connection to `target`
    /// (`host:port`, resolved at each connection) in [`RelayMode::Normal`].
    pub fn start(target: &str) -> io::Result<FaultRelay> {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (mode, mode_rx) = watch::channel(RelayMode::Normal);
        let live = Arc::new(AtomicUsize::new(0));
        let (shutdown, shutdown_rx) = oneshot::channel();
        let ctx = Ctx {
            target: Arc::from(target),
            mode: mode_rx,
            live: live.clone(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("fault-relay-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(%addr, "fault relay cannot listen: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        () = accept_loop(listener, ctx) => {}
                        _ = shutdown_rx => {}
                    }
                });
                // Dropping the runtime drops every connection task and so every socket.
                drop(runtime);
            })?;
        tracing::debug!(%addr, target, "fault relay started");
        Ok(FaultRelay {
            addr,
            target: target.to_string(),
            mode,
            live,
            shutdown: Mutex::new(Some(shutdown)),
            thread: Some(thread),
        })
    }

    /// The port the relay listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `"127.0.0.1:PORT"`: where clients connect instead of the target.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The target every connection is relayed to, as given to [`FaultRelay::start`].
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The current mode.
    pub fn mode(&self) -> RelayMode {
        *self.mode.borrow()
    }

    /// Resets every current connection (both sides) and resets new ones as soon as they
    /// are accepted, like an iptables `REJECT --reject-with tcp-reset` rule.
    pub fn cut(&self) {
        self.set(RelayMode::Cut);
    }

    /// Forwards nothing in either direction and closes nothing, like a `DROP` rule or a
    /// network partition: the peers see silence. New connections are accepted and held
    /// without connecting to the target.
    pub fn blackhole(&self) {
        self.set(RelayMode::Blackhole);
    }

    /// Back to normal forwarding. Blackholed connections resume (what was sent meanwhile
    /// is delivered); connections closed by a cut stay closed.
    pub fn heal(&self) {
        self.set(RelayMode::Normal);
    }

    /// How many client connections the relay holds open right now: forwarded ones and
    /// ones held by a blackhole (not those refused by a cut).
    pub fn connections(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    fn set(&self, mode: RelayMode) {
        let old = self.mode.send_replace(mode);
        if old != mode {
            tracing::info!(relay = %self.addr, target = %self.target, ?old, new = ?mode, "fault relay mode");
        }
    }
}

impl Drop for FaultRelay {
    fn drop(&mut self) {
        let sender = self
            .shutdown
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!(relay = %self.addr, "the fault relay thread panicked");
            }
        }
    }
}

/// What every connection task shares.
#[derive(Clone)]
struct Ctx {
    target: Arc<str>,
    mode: watch::Receiver<RelayMode>,
    live: Arc<AtomicUsize>,
}

async fn accept_loop(listener: TcpListener, ctx: Ctx) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: do not spin.
                tracing::warn!("fault relay accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if *ctx.mode.borrow() == RelayMode::Cut {
            tracing::debug!(%peer, "fault relay: refusing a connection (cut)");
            reset(&client);
            continue;
        }
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _live = Live::new(&ctx.live);
            serve(client, ctx).await;
            tracing::debug!(%peer, "fault relay: connection closed");
        });
    }
}

/// Counts a live client connection for as long as it exists.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(counter: &Arc<AtomicUsize>) -> Live {
        counter.fetch_add(1, Ordering::SeqCst);
        Live(counter.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Makes the coming close of `socket` a reset (RST) rather than a FIN.
fn reset(socket: &TcpStream) {
    let _ = socket.set_zero_linger();
}

/// Waits until the mode is not a blackhole; returns false on a cut.
async fn until_open(mode: &mut watch::Receiver<RelayMode>) -> bool {
    match mode.wait_for(|m| *m != RelayMode::Blackhole).await {
        Ok(m) => *m == RelayMode::Normal,
        Err(_) => false, // the relay is stopping
    }
}

/// Resolves when the mode becomes a cut (or the relay stops).
async fn until_cut(mut mode: watch::Receiver<RelayMode>) {
    let _ = mode.wait_for(|m| *m == RelayMode::Cut).await;
}

async fn serve(client: TcpStream, ctx: Ctx) {
    let mut mode = ctx.mode.clone();
    // A connection accepted during a blackhole waits here, unconnected, until healed.
    let server = tokio::select! {
        open = until_open(&mut mode) => {
            if !open {
                reset(&client);
                return;
            }
            tokio::select! {
                connected = tokio::time::timeout(TARGET_CONNECT_TIMEOUT, TcpStream::connect(&*ctx.target)) => connected,
                () = until_cut(mode.clone()) => {
                    reset(&client);
                    return;
                }
            }
        }
    };
    let server = match server {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(target = %ctx.target, "fault relay cannot reach the target: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(target = %ctx.target, "fault relay: the target did not accept in time");
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Each direction ends on its own (EOF is passed on as a half-close); a cut resets both.
    tokio::join!(
        pipe(client_read, server_write, mode.clone()),
        pipe(server_read, client_write, mode),
    );
}

/// Copies `from` to `to` while the mode allows, until EOF (passed on as a half-close), an
/// error, or a cut (which resets both sockets).
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<RelayMode>,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        if !until_open(&mut mode).await {
            return cut(&from, &to);
        }
        // Read unless the mode changes first (a blackhole stops reading at once).
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
                Err(_) => return,
            },
            _ = mode.changed() => continue,
        };
        // A chunk read just before a blackhole is held until it heals, like a packet in
        // flight; a cut drops it.
        if !until_open(&mut mode).await {
            return cut(&from, &to);
        }
        let Some(chunk) = buf.get(..n) else {
            return;
        };
        tokio::select! {
            written = to.write_all(chunk) => {
                if written.is_err() {
                    return;
                }
            }
            () = until_cut(mode.clone()) => return cut(&from, &to),
        }
    }
}

/// A cut: both sockets of a connection will close with a reset.
fn cut(from: &OwnedReadHalf, to: &OwnedWriteHalf) {
    reset(from.as_ref());
    reset(to.as_ref());
}
