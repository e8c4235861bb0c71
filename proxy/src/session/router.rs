//! The session's side of the read/write split: where each COM_QUERY runs, the replica
//! connections it opens on first use, the state it replays on them, the causal check
//! before a read, and what it learns from the master's OKs.
//!
//! Where a statement goes is decided by `route::target` (pure, table-tested) from its
//! class and the session's [`Affinity`]; which replica serves a read, by
//! `route::causal`. This file gathers what they need and runs their answer: split off or
//! session pinned → master (in scope `global`, reads and transaction starts there are
//! checked: [`Session::read_on_master`]); a read-only transaction running on a replica →
//! that replica; the classifier says pin → master, pinned from now on (with the reason);
//! a transaction open on the master → master; hint; a plain read (or START TRANSACTION
//! READ ONLY) → the least busy healthy replica within the lag limit that has applied
//! every write it must see (or waits for one, within `routing.causal_wait_ms`) → else the
//! master.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Buf;
use kohaproxy_config::ClusterKind;
use kohaproxy_health::{Gtid, GtidList};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info};

use super::causal_read::ReadOn;
use super::internal::{self, Reply};
use super::{Outcome, Session, SessionError, Which};
use crate::backend::{self, Backend};
use crate::io::fill;
use crate::phase::{On, Phase};
use crate::protocol::response::ResponseTracker;
use crate::protocol::track::{Change, ClientTracking, StateOk};
use crate::protocol::{command, status, Caps, HEADER_LEN};
use crate::refusal::Refusal;
use crate::route::causal::Candidate;
use crate::route::classify::{self, Class, Route};
use crate::route::state::{quote_identifier, ReplicaSync, SessionState};
use crate::route::target::{self, Affinity, PinReason, Situation, Target};
use crate::stats::Booking;

/// Longest statement the router reads whole to classify; longer ones run on the master.
pub(crate) const ROUTE_LIMIT: usize = 32 * 1024;

/// What the proxy's master connections track: every system variable (the session's state
/// and `last_gtid`) and the schema.
const TRACK_ALL: &[u8] =
    b"SET SESSION session_track_system_variables = '*', SESSION session_track_schema = ON";

/// MariaDB's defaults, when the monitor has not read the server's own yet.
const DEFAULT_TRACKED: &[u8] =
    b"autocommit,character_set_client,character_set_connection,character_set_results,time_zone";

/// Makes every read on a Galera connection wait for the cluster's earlier commits.
const GALERA_SYNC_WAIT: &[u8] = b"SET SESSION wsrep_sync_wait = 1";

/// "WSREP has not yet prepared node for application use".
const GALERA_NOT_READY: u16 = 1047;

/// Whether reads on Galera nodes other than the writer wait for the cluster
/// ([`GALERA_SYNC_WAIT`]): on Galera, unless causal reads are off.
pub(super) fn galera_sync_wait(config: &kohaproxy_config::Config) -> bool {
    config.cluster.kind == ClusterKind::Galera
        && config.routing.causal_reads != kohaproxy_config::CausalReads::Off
}

/// Per-session router state.
#[derive(Debug)]
pub(crate) struct Router {
    /// Reads may go to replicas (`routing.read_write_split`).
    pub(crate) split: bool,
    /// Where the session is held: free, in a read-only transaction on a replica, or
    /// pinned to the master until reset.
    pub(crate) affinity: Affinity,
    /// What the session changed, to replay on replicas.
    pub(crate) state: SessionState,
    /// What the client itself asked to be told in OKs.
    pub(crate) tracking: ClientTracking,
    /// The client changed the proxy's tracking settings: set them again after this response.
    retrack: bool,
    /// The connection character set changed: read the collation after this response (the
    /// server does not report `collation_connection` when SET NAMES ... COLLATE sets it).
    read_collation: bool,
    /// The GTIDs of this session's own writes (causal scope `session`).
    pub(super) own: GtidList,
    /// Scratch: the position the current read must see.
    pub(super) required: GtidList,
    /// Scratch: the replicas that may serve the current read.
    pub(super) candidates: Vec<Candidate>,
}

