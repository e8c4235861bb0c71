//! Keeping a session on the current master across failovers and switchovers.
//!
//! The client's socket stays open when its master is replaced. Before the next command
//! that needs the master, the session opens a connection to the current one (waiting up
//! to `monitor.failover_hold` for a failover to produce it) and restores its state there:
//! schema, every tracked system variable (charset, collation, sql_mode, time_zone,
//! autocommit, ...) and literal user variables. What cannot be carried (an open
//! transaction, temporary tables, locks, server-side prepared statements) is reported to
//! the client as an error, never silently dropped.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures::FutureExt;
use tokio::io::AsyncReadExt;
use tracing::{debug, info};

use super::internal::{self, Reply};
use super::{MasterLink, Session, SessionError};
use crate::backend::{Backend, BackendError};
use crate::protocol::{status, Caps};
use crate::refusal::Refusal;
use crate::stats::Booking;
use crate::Shared;
use kohaproxy_health::MasterStatement;

/// Whether `old`, the Galera writer a session's open transaction runs on, may finish it
/// after the writer moved: a usable node (Synced, in the Primary component) still.
fn old_writer_serves(
    shared: &Shared,
    topology: &kohaproxy_health::Topology,
    old: Option<usize>,
) -> bool {
    shared.config.cluster.kind == kohaproxy_config::ClusterKind::Galera
        && old.is_some_and(|i| {
            topology.master != Some(i)
                && topology
                    .servers
                    .get(i)
                    .is_some_and(|v| v.role == kohaproxy_health::Role::Replica)
        })
}

/// How often a read from the master looks whether the master was replaced (a hung master
/// never answers; the monitor's new term is what ends the wait).
const REPLACED_CHECK: Duration = Duration::from_millis(250);

/// Reads more of the master's response into its buffer; ends with an error if the
/// monitor's term moves past `term` meanwhile (the master was replaced: what it might
/// still send must not reach the client). Sets `waited_long` when the read took longer
/// than [`REPLACED_CHECK`] (see [`Session::check_term_after_long_wait`]).
pub(super) async fn read_unless_replaced(
    backend: &mut Backend,
    shared: &Shared,
    term: u64,
    waited_long: &mut bool,
) -> std::io::Result<usize> {
    loop {
        match tokio::time::timeout(REPLACED_CHECK, backend.stream.read_buf(&mut backend.buf)).await
        {
            Ok(read) => return read,
            Err(_) if shared.topology.term() != term => {
                return Err(std::io::Error::other("the master was replaced"))
            }
            Err(_) => *waited_long = true,
        }
    }
}

impl Session {
    /// Before an OK carrying session state (a commit's GTID) that the master took long to
    /// send is forwarded: on replication, waits for a round of probes that started after
    /// it arrived (at most `monitor.failover_hold`). A commit held that long waited for a
    /// semi-sync ack; on an old master that another kohaproxy has replaced and is
    /// fencing, killing one held commit lets others be answered OK, and this proxy's
    /// monitor may be a probe round behind the new term, which the promotion recorded on
    /// the new master before the fence. After the round, [`Session::fenced`] knows. False:
    /// no round finished in time, and the OK must not be forwarded either.
    pub(super) async fn check_term_after_long_wait(&self) -> bool {
        if self.shared.config.cluster.kind != kohaproxy_config::ClusterKind::Replication {
            return true;
        }
        self.shared
            .topology
            .fresh_round(self.shared.config.monitor.failover_hold)
            .await
    }

    /// Counts the next command as aimed at the master. While a switchover holds new
    /// statements (and this session has no transaction to finish on the old master), it
    /// waits for the hold to end first, at most `monitor.failover_hold`; `ensure_master`
    /// then moves the session to the new master.
    pub(super) async fn enter_master(&mut self) -> MasterStatement {
        let topology = &self.shared.topology;
        let until = tokio::time::Instant::now() + self.shared.config.monitor.failover_hold;
        let mut changes = None;
        loop {
            let statement = topology.enter_master();
            if !topology.holding()
                || self.status & status::IN_TRANS != 0
                || tokio::time::Instant::now() >= until
            {
                return statement;
            }
            drop(statement);
            self.entry.phase.set(crate::phase::Phase::WaitingForMaster);
            match changes.as_mut() {
                // Subscribed before the next look at the hold, so its end wakes us.
                None => changes = Some(topology.subscribe()),
                Some(changes) => {
                    if let Ok(Err(_)) = tokio::time::timeout_at(until, changes.changed()).await {
                        // The monitor is gone; nothing will lift the hold.
                        return topology.enter_master();
                    }
                }
            }
        }
    }

