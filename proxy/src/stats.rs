//! What the proxy counts, for the admin console: statements routed, errors, connections
//! per server, and one entry per client session.
//!
//! Counters are relaxed atomics bumped on the data path (no lock per statement); the
//! session registry is locked only at login, logout, KILL and when the admin console reads
//! it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::refusal::Kind;
use crate::route::causal::ToMaster;
use crate::route::target::PinReason;

/// Proxy-wide counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Statements sent to the master.
    pub routed_master: AtomicU64,
    /// Statements sent to a replica.
    pub routed_replica: AtomicU64,
    /// What causal reads cost: checks, waits, and reads sent to the master, by reason.
    pub causal: CausalStats,
    /// Error packets sent to clients (the servers' and the proxy's own).
    pub errors: AtomicU64,
    /// The proxy's own errors, per [`Kind`] (also counted in `errors`).
    pub refused: [AtomicU64; Kind::ALL.len()],
    /// Per server, in config order.
    pub servers: Vec<Arc<ServerStats>>,
}

/// Causal-read counters (`route::causal`).
#[derive(Debug, Default)]
pub struct CausalStats {
    /// Reads a replica served with no wait: known to have what they must see, or shown
    /// to have the master's position when they ran.
    pub ready: AtomicU64,
    /// Reads for which the master's position was read (scope `global`).
    pub master_positions: AtomicU64,
    /// Replica answers dropped unseen because that replica lacked the master's position
    /// (the read then waited there, or ran on the master).
    pub discarded: AtomicU64,
    /// Reads that first waited (MASTER_GTID_WAIT) for a replica to apply the writes.
    pub waits: AtomicU64,
    /// Reads run on the master with a check that it still is the master (scope `global`).
    pub master_checked: AtomicU64,
    /// Of those, the ones the master answered read-only (another proxy had demoted it):
    /// the answer was dropped unseen and the read ran on the new master.
    pub master_demoted: AtomicU64,
    /// Reads sent to the master for causality, per `ToMaster` reason.
    pub to_master: [AtomicU64; ToMaster::ALL.len()],
}

impl CausalStats {
    /// Counts a read sent to the master for `reason`.
    pub fn to_master(&self, reason: ToMaster) {
        self.to_master[reason.index()].fetch_add(1, Relaxed);
    }

    /// Reads sent to the master for causality, all reasons.
    pub fn to_master_total(&self) -> u64 {
        self.to_master.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// The counters now.
    pub fn read(&self) -> CausalCounts {
        CausalCounts {
            ready: self.ready.load(Relaxed),
            discarded: self.discarded.load(Relaxed),
            waits: self.waits.load(Relaxed),
            to_master: std::array::from_fn(|i| self.to_master[i].load(Relaxed)),
        }
    }
}

/// [`CausalStats`] at one moment (for the periodic log line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CausalCounts {
    /// Reads served by a replica with no wait.
    pub ready: u64,
    /// Replica answers dropped.
    pub discarded: u64,
    /// Reads that waited on a replica.
    pub waits: u64,
    /// Reads sent to the master, per reason.
    pub to_master: [u64; ToMaster::ALL.len()],
}

impl CausalCounts {
    /// What changed since `before`, as one log line; `None` when no read waited, was
    /// dropped or went to the master.
    pub fn summary_since(&self, before: &CausalCounts) -> Option<String> {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let waits = d(self.waits, before.waits);
        let discarded = d(self.discarded, before.discarded);
        let mut to_master = String::new();
        let mut total = 0;
        for r in ToMaster::ALL {
            let n = d(self.to_master[r.index()], before.to_master[r.index()]);
            if n > 0 {
                total += n;
                to_master.push_str(&format!(" {}={n}", r.name()));
            }
        }
        if waits == 0 && discarded == 0 && total == 0 {
            return None;
        }
        Some(format!(
            "{} served by a replica without waiting, {waits} waited, {discarded} replica answers \
             dropped (replica behind), {total} sent to the master{}",
            d(self.ready, before.ready),
            if total > 0 {
                format!(" ({})", to_master.trim_start())
            } else {
                String::new()
            }
        ))
    }
}

