//! The master's term as the servers record it, so that several kohaproxy instances (and
//! a restarted one) agree on which promotion is the newest.
//!
//! Each proxy counts terms for its own sessions (an OK from a master connection of an
//! older term is never forwarded). Those counts are private: when one proxy's failover
//! from a hung master failed and another's succeeded, the first could take the woken old
//! master back and fence the other's new one (found by the chaos soak). So every promotion
//! (failover or switchover) also writes `(term, server_id)` into [`TABLE`] on the new
//! master before it is made writable; the row replicates to every server that follows it.
//! Each probe reads the row, and [`newest`] names the master of the highest recorded term:
//! a proxy follows that server, and a writable server of an older term is fenced, never
//! followed. The server is named by `@@server_id`, since proxies may reach the same server
//! by different addresses.
//!
//! Pure: parsing and the decision. The monitor reads and writes the row.

use crate::gtid::GtidList;
use crate::topology::{ServerState, ServerView};

/// The table that holds the record: one row, `id = 1`.
pub const TABLE: &str = "kohaproxy.master_term";

/// Reads the record (what a probe runs; error 1146 or 1049 means there is none yet).
pub const READ_SQL: &str =
    "SELECT term, server_id, binlog_before FROM kohaproxy.master_term WHERE id = 1";

/// Reads a record written before the table had `binlog_before` (error 1054 on
/// [`READ_SQL`]); the next promotion adds the column.
pub const READ_SQL_WITHOUT_BINLOG: &str =
    "SELECT term, server_id FROM kohaproxy.master_term WHERE id = 1";

/// Creates [`TABLE`] (and its schema) if missing, and adds `binlog_before` to a table
/// created by an older kohaproxy.
pub const CREATE_SQL: [&str; 3] = [
    "CREATE DATABASE IF NOT EXISTS kohaproxy",
    "CREATE TABLE IF NOT EXISTS kohaproxy.master_term (\
       id TINYINT UNSIGNED NOT NULL PRIMARY KEY, \
       term BIGINT UNSIGNED NOT NULL, \
       server_id INT UNSIGNED NOT NULL, \
       promoted_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
       binlog_before VARCHAR(2048) NULL) ENGINE=InnoDB",
    "ALTER TABLE kohaproxy.master_term ADD COLUMN IF NOT EXISTS binlog_before VARCHAR(2048) NULL",
];

/// The statement that records `term` with the new master `server_id`, whose
/// `@@gtid_binlog_pos` is `binlog_before` (read just before, in the same session: the
/// record is then the one transaction past it).
pub fn write_sql(term: u64, server_id: u32, binlog_before: &GtidList) -> String {
    // A GTID list is digits, '-' and ',': nothing to escape.
    format!(
        "INSERT INTO kohaproxy.master_term (id, term, server_id, binlog_before) \
         VALUES (1, {term}, {server_id}, '{binlog_before}') \
         ON DUPLICATE KEY UPDATE term = VALUES(term), server_id = VALUES(server_id), \
         binlog_before = VALUES(binlog_before), promoted_at = CURRENT_TIMESTAMP(6)"
    )
}

/// The record as one server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermRecord {
    /// The term of the last promotion this server knows of.
    pub term: u64,
    /// `@@server_id` of the server promoted in it.
    pub server_id: u32,
    /// The promoted server's `@@gtid_binlog_pos` just before the record was written;
    /// `None` in a record written by an older kohaproxy.
    pub binlog_before: Option<GtidList>,
}

impl TermRecord {
    /// Parses the [`READ_SQL`] row (as text; `binlog_before` NULL or absent: `None`).
    pub fn from_row(
        term: &str,
        server_id: &str,
        binlog_before: Option<&str>,
    ) -> Result<TermRecord, String> {
        Ok(TermRecord {
            term: term
                .trim()
                .parse()
                .map_err(|_| format!("bad recorded term {term:?}"))?,
            server_id: server_id
                .trim()
                .parse()
                .map_err(|_| format!("bad recorded server_id {server_id:?}"))?,
            binlog_before: binlog_before
                .map(|b| {
                    b.parse()
                        .map_err(|e| format!("bad recorded binlog position {b:?}: {e}"))
                })
                .transpose()?,
        })
    }

