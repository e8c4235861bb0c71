//! Where a classified statement goes, given the session's affinity and transaction state:
//! the first half of routing, before replica health and causality choose a replica
//! (`route::causal`). Pure: no I/O, tested by table.

use super::classify::{Class, Hint, Route, TransactionStart};

/// Where a session is held, if anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affinity {
    /// Each statement goes where its class says.
    Free,
    /// A read-only transaction runs on the replica with this config index: its statements
    /// follow it there until it ends.
    ReadOnlyTransaction(usize),
    /// Held on the master until COM_RESET_CONNECTION or COM_CHANGE_USER.
    Pinned(PinReason),
}

/// Why a session is held on the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinReason {
    /// A statement whose effect stays on its connection: a temporary table, a lock, a
    /// HANDLER, an SQL-level PREPARE, SQL_CALC_FOUND_ROWS, a user variable assigned from
    /// a query (`Class::pin`).
    Statement,
    /// A statement too long to classify that is not a plain INSERT/UPDATE/DELETE/REPLACE.
    Unclassified,
    /// A user-variable SET the proxy cannot replay on replicas.
    UnreplayableSet,
    /// The master refused session tracking: the session's state cannot be learned.
    TrackingRefused,
    /// The connection collation could not be read after a character set change.
    CollationUnknown,
    /// A replica refused the session's state.
    ReplicaRefusedState,
}

impl PinReason {
    /// Every reason, in index order.
    pub const ALL: [PinReason; 6] = [
        PinReason::Statement,
        PinReason::Unclassified,
        PinReason::UnreplayableSet,
        PinReason::TrackingRefused,
        PinReason::CollationUnknown,
        PinReason::ReplicaRefusedState,
    ];

    /// Position in [`PinReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A few words for logs and SHOW SESSIONS.
    pub fn describe(self) -> &'static str {
        match self {
            PinReason::Statement => "temporary table, lock or connection-bound statement",
            PinReason::Unclassified => "statement too long to classify",
            PinReason::UnreplayableSet => "user variable set in a way that cannot be replayed",
            PinReason::TrackingRefused => "session tracking refused",
            PinReason::CollationUnknown => "connection collation unknown",
            PinReason::ReplicaRefusedState => "a replica refused the session's state",
        }
    }
}

impl Affinity {
    /// Whether the session is held on the master.
    pub fn pinned(self) -> bool {
        matches!(self, Affinity::Pinned(_))
    }

    /// The replica running this session's read-only transaction, if any.
    pub fn read_only_transaction(self) -> Option<usize> {
        match self {
            Affinity::ReadOnlyTransaction(server) => Some(server),
            _ => None,
        }
    }
}

/// Where a statement goes before health and causality are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The master.
    Master,
    /// A replica, chosen next; `start_read_only` for START TRANSACTION READ ONLY.
    Read {
        /// The statement starts a read-only transaction.
        start_read_only: bool,
    },
    /// This replica (a read-only transaction, or SHOW WARNINGS after a read there).
    Replica(usize),
}

/// What the session knows when a statement arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// Where the session is held.
    pub affinity: Affinity,
    /// A transaction is open on the master connection, or autocommit is off.
    pub in_transaction: bool,
    /// The replica the previous statement ran on, if it ran on one whose connection is
    /// still open.
    pub previous_replica: Option<usize>,
    /// The session's connection to the read-only transaction's replica is still open.
    pub transaction_replica_open: bool,
}

/// Where a statement of class `class` goes in `situation` (the split is on).
pub fn target(class: &Class, situation: Situation) -> Target {
    if class.pin || situation.affinity.pinned() {
        return Target::Master;
    }
    if let Affinity::ReadOnlyTransaction(server) = situation.affinity {
        if situation.transaction_replica_open {
            return Target::Replica(server);
        }
    }
    if situation.in_transaction {
        return Target::Master;
    }
    if class.starts == Some(TransactionStart::ReadOnly) {
        return Target::Read {
            start_read_only: true,
        };
    }
    let route = match class.hint {
        Some(Hint::Master) => Route::Master,
        Some(Hint::Replica) => Route::Read,
        None => class.route,
    };
    match route {
        Route::Read => Target::Read {
            start_read_only: false,
        },
        Route::Previous => situation
            .previous_replica
            .map_or(Target::Master, Target::Replica),
        Route::Master => Target::Master,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::classify::classify;

    const FREE: Situation = Situation {
        affinity: Affinity::Free,
        in_transaction: false,
        previous_replica: None,
        transaction_replica_open: false,
    };

    #[test]
    fn where_each_statement_goes() {
        let read = Target::Read {
            start_read_only: false,
        };
        let in_txn = Situation {
            in_transaction: true,
            ..FREE
        };
        let on_replica_2 = Situation {
            affinity: Affinity::ReadOnlyTransaction(2),
            transaction_replica_open: true,
            ..FREE
        };
        let after_replica_1 = Situation {
            previous_replica: Some(1),
            ..FREE
        };
        let pinned = Situation {
            affinity: Affinity::Pinned(PinReason::Statement),
            ..FREE
        };
        let table: &[(&str, Situation, Target)] = &[
            ("SELECT 1", FREE, read),
            ("UPDATE t SET a = 1", FREE, Target::Master),
            ("SELECT 1", in_txn, Target::Master),
            ("SELECT 1", pinned, Target::Master),
            ("SELECT /* kohaproxy:master */ 1", FREE, Target::Master),
            (
                "INSERT /* kohaproxy:replica */ INTO t VALUES (1)",
                FREE,
                read,
            ),
            ("CREATE TEMPORARY TABLE x (a INT)", FREE, Target::Master),
            (
                "START TRANSACTION READ ONLY",
                FREE,
                Target::Read {
                    start_read_only: true,
                },
            ),
            ("START TRANSACTION READ ONLY", in_txn, Target::Master),
            ("BEGIN", FREE, Target::Master),
            ("SELECT 1", on_replica_2, Target::Replica(2)),
            ("COMMIT", on_replica_2, Target::Replica(2)),
            (
                "SELECT 1",
                Situation {
                    transaction_replica_open: false,
                    ..on_replica_2
                },
                read,
            ),
            ("SHOW WARNINGS", after_replica_1, Target::Replica(1)),
            ("SHOW WARNINGS", FREE, Target::Master),
            (
                "SELECT @@warning_count",
                after_replica_1,
                Target::Replica(1),
            ),
        ];
        for (sql, situation, expected) in table {
            assert_eq!(
                target(&classify(sql.as_bytes()), *situation),
                *expected,
                "{sql} in {situation:?}"
            );
        }
    }

    #[test]
    fn pin_reasons_are_listed_in_index_order() {
        for (i, r) in PinReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn affinity_answers_its_questions() {
        assert!(Affinity::Pinned(PinReason::TrackingRefused).pinned());
        assert!(!Affinity::ReadOnlyTransaction(1).pinned());
        assert_eq!(
            Affinity::ReadOnlyTransaction(1).read_only_transaction(),
            Some(1)
        );
        assert_eq!(Affinity::Free.read_only_transaction(), None);
    }
}