/// Counters of one server.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Server name from the config.
    pub name: String,
    /// Statements sent to it.
    pub statements: AtomicU64,
    /// Backend connections the proxy holds to it now.
    pub connections: AtomicU64,
    /// Statements sent to it whose response has not ended yet (the router's load measure).
    pub outstanding: AtomicU64,
    /// Connections to it that failed (connect, login or mid-statement).
    pub failures: AtomicU64,
}

impl Stats {
    /// Counters for the servers named `names`.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Stats {
        Stats {
            servers: names
                .into_iter()
                .map(|n| {
                    Arc::new(ServerStats {
                        name: n.to_string(),
                        ..ServerStats::default()
                    })
                })
                .collect(),
            ..Stats::default()
        }
    }

    /// The counters of server `name`.
    pub fn server(&self, name: &str) -> Option<&ServerStats> {
        self.servers.iter().find(|s| s.name == name).map(|s| &**s)
    }

    /// Counts an error the proxy sent a client itself.
    pub fn count_refusal(&self, kind: Kind) {
        self.errors.fetch_add(1, Relaxed);
        self.refused[kind.index()].fetch_add(1, Relaxed);
    }
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Statements sent to the master.
    pub routed_master: u64,
    /// Statements sent to a replica.
    pub routed_replica: u64,
    /// Reads a replica served with no causal wait.
    pub causal_ready: u64,
    /// Reads for which the master's position was read.
    pub causal_master_positions: u64,
    /// Replica answers dropped because the replica lacked the master's position.
    pub causal_discarded: u64,
    /// Reads that waited for a replica.
    pub causal_waits: u64,
    /// Reads run on the master with a check that it still is the master.
    pub causal_master_checked: u64,
    /// Reads whose master had been demoted by another proxy: run again on the new one.
    pub causal_master_demoted: u64,
    /// Reads sent to the master for causality.
    pub causal_to_master: u64,
    /// The same, per reason (`ToMaster::name`).
    pub causal_to_master_by: Vec<(&'static str, u64)>,
    /// Error packets sent to clients.
    pub errors: u64,
    /// The proxy's own errors, per kind, in [`Kind::ALL`] order.
    pub refused: Vec<(Kind, u64)>,
    /// Client sessions open now.
    pub sessions: u64,
    /// Per server: (name, statements, connections open, outstanding, failures).
    pub servers: Vec<ServerSnapshot>,
}

/// A copy of [`ServerStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSnapshot {
    /// Server name.
    pub name: String,
    /// Statements sent to it.
    pub statements: u64,
    /// Backend connections open to it.
    pub connections: u64,
    /// Statements in flight on it.
    pub outstanding: u64,
    /// Failed connections.
    pub failures: u64,
}

/// One client session as the admin console shows it; updated by the session itself.
#[derive(Debug)]
pub struct SessionEntry {
    /// Proxy session id (what the client sees as its connection id).
    pub id: u32,
    /// Client address.
    pub peer: SocketAddr,
    /// When the session logged in.
    pub started: SystemTime,
    /// User name (changes on COM_CHANGE_USER).
    pub user: Mutex<String>,
    /// Thread id of the session's master connection (KILL is translated to it).
    pub master_thread: AtomicU32,
    /// Statements (commands) run.
    pub statements: AtomicU64,
    /// The server reports a transaction open on the master connection.
    pub in_transaction: AtomicBool,
    /// Why the session is held on the master: 0 when it is not, else 1 + the
    /// [`PinReason`]'s index (see [`SessionEntry::set_pinned`]).
    pinned: AtomicU8,
    /// Names of the servers the session holds connections to.
    pub backends: Mutex<Vec<String>>,
    /// Where the session is (idle, running a command on a server, waiting, ...).
    pub phase: crate::phase::PhaseCell,
}

impl SessionEntry {
    /// A fresh entry.
    /// Its backends are listed as they are booked ([`Booking`]).
    pub fn new(id: u32, peer: SocketAddr, user: &str, thread: u32) -> Self {
        SessionEntry {
            id,
            peer,
            started: SystemTime::now(),
            user: Mutex::new(user.to_string()),
            master_thread: AtomicU32::new(thread),
            statements: AtomicU64::new(0),
            in_transaction: AtomicBool::new(false),
            pinned: AtomicU8::new(0),
            backends: Mutex::new(Vec::new()),
            phase: crate::phase::PhaseCell::default(),
        }
    }

