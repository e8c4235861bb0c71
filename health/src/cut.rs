//! The mark a failover leaves on each replica it cuts off from the old master, so that
//! the cut can be undone by whoever finds it, not only by the proxy that made it.
//!
//! A failover stops every replica's IO thread before it chooses (`cut_off_from` in the
//! monitor): the old master may only seem dead, and must get no more semi-sync acks. A
//! refused failover reconnects them. But a proxy killed between the cut and the promotion
//! leaves replicas that apply their relay log and receive nothing more: should the old
//! master answer again, it stays the master with no replica acknowledging, writes wait
//! (or are refused) under `durability = "replicated"`, and the replicas fall behind for
//! good. A stopped IO thread with a running SQL thread is also what a person leaves with
//! `STOP SLAVE IO_THREAD`, so the state alone does not say "undo me". The mark does: one
//! row in [`TABLE`] on the replica, written before its IO thread is stopped, naming the
//! old master by `@@server_id`. A monitor that finds a replica of the current master cut
//! and marked with that master reconnects it under the topology lock (so never while a
//! failover runs) and clears the mark.
//!
//! The row is written with `sql_log_bin = 0`: it is the replica's own, creates no GTID
//! (no errant transaction), and never replicates.
//!
//! Pure: the statements and the decisions. The monitor reads and writes the row.

use crate::probe::{Replication, ThreadState};

/// The table that holds the mark: at most one row, `id = 1`.
pub const TABLE: &str = "kohaproxy.cut_off";

/// Run first in the session that writes or clears the mark: the row is the server's own.
pub const NO_BINLOG_SQL: &str = "SET SESSION sql_log_bin = 0";

/// Creates [`TABLE`] (and its schema) if missing; run after [`NO_BINLOG_SQL`].
pub const CREATE_SQL: [&str; 2] = [
    "CREATE DATABASE IF NOT EXISTS kohaproxy",
    "CREATE TABLE IF NOT EXISTS kohaproxy.cut_off (\
       id TINYINT UNSIGNED NOT NULL PRIMARY KEY, \
       master_server_id INT UNSIGNED NOT NULL, \
       term BIGINT UNSIGNED NOT NULL, \
       cut_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
];

/// Reads the mark (error 1146 or 1049: there is none).
pub const READ_SQL: &str = "SELECT master_server_id, term FROM kohaproxy.cut_off WHERE id = 1";

/// Clears the mark; run after [`NO_BINLOG_SQL`].
pub const CLEAR_SQL: &str = "DELETE FROM kohaproxy.cut_off WHERE id = 1";

/// The statement that marks a replica cut off from the master `master_server_id` by the
/// failover of `term`.
pub fn mark_sql(master_server_id: u32, term: u64) -> String {
    format!(
        "INSERT INTO kohaproxy.cut_off (id, master_server_id, term) \
         VALUES (1, {master_server_id}, {term}) \
         ON DUPLICATE KEY UPDATE master_server_id = VALUES(master_server_id), \
         term = VALUES(term), cut_at = CURRENT_TIMESTAMP(6)"
    )
}

/// A mark as one replica holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CutMark {
    /// `@@server_id` of the master the replica was cut off from.
    pub master_server_id: u32,
    /// The term of the failover that cut it.
    pub term: u64,
}

/// The mark in a row of [`READ_SQL`] (`None` for no row or one that does not parse).
pub fn parse(row: &[Option<String>]) -> Option<CutMark> {
    match row {
        [Some(id), Some(term)] => Some(CutMark {
            master_server_id: id.parse().ok()?,
            term: term.parse().ok()?,
        }),
        _ => None,
    }
}

/// Whether a replication link is in the state a cut leaves: IO thread stopped, SQL thread
/// running, no error. Only such a replica's mark is read.
pub fn looks_cut(link: &Replication) -> bool {
    link.io_thread == ThreadState::Stopped
        && link.sql_thread == ThreadState::Running
        && link.last_io_error.is_none()
        && link.last_sql_error.is_none()
}

/// Whether a replica that [`looks_cut`] and holds `mark` was cut off from the master whose
/// `@@server_id` is `master_server_id` and should be reconnected to it. A mark naming
/// another server is stale (that failover promoted, and the replica was re-pointed since).
pub fn cut_from(mark: Option<CutMark>, master_server_id: u32) -> bool {
    mark.is_some_and(|m| m.master_server_id == master_server_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(io: &'static str, sql: &'static str) -> Replication {
        Replication::from_fields(|name| match name {
            "Master_Host" => Some("127.0.0.1".into()),
            "Master_Port" => Some("3306".into()),
            "Slave_IO_Running" => Some(io.into()),
            "Slave_SQL_Running" => Some(sql.into()),
            _ => None,
        })
        .expect("a link")
    }

    #[test]
    fn only_a_stopped_io_thread_beside_a_running_sql_thread_looks_cut() {
        assert!(looks_cut(&link("No", "Yes")));
        assert!(!looks_cut(&link("Yes", "Yes")));
        assert!(!looks_cut(&link("Connecting", "Yes")));
        assert!(!looks_cut(&link("No", "No")));
        let mut failed = link("No", "Yes");
        failed.last_io_error = Some("error reconnecting to master".into());
        assert!(!looks_cut(&failed));
    }

    #[test]
    fn a_mark_counts_only_for_the_master_it_names() {
        let mark = CutMark {
            master_server_id: 1,
            term: 7,
        };
        assert!(cut_from(Some(mark), 1));
        assert!(!cut_from(Some(mark), 2), "stale: another master");
        assert!(!cut_from(None, 1), "stopped by a person");
    }

    #[test]
    fn a_mark_parses_from_its_row() {
        let row = [Some("3".to_string()), Some("12".to_string())];
        assert_eq!(
            parse(&row),
            Some(CutMark {
                master_server_id: 3,
                term: 12
            })
        );
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[Some("x".into()), Some("1".into())]), None);
    }

    #[test]
    fn the_mark_statement_names_master_and_term() {
        let sql = mark_sql(2, 9);
        assert!(sql.contains("VALUES (1, 2, 9)"), "{sql}");
    }
}
