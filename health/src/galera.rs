//! Galera (wsrep) clusters: what a node says about itself, whether it may serve, and which
//! node is the one writer.
//!
//! Every node of a Galera cluster is writable, but writes sent to two nodes at once fail
//! certification (error 1213), so the proxy sends writes to one node, the *writer*, and
//! reads to the others. Several proxies must agree on the writer with no service of their
//! own: the writer and its term are a row of a small table on the cluster
//! ([`WRITER_TABLE`]), changed only by a compare-and-set that Galera's certification makes
//! atomic (two proxies updating the row through two nodes: one commit wins, the other
//! gets a deadlock error and reads the winner).
//!
//! The decisions are pure ([`Wsrep::unusable`], [`choose_writer`], [`writer_step`]); the
//! monitor does the I/O.

/// What one Galera node says about itself: its wsrep status and variables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wsrep {
    /// `wsrep_local_state`: 1 Joining, 2 Donor/Desynced, 3 Joined, 4 Synced.
    pub local_state: u32,
    /// `wsrep_local_state_comment` ("Synced", "Donor/Desynced", ...).
    pub local_state_comment: String,
    /// `wsrep_cluster_status`: "Primary", "non-Primary" or "Disconnected".
    pub cluster_status: String,
    /// `wsrep_ready`: the node accepts queries.
    pub ready: bool,
    /// `wsrep_cluster_size`: nodes in this node's component.
    pub cluster_size: u32,
    /// `wsrep_cluster_state_uuid`: the cluster's history (equal on every node of it).
    pub cluster_state_uuid: String,
    /// `wsrep_local_recv_queue`: write sets received and not yet applied.
    pub recv_queue: u64,
    /// `wsrep_local_index`: this node's index in the component.
    pub local_index: Option<u32>,
    /// `@@wsrep_desync`.
    pub desync: bool,
    /// `@@wsrep_reject_queries`: "NONE", "ALL" or "ALL_KILL".
    pub reject_queries: String,
    /// `@@wsrep_sst_method`.
    pub sst_method: String,
    /// `@@wsrep_sst_donor_rejects_queries`.
    pub sst_donor_rejects_queries: bool,
}

/// `wsrep_local_state` of a node that is in sync with its component.
pub const SYNCED: u32 = 4;
/// `wsrep_local_state` of a node serving a state transfer (or desynced).
pub const DONOR: u32 = 2;

/// The probe's query: name and value of every wsrep status and variable [`Wsrep`] needs
/// (SHOW statements run even where the node refuses other queries, 1047).
pub const STATUS_SQL: &str = "SHOW GLOBAL STATUS WHERE Variable_name IN \
    ('wsrep_local_state', 'wsrep_local_state_comment', 'wsrep_cluster_status', \
     'wsrep_ready', 'wsrep_cluster_size', 'wsrep_cluster_state_uuid', \
     'wsrep_local_recv_queue', 'wsrep_local_index')";
/// The probe's second query (variables).
pub const VARIABLES_SQL: &str = "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
    ('wsrep_desync', 'wsrep_reject_queries', 'wsrep_sst_method', \
     'wsrep_sst_donor_rejects_queries', 'wsrep_on')";