    /// A plain copy for display.
    pub fn snapshot(&self) -> SessionInfo {
        SessionInfo {
            id: self.id,
            peer: self.peer,
            started: self.started,
            user: self.user.lock().map(|u| u.clone()).unwrap_or_default(),
            master_thread: self.master_thread.load(Relaxed),
            statements: self.statements.load(Relaxed),
            in_transaction: self.in_transaction.load(Relaxed),
            pinned: match self.pinned.load(Relaxed) {
                0 => None,
                n => PinReason::ALL.get(usize::from(n) - 1).copied(),
            },
            backends: self
                .backends
                .lock()
                .map(|b| {
                    let mut seen: Vec<String> = Vec::with_capacity(b.len());
                    for s in b.iter() {
                        if !seen.contains(s) {
                            seen.push(s.clone());
                        }
                    }
                    seen
                })
                .unwrap_or_default(),
            phase: self.phase.get(),
        }
    }

    /// Records that the session is held on the master for `reason`, or no longer is.
    pub fn set_pinned(&self, reason: Option<PinReason>) {
        let n = reason.map_or(0, |r| r.index() as u8 + 1);
        self.pinned.store(n, Relaxed);
    }

    /// Records one more connection of the session to `server`.
    fn add_backend(&self, server: &str) {
        if let Ok(mut b) = self.backends.lock() {
            b.push(server.to_string());
        }
    }

    /// Records one connection of the session to `server` fewer.
    fn remove_backend(&self, server: &str) {
        if let Ok(mut b) = self.backends.lock() {
            if let Some(at) = b.iter().position(|s| s == server) {
                b.remove(at);
            }
        }
    }
}

/// One backend connection in the books: while it lives, its server's `connections`
/// counts it and its session's entry lists the server (SHOW SESSIONS); dropped, it takes
/// both back. Opening or closing a connection cannot forget either.
#[derive(Debug)]
pub struct Booking {
    server: Option<Arc<ServerStats>>,
    entry: Arc<SessionEntry>,
    name: String,
}

impl Booking {
    /// Books a connection of the session `entry` to the server `name`, whose counters are
    /// `server` (none for a server the config does not list).
    pub fn open(server: Option<&Arc<ServerStats>>, entry: &Arc<SessionEntry>, name: &str) -> Self {
        if let Some(s) = server {
            s.connections.fetch_add(1, Relaxed);
        }
        entry.add_backend(name);
        Booking {
            server: server.cloned(),
            entry: entry.clone(),
            name: name.to_string(),
        }
    }
}

impl Drop for Booking {
    fn drop(&mut self) {
        if let Some(s) = &self.server {
            s.connections.fetch_sub(1, Relaxed);
        }
        self.entry.remove_backend(&self.name);
    }
}

/// A copy of a [`SessionEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Proxy session id.
    pub id: u32,
    /// Client address.
    pub peer: SocketAddr,
    /// Login time.
    pub started: SystemTime,
    /// User name.
    pub user: String,
    /// Master connection's thread id.
    pub master_thread: u32,
    /// Statements run.
    pub statements: u64,
    /// Transaction open.
    pub in_transaction: bool,
    /// Held on the master, and why.
    pub pinned: Option<PinReason>,
    /// Servers it holds connections to.
    pub backends: Vec<String>,
    /// Where it is.
    pub phase: crate::phase::Phase,
}

/// The open sessions, by proxy id.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<u32, Arc<SessionEntry>>>,
}

