//! The published view of the cluster.

use crate::note::Note;
use std::sync::Arc;
use std::time::Instant;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify};

use crate::probe::Status;
use crate::roles;

/// How the monitor sees one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Not probed yet.
    Unknown,
    /// The last probe succeeded (or fewer than `fail_count` probes in a row failed).
    Up,
    /// `fail_count` probes in a row failed.
    Down,
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerState::Unknown => "unknown",
            ServerState::Up => "up",
            ServerState::Down => "down",
        })
    }
}

/// What a server is in the replication topology, as discovered from the servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Down, not probed yet, or part of a topology that makes no sense.
    Unknown,
    /// The writable server the replicas follow.
    Master,
    /// A read-only server replicating from the master.
    Replica,
    /// Reachable, read-only and replicating from nobody.
    Standalone,
    /// Writable although another server is the master, or replicating from a server
    /// that is not the master: it gets no traffic until the monitor fences and rejoins it.
    Stale,
    /// A Galera node that may not serve (not Synced, not in the Primary component, a
    /// blocking Donor, desynced, ...): the reason is in the view's `note`.
    Unusable,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Unknown => "unknown",
            Role::Master => "master",
            Role::Replica => "replica",
            Role::Standalone => "standalone",
            Role::Stale => "stale",
            Role::Unusable => "unusable",
        })
    }
}

/// How far a replica is behind the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// `Seconds_Behind_Master` while the SQL thread runs; `None` when it is stopped (or the
    /// server reports NULL). MariaDB reports 0 whenever no event is being applied, so this
    /// alone does not prove the replica has everything: see `caught_up`.
    pub seconds_behind_master: Option<u64>,
    /// The replica's `gtid_current_pos` has reached the master's `gtid_binlog_pos` (both
    /// read in the same probe round).
    pub caught_up: bool,
    /// Transactions in the master's `gtid_binlog_pos` the replica has not applied yet.
    pub transactions_behind: u64,
}

/// One server in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    /// Name from the config.
    pub name: String,
    /// host:port from the config.
    pub address: String,
    /// Reachability.
    pub state: ServerState,
    /// When `state` began.
    pub since: Instant,
    /// Failed probes in a row (0 after a good one).
    pub failures: u32,
    /// `@@read_only` at the last good probe.
    pub read_only: Option<bool>,
    /// The last probe error, if the last probe failed.
    pub last_error: Option<String>,
    /// What the last good probe read (kept while the server is down: check `state`).
    pub status: Option<Status>,
    /// Its role in the topology.
    pub role: Role,
    /// For a replica: how far behind the master it is.
    pub lag: Option<Lag>,
    /// What the monitor did to or found about this server that people must see: fenced,
    /// diverged (with the extra GTIDs), a failed rejoin, a half-done failover step.
    pub note: Option<Note>,
    /// Put in maintenance by the admin (`SET SERVER name MAINTENANCE`): no new traffic.
    pub maintenance: bool,
}

impl ServerView {
    /// A server not probed yet.
    pub fn new(name: &str, address: &str, now: Instant) -> ServerView {
        ServerView {
            name: name.to_string(),
            address: address.to_string(),
            state: ServerState::Unknown,
            since: now,
            failures: 0,
            read_only: None,
            last_error: None,
            status: None,
            role: Role::Unknown,
            lag: None,
            note: None,
            maintenance: false,
        }
    }
}

/// An immutable snapshot of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Every configured server, in config order.
    pub servers: Vec<ServerView>,
    /// Index into `servers` of the master. `None` when no reachable server is writable, or
    /// when the topology makes no sense (see `problem`): never guessed.
    pub master: Option<usize>,
    /// Why the topology makes no sense (two writable servers, a replica following an
    /// unknown host, ...), if it does not.
    pub problem: Option<String>,
    /// The monitor's term: raised every time the master changes or a failover or
    /// switchover begins. The proxy forwards no OK from a master connection opened in an
    /// older term (a replaced master's acknowledgements are never passed on).
    pub term: u64,
    /// A failover, switchover or refusal under way, for people (`SHOW TOPOLOGY`, logs).
    pub operation: Option<String>,
}

impl Topology {
    /// A snapshot of `servers` with roles and lag worked out from their states and last
    /// good probes (see [`roles::discover`]); the views' own `role` and `lag` are replaced.
    pub fn build(servers: Vec<ServerView>) -> Topology {
        Topology::build_under(servers, None)
    }

