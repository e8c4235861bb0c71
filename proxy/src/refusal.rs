//! Every error kohaproxy itself answers a client with, from one table: its code,
//! SQLSTATE and text, the name it is counted under, and whether the session goes on
//! after it. Errors a server sent are relayed verbatim and are not here.
//!
//! Codes: MariaDB's own where MariaDB has one for the situation (1040, 1043, 1045, 1153,
//! 1156, 1835); 1213 (deadlock, SQLSTATE 40001) where the client should run its
//! transaction again, 1927 (connection killed, 70100) where it should not retry blindly,
//! and ProxySQL's 9001 for "no master". Never a client-library code (2000-2999): client
//! libraries reject one in an ERR packet as a malformed packet.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::protocol::packets::ErrPacket;

/// An error the proxy answers a client with, with what its text needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `proxy.max_connections` sessions are open.
    TooManyConnections,
    /// The login packet could not be read (malformed, oversized, sent twice).
    BadHandshake,
    /// The client asked for TLS and the proxy has no certificate.
    TlsNotConfigured,
    /// Unknown user or wrong password.
    AccessDenied {
        /// The user name the client sent.
        user: String,
        /// The client's address.
        host: IpAddr,
        /// Whether the client sent a password.
        with_password: bool,
    },
    /// No master to log in to or to run the statement on.
    NoMaster {
        /// The monitor's reason, or what failed.
        reason: String,
    },
    /// A message larger than `proxy.max_allowed_packet`.
    PacketTooLarge,
    /// An empty command packet, or an unreadable COM_CHANGE_USER.
    Malformed,
    /// A client packet with an unexpected sequence id.
    OutOfOrder,
    /// COM_BINLOG_DUMP and friends: replication streams are not relayed.
    ReplicationStream,
    /// The master connection broke while the statement was being sent: it was not run.
    NotSent,
    /// The master connection broke during the statement: whether it ran is unknown.
    OutcomeUnknown,
    /// The master changed (failover, switchover) under an open transaction.
    TransactionRolledBack {
        /// The session also held state that cannot follow it to the new master.
        state_lost: bool,
    },
    /// The master changed and the session's temporary tables, locks or prepared
    /// statements could not follow it.
    StateLost,
    /// The replica connection running a read-only transaction broke.
    ReplicaTransactionLost,
}

/// What a refusal is counted as: [`Refusal`] without its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`Refusal::TooManyConnections`].
    TooManyConnections,
    /// [`Refusal::BadHandshake`].
    BadHandshake,
    /// [`Refusal::TlsNotConfigured`].
    TlsNotConfigured,
    /// [`Refusal::AccessDenied`].
    AccessDenied,
    /// [`Refusal::NoMaster`].
    NoMaster,
    /// [`Refusal::PacketTooLarge`].
    PacketTooLarge,
    /// [`Refusal::Malformed`].
    Malformed,
    /// [`Refusal::OutOfOrder`].
    OutOfOrder,
    /// [`Refusal::ReplicationStream`].
    ReplicationStream,
    /// [`Refusal::NotSent`].
    NotSent,
    /// [`Refusal::OutcomeUnknown`].
    OutcomeUnknown,
    /// [`Refusal::TransactionRolledBack`].
    TransactionRolledBack,
    /// [`Refusal::StateLost`].
    StateLost,
    /// [`Refusal::ReplicaTransactionLost`].
    ReplicaTransactionLost,
}

/// Which part of its life a refused session is in (the coarse view of [`crate::phase::Phase`]
/// that decides whether a refusal ends it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Logging in, or re-authenticating with COM_CHANGE_USER: any refusal ends the
    /// session (it must never go on as the previous user).
    Login,
    /// Running commands.
    Commands,
}

/// What happens to the session after the refusal is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// The session waits for the next command.
    Continue,
    /// The session ends.
    Close,
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Error number.
    pub code: u16,
    /// Five-character SQLSTATE.
    pub sqlstate: &'static str,
    /// Counter name (SHOW STATS `refused.<code>.<name>`).
    pub name: &'static str,
    /// What follows it while running commands.
    pub after: After,
}

const fn row(code: u16, sqlstate: &'static str, name: &'static str, after: After) -> Row {
    Row {
        code,
        sqlstate,
        name,
        after,
    }
}

