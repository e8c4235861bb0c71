//! One client session: login, then a loop of commands, each forwarded to the backend and
//! its response relayed back, both directions streamed without re-encoding.
//!
//! Its states are [`crate::phase::Phase`] (logging in, idle, waiting for a master, a
//! causal wait, running on a backend, draining), recorded at each move for SHOW SESSIONS;
//! the login itself runs before the session exists. The session is half-duplex like the
//! protocol: one command at a time.
//!
//! Submodules: `login` (the connection phase and COM_CHANGE_USER), `router` (classify and
//! route statements), `causal_read` (which replica serves a read, and its causal wait),
//! `master` (staying on the current master across failovers), `internal` (the proxy's own
//! queries on a backend connection).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

mod causal_read;
mod internal;
mod login;
mod master;
mod router;
mod step;

use crate::backend::{Backend, Login};
use crate::io::{fill, write_packet, ReadError};
use crate::phase::{On, Phase};
use crate::protocol::relay::{Relay, Scan};
use crate::protocol::response::ResponseTracker;
use crate::protocol::{command, payload_len, Caps, HEADER_LEN, MAX_PAYLOAD};
use crate::refusal::{After, Refusal, Stage};
use crate::stats::SessionEntry;
use crate::stats::{Booking, Stats};
use crate::tls::ClientStream;
use crate::Shared;
use master::read_unless_replaced;
use router::{ReplicaConn, Router};
use step::Step;

/// Largest login or COM_CHANGE_USER packet accepted from a client.
const MAX_LOGIN_PACKET: usize = 1 << 20;

/// How many bytes of a command packet are read before it is forwarded (the command byte
/// and, later, the statement text the router looks at).
const COMMAND_HEAD: usize = 64;

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The client's socket failed or closed.
    #[error("client connection: {0}")]
    Client(ReadError),
    /// The client broke the protocol (the client was told why, if it could be).
    #[error("client protocol error: {0}")]
    ClientProtocol(&'static str),
    /// The backend connection failed or broke the protocol mid-command.
    #[error("backend {server}: {reason}")]
    Backend {
        /// Server name.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// Login failed (the client got an error).
    #[error("login refused: {0}")]
    Login(String),
    /// The proxy answered the client with an error that ends the session.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// An OK came from a master connection of an older term: not forwarded.
    #[error("the master was replaced: its answer is not forwarded")]
    Fenced,
}

impl From<std::io::Error> for SessionError {
    fn from(e: std::io::Error) -> Self {
        SessionError::Client(ReadError::Io(e))
    }
}

/// A logged-in session.
pub struct Session {
    id: u32,
    peer: SocketAddr,
    client: ClientStream,
    /// Bytes read from the client and not yet forwarded.
    cbuf: BytesMut,
    /// Capabilities negotiated with the client.
    caps: Caps,
    /// The scramble sent in the greeting (COM_CHANGE_USER answers it again).
    salt: [u8; 20],
    user: Vec<u8>,
    /// How the session logged in (replica connections log in the same way).
    login: Login,
    /// The connection to the master: writes, transactions, and anything not routed away.
    master: Backend,
    /// Config index of the master server (for counters).
    master_index: Option<usize>,
    /// The monitor's term when the master connection was opened: no OK from it is
    /// forwarded once the term moved on (the master was replaced).
    master_term: u64,
    /// Whether the master connection can be used.
    master_link: MasterLink,
    /// The client prepared statements on the master (COM_STMT_PREPARE): they cannot be
    /// carried to a new master.
    server_prepared: bool,
    /// Changes on every topology publish (a failover, a switchover's hold).
    topology_changes: tokio::sync::watch::Receiver<u64>,
    /// Connections to replicas, by config index, opened on first use.
    replicas: Vec<Option<ReplicaConn>>,
    /// Where the last statement ran (SHOW WARNINGS follows it).
    last: Which,
    /// Status flags from the last OK/EOF the master sent.
    status: u16,
    /// The read/write split's per-session state.
    router: Router,
    /// What the admin console shows of this session.
    entry: Arc<SessionEntry>,
    /// Reused buffer for packets the proxy rewrites.
    scratch: Vec<u8>,
    /// Reused buffer for the rewritten packet.
    out: Vec<u8>,
    /// Galera: a copy of the statement sent to the writer, sent again if the writer
    /// answers 1047 (see [`Session::wait_out_not_ready`]).
    resend: Vec<u8>,
    /// Cancelled when the proxy starts shutting down.
    shutdown: tokio_util::sync::CancellationToken,
    shared: Arc<Shared>,
}

/// Whether the session's master connection can be used.
#[derive(Debug)]
enum MasterLink {
    /// Open, and counted in the books (its server's connections, SHOW SESSIONS).
    Live {
        /// Held for its effect on the books.
        _booking: Booking,
    },
    /// Dead or fenced: the next command needing the master opens one to the current
    /// master and restores the session's state there first.
    Lost,
}

/// Which backend connection of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    /// The master connection.
    Master,
    /// The connection to the replica with this config index.
    Replica(usize),
}

