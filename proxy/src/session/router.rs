//! The session's side of the read/write split: where each COM_QUERY runs, the replica
//! connections it opens on first use, the state it replays on them, the causal check
//! before a read, and what it learns from the master's OKs.
//!
//! Decisions, in order: split off or session pinned → master; a read-only transaction
//! running on a replica → that replica; the classifier says pin → master, pinned from now
//! on; a transaction open on the master (server status flags) → master; hint; a plain read
//! (or START TRANSACTION READ ONLY) → the least busy healthy replica within the lag limit
//! that has applied every write it must see (or waits for one, within
//! `routing.causal_wait_ms`) → else the master.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Buf;
use kohaproxy_config::CausalReads;
use kohaproxy_health::{Gtid, GtidList, Role, ServerState};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info};

use super::internal::{self, Reply};
use super::{Outcome, Session, SessionError, Which};
use crate::backend::{self, Backend};
use crate::io::fill;
use crate::protocol::response::ResponseTracker;
use crate::protocol::track::{Change, ClientTracking, StateOk};
use crate::protocol::{command, status, Caps, HEADER_LEN};
use crate::route::causal::{self, Candidate, CheckOrder, Need, Pick, ToMaster};
use crate::route::classify::{self, Class, Hint, Route};
use crate::route::state::{quote_identifier, SessionState};

/// Longest statement the router reads whole to classify; longer ones run on the master.
pub(crate) const ROUTE_LIMIT: usize = 32 * 1024;

/// What the proxy's master connections track: every system variable (the session's state
/// and `last_gtid`) and the schema.
const TRACK_ALL: &[u8] =
    b"SET SESSION session_track_system_variables = '*', SESSION session_track_schema = ON";

/// MariaDB's defaults, when the monitor has not read the server's own yet.
const DEFAULT_TRACKED: &[u8] =
    b"autocommit,character_set_client,character_set_connection,character_set_results,time_zone";

/// Per-session router state.
#[derive(Debug)]
pub(crate) struct Router {
    /// The master connection tracks session state (the split is on, or the cluster can
    /// fail over: the state is restored on a new master).
    pub(crate) enabled: bool,
    /// Reads may go to replicas (`routing.read_write_split`).
    pub(crate) split: bool,
    /// Held on the master until reset (temporary table, lock, unfollowable SET, ...).
    pub(crate) pinned: bool,
    /// What the session changed, to replay on replicas.
    pub(crate) state: SessionState,
    /// What the client itself asked to be told in OKs.
    pub(crate) tracking: ClientTracking,
    /// The client changed the proxy's tracking settings: set them again after this response.
    retrack: bool,
    /// The connection character set changed: read the collation after this response (the
    /// server does not report `collation_connection` when SET NAMES ... COLLATE sets it).
    read_collation: bool,
    /// A read-only transaction runs on this replica (server index).
    pub(crate) read_only_txn: Option<usize>,
    /// The GTIDs of this session's own writes (causal scope `session`).
    own: GtidList,
    /// Scratch: the position the current read must see.
    required: GtidList,
    /// Scratch: the replicas that may serve the current read.
    candidates: Vec<Candidate>,
}