impl Kind {
    /// Every kind, in counter order.
    pub const ALL: [Kind; 14] = [
        Kind::TooManyConnections,
        Kind::BadHandshake,
        Kind::TlsNotConfigured,
        Kind::AccessDenied,
        Kind::NoMaster,
        Kind::PacketTooLarge,
        Kind::Malformed,
        Kind::OutOfOrder,
        Kind::ReplicationStream,
        Kind::NotSent,
        Kind::OutcomeUnknown,
        Kind::TransactionRolledBack,
        Kind::StateLost,
        Kind::ReplicaTransactionLost,
    ];

    /// The table: code, SQLSTATE, counter name, and what follows in the command phase.
    pub const fn row(self) -> Row {
        use After::{Close, Continue};
        match self {
            Kind::TooManyConnections => row(1040, "08004", "too_many_connections", Close),
            Kind::BadHandshake => row(1043, "08S01", "bad_handshake", Close),
            Kind::TlsNotConfigured => row(1043, "08S01", "tls_not_configured", Close),
            Kind::AccessDenied => row(1045, "28000", "access_denied", Close),
            Kind::NoMaster => row(9001, "HY000", "no_master", Continue),
            Kind::PacketTooLarge => row(1153, "08S01", "packet_too_large", Close),
            Kind::Malformed => row(1835, "HY000", "malformed_packet", Continue),
            Kind::OutOfOrder => row(1156, "08S01", "packets_out_of_order", Close),
            Kind::ReplicationStream => row(1047, "08S01", "replication_stream", Continue),
            Kind::NotSent => row(1927, "70100", "master_lost_not_sent", Continue),
            Kind::OutcomeUnknown => row(1927, "70100", "master_lost_outcome_unknown", Continue),
            Kind::TransactionRolledBack => {
                row(1213, "40001", "master_changed_in_transaction", Continue)
            }
            Kind::StateLost => row(1927, "70100", "master_changed_state_lost", Close),
            Kind::ReplicaTransactionLost => {
                row(1213, "40001", "replica_lost_in_transaction", Continue)
            }
        }
    }

    /// Position in [`Kind::ALL`] (the counter's index).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Refusal {
    /// What it is counted as.
    pub fn kind(&self) -> Kind {
        match self {
            Refusal::TooManyConnections => Kind::TooManyConnections,
            Refusal::BadHandshake => Kind::BadHandshake,
            Refusal::TlsNotConfigured => Kind::TlsNotConfigured,
            Refusal::AccessDenied { .. } => Kind::AccessDenied,
            Refusal::NoMaster { .. } => Kind::NoMaster,
            Refusal::PacketTooLarge => Kind::PacketTooLarge,
            Refusal::Malformed => Kind::Malformed,
            Refusal::OutOfOrder => Kind::OutOfOrder,
            Refusal::ReplicationStream => Kind::ReplicationStream,
            Refusal::NotSent => Kind::NotSent,
            Refusal::OutcomeUnknown => Kind::OutcomeUnknown,
            Refusal::TransactionRolledBack { .. } => Kind::TransactionRolledBack,
            Refusal::StateLost => Kind::StateLost,
            Refusal::ReplicaTransactionLost => Kind::ReplicaTransactionLost,
        }
    }