    /// Like [`Topology::build`], keeping `term_master` as the master while it is up and
    /// writable (see [`roles::discover`]).
    pub fn build_under(mut servers: Vec<ServerView>, term_master: Option<usize>) -> Topology {
        let found = roles::discover(&servers, term_master);
        let master_status = found
            .master
            .and_then(|m| servers.get(m))
            .and_then(|m| m.status.clone());
        for (view, role) in servers.iter_mut().zip(&found.roles) {
            view.role = *role;
            view.lag = match (role, &view.status, &master_status) {
                (Role::Replica, Some(replica), Some(master)) => Some(roles::lag(replica, master)),
                _ => None,
            };
        }
        Topology {
            servers,
            master: found.master,
            problem: found.problem,
            term: 0,
            operation: None,
        }
    }

    /// A snapshot of a Galera cluster's nodes: `writer` (if up and usable) is the
    /// [`Role::Master`]; every other usable node is a [`Role::Replica`] whose lag is its
    /// receive queue (behind by `wsrep_local_recv_queue` write sets; over
    /// `max_recv_queue` it gets no reads); an up node that may not serve is
    /// [`Role::Unusable`], with the reason as its note.
    pub fn galera(
        mut servers: Vec<ServerView>,
        writer: Option<usize>,
        max_recv_queue: u64,
        donor_serves_reads: bool,
    ) -> Topology {
        let mut master = None;
        for (i, view) in servers.iter_mut().enumerate() {
            view.lag = None;
            view.role = Role::Unknown;
            // The last probe failed: no traffic, even before `fail_count` says down (a
            // Galera writer moves at once; nothing is lost by moving it).
            if view.state != ServerState::Up || view.last_error.is_some() {
                continue;
            }
            let Some(wsrep) = view.status.as_ref().and_then(|s| s.wsrep.as_ref()) else {
                continue;
            };
            if let Some(why) = wsrep.unusable(donor_serves_reads) {
                view.role = Role::Unusable;
                view.note = Some(Note::Said(why.to_string()));
                continue;
            }
            let queue = wsrep.recv_queue;
            if writer == Some(i) {
                view.role = Role::Master;
                master = Some(i);
            } else {
                view.role = Role::Replica;
                view.lag = Some(Lag {
                    seconds_behind_master: (queue <= max_recv_queue).then_some(0),
                    caught_up: queue == 0,
                    transactions_behind: queue,
                });
                if queue > max_recv_queue {
                    view.note = Some(Note::Said(format!(
                        "{queue} write sets queued to apply (over cluster.max_recv_queue \
                         {max_recv_queue}): no reads"
                    )));
                }
            }
        }
        Topology {
            servers,
            master,
            problem: None,
            term: 0,
            operation: None,
        }
    }

    /// The master's view, if there is one.
    pub fn master(&self) -> Option<&ServerView> {
        self.master.and_then(|i| self.servers.get(i))
    }

    /// The servers replicating from the master (reachable, read-only), whatever their lag.
    pub fn replicas(&self) -> impl Iterator<Item = &ServerView> {
        self.servers.iter().filter(|s| s.role == Role::Replica)
    }

    /// The server called `name`.
    pub fn server(&self, name: &str) -> Option<&ServerView> {
        self.servers.iter().find(|s| s.name == name)
    }
}

/// A cheap, clonable handle for reading the current snapshot.
#[derive(Debug, Clone)]
pub struct TopologyHandle(pub(crate) Arc<Published>);

/// A statement counted as aimed at the master (see [`TopologyHandle::enter_master`]);
/// dropping it ends the count.
#[derive(Debug)]
pub struct MasterStatement(Arc<Published>);

impl Drop for MasterStatement {
    fn drop(&mut self) {
        self.0.master_statements.fetch_sub(1, SeqCst);
    }
}

/// What the monitor publishes: the snapshot, its term (readable without touching the
/// snapshot) and a counter that wakes waiters on every publish.
#[derive(Debug)]
pub(crate) struct Published {
    snapshot: ArcSwap<Topology>,
    term: AtomicU64,
    changes: watch::Sender<u64>,
    /// A switchover holds new statements (set before the master is made read-only).
    holding: AtomicBool,
    /// Statements of this proxy between their look at the master and their answer.
    master_statements: AtomicU64,
    /// A session saw something the last probes did not (the master answered read-only):
    /// probe again now rather than at the next tick.
    probe_now: Notify,
    /// Rounds of probes finished (see [`TopologyHandle::fresh_round`]).
    rounds: watch::Sender<u64>,
}

impl TopologyHandle {
    /// A handle publishing `initial`.
    pub(crate) fn new(initial: Topology) -> Self {
        let term = AtomicU64::new(initial.term);
        TopologyHandle(Arc::new(Published {
            snapshot: ArcSwap::from_pointee(initial),
            term,
            changes: watch::channel(0).0,
            holding: AtomicBool::new(false),
            master_statements: AtomicU64::new(0),
            probe_now: Notify::new(),
            rounds: watch::channel(0).0,
        }))
    }