impl Router {
    /// Router state for a new session (its master connection tracks session state, to
    /// restore it on a new master and replay it on replicas); `split` when reads may go
    /// to replicas.
    pub(crate) fn new(split: bool, tracking: ClientTracking) -> Router {
        Router {
            split,
            affinity: Affinity::Free,
            state: SessionState::default(),
            tracking,
            retrack: false,
            read_collation: false,
            own: GtidList::default(),
            required: GtidList::default(),
            candidates: Vec::new(),
        }
    }
}

/// What a client would see tracked on a direct connection to the master, as the monitor
/// last read it.
pub(crate) fn default_tracking(shared: &crate::Shared) -> ClientTracking {
    let topology = shared.topology.load();
    match topology.master().and_then(|m| m.status.as_ref()) {
        Some(s) => ClientTracking::new(
            s.session_track_system_variables.as_bytes(),
            s.session_track_schema,
        ),
        None => ClientTracking::new(DEFAULT_TRACKED, true),
    }
}

/// Why a replica connection could not be brought to the session's state.
#[derive(Debug)]
enum CatchUpError {
    /// The connection failed: it is dropped, the read goes to the master.
    Broken(String),
    /// The server refused a statement of the state: the session is pinned to the master.
    Refused(String),
}

/// A connection this session holds to a replica.
#[derive(Debug)]
pub(crate) struct ReplicaConn {
    /// The connection.
    pub(crate) backend: Backend,
    /// How far it is from the session's state.
    pub(crate) sync: ReplicaSync,
    /// The schema it is in.
    schema: Option<Vec<u8>>,
    /// Status flags of its last response.
    pub(crate) status: u16,
    /// Counts it in its server's connections and the session's entry while it lives.
    _booking: Booking,
}

impl Session {
    /// Asks the master connection to track everything the router learns from.
    pub(super) async fn track_state(&mut self) -> Result<(), SessionError> {
        let limit = self.shared.config.proxy.connect_timeout;
        if galera_sync_wait(&self.shared.config) {
            // Reads on the writer wait for the cluster too: another kohaproxy may write
            // elsewhere (it chose another writer for a moment: the Galera chaos soak,
            // seed 2, saw 71 stale reads on a writer a proxy had just moved to).
            match internal::query(&mut self.master, GALERA_SYNC_WAIT, limit).await {
                Ok(Reply::Ok(_)) => {}
                Ok(other) => info!(
                    session = self.id,
                    "the writer refused wsrep_sync_wait ({other:?}): its reads may miss writes made through another proxy"
                ),
                Err(reason) => return Err(self.backend_error(reason)),
            }
        }
        if !self.master.caps.has(Caps::SESSION_TRACK) {
            return Ok(());
        }
        match internal::query(&mut self.master, TRACK_ALL, limit).await {
            Ok(Reply::Ok(_)) => Ok(()),
            Ok(other) => {
                // Cannot learn the session's state: it stays on the master.
                info!(
                    session = self.id,
                    "session tracking refused ({other:?}): pinned to the master"
                );
                self.pin(PinReason::TrackingRefused);
                Ok(())
            }
            Err(reason) => Err(self.backend_error(reason)),
        }
    }

    /// Holds the session on the master from now on, until COM_RESET_CONNECTION or
    /// COM_CHANGE_USER.
    pub(super) fn pin(&mut self, reason: PinReason) {
        if !self.router.affinity.pinned() {
            debug!(
                session = self.id,
                "pinned to the master: {}",
                reason.describe()
            );
            self.router.affinity = Affinity::Pinned(reason);
            self.entry.set_pinned(Some(reason));
        }
    }