    /// Makes sure the master connection belongs to the current master and term. Returns
    /// an error for the client when the command cannot run: the master changed under an
    /// open transaction (rolled back), the session's state cannot follow, or no master
    /// appeared within `monitor.failover_hold`.
    pub(super) async fn ensure_master(&mut self) -> Result<Option<Refusal>, SessionError> {
        if !self.master_lost() {
            let term = self.shared.topology.term();
            let changed = self.topology_changes.has_changed().unwrap_or(false);
            if term == self.master_term && !changed && !self.master_closed() {
                return Ok(None);
            }
            if changed {
                self.topology_changes.borrow_and_update();
            }
            let topology = self.shared.topology.load();
            if !self.master_lost() && topology.term == self.master_term {
                if topology.master == self.master_index {
                    return Ok(None);
                }
                if topology.master.is_none() && self.status & status::IN_TRANS != 0 {
                    // A switchover holds new statements; this transaction started before
                    // and finishes (or fails) on the old master.
                    return Ok(None);
                }
            }
            if self.status & status::IN_TRANS != 0
                && old_writer_serves(&self.shared, &topology, self.master_index)
                && !self.master_closed()
            {
                // Galera: the writer moved (a switchover, maintenance) but the old one is
                // a working node of the Primary component. The transaction finishes there
                // (its commit is certified against the new writer's write sets); the next
                // statement after it moves to the new writer.
                info!(session = self.id, server = %self.master.server, "the Galera writer moved: this session's open transaction finishes on the old writer");
                return Ok(None);
            }
        }
        let in_transaction = self.status & status::IN_TRANS != 0;
        self.lose_master();
        let state_lost = self.unrestorable();
        if in_transaction {
            return Ok(Some(Refusal::TransactionRolledBack { state_lost }));
        }
        if state_lost {
            return Ok(Some(Refusal::StateLost));
        }
        self.entry.phase.set(crate::phase::Phase::WaitingForMaster);
        match self.reconnect_master().await {
            Ok(()) => Ok(None),
            Err(reason) => Ok(Some(Refusal::NoMaster { reason })),
        }
    }

    /// Whether the idle master connection was closed by the server (it died or was
    /// killed). Costs no system call unless the socket became readable.
    fn master_closed(&mut self) -> bool {
        let master = &mut self.master;
        match master.stream.readable().now_or_never() {
            None => false,
            Some(Err(_)) => true,
            Some(Ok(())) => match master.stream.try_read_buf(&mut master.buf) {
                // Unrequested bytes from an idle connection: the server is closing it.
                Ok(_) => true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
                Err(_) => true,
            },
        }
    }

    /// Marks the master connection dead: its transaction is gone with it.
    pub(super) fn lose_master(&mut self) {
        if !self.master_lost() {
            debug!(session = self.id, server = %self.master.server, "master connection given up");
        }
        self.master_link = MasterLink::Lost;
        self.status &= !status::IN_TRANS;
        self.entry.in_transaction.store(false, Relaxed);
    }

    /// The master connection failed under this session (closed, reset, a write that did
    /// not go through): gives it up, and asks the monitor to probe now. Under load a
    /// session is the first to see a master die; the monitor then counts failed probes
    /// from this moment rather than from its next round.
    pub(super) fn master_broke(&mut self) {
        self.lose_master();
        self.shared.topology.request_probe();
    }

    /// The master connection is dead or fenced.
    pub(super) fn master_lost(&self) -> bool {
        matches!(self.master_link, MasterLink::Lost)
    }

    /// The session holds state no new connection can be given.
    pub(super) fn unrestorable(&self) -> bool {
        self.router.affinity.pinned() || self.server_prepared
    }

    /// Opens a connection to the current master (waiting for one within the hold) and
    /// restores the session's state on it.
    async fn reconnect_master(&mut self) -> Result<(), String> {
        let mut login = self.login.clone();
        login.caps = Caps(login.caps.0 | Caps::SESSION_TRACK);
        if let Some(schema) = self.router.state.schema() {
            login.database = Some(schema.to_vec());
        }
        let (backend, ok, term, index) = match self.shared.connect_master(&login).await {
            Ok(found) => found,
            Err(BackendError::Refused { .. }) => {
                return Err("the new master refused this session's login".into())
            }
            Err(e) => return Err(e.to_string()),
        };
        let old = std::mem::replace(&mut self.master, backend);
        drop(old);
        let server = index.and_then(|i| self.shared.stats.servers.get(i));
        self.master_link = MasterLink::Live {
            _booking: Booking::open(server, &self.entry, &self.master.server),
        };
        self.master_term = term;
        self.master_index = index;
        self.status = crate::protocol::packets::ok_status(&ok).unwrap_or(0);
        self.last = super::Which::Master;
        self.entry
            .master_thread
            .store(self.master.greeting.connection_id, Relaxed);
        if let Err(e) = self.restore_state().await {
            self.lose_master();
            return Err(e);
        }
        info!(session = self.id, server = %self.master.server, term, "session moved to the new master");
        Ok(())
    }

    /// Gives the new master connection the session's state: tracking, then every
    /// variable and literal user variable the session set.
    async fn restore_state(&mut self) -> Result<(), String> {
        self.track_state()
            .await
            .map_err(|e| format!("session tracking: {e}"))?;
        let limit = self.shared.config.proxy.connect_timeout;
        for sql in self.router.state.replay() {
            match internal::query(&mut self.master, &sql, limit).await {
                Ok(Reply::Ok(_)) => {}
                Ok(other) => return Err(format!("the session's state was refused: {other:?}")),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
