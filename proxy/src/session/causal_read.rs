//! Reads routed to replicas under `routing.causal_reads`: which replica serves a read
//! (the pure choice is `route::causal::pick`), and the I/O that proves it has every write
//! the read must see: the master's position read with the read (`global`), waits on the
//! replica (`MASTER_GTID_WAIT`), and the fall back to the master.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Buf;
use kohaproxy_config::{CausalReads, ClusterKind};
use kohaproxy_health::{GtidList, Role, ServerState};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info};

use super::internal::{self, Reply};
use super::{Session, SessionError};
use crate::phase::Phase;
use crate::protocol::response::ResponseTracker;
use crate::protocol::{command, status, HEADER_LEN};
use crate::route::causal::{self, Candidate, CheckOrder, Need, Pick, ToMaster};
use crate::route::classify::Class;

impl Session {
    /// Where this read goes: a replica opened and given the session's state, known to
    /// have every write the read must see (or that waited for them); a replica whose
    /// position is checked with the read (scope `global`); or the master.
    pub(super) async fn replica_for_read(&mut self) -> ReadOn {
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
        // On Galera the node itself waits for the cluster before each read (see
        // `galera_sync_wait`): the proxy has no position to check.
        let need = if super::router::galera_sync_wait(&shared.config) {
            Need::Nothing
        } else {
            causal::need(
                routing.causal_reads,
                causal.floor_known(),
                self.router.required.is_empty(),
            )
        };
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
        self.entry.phase.set(Phase::CausalWait(index));
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

    /// Scope `global`: runs the buffered read on replica `server` only if that replica
    /// had applied, when the read ran there, everything the master had when the read
    /// arrived. The messages leave at once: the master's position query (on the session's
    /// master connection), and on the replica a wait for this proxy's own writes (if
    /// `wait_first`), its position query and the statement, so the check costs the
    /// longer of the two round trips, not their sum. If the replica lacked the master's
    /// position, its answer is dropped unseen, and the statement runs there again behind
    /// a wait for that position (`routing.causal_wait_ms`), or on the master.
    pub(super) async fn checked_read(
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
        let master_sent = self.send_master_position().await;
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
            return self.read_to_master(len, class).await;
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
                    return self.read_to_master(len, class).await;
                }
            }
        }
        let replica_position = match self.replica_reply(server, limit).await {
            Ok(reply) => parse_position(&reply),
            Err(reason) => {
                self.drop_replica(server, &reason);
                return self.read_to_master(len, class).await;
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
            return self.read_to_master(len, class).await;
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
        let master_sent = self.send_master_position().await;
        shared.stats.causal.master_positions.fetch_add(1, Relaxed);
        let master = if master_sent {
            self.master_position(limit).await
        } else {
            None
        };
        let Some(master) = master else {
            shared.stats.causal.to_master(ToMaster::NoMasterPosition);
            return self.read_to_master(len, class).await;
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
            return self.read_to_master(len, class).await;
        }
        let wait = self.wait_sql(&self.router.required);
        if let Err(reason) = self
            .send_to_replica(server, Some(&wait), None, HEADER_LEN + len)
            .await
        {
            self.drop_replica(server, &reason);
            return self.read_to_master(len, class).await;
        }
        shared.stats.causal.waits.fetch_add(1, Relaxed);
        self.entry.phase.set(Phase::CausalWait(server));
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
                self.read_to_master(len, class).await
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
        self.read_to_master(len, class).await
    }

    /// Sends the master position query on the session's master connection; false (and
    /// the master connection given up) if it could not be sent.
    async fn send_master_position(&mut self) -> bool {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        internal::push_query(&mut out, MASTER_POSITION);
        let sent = !self.master_lost() && self.master.stream.write_all(&out).await.is_ok();
        self.out = out;
        if !sent {
            self.master_broke();
        }
        sent
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
                self.master_broke();
                None
            }
        }
    }

    /// Whether a read that runs on the master checks, with the read, that the server
    /// still is the master ([`Session::read_on_master`]): scope `global` on replication
    /// with more than one server (one alone is never demoted), outside a transaction. So
    /// the statement that starts a transaction (`BEGIN`, or the first under
    /// `autocommit=0`) is checked, and the transaction's later reads see the database as
    /// of a moment after that check, as snapshot isolation allows.
    pub(super) fn master_reads_checked(&self) -> bool {
        let config = &self.shared.config;
        config.routing.causal_reads == CausalReads::Global
            && config.cluster.kind == ClusterKind::Replication
            && config.servers.len() > 1
            && self.status & status::IN_TRANS == 0
    }

    /// A read that falls back to the master: checked there under
    /// [`Session::master_reads_checked`], else run as any statement.
    pub(super) async fn read_to_master(
        &mut self,
        len: usize,
        class: Option<Class>,
    ) -> Result<(), SessionError> {
        if self.master_reads_checked() {
            self.read_on_master(len, class).await
        } else {
            self.query_on_master(len, class).await
        }
    }

    /// Scope `global`: a read that runs on the master. Another proxy may have demoted the
    /// server this proxy still knows as the master a moment ago (the monitor follows
    /// within an interval); a demoted master lacks what the new one acknowledged since.
    /// So a check that it is still writable leaves with the statement, in the same write,
    /// and costs no round trip. A switchover makes the old master read-only before the
    /// new one acknowledges anything, so a check that runs after the read arrived sees
    /// every demotion that matters. If it answers read-only, the statement's answer is
    /// dropped unseen and the statement runs on the new master, once the monitor has
    /// followed it.
    pub(super) async fn read_on_master(
        &mut self,
        len: usize,
        class: Option<Class>,
    ) -> Result<(), SessionError> {
        if self.master_lost() {
            return self.query_on_master(len, class).await;
        }
        let shared = self.shared.clone();
        let n = HEADER_LEN + len;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        internal::push_query(&mut out, STILL_MASTER);
        out.extend_from_slice(&self.cbuf[..n]);
        let sent = self.master.stream.write_all(&out).await.is_ok();
        self.out = out;
        if !sent {
            // Not sent, so not run: on the current master.
            self.master_broke();
            return self.query_on_master(len, class).await;
        }
        shared.stats.causal.master_checked.fetch_add(1, Relaxed);
        let limit = shared.config.proxy.connect_timeout;
        let checked = internal::receive_within(&mut self.master, command::QUERY, limit).await;
        let writable = matches!(&checked, Ok(Reply::Value(Some(v))) if v == b"0");
        if writable {
            let first_seq = self.cbuf[3].wrapping_add(1);
            self.cbuf.advance(n);
            self.last = super::Which::Master;
            self.answer_from_master(command::QUERY, first_seq).await?;
            return Ok(());
        }
        match checked {
            Ok(Reply::Value(Some(_))) => {
                shared.stats.causal.master_demoted.fetch_add(1, Relaxed);
                info!(session = self.id, server = %self.master.server, "the master answered read-only: waiting for the new master before this read");
                if let Some(tracker) =
                    ResponseTracker::for_command(command::QUERY, self.master.caps)
                {
                    // The read's answer from the demoted server: never shown.
                    let _ = internal::discard(&mut self.master, tracker, limit).await;
                }
                self.lose_master();
                self.wait_new_term().await;
                // The new master, or why this session cannot follow it (a pinned session's
                // temporary tables and locks stayed on the demoted server).
                if let Some(err) = self.ensure_master().await? {
                    let next_seq = self.cbuf[3].wrapping_add(1);
                    self.cbuf.advance(n);
                    return self.refuse(err, next_seq).await;
                }
            }
            other => {
                // The connection failed, or the check was refused: the read, safe to run
                // again, runs on a fresh connection to the current master.
                debug!(session = self.id, "the master check failed: {other:?}");
                self.master_broke();
            }
        }
        self.query_on_master(len, class).await
    }

    /// Asks the monitor to probe now and waits until it publishes a term other than this
    /// session's master term, at most `monitor.failover_hold`.
    async fn wait_new_term(&mut self) {
        let topology = &self.shared.topology;
        topology.request_probe();
        let mut changes = topology.subscribe();
        let until = tokio::time::Instant::now() + self.shared.config.monitor.failover_hold;
        while topology.term() == self.master_term {
            match tokio::time::timeout_at(until, changes.changed()).await {
                Ok(Ok(())) => {}
                _ => return,
            }
        }
    }
}

/// Where a read goes, once replica health and causality are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadOn {
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

/// Whether the server this proxy knows as the master still is writable (`0`).
const STILL_MASTER: &[u8] = b"SELECT @@GLOBAL.read_only";

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