    /// COM_QUERY: classify, pick a backend, run it there.
    pub(super) async fn query(&mut self, len: usize) -> Result<(), SessionError> {
        // A pinned session's statements run on the master, but in scope `global` its
        // reads are checked there (so classified too).
        let routed = !self.router.affinity.pinned() || self.master_reads_checked();
        let mut class = None;
        if routed {
            if len <= ROUTE_LIMIT {
                fill(&mut self.client, &mut self.cbuf, HEADER_LEN + len)
                    .await
                    .map_err(SessionError::Client)?;
                class = Some(classify::classify(
                    &self.cbuf[HEADER_LEN + 1..HEADER_LEN + len],
                ));
            } else if !plain_write_head(&self.cbuf[HEADER_LEN + 1..]) {
                // Too long to read whole, and not a plain INSERT/UPDATE/DELETE: it may
                // change session state the proxy cannot follow.
                self.pin(PinReason::Unclassified);
            }
        }
        let target = match &class {
            Some(c) if self.router.split => target::target(c, self.situation()),
            _ => Target::Master,
        };
        if class.is_some_and(|c| c.pin) {
            self.pin(PinReason::Statement);
        }
        match target {
            // A read, or the start of a transaction (whose reads follow it there).
            Target::Master
                if class
                    .is_some_and(|c| (c.route == Route::Read || c.starts.is_some()) && !c.pin) =>
            {
                self.read_to_master(len, class).await
            }
            Target::Master => self.query_on_master(len, class).await,
            Target::Read { start_read_only } => match self.replica_for_read().await {
                ReadOn::Replica(server) => {
                    self.query_on_replica(server, len, start_read_only).await
                }
                ReadOn::Checked { server, wait_first } => {
                    self.checked_read(server, wait_first, len, start_read_only, class)
                        .await
                }
                ReadOn::Master => self.read_to_master(len, class).await,
            },
            Target::Replica(server) => self.query_on_replica(server, len, false).await,
        }
    }

    /// What routing needs to know of the session (`route::target`).
    fn situation(&self) -> Situation {
        let open = |server: usize| self.replica(server).is_some();
        Situation {
            affinity: self.router.affinity,
            in_transaction: self.status & status::IN_TRANS != 0
                || self.status & status::AUTOCOMMIT == 0,
            previous_replica: match self.last {
                Which::Replica(server) if open(server) => Some(server),
                _ => None,
            },
            transaction_replica_open: self
                .router
                .affinity
                .read_only_transaction()
                .is_some_and(open),
        }
    }

    /// Runs the buffered statement on the master and learns from it.
    pub(super) async fn query_on_master(
        &mut self,
        len: usize,
        class: Option<Class>,
    ) -> Result<(), SessionError> {
        let replay = class.is_some_and(|c| c.replay);
        if replay {
            self.scratch.clear();
            self.scratch
                .extend_from_slice(&self.cbuf[HEADER_LEN + 1..HEADER_LEN + len]);
        }
        let failed = self.forward_to_master(command::QUERY).await?;
        if replay && !failed {
            let sql = std::mem::take(&mut self.scratch);
            if !self.router.state.add_user_statement(&sql) {
                self.pin(PinReason::UnreplayableSet);
            }
            self.scratch = sql;
        }
        Ok(())
    }

    /// Runs the buffered statement (whole in `cbuf`) on the replica `server`; if that
    /// connection fails before any byte of the answer reached the client, runs it on the
    /// master instead.
    pub(super) async fn query_on_replica(
        &mut self,
        server: usize,
        len: usize,
        start_read_only: bool,
    ) -> Result<(), SessionError> {
        let n = HEADER_LEN + len;
        let sent = {
            let Some(conn) = self.replicas.get_mut(server).and_then(Option::as_mut) else {
                return self.read_to_master(len, None).await;
            };
            conn.backend.stream.write_all(&self.cbuf[..n]).await
        };
        if let Err(e) = sent {
            return self.replica_lost(server, len, &e.to_string()).await;
        }
        self.relay_from_replica(server, len, start_read_only).await
    }