impl Router {
    /// Router state for a new session; `enabled` when the master connection tracks state,
    /// `split` when reads may go to replicas.
    pub(crate) fn new(enabled: bool, split: bool, tracking: ClientTracking) -> Router {
        Router {
            enabled,
            split: split && enabled,
            pinned: false,
            state: SessionState::default(),
            tracking,
            retrack: false,
            read_collation: false,
            read_only_txn: None,
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

/// A connection this session holds to a replica.
#[derive(Debug)]
pub(crate) struct ReplicaConn {
    /// The connection.
    pub(crate) backend: Backend,
    /// The state version replayed on it (`None`: nothing replayed yet).
    synced: Option<u64>,
    /// The schema it is in.
    schema: Option<Vec<u8>>,
    /// The session was reset: reset this connection before its next use.
    pub(crate) reset_pending: bool,
    /// Status flags of its last response.
    pub(crate) status: u16,
}

impl Session {
    /// Asks the master connection to track everything the router learns from.
    pub(super) async fn track_state(&mut self) -> Result<(), SessionError> {
        if !self.router.enabled || !self.master.caps.has(Caps::SESSION_TRACK) {
            return Ok(());
        }
        let limit = self.shared.config.proxy.connect_timeout;
        match internal::query(&mut self.master, TRACK_ALL, limit).await {
            Ok(Reply::Ok(_)) => Ok(()),
            Ok(other) => {
                // Cannot learn the session's state: it stays on the master.
                info!(
                    session = self.id,
                    "session tracking refused ({other:?}): pinned to the master"
                );
                self.pin();
                Ok(())
            }
            Err(reason) => Err(self.backend_error(reason)),
        }
    }

    /// Holds the session on the master from now on.
    pub(super) fn pin(&mut self) {
        if !self.router.pinned {
            debug!(session = self.id, "pinned to the master");
        }
        self.router.pinned = true;
        self.router.read_only_txn = None;
        self.entry.pinned.store(true, Relaxed);
    }

    /// COM_QUERY: classify, pick a backend, run it there.
    pub(super) async fn query(&mut self, len: usize) -> Result<(), SessionError> {
        let routed = self.router.enabled && !self.router.pinned;
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
                self.pin();
            }
        }
        let target = match &class {
            Some(c) if self.router.split => self.decide(c),
            _ => Target::Master,
        };
        if let Some(c) = &class {
            if c.pin {
                self.pin();
            }
        }
        match target {
            Target::Master => self.query_on_master(len, class).await,
            Target::Read { start_read_only } => match self.replica_for_read().await {
                ReadOn::Replica(server) => {
                    self.query_on_replica(server, len, start_read_only).await
                }
                ReadOn::Checked { server, wait_first } => {
                    self.checked_read(server, wait_first, len, start_read_only, class)
                        .await
                }
                ReadOn::Master => self.query_on_master(len, class).await,
            },
            Target::Replica(server) => self.query_on_replica(server, len, false).await,
        }
    }

    /// Where a classified statement goes (before replica health and causality).
    fn decide(&self, class: &Class) -> Target {
        if class.pin {
            return Target::Master;
        }
        if let Some(server) = self.router.read_only_txn {
            if self.replica(server).is_some() {
                return Target::Replica(server);
            }
        }
        let in_transaction =
            self.status & status::IN_TRANS != 0 || self.status & status::AUTOCOMMIT == 0;
        if in_transaction {
            return Target::Master;
        }
        if class.read_only_transaction {
            return Target::Read {
                start_read_only: true,
            };
        }
        let route = match class.hint {
            Some(Hint::Master) => Route::Master,
            Some(Hint::Replica) => Route::Read,
            None => class.route,
        };
        match route {
            Route::Read => Target::Read {
                start_read_only: false,
            },
            Route::Previous => match self.last {
                Which::Replica(server) if self.replica(server).is_some() => Target::Replica(server),
                _ => Target::Master,
            },
            Route::Master => Target::Master,
        }
    }

    /// Runs the buffered statement on the master and learns from it.
    async fn query_on_master(
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
                self.pin();
            }
            self.scratch = sql;
        }
        Ok(())
    }

    /// Runs the buffered statement (whole in `cbuf`) on the replica `server`; if that
    /// connection fails before any byte of the answer reached the client, runs it on the
    /// master instead.
    async fn query_on_replica(
        &mut self,
        server: usize,
        len: usize,
        start_read_only: bool,
    ) -> Result<(), SessionError> {
        let n = HEADER_LEN + len;
        let sent = {
            let Some(conn) = self.replicas.get_mut(server).and_then(Option::as_mut) else {
                return self.query_on_master(len, None).await;
            };
            conn.backend.stream.write_all(&self.cbuf[..n]).await
        };
        if let Err(e) = sent {
            self.drop_replica(server, &e.to_string());
            return self.query_on_master(len, None).await;
        }
        self.relay_from_replica(server, len, start_read_only).await
    }

    /// Relays the answer to the buffered statement, already sent to replica `server`;
    /// if that connection fails before any byte of the answer reached the client, runs
    /// the statement on the master instead.
    async fn relay_from_replica(
        &mut self,
        server: usize,
        len: usize,
        start_read_only: bool,
    ) -> Result<(), SessionError> {
        let n = HEADER_LEN + len;
        let caps = self.replica(server).map_or(self.caps, |c| c.backend.caps);
        let Some(tracker) = ResponseTracker::for_command(command::QUERY, caps) else {
            return Ok(());
        };
        self.count(server, true);
        let outcome = self.relay_response(Which::Replica(server), tracker).await;
        self.count(server, false);
        match outcome? {
            Outcome::Done { .. } => {
                self.cbuf.advance(n);
                self.last = Which::Replica(server);
                let in_txn = self
                    .replica(server)
                    .is_some_and(|c| c.status & status::IN_TRANS != 0);
                if start_read_only && in_txn {
                    self.router.read_only_txn = Some(server);
                } else if !in_txn && self.router.read_only_txn == Some(server) {
                    self.router.read_only_txn = None;
                }
                Ok(())
            }
            Outcome::Lost(reason) => {
                self.drop_replica(server, &reason);
                if self.router.read_only_txn == Some(server) {
                    // The transaction died with the connection: say so, like a server would.
                    self.router.read_only_txn = None;
                    self.cbuf.advance(n);
                    let err = crate::protocol::packets::ErrPacket::new(
                        2013,
                        "HY000",
                        "Lost connection to server during query",
                    );
                    self.send_error(&err, 1).await?;
                    return Ok(());
                }
                self.query_on_master(len, None).await
            }
        }
    }

    /// Scope `global`: runs the buffered read on replica `server` only if that replica
    /// had applied, when the read ran there, everything the master had when the read
    /// arrived. The messages leave at once: the master's position query (on the session's
    /// master connection), and on the replica a wait for this proxy's own writes (if
    /// `wait_first`), its position query and the statement, so the check costs the
    /// longer of the two round trips, not their sum. If the replica lacked the master's
    /// position, its answer is dropped unseen, and the statement runs there again behind
    /// a wait for that position (`routing.causal_wait_ms`), or on the master.
    async fn checked_read(
        &mut self,
        server: usize,
        wait_first: bool,
        len: usize,
        start_read_only: bool,
        class: Option<Class>,
    ) -> Result<(), SessionError> {
        let shared = self.shared.clone();
        if shared.causal.check_order(server) == CheckOrder::MasterFirst {
            return self
                .read_after_master(server, len, start_read_only, class)
                .await;
        }
        let limit = shared.config.proxy.connect_timeout + shared.config.routing.causal_wait;
        let n = HEADER_LEN + len;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        internal::push_query(&mut out, MASTER_POSITION);
        let master_sent = !self.master_lost && self.master.stream.write_all(&out).await.is_ok();
        if !master_sent {
            self.lose_master();
        }
        self.out = out;
        let local = wait_first.then(|| self.router.required.clone());
        let first = local.as_ref().map(|p| self.wait_sql(p));
        let sent = self
            .send_to_replica(server, first.as_deref(), Some(REPLICA_POSITION), n)
            .await;
        shared.stats.causal.master_positions.fetch_add(1, Relaxed);
        let master_position = if master_sent {
            self.master_position(limit).await
        } else {
            None
        };
        if let Err(reason) = sent {
            self.drop_replica(server, &reason);
            return self.query_on_master(len, class).await;
        }
        let mut timed_out = false;
        if let Some(local) = &local {
            shared.stats.causal.waits.fetch_add(1, Relaxed);
            match self.replica_reply(server, limit).await {
                Ok(Reply::Value(Some(v))) if v == b"0" => {
                    shared.causal.record_applied(server, local)
                }
                Ok(_) => {
                    timed_out = true;
                    shared
                        .causal
                        .wait_timed_out(server, shared.config.monitor.interval);
                }
                Err(reason) => {
                    self.drop_replica(server, &reason);
                    return self.query_on_master(len, class).await;
                }
            }
        }
        let replica_position = match self.replica_reply(server, limit).await {
            Ok(reply) => parse_position(&reply),
            Err(reason) => {
                self.drop_replica(server, &reason);
                return self.query_on_master(len, class).await;
            }
        };
        let Some(master) = master_position else {
            return self
                .drop_answer(server, len, class, ToMaster::NoMasterPosition)
                .await;
        };
        self.router.required.raise_all(&master);
        self.router.required.raise_all(&self.router.own);
        if let Some(r) = &replica_position {
            shared.causal.record_applied(server, r);
            if r.contains(&self.router.required) {
                shared.stats.causal.ready.fetch_add(1, Relaxed);
                return self.relay_from_replica(server, len, start_read_only).await;
            }
        }
        // The replica lacked a write: its answer must not reach the client. Run the
        // statement again behind a wait for the master's position, in the same write.
        shared.causal.found_behind(server);
        if let Err(reason) = self.discard_answer(server, limit).await {
            self.drop_replica(server, &reason);
            return self.query_on_master(len, class).await;
        }
        shared.stats.causal.discarded.fetch_add(1, Relaxed);
        let behind = if timed_out {
            ToMaster::WaitTimedOut
        } else {
            ToMaster::Behind
        };
        self.wait_then_read(server, len, start_read_only, class, behind)
            .await
    }

    /// Scope `global`, on a replica recently found behind: reads the master's position
    /// first, then sends the wait for it (unless the replica is known to have it) and the
    /// statement to replica `server` in one write. The statement runs once.
    async fn read_after_master(
        &mut self,
        server: usize,
        len: usize,
        start_read_only: bool,
        class: Option<Class>,
    ) -> Result<(), SessionError> {
        let shared = self.shared.clone();
        let limit = shared.config.proxy.connect_timeout;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        internal::push_query(&mut out, MASTER_POSITION);
        let master_sent = !self.master_lost && self.master.stream.write_all(&out).await.is_ok();
        self.out = out;
        shared.stats.causal.master_positions.fetch_add(1, Relaxed);
        let master = if master_sent {
            self.master_position(limit).await
        } else {
            self.lose_master();
            None
        };
        let Some(master) = master else {
            shared.stats.causal.to_master(ToMaster::NoMasterPosition);
            return self.query_on_master(len, class).await;
        };
        self.router.required.raise_all(&master);
        self.router.required.raise_all(&self.router.own);
        let topology = shared.topology.load();
        let probed = topology
            .servers
            .get(server)
            .and_then(|s| s.status.as_ref())
            .map(|st| &st.gtid_current_pos);
        if shared
            .causal
            .has_applied(server, probed, &self.router.required)
        {
            shared.stats.causal.ready.fetch_add(1, Relaxed);
            return self.query_on_replica(server, len, start_read_only).await;
        }
        self.wait_then_read(server, len, start_read_only, class, ToMaster::Behind)
            .await
    }

    /// Sends a wait for `router.required` and the buffered statement to replica `server`
    /// in one write and relays the statement's answer if the wait succeeded; else drops
    /// it and runs the statement on the master. A replica that may not wait now (the
    /// wait is 0, or one timed out there lately) is not asked: the statement goes to the
    /// master for `behind`.
    async fn wait_then_read(
        &mut self,
        server: usize,
        len: usize,
        start_read_only: bool,
        class: Option<Class>,
        behind: ToMaster,
    ) -> Result<(), SessionError> {
        let shared = self.shared.clone();
        let limit = shared.config.proxy.connect_timeout + shared.config.routing.causal_wait;
        if shared.config.routing.causal_wait.is_zero() || !shared.causal.may_wait(server) {
            shared.stats.causal.to_master(behind);
            return self.query_on_master(len, class).await;
        }
        let wait = self.wait_sql(&self.router.required);
        if let Err(reason) = self
            .send_to_replica(server, Some(&wait), None, HEADER_LEN + len)
            .await
        {
            self.drop_replica(server, &reason);
            return self.query_on_master(len, class).await;
        }
        shared.stats.causal.waits.fetch_add(1, Relaxed);
        match self.replica_reply(server, limit).await {
            Ok(Reply::Value(Some(v))) if v == b"0" => {
                shared.causal.record_applied(server, &self.router.required);
                self.relay_from_replica(server, len, start_read_only).await
            }
            Ok(_) => {
                shared
                    .causal
                    .wait_timed_out(server, shared.config.monitor.interval);
                self.drop_answer(server, len, class, ToMaster::WaitTimedOut)
                    .await
            }
            Err(reason) => {
                self.drop_replica(server, &reason);
                self.query_on_master(len, class).await
            }
        }
    }

    /// `SELECT MASTER_GTID_WAIT(position, routing.causal_wait_ms)`.
    fn wait_sql(&self, position: &GtidList) -> String {
        let wait = self.shared.config.routing.causal_wait;
        format!(
            "SELECT MASTER_GTID_WAIT('{position}', {}.{:03})",
            wait.as_secs(),
            wait.subsec_millis()
        )
    }

    /// Sends to replica `server`, in one write: the queries `first` and `second` (each
    /// if given) and the buffered statement of `n` bytes.
    async fn send_to_replica(
        &mut self,
        server: usize,
        first: Option<&str>,
        second: Option<&[u8]>,
        n: usize,
    ) -> Result<(), String> {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        if let Some(sql) = first {
            internal::push_query(&mut out, sql.as_bytes());
        }
        if let Some(sql) = second {
            internal::push_query(&mut out, sql);
        }
        out.extend_from_slice(&self.cbuf[..n]);
        let sent = match self.replica_mut(server) {
            Some(conn) => conn
                .backend
                .stream
                .write_all(&out)
                .await
                .map_err(|e| e.to_string()),
            None => Err("no connection".into()),
        };
        self.out = out;
        sent
    }

    /// Reads the answer to a query the proxy sent to replica `server`.
    async fn replica_reply(
        &mut self,
        server: usize,
        limit: std::time::Duration,
    ) -> Result<Reply, String> {
        match self.replica_mut(server) {
            Some(conn) => internal::receive_within(&mut conn.backend, command::QUERY, limit).await,
            None => Err("no connection".into()),
        }
    }

    /// Reads and drops the answer to the client's statement sent to replica `server`.
    async fn discard_answer(
        &mut self,
        server: usize,
        limit: std::time::Duration,
    ) -> Result<(), String> {
        match self.replica_mut(server) {
            Some(conn) => match ResponseTracker::for_command(command::QUERY, conn.backend.caps) {
                Some(tracker) => internal::discard(&mut conn.backend, tracker, limit).await,
                None => Ok(()),
            },
            None => Err("no connection".into()),
        }
    }

    /// Drops the replica's answer to the statement and runs it on the master, counting
    /// `reason`.
    async fn drop_answer(
        &mut self,
        server: usize,
        len: usize,
        class: Option<Class>,
        reason: ToMaster,
    ) -> Result<(), SessionError> {
        let limit = self.shared.config.proxy.connect_timeout;
        match self.discard_answer(server, limit).await {
            Ok(()) => self.shared.stats.causal.discarded.fetch_add(1, Relaxed),
            Err(reason) => {
                self.drop_replica(server, &reason);
                0
            }
        };
        self.shared.stats.causal.to_master(reason);
        debug!(
            session = self.id,
            reason = reason.name(),
            "causal read sent to the master"
        );
        self.query_on_master(len, class).await
    }

    /// Reads the answer to the master position query sent on the master connection: the
    /// master's `gtid_binlog_pos`, if it came from a master connection of the current term.
    async fn master_position(&mut self, limit: std::time::Duration) -> Option<GtidList> {
        match internal::receive_within(&mut self.master, command::QUERY, limit).await {
            Ok(Reply::Value(None)) if self.shared.topology.term() == self.master_term => {
                // Read-only: no longer the master (another kohaproxy switched over, or
                // is failing over), though this proxy's monitor has not seen it yet. Its
                // position may lack writes the new master acknowledged, and so may its
                // data: wait for the monitor to follow the change.
                info!(session = self.id, server = %self.master.server, "the master answered read-only: waiting for the new master before this read");
                self.lose_master();
                self.wait_new_term().await;
                None
            }
            Ok(reply) if self.shared.topology.term() == self.master_term => {
                let position = parse_position(&reply);
                if position.is_none() {
                    debug!(
                        session = self.id,
                        "the master's position was not readable: {reply:?}"
                    );
                }
                position
            }
            Ok(_) => {
                // From a master of an older term: the next command moves to the new one.
                self.lose_master();
                None
            }
            Err(reason) => {
                info!(session = self.id, server = %self.master.server, "master connection lost reading its position: {reason}");
                self.lose_master();
                None
            }
        }
    }

    /// Waits until the monitor publishes a term other than this session's master term,
    /// at most `monitor.failover_hold`.
    async fn wait_new_term(&mut self) {
        let topology = &self.shared.topology;
        let mut changes = topology.subscribe();
        let until = tokio::time::Instant::now() + self.shared.config.monitor.failover_hold;
        while topology.term() == self.master_term {
            match tokio::time::timeout_at(until, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
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

    /// Where this read goes: a replica opened and given the session's state, known to
    /// have every write the read must see (or that waited for them); a replica whose
    /// position is checked with the read (scope `global`); or the master.
    async fn replica_for_read(&mut self) -> ReadOn {
        let shared = self.shared.clone();
        let routing = &shared.config.routing;
        let topology = shared.topology.load();
        let causal = &shared.causal;
        if routing.causal_reads == CausalReads::Local && !causal.floor_known() {
            if let Some(status) = topology.master().and_then(|m| m.status.as_ref()) {
                causal.learn_floor(&status.gtid_binlog_pos);
            }
        }
        match routing.causal_reads {
            CausalReads::Local | CausalReads::Global => {
                causal.local_into(&mut self.router.required);
            }
            CausalReads::Session => self.router.required.clone_from(&self.router.own),
            CausalReads::Off => self.router.required = GtidList::default(),
        }
        let need = causal::need(
            routing.causal_reads,
            causal.floor_known(),
            self.router.required.is_empty(),
        );
        let max_lag = routing.max_replication_lag.as_secs();
        let mut candidates = std::mem::take(&mut self.router.candidates);
        candidates.clear();
        for (index, s) in topology.servers.iter().enumerate() {
            let usable = s.role == Role::Replica
                && s.state == ServerState::Up
                && !s.maintenance
                && s.lag
                    .and_then(|l| l.seconds_behind_master)
                    .is_some_and(|l| l <= max_lag);
            if !usable {
                continue;
            }
            let probed = s.status.as_ref().map(|st| &st.gtid_current_pos);
            candidates.push(Candidate {
                index,
                load: shared
                    .stats
                    .servers
                    .get(index)
                    .map_or(0, |c| c.outstanding.load(Relaxed)),
                connected: self.replica(index).is_some(),
                known: need != Need::Nothing
                    && causal.has_applied(index, probed, &self.router.required),
                may_wait: causal.may_wait(index),
            });
        }
        let pick = causal::pick(&candidates, need, !routing.causal_wait.is_zero(), self.id);
        let known = |index| candidates.iter().any(|c| c.index == index && c.known);
        let wait_first = match pick {
            Pick::Check(index) => {
                !known(index) && !routing.causal_wait.is_zero() && causal.may_wait(index)
            }
            _ => false,
        };
        self.router.candidates = candidates;
        let index = match pick {
            Pick::Master(reason) => {
                if let Some(reason) = reason {
                    shared.stats.causal.to_master(reason);
                }
                return ReadOn::Master;
            }
            Pick::Ready(index) | Pick::Check(index) | Pick::Wait(index) => index,
        };
        let address = topology.servers[index].address.clone();
        if !self.prepare_replica(index, &address).await {
            return ReadOn::Master;
        }
        match pick {
            Pick::Check(_) => ReadOn::Checked {
                server: index,
                wait_first,
            },
            Pick::Wait(_) => match self.wait_on_replica(index).await {
                Ok(()) => ReadOn::Replica(index),
                Err(reason) => {
                    if let Some(reason) = reason {
                        shared.stats.causal.to_master(reason);
                    }
                    ReadOn::Master
                }
            },
            _ => {
                if need != Need::Nothing {
                    shared.stats.causal.ready.fetch_add(1, Relaxed);
                }
                ReadOn::Replica(index)
            }
        }
    }

    /// Waits (MASTER_GTID_WAIT, at most `routing.causal_wait_ms`) until replica `index`
    /// has applied `router.required`. `Err(Some(reason))`: the read goes to the master
    /// for causality; `Err(None)`: the connection failed (it was dropped).
    async fn wait_on_replica(&mut self, index: usize) -> Result<(), Option<ToMaster>> {
        let shared = self.shared.clone();
        shared.stats.causal.waits.fetch_add(1, Relaxed);
        let sql = self.wait_sql(&self.router.required);
        let limit = shared.config.routing.causal_wait + shared.config.proxy.connect_timeout;
        let Some(conn) = self.replica_mut(index) else {
            return Err(None);
        };
        match internal::query(&mut conn.backend, sql.as_bytes(), limit).await {
            Ok(Reply::Value(Some(v))) if v == b"0" => {
                shared.causal.record_applied(index, &self.router.required);
                Ok(())
            }
            Ok(_) => {
                shared
                    .causal
                    .wait_timed_out(index, shared.config.monitor.interval);
                Err(Some(ToMaster::WaitTimedOut))
            }
            Err(reason) => {
                self.drop_replica(index, &reason);
                Err(None)
            }
        }
    }

    /// Opens (if needed), resets (if the session was reset) and brings the session's state
    /// to this session's connection to replica `index`. False sends the read to the master
    /// (and pins the session if the state could not be replayed).
    async fn prepare_replica(&mut self, index: usize, address: &str) -> bool {
        let limit = self.shared.config.proxy.connect_timeout;
        if self.replica(index).is_none() {
            let name = self.shared.config.servers[index].name.clone();
            let mut login = self.login.clone();
            if let Some(schema) = self.router.state.schema() {
                login.database = Some(schema.to_vec());
            }
            match backend::connect(&name, address, &login, limit).await {
                Ok((backend, _ok)) => {
                    if self.replicas.len() <= index {
                        self.replicas.resize_with(index + 1, || None);
                    }
                    self.replicas[index] = Some(ReplicaConn {
                        backend,
                        synced: None,
                        schema: login.database,
                        reset_pending: false,
                        status: 0,
                    });
                    self.entry.add_backend(&name);
                    if let Some(s) = self.shared.stats.servers.get(index) {
                        s.connections.fetch_add(1, Relaxed);
                    }
                }
                Err(e) => {
                    debug!(session = self.id, server = %name, "replica connection failed: {e}");
                    if let Some(s) = self.shared.stats.servers.get(index) {
                        s.failures.fetch_add(1, Relaxed);
                    }
                    return false;
                }
            }
        }
        let version = self.router.state.version();
        let statements = self.router.state.replay();
        let schema = self.router.state.schema().map(<[u8]>::to_vec);
        let Some(conn) = self.replica_mut(index) else {
            return false;
        };
        let mut result = Ok(());
        if conn.reset_pending {
            result =
                match internal::run(&mut conn.backend, &[command::RESET_CONNECTION], limit).await {
                    Ok(Reply::Ok(_)) => {
                        conn.reset_pending = false;
                        conn.synced = None;
                        Ok(())
                    }
                    Ok(other) => Err((false, format!("reset refused: {other:?}"))),
                    Err(e) => Err((true, e)),
                };
        }
        if result.is_ok() && conn.synced != Some(version) {
            for sql in &statements {
                match internal::query(&mut conn.backend, sql, limit).await {
                    Ok(Reply::Ok(_)) => {}
                    Ok(other) => {
                        result = Err((false, format!("replay refused: {other:?}")));
                        break;
                    }
                    Err(e) => {
                        result = Err((true, e));
                        break;
                    }
                }
            }
            if let (Ok(()), Some(schema)) = (&result, schema) {
                if conn.schema.as_deref() != Some(&schema[..]) {
                    let mut payload = vec![command::INIT_DB];
                    payload.extend_from_slice(&schema);
                    result = match internal::run(&mut conn.backend, &payload, limit).await {
                        Ok(Reply::Ok(_)) => {
                            conn.schema = Some(schema);
                            Ok(())
                        }
                        Ok(other) => {
                            let mut name = Vec::new();
                            quote_identifier(&mut name, &schema);
                            Err((
                                false,
                                format!("USE {}: {other:?}", String::from_utf8_lossy(&name)),
                            ))
                        }
                        Err(e) => Err((true, e)),
                    };
                }
            }
            if result.is_ok() {
                conn.synced = Some(version);
            }
        }
        match result {
            Ok(()) => true,
            Err((true, reason)) => {
                self.drop_replica(index, &reason);
                false
            }
            Err((false, reason)) => {
                // The replica will not take the session's state: keep the session where
                // its state is.
                info!(
                    session = self.id,
                    "cannot give a replica this session's state ({reason}): pinned to the master"
                );
                self.pin();
                false
            }
        }
    }

    /// This session's connection to server `index`, if open.
    pub(super) fn replica(&self, index: usize) -> Option<&ReplicaConn> {
        self.replicas.get(index).and_then(Option::as_ref)
    }

    fn replica_mut(&mut self, index: usize) -> Option<&mut ReplicaConn> {
        self.replicas.get_mut(index).and_then(Option::as_mut)
    }

    /// Closes the connection to replica `index` (it failed, or the session changed user).
    pub(super) fn drop_replica(&mut self, index: usize, reason: &str) {
        if let Some(conn) = self.replicas.get_mut(index).and_then(Option::take) {
            debug!(session = self.id, server = %conn.backend.server, "replica connection closed: {reason}");
            self.entry.remove_backend(&conn.backend.server);
            if let Some(s) = self.shared.stats.servers.get(index) {
                s.connections.fetch_sub(1, Relaxed);
            }
            if self.last == Which::Replica(index) {
                self.last = Which::Master;
            }
            if self.router.read_only_txn == Some(index) {
                self.router.read_only_txn = None;
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
        if self.master_lost {
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
                    self.pin();
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
        self.router.pinned = false;
        self.router.read_only_txn = None;
        self.entry.pinned.store(false, Relaxed);
        self.last = Which::Master;
        if changed_user {
            for index in 0..self.replicas.len() {
                self.drop_replica(index, "the session changed user");
            }
        } else {
            for conn in self.replicas.iter_mut().flatten() {
                conn.reset_pending = true;
            }
        }
    }
}

/// Where a read goes, once replica health and causality are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadOn {
    /// This replica, ready: it has what the read must see.
    Replica(usize),
    /// This replica, if its position read with the statement contains the master's;
    /// `wait_first`: it is not known to have this proxy's writes (`router.required`), so
    /// it waits for them before the statement.
    Checked {
        /// Config index.
        server: usize,
        /// Wait for `router.required` first.
        wait_first: bool,
    },
    /// The master.
    Master,
}

/// What the master has committed (every write acknowledged through any proxy); NULL from
/// a read-only server, which is not (or no longer) the master.
const MASTER_POSITION: &[u8] = b"SELECT IF(@@GLOBAL.read_only, NULL, @@GLOBAL.gtid_binlog_pos)";

/// What a replica has applied (read just before the statement it precedes).
const REPLICA_POSITION: &[u8] = b"SELECT @@GLOBAL.gtid_current_pos";

/// A GTID position from a one-value answer (`None` if it is not one).
fn parse_position(reply: &Reply) -> Option<GtidList> {
    match reply {
        Reply::Value(Some(v)) => std::str::from_utf8(v).ok()?.parse().ok(),
        Reply::Value(None) => Some(GtidList::default()),
        _ => None,
    }
}

/// Where a statement goes before health and causality are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The master.
    Master,
    /// A replica, chosen now; `start_read_only` for START TRANSACTION READ ONLY.
    Read { start_read_only: bool },
    /// This replica (a read-only transaction or SHOW WARNINGS after a read there).
    Replica(usize),
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
