//! The semi-synchronous settings each server should have, by role and by the configured
//! [`Durability`]. Pure; the monitor applies the answers.
//!
//! `rpl_semi_sync_master_wait_no_slave`: with it OFF a master whose last replica
//! disconnects acknowledges writes at once, asynchronously: they exist only on the master.
//! A kohaproxy that cannot reach the master either (a partition that cuts it and the
//! replicas off together) may then promote a replica lacking writes another kohaproxy
//! acknowledged. With it ON the master holds each such commit up to
//! `rpl_semi_sync_master_timeout`, time for the promotion to be recorded and for every
//! proxy to stop forwarding the old master's answers. But ON on a replica stalls its SQL
//! thread that long on its first applied transaction, so the setting follows the role: ON
//! on the master, OFF everywhere else.
//!
//! `rpl_semi_sync_master_timeout`: under [`Durability::Replicated`] the master holds a
//! commit [`HOLD_MS`] (a day) rather than fall back to asynchronous: no write is ever
//! acknowledged that only the master has; commits wait until a replica receives them or a
//! failover replaces the master. The held commits are not killed: measured, a KILL of one
//! held commit let another held commit be answered OK at once, with no replica having it.
//! Under [`Durability::Available`] the server's own timeout applies (a [`HOLD_MS`] left by
//! an earlier run is put back to MariaDB's default).

use kohaproxy_config::Durability;

/// The semi-sync timeout of a master under [`Durability::Replicated`]: a day, so that a
/// replica's return or a failover, not the server's fall-back to asynchronous, ends the
/// wait.
pub const HOLD_MS: u64 = 86_400_000;

/// MariaDB's default `rpl_semi_sync_master_timeout`.
pub const SERVER_DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// One server as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// It answered its last probe.
    pub up: bool,
    /// Its `@@rpl_semi_sync_master_wait_no_slave`, when known.
    pub wait_no_slave: Option<bool>,
    /// Its `@@rpl_semi_sync_master_timeout` in milliseconds, when known.
    pub timeout_ms: Option<u64>,
}

/// A setting to change on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `rpl_semi_sync_master_wait_no_slave`.
    WaitNoSlave(bool),
    /// `rpl_semi_sync_master_timeout`, in milliseconds.
    Timeout(u64),
}

impl Change {
    /// The statement that makes it.
    pub fn sql(self) -> String {
        match self {
            Change::WaitNoSlave(on) => format!(
                "SET GLOBAL rpl_semi_sync_master_wait_no_slave = {}",
                if on { "ON" } else { "OFF" }
            ),
            Change::Timeout(ms) => format!("SET GLOBAL rpl_semi_sync_master_timeout = {ms}"),
        }
    }
}

/// What a server should have under `durability` as the master (`master` true) or as any
/// other server. `timeout_ms` is what it has now (it decides whether the timeout is ours
/// to put back).
fn wanted(durability: Durability, master: bool, timeout_ms: Option<u64>) -> Vec<Change> {
    match durability {
        Durability::Unmanaged => Vec::new(),
        Durability::Replicated if master => {
            vec![Change::WaitNoSlave(true), Change::Timeout(HOLD_MS)]
        }
        Durability::Available if master && timeout_ms == Some(HOLD_MS) => vec![
            Change::WaitNoSlave(true),
            Change::Timeout(SERVER_DEFAULT_TIMEOUT_MS),
        ],
        Durability::Replicated | Durability::Available if master => {
            vec![Change::WaitNoSlave(true)]
        }
        Durability::Replicated | Durability::Available => vec![Change::WaitNoSlave(false)],
    }
}

/// The statements that give a server being made the master its settings, run before it
/// becomes writable (so that no write is acknowledged in the round before the monitor
/// would set them). `timeout_ms` is its current timeout, when known.
pub fn as_master(durability: Durability, timeout_ms: Option<u64>) -> Vec<String> {
    wanted(durability, true, timeout_ms)
        .into_iter()
        .map(Change::sql)
        .collect()
}