impl Registry {
    /// Adds a session.
    pub fn insert(&self, entry: Arc<SessionEntry>) {
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(entry.id, entry);
        }
    }

    /// Forgets session `id`.
    pub fn remove(&self, id: u32) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(&id);
        }
    }

    /// Session `id`, if open.
    pub fn get(&self, id: u32) -> Option<Arc<SessionEntry>> {
        self.sessions.lock().ok()?.get(&id).cloned()
    }

    /// Every open session, by id.
    pub fn snapshot(&self) -> Vec<SessionInfo> {
        let mut all: Vec<SessionInfo> = match self.sessions.lock() {
            Ok(s) => s.values().map(|e| e.snapshot()).collect(),
            Err(_) => Vec::new(),
        };
        all.sort_by_key(|s| s.id);
        all
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Stats {
    /// A copy of every counter; `sessions` is the number of open sessions.
    pub fn snapshot(&self, sessions: usize) -> StatsSnapshot {
        StatsSnapshot {
            routed_master: self.routed_master.load(Relaxed),
            routed_replica: self.routed_replica.load(Relaxed),
            causal_ready: self.causal.ready.load(Relaxed),
            causal_master_positions: self.causal.master_positions.load(Relaxed),
            causal_discarded: self.causal.discarded.load(Relaxed),
            causal_waits: self.causal.waits.load(Relaxed),
            causal_master_checked: self.causal.master_checked.load(Relaxed),
            causal_master_demoted: self.causal.master_demoted.load(Relaxed),
            causal_to_master: self.causal.to_master_total(),
            causal_to_master_by: ToMaster::ALL
                .iter()
                .map(|r| (r.name(), self.causal.to_master[r.index()].load(Relaxed)))
                .collect(),
            errors: self.errors.load(Relaxed),
            refused: Kind::ALL
                .iter()
                .map(|k| (*k, self.refused[k.index()].load(Relaxed)))
                .collect(),
            sessions: sessions as u64,
            servers: self
                .servers
                .iter()
                .map(|s| ServerSnapshot {
                    name: s.name.clone(),
                    statements: s.statements.load(Relaxed),
                    connections: s.connections.load(Relaxed),
                    outstanding: s.outstanding.load(Relaxed),
                    failures: s.failures.load(Relaxed),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_causal_log_line_names_each_reason_that_moved() {
        let before = CausalCounts::default();
        assert_eq!(before.summary_since(&before), None);
        let mut now = before;
        now.ready = 10;
        assert_eq!(now.summary_since(&before), None, "nothing waited");
        now.waits = 2;
        now.to_master[ToMaster::WaitTimedOut.index()] = 1;
        now.to_master[ToMaster::Starting.index()] = 3;
        assert_eq!(
            now.summary_since(&before).unwrap(),
            "10 served by a replica without waiting, 2 waited, 0 replica answers dropped \
             (replica behind), 4 sent to the master (starting=3 wait_timed_out=1)"
        );
    }

    #[test]
    fn a_booked_connection_is_counted_while_it_lives() {
        let stats = Stats::new(["db1", "db2"]);
        let entry = Arc::new(SessionEntry::new(1, "127.0.0.1:1".parse().unwrap(), "u", 9));
        let master = Booking::open(stats.servers.first(), &entry, "db1");
        let replica = Booking::open(stats.servers.get(1), &entry, "db2");
        let same = Booking::open(stats.servers.first(), &entry, "db1");
        let connections = |s: &Stats| {
            s.snapshot(1)
                .servers
                .iter()
                .map(|s| s.connections)
                .collect::<Vec<_>>()
        };
        assert_eq!(connections(&stats), [2, 1]);
        assert_eq!(entry.snapshot().backends, ["db1", "db2"]);
        drop(master);
        assert_eq!(
            entry.snapshot().backends,
            ["db2", "db1"],
            "db1 still held once"
        );
        drop((replica, same));
        assert_eq!(connections(&stats), [0, 0]);
        assert!(entry.snapshot().backends.is_empty());
    }

    #[test]
    fn a_refusal_counts_as_an_error_and_under_its_kind() {
        let stats = Stats::new(["db1"]);
        stats.count_refusal(Kind::NoMaster);
        stats.count_refusal(Kind::NoMaster);
        let snap = stats.snapshot(0);
        assert_eq!(snap.errors, 2);
        assert_eq!(snap.refused.len(), Kind::ALL.len());
        assert!(snap
            .refused
            .iter()
            .all(|(k, n)| *n == if *k == Kind::NoMaster { 2 } else { 0 }));
    }
}