impl Wsrep {
    /// Reads the answers to [`STATUS_SQL`] and [`VARIABLES_SQL`]; `value` returns a name's
    /// value (names in lower case). Errors name what is missing or malformed: a server
    /// without wsrep is not a Galera node.
    pub fn from_values(value: impl Fn(&str) -> Option<String>) -> Result<Wsrep, String> {
        let on = |name: &str| {
            value(name)
                .is_some_and(|v| matches!(v.trim().to_ascii_uppercase().as_str(), "ON" | "1"))
        };
        if !on("wsrep_on") {
            return Err("wsrep is off: not a Galera node".into());
        }
        let number = |name: &str| -> Result<u64, String> {
            let v = value(name).ok_or_else(|| format!("{name} is missing"))?;
            v.trim().parse().map_err(|_| format!("bad {name} {v:?}"))
        };
        let text = |name: &str| value(name).unwrap_or_default().trim().to_string();
        Ok(Wsrep {
            local_state: u32::try_from(number("wsrep_local_state")?)
                .map_err(|_| "wsrep_local_state out of range".to_string())?,
            local_state_comment: text("wsrep_local_state_comment"),
            cluster_status: text("wsrep_cluster_status"),
            ready: on("wsrep_ready"),
            cluster_size: u32::try_from(number("wsrep_cluster_size")?)
                .map_err(|_| "wsrep_cluster_size out of range".to_string())?,
            cluster_state_uuid: text("wsrep_cluster_state_uuid"),
            recv_queue: number("wsrep_local_recv_queue")?,
            local_index: value("wsrep_local_index").and_then(|v| v.trim().parse().ok()),
            desync: on("wsrep_desync"),
            reject_queries: text("wsrep_reject_queries"),
            sst_method: text("wsrep_sst_method"),
            sst_donor_rejects_queries: on("wsrep_sst_donor_rejects_queries"),
        })
    }

    /// Whether the node is in a Primary component (the only one that may commit).
    pub fn primary(&self) -> bool {
        self.cluster_status == "Primary"
    }

    /// Why this node may not serve statements now, if it may not. `donor_serves_reads`:
    /// a Donor whose SST method does not block it still serves (config
    /// `cluster.donor_serves_reads`).
    pub fn unusable(&self, donor_serves_reads: bool) -> Option<Unusable> {
        if !self.primary() {
            return Some(Unusable::NotPrimary(self.cluster_status.clone()));
        }
        if !self.ready {
            return Some(Unusable::NotReady);
        }
        if !self.reject_queries.is_empty() && !self.reject_queries.eq_ignore_ascii_case("NONE") {
            return Some(Unusable::RejectsQueries(self.reject_queries.clone()));
        }
        let serving_donor = self.local_state == DONOR
            && donor_serves_reads
            && non_blocking_sst(&self.sst_method)
            && !self.sst_donor_rejects_queries;
        if self.local_state == DONOR && !serving_donor {
            return Some(Unusable::Donor(self.sst_method.clone()));
        }
        if self.desync && !serving_donor {
            return Some(Unusable::Desynced);
        }
        if self.local_state != SYNCED && !serving_donor {
            return Some(Unusable::NotSynced(self.local_state_comment.clone()));
        }
        None
    }
}

/// Whether an SST method leaves the donor serving (mariabackup copies without a global
/// lock; rsync and mysqldump block it).
pub fn non_blocking_sst(method: &str) -> bool {
    matches!(
        method.trim().to_ascii_lowercase().as_str(),
        "mariabackup" | "xtrabackup" | "xtrabackup-v2"
    )
}

/// Why a Galera node gets no statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// Not in the Primary component (`wsrep_cluster_status` given): it cannot commit,
    /// and what it would read may be missing writes the Primary component made.
    NotPrimary(String),
    /// `wsrep_ready` is OFF (queries get error 1047).
    NotReady,
    /// `wsrep_reject_queries` is set (given).
    RejectsQueries(String),
    /// A Donor whose SST method (given) blocks it, or not allowed to serve by config.
    Donor(String),
    /// `wsrep_desync` is ON (a backup or an admin took it out of flow control).
    Desynced,
    /// Not Synced (`wsrep_local_state_comment` given: Joining, Joined, ...).
    NotSynced(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::NotPrimary(status) => {
                write!(
                    f,
                    "not in the Primary component (cluster status {status}): never written to"
                )
            }
            Unusable::NotReady => f.write_str("wsrep_ready is OFF"),
            Unusable::RejectsQueries(v) => write!(f, "wsrep_reject_queries = {v}"),
            Unusable::Donor(method) => {
                write!(f, "Donor of a state transfer (wsrep_sst_method {method})")
            }
            Unusable::Desynced => f.write_str("desynced (wsrep_desync = ON)"),
            Unusable::NotSynced(state) => write!(f, "not Synced ({state})"),
        }
    }
}