    /// Whether the server holding this record, with `binlog_pos`, wrote nothing after
    /// it: its binlog is exactly one transaction (the record itself) past
    /// `binlog_before`. False for a record without `binlog_before` (nothing proves it).
    pub fn is_last_write(&self, binlog_pos: &GtidList) -> bool {
        self.binlog_before
            .as_ref()
            .is_some_and(|before| binlog_pos.contains(before) && before.behind(binlog_pos) == 1)
    }
}

/// The newest term recorded on the servers that are up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Newest {
    /// The highest recorded term (0 when no server has a record).
    pub term: u64,
    /// The server promoted in it, when it is up and writable: the master every proxy
    /// follows. `None` when it is down, read-only (demoted since, by a person), or unknown.
    pub master: Option<usize>,
}

/// The newest record among the servers that are up, and its master if that one is up and
/// writable now.
pub fn newest(servers: &[ServerView]) -> Newest {
    let up = |v: &&ServerView| v.state == ServerState::Up;
    let best = servers
        .iter()
        .filter(up)
        .filter_map(|v| v.status.as_ref()?.master_term.as_ref())
        .max_by_key(|r| r.term);
    let Some(best) = best else {
        return Newest {
            term: 0,
            master: None,
        };
    };
    let master = servers.iter().position(|v| {
        v.state == ServerState::Up
            && v.status
                .as_ref()
                .is_some_and(|st| st.server_id == best.server_id && !st.read_only)
    });
    Newest {
        term: best.term,
        master,
    }
}

/// Whether writable server `i` is of an older term than the newest record: another
/// kohaproxy promoted a server after it (it hung, or was cut off, meanwhile). Such a
/// server is never followed; it is fenced like any other writable non-master.
pub fn superseded(servers: &[ServerView], i: usize, newest: &Newest) -> bool {
    newest.master.is_some_and(|m| m != i)
        && servers
            .get(i)
            .and_then(|v| v.status.as_ref())
            .is_some_and(|st| {
                !st.read_only && st.master_term.as_ref().map_or(0, |r| r.term) < newest.term
            })
}

/// The master to follow given the records: the newest promotion's server when it is up
/// and writable, unless `current` (this proxy's master) is writable and not superseded
/// (of the newest term itself, or promoted by hand after the recorded master was gone);
/// else `current`. Also returns the newest record, whose term an adoption must reach.
pub fn master_to_follow(servers: &[ServerView], current: Option<usize>) -> (Newest, Option<usize>) {
    let newest = newest(servers);
    let under = match (newest.master, current) {
        (Some(n), Some(h)) if n != h && !superseded(servers, h, &newest) => Some(h),
        (Some(n), _) => Some(n),
        (None, h) => h,
    };
    (newest, under)
}

