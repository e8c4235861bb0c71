//! What the session does with a client command, decided from its header and command byte
//! alone: the first of the session's decisions taken out of its I/O loop (`Session::run`
//! carries the answer out). Pure, table-tested.

use crate::protocol::command;

/// The session's next move for one client command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The first packet of a command must be numbered 0: MariaDB's 1156, and the session
    /// ends (the client and the proxy no longer agree on where a message starts).
    OutOfOrder,
    /// An empty packet: no command byte. Refused, the session goes on.
    Empty,
    /// COM_QUIT: the backends are told, the session ends.
    Quit,
    /// COM_CHANGE_USER: a new login on the same session.
    ChangeUser,
    /// A replication command (COM_BINLOG_DUMP, COM_BINLOG_DUMP_GTID, COM_REGISTER_SLAVE):
    /// read whole, sent nowhere, refused with [`crate::refusal::Refusal::ReplicationStream`].
    ReplicationStream,
    /// COM_QUERY: classified and routed; a `KILL` naming a proxy session is translated.
    Query,
    /// COM_PROCESS_KILL: translated when it names a proxy session, else forwarded.
    ProcessKill,
    /// COM_RESET_CONNECTION: forwarded; once the master agrees, the session forgets its
    /// state (and resets its replica connections before their next use).
    ResetConnection,
    /// Anything else: forwarded to the master. `prepares`: COM_STMT_PREPARE, after
    /// which the session holds statements no new master connection can be given.
    Forward {
        /// The command prepares a server-side statement.
        prepares: bool,
    },
}

impl Step {
    /// Whether the step needs the master connection current first (the session may move
    /// to a new master, or be refused because it cannot).
    pub(super) fn needs_master(self) -> bool {
        !matches!(self, Step::OutOfOrder | Step::Empty | Step::Quit)
    }
}

/// The step a command's header decides on its own (its sequence id `seq` and payload
/// length `len`), before the command byte is read: `None` if the command byte decides.
pub(super) fn from_header(seq: u8, len: usize) -> Option<Step> {
    if seq != 0 {
        Some(Step::OutOfOrder)
    } else if len == 0 {
        Some(Step::Empty)
    } else {
        None
    }
}

/// The step for command byte `cmd`.
pub(super) fn from_command(cmd: u8) -> Step {
    match cmd {
        command::QUIT => Step::Quit,
        command::CHANGE_USER => Step::ChangeUser,
        // A replication stream through the proxy would bypass every routing rule, and a
        // replica registered through it would be the proxy's connection, not a server.
        command::BINLOG_DUMP | command::BINLOG_DUMP_GTID | command::REGISTER_SLAVE => {
            Step::ReplicationStream
        }
        command::QUERY => Step::Query,
        command::PROCESS_KILL => Step::ProcessKill,
        command::RESET_CONNECTION => Step::ResetConnection,
        command::STMT_PREPARE => Step::Forward { prepares: true },
        _ => Step::Forward { prepares: false },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_decides_out_of_order_and_empty_packets() {
        assert_eq!(from_header(1, 5), Some(Step::OutOfOrder));
        assert_eq!(from_header(255, 0), Some(Step::OutOfOrder));
        assert_eq!(from_header(0, 0), Some(Step::Empty));
        assert_eq!(from_header(0, 1), None);
    }

    #[test]
    fn each_command_has_its_step() {
        let table = [
            (command::QUIT, Step::Quit),
            (command::CHANGE_USER, Step::ChangeUser),
            (command::BINLOG_DUMP, Step::ReplicationStream),
            (command::BINLOG_DUMP_GTID, Step::ReplicationStream),
            (command::REGISTER_SLAVE, Step::ReplicationStream),
            (command::QUERY, Step::Query),
            (command::PROCESS_KILL, Step::ProcessKill),
            (command::RESET_CONNECTION, Step::ResetConnection),
            (command::STMT_PREPARE, Step::Forward { prepares: true }),
            (command::STMT_EXECUTE, Step::Forward { prepares: false }),
            (command::PING, Step::Forward { prepares: false }),
            (command::INIT_DB, Step::Forward { prepares: false }),
            (0xee, Step::Forward { prepares: false }),
        ];
        for (cmd, step) in table {
            assert_eq!(from_command(cmd), step, "command {cmd:#04x}");
        }
    }

    #[test]
    fn only_quit_and_broken_packets_skip_the_master_check() {
        assert!(!Step::Quit.needs_master());
        assert!(!Step::OutOfOrder.needs_master());
        assert!(!Step::Empty.needs_master());
        assert!(Step::Query.needs_master());
        assert!(Step::ReplicationStream.needs_master());
        assert!(Step::Forward { prepares: false }.needs_master());
    }
}