    /// The current snapshot (lock-free).
    pub fn load(&self) -> Arc<Topology> {
        self.0.snapshot.load_full()
    }

    /// The current term (one atomic load; see [`Topology::term`]). Stored before the
    /// snapshot that carries it, so a reader that sees the old term saw it before the
    /// monitor acted on the new one.
    pub fn term(&self) -> u64 {
        self.0.term.load(SeqCst)
    }

    /// Asks the monitor for a round of probes now (a session saw the master answer
    /// read-only: another proxy switched over). Requests made before that round starts
    /// are served by it.
    pub fn request_probe(&self) {
        self.0.probe_now.notify_one();
    }

    /// The monitor finished a round of probes (and published what it changed).
    pub(crate) fn round_done(&self) {
        self.0.rounds.send_modify(|n| *n += 1);
    }

    /// Asks for a round of probes and waits until a round that started after this call
    /// has finished, so that what the servers record now (a newer term) is published;
    /// false if none finished within `limit`. Two rounds are counted: the one under way
    /// at the call may have probed before it.
    pub async fn fresh_round(&self, limit: std::time::Duration) -> bool {
        let mut rounds = self.0.rounds.subscribe();
        let start = *rounds.borrow_and_update();
        self.request_probe();
        let until = tokio::time::Instant::now() + limit;
        loop {
            if *rounds.borrow_and_update() >= start + 2 {
                return true;
            }
            match tokio::time::timeout_at(until, rounds.changed()).await {
                Ok(Ok(())) => {
                    // A round finished: ask again, so the next starts at once.
                    self.request_probe();
                }
                _ => return false,
            }
        }
    }

    /// Resolves when a session asked for a round of probes.
    pub(crate) async fn probe_requested(&self) {
        self.0.probe_now.notified().await;
    }

    /// A receiver that changes on every publish (for waiting on a new master or term).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.changes.subscribe()
    }

    /// Counts a statement aimed at the master until the guard drops. Taken *before* the
    /// session looks at which master to use, so a switchover that raised the hold and
    /// then saw no statement counted ([`TopologyHandle::drain_master`]) knows that every
    /// later statement sees the hold and waits: none reaches the master after it was
    /// made read-only.
    pub fn enter_master(&self) -> MasterStatement {
        self.0.master_statements.fetch_add(1, SeqCst);
        MasterStatement(self.0.clone())
    }

    /// Whether a switchover holds new statements.
    pub fn holding(&self) -> bool {
        self.0.holding.load(SeqCst)
    }

    /// Raises or lowers the switchover hold.
    pub(crate) fn set_holding(&self, on: bool) {
        self.0.holding.store(on, SeqCst);
    }

    /// Waits until no statement is counted by [`TopologyHandle::enter_master`], at most
    /// `bound`; false if some were still running then.
    pub(crate) async fn drain_master(&self, bound: std::time::Duration) -> bool {
        let until = Instant::now() + bound;
        while self.0.master_statements.load(SeqCst) != 0 {
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        true
    }

    /// Stores a new snapshot and wakes the waiters.
    pub(crate) fn publish(&self, topology: Topology) {
        self.0.term.fetch_max(topology.term, SeqCst);
        self.0.snapshot.store(Arc::new(topology));
        self.0.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A handle over a fixed snapshot (for tests and tools).
    pub fn fixed(topology: Topology) -> Self {
        TopologyHandle::new(topology)
    }
}

#[cfg(test)]
mod round_tests {
    use super::*;
    use std::time::Duration;

    /// A monitor stand-in: finishes a round each time one is asked for.
    async fn rounds_on_request(handle: TopologyHandle) {
        loop {
            handle.probe_requested().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            handle.round_done();
        }
    }

    #[tokio::test]
    async fn a_fresh_round_is_one_that_started_after_the_call() {
        let handle = TopologyHandle::fixed(Topology::build(Vec::new()));
        let monitor = tokio::spawn(rounds_on_request(handle.clone()));
        assert!(handle.fresh_round(Duration::from_secs(5)).await);
        assert!(
            *handle.0.rounds.borrow() >= 2,
            "two rounds counted: the one under way at the call may have probed before it"
        );
        monitor.abort();
    }

    #[tokio::test]
    async fn no_round_in_time_is_false() {
        let handle = TopologyHandle::fixed(Topology::build(Vec::new()));
        // No monitor: nothing answers the request.
        assert!(!handle.fresh_round(Duration::from_millis(20)).await);
    }
}