/// How relaying a response ended.
#[derive(Debug)]
enum Outcome {
    /// The response was relayed whole; `failed` if it was an error.
    Done {
        /// The response ended with an ERR.
        failed: bool,
    },
    /// The backend connection broke before any byte of the response reached the client.
    Lost(String),
}

/// Writes `refusal` to the client and counts it: the one place the proxy's own errors
/// reach clients. Ok if the session goes on after it in `stage`; otherwise the error that
/// ends the session (a failed write then changes nothing).
pub(crate) async fn send_refusal<W: AsyncWriteExt + Unpin>(
    client: &mut W,
    stats: &Stats,
    refusal: Refusal,
    seq: u8,
    stage: Stage,
) -> Result<(), SessionError> {
    stats.count_refusal(refusal.kind());
    let written = client.write_all(&refusal.packet(seq)).await;
    match refusal.after(stage) {
        After::Continue => Ok(written?),
        After::Close => Err(SessionError::Refused(refusal)),
    }
}

/// Serves one client connection to its end.
pub async fn serve(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr, id: u32) {
    let _ = client.set_nodelay(true);
    let timeout = shared.config.proxy.handshake_timeout;
    let session = match tokio::time::timeout(timeout, login::login(&shared, client, peer, id)).await
    {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => {
            info!(session = id, %peer, "login failed: {e}");
            return;
        }
        Err(_) => {
            info!(session = id, %peer, "login not completed within {} ms", timeout.as_millis());
            return;
        }
    };
    debug!(session = id, %peer, user = %String::from_utf8_lossy(&session.user), "session open");
    match session.run().await {
        Ok(()) => debug!(session = id, "session closed"),
        Err(e) => info!(session = id, %peer, "session ended: {e}"),
    }
}

