//! What the proxy counts, for the admin console: statements routed, errors, connections
//! per server, and one entry per client session.
//!
//! Counters are relaxed atomics bumped on the data path (no lock per statement); the
//! session registry is locked only at login, logout, KILL and when the admin console reads
//! it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::route::causal::ToMaster;

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
    /// Per server, in config order.
    pub servers: Vec<ServerStats>,
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
                .map(|n| ServerStats {
                    name: n.to_string(),
                    ..ServerStats::default()
                })
                .collect(),
            ..Stats::default()
        }
    }

    /// The counters of server `name`.
    pub fn server(&self, name: &str) -> Option<&ServerStats> {
        self.servers.iter().find(|s| s.name == name)
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
    /// The session is held on the master (temporary table, lock, a SET it cannot follow).
    pub pinned: AtomicBool,
    /// Names of the servers the session holds connections to.
    pub backends: Mutex<Vec<String>>,
}

impl SessionEntry {
    /// A fresh entry.
    pub fn new(id: u32, peer: SocketAddr, user: &str, master: &str, thread: u32) -> Self {
        SessionEntry {
            id,
            peer,
            started: SystemTime::now(),
            user: Mutex::new(user.to_string()),
            master_thread: AtomicU32::new(thread),
            statements: AtomicU64::new(0),
            in_transaction: AtomicBool::new(false),
            pinned: AtomicBool::new(false),
            backends: Mutex::new(vec![master.to_string()]),
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
            pinned: self.pinned.load(Relaxed),
            backends: self.backends.lock().map(|b| b.clone()).unwrap_or_default(),
        }
    }

    /// Records that the session now holds a connection to `server`.
    pub fn add_backend(&self, server: &str) {
        if let Ok(mut b) = self.backends.lock() {
            if !b.iter().any(|s| s == server) {
                b.push(server.to_string());
            }
        }
    }

    /// Records that the session no longer holds a connection to `server`.
    pub fn remove_backend(&self, server: &str) {
        if let Ok(mut b) = self.backends.lock() {
            b.retain(|s| s != server);
        }
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
    /// Held on the master.
    pub pinned: bool,
    /// Servers it holds connections to.
    pub backends: Vec<String>,
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
}