    /// The connection to replica `server` broke before any byte of the answer to the
    /// buffered statement reached the client: a read-only transaction running there died
    /// with it (the client is told, as for a master change under a transaction); any
    /// other read runs on the master instead.
    async fn replica_lost(
        &mut self,
        server: usize,
        len: usize,
        reason: &str,
    ) -> Result<(), SessionError> {
        let running_there = self.router.affinity.read_only_transaction() == Some(server);
        // Ends the transaction's affinity with the connection.
        self.drop_replica(server, reason);
        if running_there {
            self.cbuf.advance(HEADER_LEN + len);
            return self.refuse(Refusal::ReplicaTransactionLost, 1).await;
        }
        self.read_to_master(len, None).await
    }

    /// Relays the answer to the buffered statement, already sent to replica `server`;
    /// if that connection fails before any byte of the answer reached the client, runs
    /// the statement on the master instead.
    pub(super) async fn relay_from_replica(
        &mut self,
        server: usize,
        len: usize,
        start_read_only: bool,
    ) -> Result<(), SessionError> {
        let n = HEADER_LEN + len;
        if self.shared.config.cluster.kind == ClusterKind::Galera
            && self.router.affinity.read_only_transaction() != Some(server)
        {
            match self.galera_not_ready(server).await {
                Ok(false) => {}
                Ok(true) => {
                    // Never shown to the client: the read runs on the writer instead.
                    self.drop_replica(server, "the Galera node is not ready (1047)");
                    return self.read_to_master(len, None).await;
                }
                Err(reason) => {
                    self.drop_replica(server, &reason);
                    return self.read_to_master(len, None).await;
                }
            }
        }
        let caps = self.replica(server).map_or(self.caps, |c| c.backend.caps);
        let Some(tracker) = ResponseTracker::for_command(command::QUERY, caps) else {
            return Ok(());
        };
        self.count(server, true);
        self.entry.phase.set(Phase::Running(On::Replica(server)));
        let outcome = self.relay_response(Which::Replica(server), tracker).await;
        self.count(server, false);
        match outcome? {
            Outcome::Done { .. } => {
                self.cbuf.advance(n);
                self.last = Which::Replica(server);
                let in_txn = self
                    .replica(server)
                    .is_some_and(|c| c.status & status::IN_TRANS != 0);
                let running_there = self.router.affinity.read_only_transaction() == Some(server);
                if start_read_only && in_txn && self.router.affinity == Affinity::Free {
                    self.router.affinity = Affinity::ReadOnlyTransaction(server);
                } else if !in_txn && running_there {
                    self.router.affinity = Affinity::Free;
                }
                Ok(())
            }
            Outcome::Lost(reason) => self.replica_lost(server, len, &reason).await,
        }
    }

    /// Counts a statement sent to (`start`) or finished on server `server`.
    pub(super) fn count(&self, server: usize, start: bool) {
        let stats = &self.shared.stats;
        let Some(s) = stats.servers.get(server) else {
            return;
        };
        if start {
            s.statements.fetch_add(1, Relaxed);
            s.outstanding.fetch_add(1, Relaxed);
            if self.master_index == Some(server) {
                stats.routed_master.fetch_add(1, Relaxed);
            } else {
                stats.routed_replica.fetch_add(1, Relaxed);
            }
        } else {
            s.outstanding.fetch_sub(1, Relaxed);
        }
    }

    /// Opens (if needed), resets (if the session was reset) and brings the session's state
    /// to this session's connection to replica `index`. False sends the read to the master
    /// (and pins the session if the state could not be replayed).
    pub(super) async fn prepare_replica(&mut self, index: usize, address: &str) -> bool {
        if self.replica(index).is_none() && !self.open_replica(index, address).await {
            return false;
        }
        match self.catch_up_replica(index).await {
            Ok(()) => true,
            Err(CatchUpError::Broken(reason)) => {
                self.drop_replica(index, &reason);
                false
            }
            Err(CatchUpError::Refused(reason)) => {
                // The replica will not take the session's state: keep the session where
                // its state is.
                info!(
                    session = self.id,
                    "cannot give a replica this session's state ({reason}): pinned to the master"
                );
                self.pin(PinReason::ReplicaRefusedState);
                false
            }
        }
    }