/// A promotion that stopped half-way: the server the newest record names is up and
/// holds that record itself, as the last transaction in its binlog, but is still
/// read-only, replicates from nobody (its threads stopped), and no server follows it
/// yet; and no server is writable. (A master of that term restarted read-only is
/// followed by its replicas: not this. A master of that term kept out as diverged took
/// writes after the record: not this either, or a restarted proxy would make it the
/// master while a newer term's master is down, and lose that master's writes: the
/// chaos soak, seed 2.) The promoting kohaproxy died (or lost its
/// connection) after recording the term, before `read_only = OFF`: the server it chose
/// has drained its relay log and carries the new term, so the promotion is finished on
/// it, never restarted on another replica (which could lack writes, and would leave this
/// one diverged by its own term record).
pub fn unfinished_promotion(servers: &[ServerView]) -> Option<usize> {
    let up = |v: &&ServerView| v.state == ServerState::Up;
    if servers
        .iter()
        .filter(up)
        .any(|v| v.status.as_ref().is_some_and(|st| !st.read_only))
    {
        return None;
    }
    let best = servers
        .iter()
        .filter(up)
        .filter_map(|v| v.status.as_ref()?.master_term.as_ref())
        .max_by_key(|r| r.term)?;
    let c = servers.iter().position(|v| {
        v.state == ServerState::Up
            && v.status.as_ref().is_some_and(|st| {
                st.server_id == best.server_id
                    && st.read_only
                    && st.master_term.as_ref().is_some_and(|r| {
                        r.term == best.term && r.is_last_write(&st.gtid_binlog_pos)
                    })
                    && !st.replication.iter().any(|r| r.is_active())
            })
    })?;
    let followed = servers.iter().filter(up).any(|v| {
        v.status.as_ref().is_some_and(|st| {
            st.replication
                .iter()
                .any(|l| crate::roles::master_of(servers, l) == Some(c))
        })
    });
    (!followed).then_some(c)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::probe::Status;

    fn server(name: &str, id: u32, read_only: bool, record: Option<(u64, u32)>) -> ServerView {
        let mut v = ServerView::new(name, &format!("127.0.0.1:{}", 3300 + id), Instant::now());
        v.state = ServerState::Up;
        let mut st = Status::from_vars(
            &[
                Some(if read_only { "1" } else { "0" }.into()),
                Some(id.to_string()),
            ],
            Vec::new(),
        )
        .expect("status");
        // Every record was written at 0-x-10 and every server's binlog is at 0-x-11: the
        // record is the last write of the server it names.
        st.master_term = record.map(|(term, server_id)| record_at(term, server_id, "0-1-10"));
        st.gtid_binlog_pos = format!("0-{id}-11").parse().expect("gtid");
        v.status = Some(st);
        v
    }

    fn record_at(term: u64, server_id: u32, before: &str) -> TermRecord {
        TermRecord {
            term,
            server_id,
            binlog_before: Some(before.parse().expect("gtid")),
        }
    }

    #[test]
    fn no_record_anywhere_names_nobody() {
        let servers = [server("db1", 1, false, None), server("db2", 2, true, None)];
        assert_eq!(
            newest(&servers),
            Newest {
                term: 0,
                master: None
            }
        );
        assert!(!superseded(&servers, 0, &newest(&servers)));
    }

    #[test]
    fn a_woken_old_master_is_superseded_by_the_newer_promotion() {
        // db1 hung as the master of term 4; another proxy promoted db2 in term 5, and db3
        // already follows db2 (it has db2's record).
        let servers = [
            server("db1", 1, false, Some((4, 1))),
            server("db2", 2, false, Some((5, 2))),
            server("db3", 3, true, Some((5, 2))),
        ];
        let n = newest(&servers);
        assert_eq!(
            n,
            Newest {
                term: 5,
                master: Some(1)
            }
        );
        assert!(superseded(&servers, 0, &n));
        assert!(!superseded(&servers, 1, &n));
        assert!(!superseded(&servers, 2, &n), "read-only: nothing to fence");
    }

    #[test]
    fn the_newest_master_down_or_read_only_names_nobody() {
        let mut servers = [
            server("db1", 1, false, Some((4, 1))),
            server("db2", 2, false, Some((5, 2))),
            server("db3", 3, true, Some((5, 2))),
        ];
        servers[1].state = ServerState::Down;
        let n = newest(&servers);
        assert_eq!(
            n,
            Newest {
                term: 5,
                master: None
            },
            "a down server's record is not read, db3's is"
        );
        assert!(!superseded(&servers, 0, &n), "nobody to follow instead");
        servers[1].state = ServerState::Up;
        servers[1].status.as_mut().expect("status").read_only = true;
        assert_eq!(newest(&servers).master, None);
    }

    #[test]
    fn a_server_without_a_record_is_older_than_any_record() {
        let servers = [
            server("db1", 1, false, None),
            server("db2", 2, false, Some((1, 2))),
        ];
        let n = newest(&servers);
        assert_eq!(n.master, Some(1));
        assert!(superseded(&servers, 0, &n));
    }

    #[test]
    fn a_proxy_follows_the_newest_promotion_over_its_own_master() {
        let servers = [
            server("db1", 1, false, Some((4, 1))),
            server("db2", 2, false, Some((5, 2))),
            server("db3", 3, true, Some((5, 2))),
        ];
        // The proxy whose failover failed still names db1, woken; the other promoted db2.
        assert_eq!(master_to_follow(&servers, Some(0)).1, Some(1));
        assert_eq!(master_to_follow(&servers, Some(1)).1, Some(1));
        // A restarted proxy (no master yet) and two writable servers: the newest.
        assert_eq!(
            master_to_follow(&servers, None),
            (newest(&servers), Some(1))
        );
    }

    #[test]
    fn without_a_usable_record_a_proxy_keeps_its_master() {
        // No records at all (no kohaproxy promoted anything yet): unchanged behaviour.
        let plain = [server("db1", 1, false, None), server("db2", 2, true, None)];
        assert_eq!(master_to_follow(&plain, Some(0)).1, Some(0));
        assert_eq!(master_to_follow(&plain, None).1, None);
        // The recorded master died and a person promoted db3 by hand: db3 has the old
        // record, and is the proxy's master; keep it.
        let mut by_hand = [
            server("db1", 1, false, Some((4, 1))),
            server("db2", 2, false, Some((5, 2))),
            server("db3", 3, false, Some((5, 2))),
        ];
        by_hand[1].state = ServerState::Down;
        assert_eq!(master_to_follow(&by_hand, Some(2)).1, Some(2));
        // The same record on a writable db3 while db2 is writable too: db3 replicated
        // db2's record, so it is not older; the proxy's choice stands.
        by_hand[1].state = ServerState::Up;
        assert_eq!(master_to_follow(&by_hand, Some(2)).1, Some(2));
        assert_eq!(master_to_follow(&by_hand, Some(0)).1, Some(1));
    }

    #[test]
    fn a_recorded_read_only_server_replicating_from_nobody_is_an_unfinished_promotion() {
        // db1 (term 4) died; a proxy recorded term 5 on db2 and died before read_only=OFF.
        // db3 still follows db1 (its record is db1's).
        let mut servers = [
            server("db1", 1, false, Some((4, 1))),
            server("db2", 2, true, Some((5, 2))),
            server("db3", 3, true, Some((4, 1))),
        ];
        servers[0].state = ServerState::Down;
        assert_eq!(unfinished_promotion(&servers), Some(1));
        // Not while any server is writable (db1 woke up: it is fenced first, or the
        // promotion finished and db2 is writable).
        servers[0].state = ServerState::Up;
        assert_eq!(unfinished_promotion(&servers), None);
        servers[0].state = ServerState::Down;
        // Not when db2 replicates again (a switchover made it a replica of someone).
        let mut replicating = servers.clone();
        let link = |io: &str| {
            crate::probe::Replication::from_fields(|name| match name {
                "Master_Host" => Some("127.0.0.1".into()),
                "Master_Port" => Some("3301".into()),
                "Slave_IO_Running" => Some(io.into()),
                "Slave_SQL_Running" => Some("No".into()),
                _ => None,
            })
            .expect("link")
        };
        replicating[1].status.as_mut().expect("status").replication = vec![link("Yes")];
        assert_eq!(unfinished_promotion(&replicating), None);
        // A link left stopped (the promoting proxy ran STOP SLAVE) does not count.
        replicating[1].status.as_mut().expect("status").replication = vec![link("No")];
        assert_eq!(unfinished_promotion(&replicating), Some(1));
        // Not when a replica follows db2 (port 3302): db2 is the master of term 5,
        // restarted read-only, not a promotion under way.
        let mut restarted = servers.clone();
        let mut follows_db2 = link("Yes");
        follows_db2.master_port = 3302;
        restarted[2].status.as_mut().expect("status").replication = vec![follows_db2];
        assert_eq!(unfinished_promotion(&restarted), None);
        // Not when the server the record names lacks the record itself (db3 holds a
        // newer record naming db2, which did not get it back: no promotion of db2 ran
        // on db2).
        let mut elsewhere = servers.clone();
        elsewhere[1].status.as_mut().expect("status").master_term = Some(record_at(4, 1, "0-1-10"));
        elsewhere[2].status.as_mut().expect("status").master_term = Some(record_at(5, 2, "0-1-10"));
        assert_eq!(unfinished_promotion(&elsewhere), None);
        // No record at all: nothing unfinished.
        let plain = [server("db1", 1, true, None), server("db2", 2, true, None)];
        assert_eq!(unfinished_promotion(&plain), None);
    }

    #[test]
    fn a_master_kept_out_after_taking_writes_is_no_unfinished_promotion() {
        // Seed 2 of the chaos soak: db1 was promoted in term 9 and took writes; it hung,
        // another proxy promoted db3 in term 10, and db1 was kept out as diverged
        // (read-only, replicating from nobody). db3 and its replica db2 are down. A
        // restarted proxy sees only db1, whose own record is the newest it can read:
        // finishing "its promotion" would acknowledge writes that db3's term loses.
        let mut servers = [
            server("db1", 1, true, Some((9, 1))),
            server("db2", 2, true, Some((10, 3))),
            server("db3", 3, false, Some((10, 3))),
        ];
        servers[1].state = ServerState::Down;
        servers[2].state = ServerState::Down;
        let db1 = servers[0].status.as_mut().expect("status");
        db1.master_term = Some(record_at(9, 1, "0-2-100"));
        db1.gtid_binlog_pos = "0-1-101".parse().expect("gtid");
        assert_eq!(
            unfinished_promotion(&servers),
            Some(0),
            "nothing after: finish"
        );
        servers[0].status.as_mut().expect("status").gtid_binlog_pos =
            "0-1-130112".parse().expect("gtid");
        assert_eq!(
            unfinished_promotion(&servers),
            None,
            "writes after its record"
        );
        // A record from an older kohaproxy proves nothing either way: not finished.
        let db1 = servers[0].status.as_mut().expect("status");
        db1.gtid_binlog_pos = "0-1-101".parse().expect("gtid");
        db1.master_term = Some(TermRecord {
            term: 9,
            server_id: 1,
            binlog_before: None,
        });
        assert_eq!(unfinished_promotion(&servers), None);
    }

    #[test]
    fn the_record_is_the_last_write_only_one_transaction_past_its_position() {
        let r = record_at(3, 2, "0-1-10,1-2-5");
        let at = |s: &str| s.parse::<GtidList>().expect("gtid");
        assert!(r.is_last_write(&at("0-2-11,1-2-5")));
        assert!(!r.is_last_write(&at("0-1-10,1-2-5")), "not written yet");
        assert!(!r.is_last_write(&at("0-2-12,1-2-5")), "a write after it");
        assert!(
            !r.is_last_write(&at("0-2-11,1-2-6")),
            "a write in another domain"
        );
        assert!(
            !r.is_last_write(&at("0-2-11")),
            "a domain lost: another binlog"
        );
        assert!(
            r.is_last_write(&at("0-1-10,1-2-5,2-2-1")),
            "written in a new domain"
        );
    }

    #[test]
    fn rows_parse_or_say_what_is_wrong() {
        assert_eq!(
            TermRecord::from_row("7", " 2", Some("0-1-5")),
            Ok(record_at(7, 2, "0-1-5"))
        );
        assert_eq!(
            TermRecord::from_row("7", "2", None).map(|r| r.binlog_before),
            Ok(None)
        );
        assert!(TermRecord::from_row("x", "2", None)
            .unwrap_err()
            .contains("term"));
        assert!(TermRecord::from_row("7", "2", Some("zz"))
            .unwrap_err()
            .contains("binlog"));
        let sql = write_sql(3, 2, &"0-1-5".parse().expect("gtid"));
        assert!(sql.contains("VALUES (1, 3, 2, '0-1-5')"), "{sql}");
    }
}