impl Session {
    /// The command loop.
    async fn run(mut self) -> Result<(), SessionError> {
        let mut idle = self.shared.config.proxy.idle_timeout.map(IdleTimer::new);
        loop {
            // Idle: wait for the next command's header.
            if !self.wait_for_command(&mut idle).await? {
                debug!(session = self.id, "closed for shutdown");
                return Ok(());
            }
            let len = payload_len(&self.cbuf);
            match step::from_header(self.cbuf[3], len) {
                Some(Step::OutOfOrder) => return self.out_of_order("packet out of order").await,
                Some(_empty) => {
                    self.cbuf.advance(HEADER_LEN);
                    self.refuse(Refusal::Malformed, 1).await?;
                    continue;
                }
                None => {}
            }
            fill(
                &mut self.client,
                &mut self.cbuf,
                HEADER_LEN + len.min(COMMAND_HEAD),
            )
            .await
            .map_err(SessionError::Client)?;
            let cmd = self.cbuf[HEADER_LEN];
            let step = step::from_command(cmd);
            // Counted from before the look at the master until the answer (see
            // `TopologyHandle::enter_master`): a switchover waits for these.
            let _statement = if step.needs_master() {
                Some(self.enter_master().await)
            } else {
                None
            };
            if step.needs_master() {
                if let Some(refusal) = self.ensure_master().await? {
                    let next_seq = self.pass_message(false).await?;
                    self.refuse(refusal, next_seq).await?;
                    continue;
                }
            }
            match step {
                Step::Quit => {
                    self.quit_backends().await;
                    return Ok(());
                }
                Step::ChangeUser => self.change_user(len).await?,
                Step::ReplicationStream => {
                    let next_seq = self.pass_message(false).await?;
                    self.refuse(Refusal::ReplicationStream, next_seq).await?;
                }
                Step::Query | Step::ProcessKill if self.kill_translation(cmd, len).is_some() => {
                    self.send_translated_kill(cmd, len).await?;
                }
                Step::Query => self.query(len).await?,
                Step::ResetConnection => {
                    if !self.forward_to_master(cmd).await? {
                        self.server_prepared = false;
                        self.forget_state(false);
                        self.track_state().await?;
                    }
                }
                Step::ProcessKill | Step::Forward { prepares: false } => {
                    self.forward_to_master(cmd).await?;
                }
                Step::Forward { prepares: true } => {
                    self.server_prepared = true;
                    self.forward_to_master(cmd).await?;
                }
                // Decided by the header, above.
                Step::OutOfOrder | Step::Empty => {}
            }
        }
    }

    /// COM_QUIT: passed to every backend connection (best effort), so the servers end
    /// their threads at once.
    async fn quit_backends(&mut self) {
        const QUIT: [u8; 5] = [1, 0, 0, 0, command::QUIT];
        let _ = self.master.stream.write_all(&QUIT).await;
        for conn in self.replicas.iter_mut().flatten() {
            let _ = conn.backend.stream.write_all(&QUIT).await;
        }
    }

    /// If the buffered command is a complete single-packet KILL (statement or
    /// COM_PROCESS_KILL) naming a proxy session, the same KILL aimed at that session's
    /// backend thread.
    fn kill_translation(&self, cmd: u8, len: usize) -> Option<String> {
        if len > COMMAND_HEAD {
            return None;
        }
        let payload = self.cbuf.get(HEADER_LEN..HEADER_LEN + len)?;
        let kill = if cmd == command::PROCESS_KILL {
            let id = u32::from_le_bytes(payload.get(1..5)?.try_into().ok()?);
            crate::kill::Kill {
                query_only: false,
                modifier: None,
                id: id as u64,
            }
        } else {
            crate::kill::Kill::parse(&payload[1..])?
        };
        let thread = self.shared.backend_thread(kill.id)?;
        Some(kill.to_sql(thread))
    }

    /// Replaces the client's KILL by its translation (see `kill_translation`) and relays
    /// the server's answer.
    async fn send_translated_kill(&mut self, cmd: u8, len: usize) -> Result<(), SessionError> {
        let Some(sql) = self.kill_translation(cmd, len) else {
            return Ok(());
        };
        self.cbuf.advance(HEADER_LEN + len);
        let mut payload = Vec::with_capacity(1 + sql.len());
        payload.push(command::QUERY);
        payload.extend_from_slice(sql.as_bytes());
        write_packet(&mut self.master.stream, 0, &payload)
            .await
            .map_err(|e| self.backend_error(e.to_string()))?;
        if let Some(tracker) = ResponseTracker::for_command(command::QUERY, self.master.caps) {
            self.relay_master(tracker, 1).await?;
        }
        Ok(())
    }