    /// Opens this session's connection to replica `index`, in the session's schema;
    /// false if it could not be opened (counted as a failure of that server).
    async fn open_replica(&mut self, index: usize, address: &str) -> bool {
        let name = self.shared.config.servers[index].name.clone();
        let mut login = self.login.clone();
        if let Some(schema) = self.router.state.schema() {
            login.database = Some(schema.to_vec());
        }
        match self.connect_replica(&name, address, &login).await {
            Ok(backend) => {
                if self.replicas.len() <= index {
                    self.replicas.resize_with(index + 1, || None);
                }
                let server = self.shared.stats.servers.get(index);
                self.replicas[index] = Some(ReplicaConn {
                    backend,
                    sync: ReplicaSync::At(None),
                    schema: login.database,
                    status: 0,
                    _booking: Booking::open(server, &self.entry, &name),
                });
                true
            }
            Err(e) => {
                debug!(session = self.id, server = %name, "replica connection failed: {e}");
                if let Some(s) = self.shared.stats.servers.get(index) {
                    s.failures.fetch_add(1, Relaxed);
                }
                false
            }
        }
    }

    /// Brings the open connection to replica `index` to the session's state
    /// ([`ReplicaSync::catch_up`]): nothing when it is current, the replay list built only
    /// when it is behind.
    async fn catch_up_replica(&mut self, index: usize) -> Result<(), CatchUpError> {
        let limit = self.shared.config.proxy.connect_timeout;
        let version = self.router.state.version();
        let Some(conn) = self.replicas.get_mut(index).and_then(Option::as_mut) else {
            return Err(CatchUpError::Broken("no connection".into()));
        };
        let plan = conn.sync.catch_up(version);
        if plan.reset {
            match internal::run(&mut conn.backend, &[command::RESET_CONNECTION], limit).await {
                Ok(Reply::Ok(_)) => conn.sync = ReplicaSync::At(None),
                Ok(other) => {
                    return Err(CatchUpError::Refused(format!("reset refused: {other:?}")))
                }
                Err(e) => return Err(CatchUpError::Broken(e)),
            }
        }
        if !plan.replay {
            return Ok(());
        }
        for sql in self.router.state.replay() {
            match internal::query(&mut conn.backend, &sql, limit).await {
                Ok(Reply::Ok(_)) => {}
                Ok(other) => {
                    return Err(CatchUpError::Refused(format!("replay refused: {other:?}")))
                }
                Err(e) => return Err(CatchUpError::Broken(e)),
            }
        }
        if let Some(schema) = self.router.state.schema() {
            if conn.schema.as_deref() != Some(schema) {
                let mut payload = Vec::with_capacity(1 + schema.len());
                payload.push(command::INIT_DB);
                payload.extend_from_slice(schema);
                match internal::run(&mut conn.backend, &payload, limit).await {
                    Ok(Reply::Ok(_)) => conn.schema = Some(schema.to_vec()),
                    Ok(other) => {
                        let mut name = Vec::new();
                        quote_identifier(&mut name, schema);
                        return Err(CatchUpError::Refused(format!(
                            "USE {}: {other:?}",
                            String::from_utf8_lossy(&name)
                        )));
                    }
                    Err(e) => return Err(CatchUpError::Broken(e)),
                }
            }
        }
        conn.sync = ReplicaSync::At(Some(version));
        Ok(())
    }

