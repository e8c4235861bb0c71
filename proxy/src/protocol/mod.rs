//! The MySQL/MariaDB wire protocol, as far as the proxy needs it.
//!
//! Rules of the codec, stated once:
//! - A packet is a 3-byte little-endian payload length, a 1-byte sequence id, then the
//!   payload. A payload of exactly `MAX_PAYLOAD` (16 MiB - 1) bytes is continued by the
//!   next packet; the logical message ends with the first shorter packet (possibly empty).
//! - Decoders never panic on peer bytes: they return `Err(Malformed)` on short input.
//! - The data path decodes only the first bytes of a packet (its type, lengths and
//!   status flags); everything else is forwarded as it arrived.

pub mod caps;
pub mod handshake;
pub mod packets;
pub mod relay;
pub mod response;
pub mod track;
pub mod wire;

pub use caps::Caps;

/// Largest payload of one physical packet; a payload this long is continued by the next.
pub const MAX_PAYLOAD: usize = 0xff_ffff;

/// Length of a packet header (payload length + sequence id).
pub const HEADER_LEN: usize = 4;

/// A peer sent bytes that do not form the packet expected at this point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what} packet")]
pub struct Malformed {
    /// Which packet was being read.
    pub what: &'static str,
}

/// Reads the payload length from a packet header.
#[inline]
pub fn payload_len(header: &[u8]) -> usize {
    header[0] as usize | (header[1] as usize) << 8 | (header[2] as usize) << 16
}

/// Command bytes (the first payload byte of a client's command packet).
pub mod command {
    /// COM_QUIT: close the connection, no response.
    pub const QUIT: u8 = 0x01;
    /// COM_INIT_DB: change the default schema.
    pub const INIT_DB: u8 = 0x02;
    /// COM_QUERY: a text-protocol statement.
    pub const QUERY: u8 = 0x03;
    /// COM_FIELD_LIST: column definitions of a table (deprecated, still used).
    pub const FIELD_LIST: u8 = 0x04;
    /// COM_STATISTICS: a human-readable status string.
    pub const STATISTICS: u8 = 0x09;
    /// COM_PROCESS_INFO: the process list, answered with a whole result set (as SHOW
    /// PROCESSLIST).
    pub const PROCESS_INFO: u8 = 0x0a;
    /// COM_PROCESS_KILL: kill a connection by id (deprecated form of KILL).
    pub const PROCESS_KILL: u8 = 0x0c;
    /// COM_PING.
    pub const PING: u8 = 0x0e;
    /// COM_CHANGE_USER: re-authenticate as another user.
    pub const CHANGE_USER: u8 = 0x11;
    /// COM_BINLOG_DUMP: replication stream (not proxied).
    pub const BINLOG_DUMP: u8 = 0x12;
    /// COM_REGISTER_SLAVE (not proxied).
    pub const REGISTER_SLAVE: u8 = 0x15;
    /// COM_STMT_PREPARE.
    pub const STMT_PREPARE: u8 = 0x16;
    /// COM_STMT_EXECUTE.
    pub const STMT_EXECUTE: u8 = 0x17;
    /// COM_STMT_SEND_LONG_DATA: no response.
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    /// COM_STMT_CLOSE: no response.
    pub const STMT_CLOSE: u8 = 0x19;
    /// COM_STMT_RESET.
    pub const STMT_RESET: u8 = 0x1a;
    /// COM_SET_OPTION: multi-statements on/off.
    pub const SET_OPTION: u8 = 0x1b;
    /// COM_STMT_FETCH: rows from an open cursor.
    pub const STMT_FETCH: u8 = 0x1c;
    /// COM_BINLOG_DUMP_GTID (not proxied).
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    /// COM_RESET_CONNECTION: reset session state, keep the login.
    pub const RESET_CONNECTION: u8 = 0x1f;
    /// MariaDB COM_STMT_BULK_EXECUTE: one statement, many parameter rows.
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;
}

/// Server status flags (in OK and EOF packets).
pub mod status {
    /// A transaction is open.
    pub const IN_TRANS: u16 = 0x0001;
    /// Autocommit is on.
    pub const AUTOCOMMIT: u16 = 0x0002;
    /// Another result set follows this one.
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    /// A read-only cursor is open (COM_STMT_EXECUTE with a cursor sends no rows yet).
    pub const CURSOR_EXISTS: u16 = 0x0040;
    /// The last row of a cursor was sent.
    pub const LAST_ROW_SENT: u16 = 0x0080;
    /// The transaction is read-only.
    pub const IN_TRANS_READONLY: u16 = 0x2000;
    /// Session state changed (session tracking data follows in the OK).
    pub const SESSION_STATE_CHANGED: u16 = 0x4000;
}