    /// Waits until a command header is buffered (true), or until the session should
    /// close because the proxy is shutting down and no transaction is open (false), or the
    /// idle timeout passes (error).
    async fn wait_for_command(
        &mut self,
        idle: &mut Option<IdleTimer>,
    ) -> Result<bool, SessionError> {
        if let Some(idle) = idle.as_mut() {
            idle.last_active = tokio::time::Instant::now();
        }
        loop {
            if self.closing() {
                return Ok(false);
            }
            self.entry.phase.set(if self.shutdown.is_cancelled() {
                Phase::Draining
            } else {
                Phase::Idle
            });
            tokio::select! {
                biased;
                // `fill` keeps what it read in `cbuf`: restarting it loses nothing.
                r = fill(&mut self.client, &mut self.cbuf, HEADER_LEN) => {
                    return r.map(|()| true).map_err(SessionError::Client);
                }
                // Once only: a session in a transaction waits for its next command.
                () = self.shutdown.cancelled(), if !self.shutdown.is_cancelled() => {}
                () = IdleTimer::expired(idle) => {
                    if let Some(idle) = idle.as_mut() {
                        let deadline = idle.last_active + idle.limit;
                        if tokio::time::Instant::now() >= deadline {
                            return Err(SessionError::ClientProtocol("idle timeout"));
                        }
                        idle.timer.as_mut().reset(deadline);
                    }
                }
            }
        }
    }

    /// Whether the proxy is shutting down and this session holds no open transaction (the
    /// server's own in-transaction flag), so it may be closed without losing work.
    fn closing(&self) -> bool {
        self.shutdown.is_cancelled() && self.status & crate::protocol::status::IN_TRANS == 0
    }

    /// Streams the client's current message (one or more packets) to the backend, refusing
    /// it past `max_allowed_packet`, or skips it when `forward` is false. Returns the
    /// sequence id the response starts with.
    async fn pass_message(&mut self, forward: bool) -> Result<u8, SessionError> {
        let max = self.shared.config.proxy.max_allowed_packet;
        let mut total = 0usize;
        loop {
            fill(&mut self.client, &mut self.cbuf, HEADER_LEN)
                .await
                .map_err(SessionError::Client)?;
            let len = payload_len(&self.cbuf);
            let seq = self.cbuf[3];
            total += len;
            if total > max {
                return Err(self
                    .refuse_to_end(Refusal::PacketTooLarge, seq.wrapping_add(1))
                    .await);
            }
            self.pass_client_bytes(HEADER_LEN + len, forward).await?;
            if len < MAX_PAYLOAD {
                return Ok(seq.wrapping_add(1));
            }
        }
    }

    /// Passes the next `n` client bytes to the backend as they arrive (or drops them when
    /// `forward` is false).
    async fn pass_client_bytes(&mut self, mut n: usize, forward: bool) -> Result<(), SessionError> {
        while n > 0 {
            if self.cbuf.is_empty() {
                crate::io::make_room(&mut self.cbuf);
                if self.client.read_buf(&mut self.cbuf).await? == 0 {
                    return Err(SessionError::Client(ReadError::Closed));
                }
            }
            let k = n.min(self.cbuf.len());
            if forward && !self.master_lost() {
                if let Err(e) = self.master.stream.write_all(&self.cbuf[..k]).await {
                    // The rest of the message is read and dropped; the caller answers.
                    info!(session = self.id, server = %self.master.server, "master connection broke while sending: {e}");
                    self.master_broke();
                }
            }
            self.cbuf.advance(k);
            n -= k;
        }
        Ok(())
    }

    /// Streams the client's command (its first packet is buffered) to the master and
    /// relays the answer; true if the answer was an error.
    async fn forward_to_master(&mut self, cmd: u8) -> Result<bool, SessionError> {
        self.last = Which::Master;
        let whole = self.whole_command();
        let resend = whole.is_some_and(|n| self.resends_on_not_ready(cmd, n));
        let next_seq = match whole {
            Some(n) => self.send_whole(n).await?,
            None => self.pass_message(true).await?,
        };
        if self.master_lost() {
            // A command the master did not receive whole is not run.
            self.refuse(Refusal::NotSent, next_seq).await?;
            return Ok(true);
        }
        if resend {
            if let Some(refusal) = self.wait_out_not_ready().await? {
                self.refuse(refusal, next_seq).await?;
                return Ok(true);
            }
        }
        self.answer_from_master(cmd, next_seq).await
    }