    /// The text the client reads (MariaDB's own where the code is MariaDB's).
    pub fn message(&self) -> Cow<'static, str> {
        match self {
            Refusal::TooManyConnections => "Too many connections".into(),
            Refusal::BadHandshake => "Bad handshake".into(),
            Refusal::TlsNotConfigured => {
                "TLS is not configured on this kohaproxy (proxy.tls_cert)".into()
            }
            Refusal::AccessDenied {
                user,
                host,
                with_password,
            } => format!(
                "Access denied for user '{user}'@'{host}' (using password: {})",
                if *with_password { "YES" } else { "NO" }
            )
            .into(),
            Refusal::NoMaster { reason } => {
                format!("kohaproxy: no master available: {reason}").into()
            }
            Refusal::PacketTooLarge => "Got a packet bigger than 'max_allowed_packet' bytes".into(),
            Refusal::Malformed => "Malformed communication packet".into(),
            Refusal::OutOfOrder => "Got packets out of order".into(),
            Refusal::ReplicationStream => {
                "Unknown command: kohaproxy does not relay replication streams".into()
            }
            Refusal::NotSent => "kohaproxy: the connection to the master broke before this \
                                 statement was sent; it was not run"
                .into(),
            Refusal::OutcomeUnknown => "kohaproxy: the connection to the master was lost \
                                        during this statement; whether it was applied is \
                                        unknown"
                .into(),
            Refusal::TransactionRolledBack { .. } => "kohaproxy: the master changed (failover \
                                                      or switchover) and the open transaction \
                                                      was rolled back; run it again"
                .into(),
            Refusal::StateLost => "kohaproxy: the master changed (failover or switchover) and \
                                   this session's temporary tables, locks or prepared \
                                   statements were lost; reconnect"
                .into(),
            Refusal::ReplicaTransactionLost => "kohaproxy: the connection to the replica \
                                                running this read-only transaction was lost \
                                                and the transaction with it; run it again"
                .into(),
        }
    }

    /// Whether the session goes on after this refusal in `stage`.
    pub fn after(&self, stage: Stage) -> After {
        match (stage, self) {
            (Stage::Login, _) => After::Close,
            (Stage::Commands, Refusal::TransactionRolledBack { state_lost: true }) => After::Close,
            (Stage::Commands, r) => r.kind().row().after,
        }
    }

    /// The ERR packet, numbered `seq`.
    pub fn packet(&self, seq: u8) -> Vec<u8> {
        let row = self.kind().row();
        ErrPacket::new(row.code, row.sqlstate, self.message()).to_packet(seq)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let row = self.kind().row();
        write!(f, "{} ({}): {}", row.name, row.code, self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packets::ERR;

    #[test]
    fn all_lists_every_kind_once_in_index_order() {
        for (i, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i, "{kind:?}");
        }
    }

    #[test]
    fn the_table_uses_no_client_library_code_and_valid_sqlstates() {
        let mut names = std::collections::HashSet::new();
        for kind in Kind::ALL {
            let row = kind.row();
            assert!(!(2000..3000).contains(&row.code), "{kind:?}: {}", row.code);
            assert_eq!(row.sqlstate.len(), 5, "{kind:?}");
            assert!(names.insert(row.name), "{kind:?}: name used twice");
        }
    }

    #[test]
    fn what_follows_each_refusal() {
        use After::{Close, Continue};
        let table = [
            (Refusal::Malformed, Stage::Commands, Continue),
            (Refusal::Malformed, Stage::Login, Close),
            (Refusal::PacketTooLarge, Stage::Commands, Close),
            (Refusal::OutOfOrder, Stage::Commands, Close),
            (Refusal::NotSent, Stage::Commands, Continue),
            (Refusal::OutcomeUnknown, Stage::Commands, Continue),
            (
                Refusal::NoMaster { reason: "x".into() },
                Stage::Commands,
                Continue,
            ),
            (
                Refusal::NoMaster { reason: "x".into() },
                Stage::Login,
                Close,
            ),
            (
                Refusal::TransactionRolledBack { state_lost: false },
                Stage::Commands,
                Continue,
            ),
            (
                Refusal::TransactionRolledBack { state_lost: true },
                Stage::Commands,
                Close,
            ),
            (Refusal::StateLost, Stage::Commands, Close),
            (Refusal::ReplicaTransactionLost, Stage::Commands, Continue),
            (Refusal::ReplicationStream, Stage::Commands, Continue),
        ];
        for (refusal, stage, after) in table {
            assert_eq!(refusal.after(stage), after, "{refusal:?} in {stage:?}");
        }
    }

    #[test]
    fn access_denied_reads_as_mariadb_writes_it() {
        let r = Refusal::AccessDenied {
            user: "koha".into(),
            host: "127.0.0.1".parse().unwrap(),
            with_password: true,
        };
        let p = r.packet(2);
        assert_eq!(p[3], 2);
        assert_eq!(p[4], ERR);
        assert_eq!(u16::from_le_bytes([p[5], p[6]]), 1045);
        assert_eq!(&p[7..13], b"#28000");
        assert_eq!(
            &p[13..],
            b"Access denied for user 'koha'@'127.0.0.1' (using password: YES)"
        );
    }
}