    /// Opens a connection for reads to server `name`. On Galera, unless causal reads are
    /// off, every read on it waits until the node has applied every write committed in
    /// the cluster before the read began (`wsrep_sync_wait = 1`): the cluster's own
    /// causal read, global across proxies, with no position to carry.
    async fn connect_replica(
        &self,
        name: &str,
        address: &str,
        login: &backend::Login,
    ) -> Result<Backend, String> {
        let limit = self.shared.config.proxy.connect_timeout;
        let (mut backend, _ok) = backend::connect(name, address, login, limit)
            .await
            .map_err(|e| e.to_string())?;
        if galera_sync_wait(&self.shared.config) {
            match internal::query(&mut backend, GALERA_SYNC_WAIT, limit).await? {
                Reply::Ok(_) => {}
                other => return Err(format!("{name} refused wsrep_sync_wait: {other:?}")),
            }
        }
        Ok(backend)
    }

    /// Whether the answer waiting on replica `server` is Galera's 1047 ("WSREP has not
    /// yet prepared node for application use": the node left the Primary component or
    /// is not ready since the monitor last looked). Such an answer is read and dropped,
    /// unseen by the client, so the statement can run elsewhere. `Err`: the connection
    /// failed.
    async fn galera_not_ready(&mut self, server: usize) -> Result<bool, String> {
        let Some(conn) = self.replica_mut(server) else {
            return Err("no connection".into());
        };
        match peek_not_ready(&mut conn.backend).await? {
            Some(n) => {
                conn.backend.buf.advance(n);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// This session's connection to server `index`, if open.
    pub(super) fn replica(&self, index: usize) -> Option<&ReplicaConn> {
        self.replicas.get(index).and_then(Option::as_ref)
    }

    pub(super) fn replica_mut(&mut self, index: usize) -> Option<&mut ReplicaConn> {
        self.replicas.get_mut(index).and_then(Option::as_mut)
    }

    /// Closes the connection to replica `index` (it failed, or the session changed user).
    pub(super) fn drop_replica(&mut self, index: usize, reason: &str) {
        if let Some(conn) = self.replicas.get_mut(index).and_then(Option::take) {
            debug!(session = self.id, server = %conn.backend.server, "replica connection closed: {reason}");
            if self.last == Which::Replica(index) {
                self.last = Which::Master;
            }
            if self.router.affinity.read_only_transaction() == Some(index) {
                self.router.affinity = Affinity::Free;
            }
        }
    }

    /// Learns from an OK the master sent with session state and writes the OK the client
    /// should see (only what it tracks itself) as a packet with sequence id `seq` into
    /// `out`. The GTID of a write is acknowledged here, before the client can see the OK.
    pub(super) fn learn(
        &mut self,
        seq: u8,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SessionError> {
        let server = &self.master.server;
        let malformed = |_: crate::protocol::Malformed| SessionError::Backend {
            server: server.clone(),
            reason: "malformed OK packet".into(),
        };
        let ok = StateOk::parse(payload).map_err(malformed)?;
        for entry in ok.entries() {
            let (change, _) = entry.map_err(malformed)?;
            match change {
                Change::Variable { name, value } => match name {
                    b"last_gtid" => {
                        if let Some(g) = std::str::from_utf8(value)
                            .ok()
                            .and_then(|v| v.parse::<Gtid>().ok())
                        {
                            self.shared.causal.acknowledge(g);
                            self.router.own.raise(g);
                        }
                    }
                    b"session_track_system_variables" => {
                        self.router.tracking.set_variables(value);
                        self.router.retrack = true;
                    }
                    b"session_track_schema" => {
                        self.router.tracking.schema = matches!(value, b"ON" | b"1");
                        self.router.retrack = true;
                    }
                    _ => {
                        if name == b"character_set_connection" {
                            self.router.read_collation = true;
                        }
                        self.router.state.set_variable(name, value);
                    }
                },
                Change::Schema(name) => self.router.state.set_schema(name),
                Change::Other(_) => {}
            }
        }
        out.clear();
        out.extend_from_slice(&[0, 0, 0, seq]);
        let client_tracks = self.caps.has(Caps::SESSION_TRACK);
        let tracking = &self.router.tracking;
        ok.write_filtered(out, |c| client_tracks && tracking.shows(c))
            .map_err(malformed)?;
        let n = out.len() - HEADER_LEN;
        out[..3].copy_from_slice(&(n as u32).to_le_bytes()[..3]);
        Ok(())
    }

    /// After a master response: sets the proxy's tracking again if the client changed it.
    pub(super) async fn after_master_response(&mut self) -> Result<(), SessionError> {
        if self.master_lost() {
            // Set again on the next master connection, with the rest of the state.
            return Ok(());
        }
        if std::mem::take(&mut self.router.retrack) {
            self.track_state().await?;
        }
        if std::mem::take(&mut self.router.read_collation) {
            let limit = self.shared.config.proxy.connect_timeout;
            let sql = b"SELECT @@collation_connection";
            match internal::query(&mut self.master, sql, limit).await {
                Ok(Reply::Value(Some(c))) => {
                    self.router.state.set_variable(b"collation_connection", &c);
                }
                Ok(other) => {
                    info!(
                        session = self.id,
                        "cannot read the connection collation ({other:?}): pinned to the master"
                    );
                    self.pin(PinReason::CollationUnknown);
                }
                Err(reason) => return Err(self.backend_error(reason)),
            }
        }
        Ok(())
    }

    /// COM_RESET_CONNECTION or COM_CHANGE_USER succeeded on the master: the session's state
    /// is the server's default again, and the pin is lifted.
    pub(super) fn forget_state(&mut self, changed_user: bool) {
        self.router.state.clear();
        self.router.tracking = default_tracking(&self.shared);
        self.router.affinity = Affinity::Free;
        self.entry.set_pinned(None);
        self.last = Which::Master;
        if changed_user {
            for index in 0..self.replicas.len() {
                self.drop_replica(index, "the session changed user");
            }
        } else {
            for conn in self.replicas.iter_mut().flatten() {
                conn.sync = ReplicaSync::ResetPending;
            }
        }
    }
}

/// Reads the start of the answer waiting on `b` and, if it is Galera's 1047 ("WSREP has
/// not yet prepared node for application use": the node is not in the Primary component,
/// so it ran nothing), the length of that ERR packet, left in the buffer. `Err`: the
/// connection failed.
pub(super) async fn peek_not_ready(b: &mut Backend) -> Result<Option<usize>, String> {
    fill(&mut b.stream, &mut b.buf, HEADER_LEN + 1)
        .await
        .map_err(|e| e.to_string())?;
    if b.buf[HEADER_LEN] != 0xFF {
        return Ok(None);
    }
    let len = crate::protocol::payload_len(&b.buf);
    fill(&mut b.stream, &mut b.buf, HEADER_LEN + len)
        .await
        .map_err(|e| e.to_string())?;
    let code =
        (len >= 3).then(|| u16::from_le_bytes([b.buf[HEADER_LEN + 1], b.buf[HEADER_LEN + 2]]));
    Ok((code == Some(GALERA_NOT_READY)).then_some(HEADER_LEN + len))
}

/// Whether a statement's first bytes show a plain INSERT, UPDATE, DELETE or REPLACE (a
/// statement too long to classify that changes no session state).
fn plain_write_head(head: &[u8]) -> bool {
    let text = head.trim_ascii_start();
    ["INSERT", "UPDATE", "DELETE", "REPLACE"].iter().any(|k| {
        text.len() > k.len()
            && text[..k.len()].eq_ignore_ascii_case(k.as_bytes())
            && text[k.len()].is_ascii_whitespace()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_statements_that_are_plain_writes_do_not_pin() {
        assert!(plain_write_head(b"INSERT INTO t VALUES (1)"));
        assert!(plain_write_head(b"  update t set a=1"));
        assert!(!plain_write_head(b"SET @a = 'x'"));
        assert!(!plain_write_head(b"INSERTX"));
        assert!(!plain_write_head(b"/* c */ INSERT INTO t"));
    }
}