/// A node as the writer choice sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterCandidate {
    /// Config index.
    pub index: usize,
    /// `priority` from the config: higher is preferred.
    pub priority: i32,
    /// Up, usable ([`Wsrep::unusable`] is `None`) and not in maintenance.
    pub usable: bool,
}

/// The writer by the stated rule: the current writer while it is usable (unless
/// `failback`); else, or with `failback`, the usable node with the highest priority, ties
/// broken by config order. `None` when no node is usable.
pub fn choose_writer(
    nodes: &[WriterCandidate],
    current: Option<usize>,
    failback: bool,
) -> Option<usize> {
    if !failback {
        if let Some(c) = current.filter(|&c| nodes.iter().any(|n| n.index == c && n.usable)) {
            return Some(c);
        }
    }
    nodes
        .iter()
        .filter(|n| n.usable)
        .max_by(|a, b| a.priority.cmp(&b.priority).then(b.index.cmp(&a.index)))
        .map(|n| n.index)
}

/// The table on the cluster that holds the writer: one row, `id = 1`.
pub const WRITER_TABLE: &str = "kohaproxy.galera_writer";

/// Creates [`WRITER_TABLE`] (and its schema) if missing.
pub const CREATE_WRITER_TABLE: [&str; 2] = [
    "CREATE DATABASE IF NOT EXISTS kohaproxy",
    "CREATE TABLE IF NOT EXISTS kohaproxy.galera_writer (\
       id TINYINT UNSIGNED NOT NULL PRIMARY KEY, \
       writer VARCHAR(255) NOT NULL, \
       term BIGINT UNSIGNED NOT NULL, \
       changed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
];

/// Reads the writer row (run with `wsrep_sync_wait` so the node has applied every change
/// the cluster committed before).
pub const READ_WRITER: &str = "SELECT writer, term FROM kohaproxy.galera_writer WHERE id = 1";

/// The writer as the cluster records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterRecord {
    /// The writer's name (as in the config of the proxy that chose it).
    pub writer: String,
    /// Raised by one at every change: the proxies' term.
    pub term: u64,
}

/// What the monitor does about the writer after reading the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterStep {
    /// The recorded writer stands: follow node `index` in `term`.
    Follow {
        /// Config index.
        index: usize,
        /// The record's term.
        term: u64,
    },
    /// Record node `index` as the writer, in place of the record that was read (`None`:
    /// there was no row). Whoever commits first wins; everyone then follows the record.
    Claim {
        /// Config index.
        index: usize,
        /// The term to write (one above the record's, or 1).
        term: u64,
        /// The record the change replaces.
        replaces: Option<WriterRecord>,
    },
    /// No node can be the writer: writes wait. The reason is for people.
    NoWriter(String),
}

/// Decides the writer step: the recorded writer is followed while the rule keeps it
/// (usable, and no failback to a better node); otherwise the rule's choice is claimed.
/// `names[i]` is node `i`'s config name.
pub fn writer_step(
    record: Option<&WriterRecord>,
    names: &[&str],
    nodes: &[WriterCandidate],
    failback: bool,
) -> WriterStep {
    let current = record.and_then(|r| names.iter().position(|n| *n == r.writer));
    match choose_writer(nodes, current, failback) {
        Some(index) if Some(index) == current => WriterStep::Follow {
            index,
            term: record.map_or(0, |r| r.term),
        },
        Some(index) => WriterStep::Claim {
            index,
            term: record.map_or(1, |r| r.term + 1),
            replaces: record.cloned(),
        },
        None => WriterStep::NoWriter(match record {
            Some(r) => format!(
                "no Galera node can take writes (the writer was {}, term {})",
                r.writer, r.term
            ),
            None => "no Galera node can take writes".to_string(),
        }),
    }
}