    /// Galera: whether the buffered command (`n` bytes) is sent again if the writer
    /// answers 1047, and if so keeps a copy. Only a statement outside a transaction: a
    /// transaction on a node that left the Primary component is lost anyway, and the
    /// client must hear of it.
    fn resends_on_not_ready(&mut self, cmd: u8, n: usize) -> bool {
        let resends = self.shared.config.cluster.kind == kohaproxy_config::ClusterKind::Galera
            && cmd == command::QUERY
            && self.status & crate::protocol::status::IN_TRANS == 0
            && self.status & crate::protocol::status::AUTOCOMMIT != 0;
        if resends {
            self.resend.clear();
            self.resend.extend_from_slice(&self.cbuf[..n]);
        }
        resends
    }

    /// Galera: while the writer answers 1047 to the statement just sent (it is not in the
    /// Primary component: a view change under way, or it was cut off; it ran nothing),
    /// drops that answer, waits for the topology to change (at most a short pause,
    /// growing from 50 to 500 ms), moves to the current writer if another was chosen, and
    /// sends the statement again; for at most `monitor.failover_hold`, then the 1047 is
    /// relayed. The chaos soak saw a client loop get 5,048 of them in 3 minutes of view
    /// changes. A refusal: the session could not move to a new writer (the client gets it
    /// instead of an answer).
    async fn wait_out_not_ready(&mut self) -> Result<Option<Refusal>, SessionError> {
        let until = tokio::time::Instant::now() + self.shared.config.monitor.failover_hold;
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            let Ok(Some(n)) = router::peek_not_ready(&mut self.master).await else {
                // Any other answer (or a broken connection) is relayed as usual.
                return Ok(None);
            };
            if tokio::time::Instant::now() + pause >= until {
                return Ok(None);
            }
            self.master.buf.advance(n);
            debug!(session = self.id, server = %self.master.server, "the Galera writer is not ready (1047): the statement waits and is sent again");
            // On a clone: `ensure_master` below still sees the change as new.
            let mut changes = self.topology_changes.clone();
            let _ = tokio::time::timeout(pause, changes.changed()).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(500));
            if let Some(refusal) = self.ensure_master().await? {
                return Ok(Some(refusal));
            }
            if let Err(e) = self.master.stream.write_all(&self.resend).await {
                info!(session = self.id, server = %self.master.server, "master connection broke while sending: {e}");
                self.master_broke();
                return Ok(Some(Refusal::NotSent));
            }
        }
    }

    /// Relays the master's answer to command `cmd` (its first packet numbered
    /// `first_seq`) and learns from it; true if the answer was an error.
    async fn answer_from_master(&mut self, cmd: u8, first_seq: u8) -> Result<bool, SessionError> {
        let Some(tracker) = ResponseTracker::for_command(cmd, self.master.caps) else {
            return Ok(false);
        };
        let failed = self.relay_master(tracker, first_seq).await?;
        self.after_master_response().await?;
        Ok(failed)
    }

    /// The length (header included) of the buffered command if it is one whole packet
    /// within `max_allowed_packet` (most statements are).
    fn whole_command(&self) -> Option<usize> {
        let len = payload_len(&self.cbuf);
        let n = HEADER_LEN + len;
        (len < MAX_PAYLOAD
            && len <= self.shared.config.proxy.max_allowed_packet
            && self.cbuf.len() >= n)
            .then_some(n)
    }

    /// Sends the whole buffered command of `n` bytes to the master. If the connection
    /// breaks while sending (the server never got the whole command, so it did not run)
    /// outside a transaction, it is sent once more to the current master (after a
    /// failover, the new one). Returns the sequence id the response starts with;
    /// `master_lost` tells whether it was sent at all.
    async fn send_whole(&mut self, n: usize) -> Result<u8, SessionError> {
        let next_seq = self.cbuf[3].wrapping_add(1);
        let in_transaction = self.status & crate::protocol::status::IN_TRANS != 0;
        let mut sent =
            !self.master_lost() && self.master.stream.write_all(&self.cbuf[..n]).await.is_ok();
        if !sent && !in_transaction && !self.unrestorable() {
            info!(session = self.id, server = %self.master.server, "master connection broke before a statement was sent: sending it to the current master");
            self.master_broke();
            if self.ensure_master().await?.is_none() {
                sent = self.master.stream.write_all(&self.cbuf[..n]).await.is_ok();
            }
        }
        if !sent {
            self.master_broke();
        }
        self.cbuf.advance(n);
        Ok(next_seq)
    }

    /// Relays the master's response; a master lost before answering is an error for the
    /// client (error 1927); the session goes on. True if the answer was an error.
    async fn relay_master(
        &mut self,
        tracker: ResponseTracker,
        first_seq: u8,
    ) -> Result<bool, SessionError> {
        if let Some(i) = self.master_index {
            self.count(i, true);
        }
        self.entry
            .phase
            .set(Phase::Running(On::Master(self.master_index)));
        let outcome = self.relay_response(Which::Master, tracker).await;
        if let Some(i) = self.master_index {
            self.count(i, false);
        }
        self.entry.in_transaction.store(
            self.status & crate::protocol::status::IN_TRANS != 0,
            Ordering::Relaxed,
        );
        match outcome? {
            Outcome::Done { failed } => Ok(failed),
            Outcome::Lost(reason) => {
                // Whether the statement ran is unknown: the client is told so. The session
                // stays open; its next statement runs on the (new) master.
                info!(session = self.id, server = %self.master.server, "master connection lost during a statement: {reason}");
                self.master_broke();
                // A server error code (not the client library's 2013, which makes clients
                // drop the connection): the session goes on.
                self.refuse(Refusal::OutcomeUnknown, first_seq).await?;
                Ok(true)
            }
        }
    }

    /// Answers the command just consumed with `refusal`, numbered `seq`: Ok if the
    /// session goes on after it, the error that ends the session otherwise.
    async fn refuse(&mut self, refusal: Refusal, seq: u8) -> Result<(), SessionError> {
        send_refusal(
            &mut self.client,
            &self.shared.stats,
            refusal,
            seq,
            Stage::Commands,
        )
        .await
    }

    /// [`Session::refuse`] for a refusal that always ends the session.
    async fn refuse_to_end(&mut self, refusal: Refusal, seq: u8) -> SessionError {
        debug_assert_eq!(refusal.after(Stage::Commands), After::Close);
        match self.refuse(refusal, seq).await {
            Err(e) => e,
            Ok(()) => SessionError::ClientProtocol("refused"),
        }
    }

    /// Whether an OK from this session's master connection must not reach the client: on
    /// replication, when the monitor moved to a new term (the new master may lack what
    /// the old one acknowledged). On Galera an OK means the Primary component certified
    /// the write, whichever node sent it, so none is fenced.
    fn fenced(&self) -> bool {
        self.shared.config.cluster.kind == kohaproxy_config::ClusterKind::Replication
            && self.shared.topology.term() != self.master_term
    }

    /// Sends the OK `payload` (from the master) with sequence id `seq`, through `learn` if
    /// it carries session state; `waited_long`: the master took long to send it (see
    /// [`Session::check_term_after_long_wait`]).
    async fn send_ok(
        &mut self,
        seq: u8,
        payload: &[u8],
        waited_long: bool,
    ) -> Result<(), SessionError> {
        let state = crate::protocol::packets::ok_status(payload)
            .is_some_and(|s| s & crate::protocol::status::SESSION_STATE_CHANGED != 0);
        if state {
            if waited_long && !self.check_term_after_long_wait().await {
                info!(session = self.id, server = %self.master.server, "an OK after a long wait, and no probe round to confirm the term: not forwarded");
                return Err(SessionError::Fenced);
            }
            if self.fenced() {
                return Err(SessionError::Fenced);
            }
            let mut out = std::mem::take(&mut self.out);
            let learned = self.learn(seq, payload, &mut out);
            // The GTID is acknowledged (raised) above; if the monitor moved to a new term
            // meanwhile, it may already have read the acknowledged position without it:
            // this OK must not reach the client.
            if learned.is_ok() && self.fenced() {
                self.out = out;
                return Err(SessionError::Fenced);
            }
            let sent = match learned {
                Ok(()) => self
                    .client
                    .write_all(&out)
                    .await
                    .map_err(SessionError::from),
                Err(e) => Err(e),
            };
            self.out = out;
            sent
        } else {
            self.client
                .write_all(&crate::protocol::packets::packet(seq, payload))
                .await?;
            Ok(())
        }
    }

    /// Relays the response of backend `which` to the client until the tracker sees its
    /// end. OKs from the master that carry session state go through `learn`.
    async fn relay_response(
        &mut self,
        which: Which,
        tracker: ResponseTracker,
    ) -> Result<Outcome, SessionError> {
        let hold = which == Which::Master;
        let mut relay = if hold {
            Relay::holding_state(tracker)
        } else {
            Relay::new(tracker)
        };
        let mut forwarded = false;
        let mut waited_long = false;
        loop {
            let (client, backend) = match which {
                Which::Master => (&mut self.client, &mut self.master),
                Which::Replica(i) => match self.replicas.get_mut(i).and_then(Option::as_mut) {
                    Some(conn) => (&mut self.client, &mut conn.backend),
                    None => return Ok(Outcome::Lost("no connection".into())),
                },
            };
            let (n, scan) = match relay.scan(&backend.buf) {
                Ok(r) => r,
                Err(e) => {
                    let server = backend.server.clone();
                    return Err(SessionError::Backend {
                        server,
                        reason: e.to_string(),
                    });
                }
            };
            if n > 0 {
                client.write_all(&backend.buf[..n]).await?;
                backend.buf.advance(n);
                forwarded = true;
            }
            match scan {
                Scan::Done => return Ok(self.response_done(which, &relay)),
                Scan::LocalInfile => {
                    self.relay_local_infile(relay.last_seq().wrapping_add(1))
                        .await?;
                    continue;
                }
                Scan::StateOk(len) => {
                    if let Some(lost) = self
                        .relay_state_ok(which, len, forwarded, waited_long)
                        .await?
                    {
                        return Ok(lost);
                    }
                    forwarded = true;
                    continue;
                }
                Scan::NeedMore => {}
            }
            crate::io::make_room(&mut backend.buf);
            let read = if which == Which::Master {
                read_unless_replaced(backend, &self.shared, self.master_term, &mut waited_long)
                    .await
            } else {
                backend.stream.read_buf(&mut backend.buf).await
            };
            if !matches!(read, Ok(n) if n > 0) {
                let reason = match read {
                    Err(e) => e.to_string(),
                    _ => "connection closed".to_string(),
                };
                if !forwarded {
                    return Ok(Outcome::Lost(reason));
                }
                return Err(SessionError::Backend {
                    server: backend.server.clone(),
                    reason,
                });
            }
        }
    }

    /// The response of backend `which` ended (`relay` saw its last packet): keeps the
    /// status flags it carried and counts an error.
    fn response_done(&mut self, which: Which, relay: &Relay) -> Outcome {
        let failed = relay.tracker().failed();
        if let Some(s) = relay.tracker().status() {
            match which {
                Which::Master => self.status = s,
                Which::Replica(i) => {
                    if let Some(Some(conn)) = self.replicas.get_mut(i) {
                        conn.status = s;
                    }
                }
            }
        }
        if failed {
            self.shared.stats.errors.fetch_add(1, Ordering::Relaxed);
        }
        Outcome::Done { failed }
    }

    /// Reads the OK of `len` bytes (header included) that carries session state from
    /// backend `which` and sends it through [`Session::send_ok`]. `Some(outcome)`: the
    /// response ends here as lost (nothing was `forwarded` yet: the connection failed, or
    /// the master was replaced and its OK must not reach the client).
    async fn relay_state_ok(
        &mut self,
        which: Which,
        len: usize,
        forwarded: bool,
        waited_long: bool,
    ) -> Result<Option<Outcome>, SessionError> {
        let backend = match which {
            Which::Master => &mut self.master,
            Which::Replica(i) => match self.replicas.get_mut(i).and_then(Option::as_mut) {
                Some(conn) => &mut conn.backend,
                None => return Ok(Some(Outcome::Lost("no connection".into()))),
            },
        };
        if let Err(e) = fill(&mut backend.stream, &mut backend.buf, len).await {
            if !forwarded {
                return Ok(Some(Outcome::Lost(e.to_string())));
            }
            return Err(self.backend_error(e.to_string()));
        }
        let seq = backend.buf[3];
        let mut payload = std::mem::take(&mut self.scratch);
        payload.clear();
        payload.extend_from_slice(&backend.buf[HEADER_LEN..len]);
        backend.buf.advance(len);
        let sent = self.send_ok(seq, &payload, waited_long).await;
        self.scratch = payload;
        match sent {
            Err(SessionError::Fenced) if !forwarded => {
                Ok(Some(Outcome::Lost("the master was replaced".into())))
            }
            other => other.map(|()| None),
        }
    }

    /// Answers a client packet whose sequence id (the buffered header's) is not the one
    /// expected with MariaDB's 1156 and ends the session with `why`.
    async fn out_of_order<T>(&mut self, why: &'static str) -> Result<T, SessionError> {
        debug!(session = self.id, "{why}");
        let seq = self.cbuf[3].wrapping_add(1);
        Err(self.refuse_to_end(Refusal::OutOfOrder, seq).await)
    }

    /// After a LOCAL INFILE request: streams the client's file packets to the backend, up
    /// to and including the empty packet that ends the file; the first is numbered `seq`.
    ///
    /// A packet out of sequence ends the session with error 1156 and is not forwarded: the
    /// server checks the numbers too, and after one out of order it reads on until an
    /// in-sequence end of file, so an empty packet the proxy took for the end would leave
    /// both waiting on each other (the server until its `net_read_timeout`, 30 s), the
    /// client stuck with them.
    async fn relay_local_infile(&mut self, mut seq: u8) -> Result<(), SessionError> {
        let mut continued = false;
        loop {
            fill(&mut self.client, &mut self.cbuf, HEADER_LEN)
                .await
                .map_err(SessionError::Client)?;
            let len = payload_len(&self.cbuf);
            if self.cbuf[3] != seq {
                return self.out_of_order("LOCAL INFILE packet out of order").await;
            }
            seq = seq.wrapping_add(1);
            self.pass_client_bytes(HEADER_LEN + len, true).await?;
            if len == 0 && !continued {
                return Ok(());
            }
            continued = len == MAX_PAYLOAD;
        }
    }

    fn backend_error(&self, reason: String) -> SessionError {
        SessionError::Backend {
            server: self.master.server.clone(),
            reason,
        }
    }
}

/// The idle timeout, armed once per session rather than once per command: a tokio timer
/// registered per command wakes the runtime's driver (an eventfd write) for every few
/// statements. The timer fires at most once per `limit`, and is re-armed from the last
/// activity if the session was not idle all along.
struct IdleTimer {
    limit: std::time::Duration,
    last_active: tokio::time::Instant,
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl IdleTimer {
    /// Completes when the timer (if any) fires; never without one.
    async fn expired(idle: &mut Option<IdleTimer>) {
        match idle {
            Some(idle) => idle.timer.as_mut().await,
            None => std::future::pending().await,
        }
    }

    fn new(limit: std::time::Duration) -> Self {
        IdleTimer {
            limit,
            last_active: tokio::time::Instant::now(),
            timer: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Its backend connections take themselves out of the books (`Booking`).
        self.shared.sessions.remove(self.id);
        debug!(session = self.id, status = self.status, "session dropped");
    }
}