/// The statement that gives a server about to replicate its settings, run before it is
/// re-pointed or demoted (ON would stall its SQL thread).
pub fn as_replica(durability: Durability) -> Option<String> {
    wanted(durability, false, None)
        .into_iter()
        .next()
        .map(Change::sql)
}

/// The changes to make: (server index, change). `master` is the current master's index;
/// a cluster of one server is left alone (it has no replica to wait for), and so are
/// servers down or whose settings are unknown.
pub fn changes(servers: &[Seen], master: usize, durability: Durability) -> Vec<(usize, Change)> {
    if servers.len() < 2 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, s) in servers.iter().enumerate().filter(|(_, s)| s.up) {
        for change in wanted(durability, i == master, s.timeout_ms) {
            let differs = match change {
                Change::WaitNoSlave(on) => s.wait_no_slave.is_some_and(|v| v != on),
                Change::Timeout(ms) => s.timeout_ms.is_some_and(|v| v != ms),
            };
            if differs {
                out.push((i, change));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Durability::{Available, Replicated, Unmanaged};

    fn seen(up: bool, v: Option<bool>, t: Option<u64>) -> Seen {
        Seen {
            up,
            wait_no_slave: v,
            timeout_ms: t,
        }
    }

    #[test]
    fn wait_no_slave_is_on_for_the_master_off_for_the_others() {
        let s = [
            seen(true, Some(false), Some(10_000)),
            seen(true, Some(true), Some(10_000)),
            seen(true, Some(false), Some(10_000)),
        ];
        assert_eq!(
            changes(&s, 0, Available),
            vec![
                (0, Change::WaitNoSlave(true)),
                (1, Change::WaitNoSlave(false))
            ]
        );
        assert_eq!(changes(&s, 1, Available), vec![]);
    }

    #[test]
    fn replicated_holds_the_masters_commits_a_day() {
        let s = [
            seen(true, Some(true), Some(10_000)),
            seen(true, Some(false), Some(HOLD_MS)),
        ];
        assert_eq!(
            changes(&s, 0, Replicated),
            vec![(0, Change::Timeout(HOLD_MS))]
        );
        // A demoted master keeps the long timeout: with wait_no_slave OFF and no replica
        // of its own it never waits.
        assert_eq!(changes(&s, 0, Replicated).len(), 1);
        assert_eq!(
            as_master(Replicated, Some(10_000)),
            vec![
                "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON".to_string(),
                format!("SET GLOBAL rpl_semi_sync_master_timeout = {HOLD_MS}"),
            ]
        );
    }

    #[test]
    fn available_puts_back_a_hold_left_by_replicated() {
        let s = [
            seen(true, Some(true), Some(HOLD_MS)),
            seen(true, Some(false), Some(3_000)),
        ];
        assert_eq!(
            changes(&s, 0, Available),
            vec![(0, Change::Timeout(SERVER_DEFAULT_TIMEOUT_MS))]
        );
        // A timeout the operator chose is theirs.
        assert_eq!(
            changes(&s, 1, Available),
            vec![
                (0, Change::WaitNoSlave(false)),
                (1, Change::WaitNoSlave(true))
            ]
        );
    }

    #[test]
    fn unknown_or_down_servers_and_unmanaged_clusters_are_left_alone() {
        let s = [
            seen(true, None, None),
            seen(false, Some(true), Some(1)),
            seen(true, Some(false), Some(1)),
        ];
        assert_eq!(changes(&s, 0, Available), vec![]);
        let s = [
            seen(true, Some(false), Some(1)),
            seen(true, Some(true), Some(1)),
        ];
        assert_eq!(changes(&s, 0, Unmanaged), vec![]);
        assert!(as_master(Unmanaged, None).is_empty());
        assert_eq!(as_replica(Unmanaged), None);
        assert_eq!(
            as_replica(Replicated).as_deref(),
            Some("SET GLOBAL rpl_semi_sync_master_wait_no_slave = OFF")
        );
    }

    #[test]
    fn a_lone_server_is_left_alone() {
        assert_eq!(
            changes(&[seen(true, Some(false), Some(1))], 0, Replicated),
            vec![]
        );
    }
}
