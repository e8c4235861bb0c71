//! What the monitor logs when a snapshot differs from the last one.

use tracing::{info, warn};

use crate::probe::ThreadState;
use crate::topology::{Role, ServerState, ServerView, Topology};

/// Logs what changed between two snapshots that matters to people: the master, the
/// topology problem, each server's role and its replication threads. Lag and GTID
/// positions change all the time and are not logged.
pub(super) fn log_changes(old: &Topology, new: &Topology) {
    if old.problem != new.problem {
        match &new.problem {
            Some(problem) => {
                warn!(%problem, "the topology makes no sense; no master until it does")
            }
            None => info!("the topology makes sense again"),
        }
    }
    let semi_sync = |t: &Topology| t.master().and_then(|m| m.status.as_ref()?.semi_sync_active);
    if let (Some(m), Some(was), Some(is)) = (new.master(), semi_sync(old), semi_sync(new)) {
        if was && !is {
            warn!(
                master = %m.name,
                "semi-synchronous replication fell back to asynchronous: writes acknowledged \
                 now exist only on the master until a replica catches up (a failover meanwhile \
                 is refused)"
            );
        } else if !was && is {
            info!(master = %m.name, "semi-synchronous replication is active again");
        }
    }
    if old.master().map(|m| &m.name) != new.master().map(|m| &m.name) {
        match new.master() {
            Some(m) => info!(master = %m.name, address = %m.address, "master found"),
            None if new.problem.is_some() => warn!("no master: the topology makes no sense"),
            None => warn!("no master: no reachable writable server"),
        }
    }
    for (i, s) in new.servers.iter().enumerate() {
        let before = old.servers.get(i);
        if before.map(|b| b.role) != Some(s.role) {
            let galera = s.status.as_ref().is_some_and(|st| st.wsrep.is_some());
            let note = s.note.as_ref().map(ToString::to_string);
            let reason = match s.role {
                Role::Master if galera => "the Galera writer",
                Role::Replica if galera => "a Synced Galera node in the Primary component: reads",
                Role::Master => "the single writable server, replicating from nobody",
                Role::Replica => "read-only, replicating from the master",
                Role::Standalone => "read-only, replicating from nobody",
                Role::Stale => {
                    "writable or replicating from a server that is not the master: kept out"
                }
                Role::Unusable => note
                    .as_deref()
                    .unwrap_or("a Galera node that may not serve"),
                Role::Unknown if s.state != ServerState::Up => "not up",
                Role::Unknown if new.problem.is_some() => "the topology makes no sense",
                Role::Unknown => "there is no master to follow",
            };
            info!(server = %s.name, role = %s.role, reason, "role changed");
        }
        let threads = |v: &ServerView| {
            v.status
                .as_ref()
                .and_then(|st| st.replication.first())
                .map(|r| (r.io_thread, r.sql_thread))
        };
        let (was, is) = (before.and_then(threads), threads(s));
        if s.state == ServerState::Up && was != is {
            let link = s.status.as_ref().and_then(|st| st.replication.first());
            match link {
                Some(r)
                    if r.io_thread == ThreadState::Running
                        && r.sql_thread == ThreadState::Running =>
                {
                    info!(server = %s.name, master = %format!("{}:{}", r.master_host, r.master_port), "replication running")
                }
                Some(r) => warn!(
                    server = %s.name,
                    io = %r.io_thread,
                    sql = %r.sql_thread,
                    io_error = r.last_io_error.as_deref().unwrap_or(""),
                    sql_error = r.last_sql_error.as_deref().unwrap_or(""),
                    "replication not fully running"
                ),
                None => info!(server = %s.name, "not replicating"),
            }
        }
    }
}