/// The statement that claims the writer role for `step` (a `Claim`): an insert of the
/// first row, or an update that matches only the record it replaces. One affected row
/// means the claim won.
pub fn claim_sql(writer: &str, term: u64, replaces: Option<&WriterRecord>) -> String {
    let writer = crate::sql::literal(writer);
    match replaces {
        None => format!(
            "INSERT INTO kohaproxy.galera_writer (id, writer, term) VALUES (1, {writer}, {term})"
        ),
        Some(old) => format!(
            "UPDATE kohaproxy.galera_writer SET writer = {writer}, term = {term}, \
             changed_at = CURRENT_TIMESTAMP(6) WHERE id = 1 AND term = {} AND writer = {}",
            old.term,
            crate::sql::literal(&old.writer)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(super) fn synced() -> Wsrep {
        Wsrep {
            local_state: SYNCED,
            local_state_comment: "Synced".into(),
            cluster_status: "Primary".into(),
            ready: true,
            cluster_size: 3,
            cluster_state_uuid: "u".into(),
            recv_queue: 0,
            local_index: Some(0),
            desync: false,
            reject_queries: "NONE".into(),
            sst_method: "rsync".into(),
            sst_donor_rejects_queries: false,
        }
    }

    #[test]
    fn reads_what_a_node_says() {
        let values: HashMap<&str, &str> = [
            ("wsrep_on", "ON"),
            ("wsrep_local_state", "4"),
            ("wsrep_local_state_comment", "Synced"),
            ("wsrep_cluster_status", "Primary"),
            ("wsrep_ready", "ON"),
            ("wsrep_cluster_size", "3"),
            ("wsrep_cluster_state_uuid", "u"),
            ("wsrep_local_recv_queue", "0"),
            ("wsrep_local_index", "0"),
            ("wsrep_desync", "OFF"),
            ("wsrep_reject_queries", "NONE"),
            ("wsrep_sst_method", "rsync"),
            ("wsrep_sst_donor_rejects_queries", "OFF"),
        ]
        .into_iter()
        .collect();
        let w = Wsrep::from_values(|n| values.get(n).map(|v| v.to_string())).unwrap();
        assert_eq!(w, synced());
        let off = Wsrep::from_values(|n| (n == "wsrep_on").then(|| "OFF".to_string()));
        assert!(off.unwrap_err().contains("not a Galera node"));
        let missing = Wsrep::from_values(|n| (n == "wsrep_on").then(|| "ON".to_string()));
        assert!(missing
            .unwrap_err()
            .contains("wsrep_local_state is missing"));
    }

    #[test]
    fn only_a_synced_primary_ready_node_serves() {
        assert_eq!(synced().unusable(false), None);
        let cases: Vec<(Wsrep, Unusable)> = vec![
            (
                Wsrep {
                    cluster_status: "non-Primary".into(),
                    ..synced()
                },
                Unusable::NotPrimary("non-Primary".into()),
            ),
            (
                Wsrep {
                    ready: false,
                    ..synced()
                },
                Unusable::NotReady,
            ),
            (
                Wsrep {
                    reject_queries: "ALL".into(),
                    ..synced()
                },
                Unusable::RejectsQueries("ALL".into()),
            ),
            (
                Wsrep {
                    desync: true,
                    ..synced()
                },
                Unusable::Desynced,
            ),
            (
                Wsrep {
                    local_state: 1,
                    local_state_comment: "Joining".into(),
                    ..synced()
                },
                Unusable::NotSynced("Joining".into()),
            ),
            (
                Wsrep {
                    local_state: DONOR,
                    desync: true,
                    ..synced()
                },
                Unusable::Donor("rsync".into()),
            ),
        ];
        for (w, why) in cases {
            assert_eq!(w.unusable(false), Some(why.clone()), "{w:?}");
            assert!(!why.to_string().is_empty());
        }
        // A Donor serves only with a non-blocking SST method and the config's leave.
        let donor = Wsrep {
            local_state: DONOR,
            desync: true,
            sst_method: "mariabackup".into(),
            ..synced()
        };
        assert_eq!(donor.unusable(true), None);
        assert_eq!(
            donor.unusable(false),
            Some(Unusable::Donor("mariabackup".into()))
        );
        let rsync_donor = Wsrep {
            sst_method: "rsync".into(),
            ..donor.clone()
        };
        assert_eq!(
            rsync_donor.unusable(true),
            Some(Unusable::Donor("rsync".into()))
        );
        let rejecting = Wsrep {
            sst_donor_rejects_queries: true,
            ..donor
        };
        assert!(rejecting.unusable(true).is_some());
        // Not Primary wins over everything: it says why writes are refused.
        let lonely = Wsrep {
            cluster_status: "non-Primary".into(),
            ready: false,
            ..synced()
        };
        assert!(matches!(
            lonely.unusable(false),
            Some(Unusable::NotPrimary(_))
        ));
    }

    fn node(index: usize, priority: i32, usable: bool) -> WriterCandidate {
        WriterCandidate {
            index,
            priority,
            usable,
        }
    }

    #[test]
    fn the_writer_is_sticky_and_chosen_by_priority_then_config_order() {
        let all = [node(0, 0, true), node(1, 0, true), node(2, 0, true)];
        assert_eq!(choose_writer(&all, None, false), Some(0));
        assert_eq!(choose_writer(&all, Some(2), false), Some(2), "sticky");
        assert_eq!(choose_writer(&all, Some(2), true), Some(0), "failback");
        let first_down = [node(0, 0, false), node(1, 0, true), node(2, 0, true)];
        assert_eq!(choose_writer(&first_down, Some(0), false), Some(1));
        let ranked = [node(0, 0, true), node(1, 5, true), node(2, 5, true)];
        assert_eq!(choose_writer(&ranked, None, false), Some(1));
        assert_eq!(choose_writer(&ranked, Some(0), false), Some(0));
        assert_eq!(choose_writer(&ranked, Some(0), true), Some(1));
        let none = [node(0, 0, false), node(1, 0, false)];
        assert_eq!(choose_writer(&none, Some(0), false), None);
        assert_eq!(
            choose_writer(&all, Some(7), false),
            Some(0),
            "unknown current"
        );
    }

    #[test]
    fn proxies_follow_the_record_and_claim_only_when_the_rule_moves_it() {
        let names = ["db1", "db2", "db3"];
        let all = [node(0, 0, true), node(1, 0, true), node(2, 0, true)];
        let rec = |w: &str, term| WriterRecord {
            writer: w.into(),
            term,
        };
        assert_eq!(
            writer_step(None, &names, &all, false),
            WriterStep::Claim {
                index: 0,
                term: 1,
                replaces: None
            }
        );
        assert_eq!(
            writer_step(Some(&rec("db2", 4)), &names, &all, false),
            WriterStep::Follow { index: 1, term: 4 }
        );
        let db2_down = [node(0, 0, true), node(1, 0, false), node(2, 0, true)];
        assert_eq!(
            writer_step(Some(&rec("db2", 4)), &names, &db2_down, false),
            WriterStep::Claim {
                index: 0,
                term: 5,
                replaces: Some(rec("db2", 4))
            }
        );
        // A writer recorded by a proxy with other names is replaced.
        assert!(matches!(
            writer_step(Some(&rec("galera-a", 2)), &names, &all, false),
            WriterStep::Claim {
                index: 0,
                term: 3,
                ..
            }
        ));
        assert_eq!(
            writer_step(Some(&rec("db2", 4)), &names, &all, true),
            WriterStep::Claim {
                index: 0,
                term: 5,
                replaces: Some(rec("db2", 4))
            }
        );
        let none = [node(0, 0, false), node(1, 0, false), node(2, 0, false)];
        match writer_step(Some(&rec("db2", 4)), &names, &none, false) {
            WriterStep::NoWriter(why) => assert!(why.contains("db2, term 4"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_claim_matches_only_the_record_it_replaces() {
        assert_eq!(
            claim_sql("db1", 1, None),
            "INSERT INTO kohaproxy.galera_writer (id, writer, term) VALUES (1, 'db1', 1)"
        );
        let sql = claim_sql(
            "db3",
            5,
            Some(&WriterRecord {
                writer: "db'2".into(),
                term: 4,
            }),
        );
        assert!(sql.contains("SET writer = 'db3', term = 5"), "{sql}");
        assert!(
            sql.ends_with("WHERE id = 1 AND term = 4 AND writer = 'db''2'"),
            "{sql}"
        );
    }
}

#[cfg(test)]
mod topology_tests {
    use super::*;
    use crate::topology::{Role, ServerState, ServerView, Topology};
    use std::time::Instant;

    fn node(name: &str, wsrep: Option<Wsrep>, up: bool) -> ServerView {
        let mut v = ServerView::new(name, "127.0.0.1:1", Instant::now());
        v.state = if up {
            ServerState::Up
        } else {
            ServerState::Down
        };
        v.status = Some(crate::probe::Status {
            read_only: false,
            server_id: 1,
            gtid_current_pos: Default::default(),
            gtid_binlog_pos: Default::default(),
            gtid_slave_pos: Default::default(),
            gtid_binlog_state: Default::default(),
            semi_sync_active: None,
            replication: Vec::new(),
            session_track_system_variables: String::new(),
            session_track_schema: false,
            wsrep,
            semi_sync_wait_no_slave: None,
            semi_sync_timeout_ms: None,
            semi_sync_clients: None,
            master_term: None,
            dump_clients: None,
        });
        v
    }

    fn synced(queue: u64) -> Wsrep {
        Wsrep {
            recv_queue: queue,
            ..super::tests::synced()
        }
    }

    #[test]
    fn the_writer_is_master_usable_nodes_read_the_rest_get_nothing() {
        let non_primary = Wsrep {
            cluster_status: "non-Primary".into(),
            ..synced(0)
        };
        let mut failed = node("db5", Some(synced(0)), true);
        failed.last_error = Some("no answer within 1000 ms".into());
        let t = Topology::galera(
            vec![
                node("db1", Some(synced(0)), true),
                node("db2", Some(synced(3)), true),
                node("db3", Some(synced(40)), true),
                node("db4", Some(non_primary), true),
                failed,
                node("db6", Some(synced(0)), false),
            ],
            Some(0),
            16,
            false,
        );
        assert_eq!(t.master, Some(0));
        let roles: Vec<Role> = t.servers.iter().map(|s| s.role).collect();
        assert_eq!(
            roles,
            [
                Role::Master,
                Role::Replica,
                Role::Replica,
                Role::Unusable,
                Role::Unknown,
                Role::Unknown
            ]
        );
        let lag = t.servers[1].lag.unwrap();
        assert_eq!(
            (lag.seconds_behind_master, lag.transactions_behind),
            (Some(0), 3)
        );
        // Over the queue bound: a replica that gets no reads, and says why.
        assert_eq!(t.servers[2].lag.unwrap().seconds_behind_master, None);
        assert!(t.servers[2]
            .note
            .as_ref()
            .unwrap()
            .to_string()
            .contains("max_recv_queue"));
        assert!(t.servers[3]
            .note
            .as_ref()
            .unwrap()
            .to_string()
            .contains("Primary"));
        // A writer that may not serve is no writer.
        let t = Topology::galera(vec![node("db1", Some(synced(0)), true)], Some(1), 16, false);
        assert_eq!(t.master, None);
    }
}
