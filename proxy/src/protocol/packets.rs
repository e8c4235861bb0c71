//! Generic response packets: OK, ERR and EOF, as the proxy reads and writes them.

use super::wire::{put_lenenc, read_lenenc};
use super::{Caps, HEADER_LEN};

/// First byte of an OK packet.
pub const OK: u8 = 0x00;
/// First byte of an EOF packet (and of an OK that ends a result set with DEPRECATE_EOF).
pub const EOF: u8 = 0xfe;
/// First byte of an ERR packet.
pub const ERR: u8 = 0xff;
/// First byte of a LOCAL INFILE request.
pub const LOCAL_INFILE: u8 = 0xfb;

/// The status flags of an OK packet payload (`0x00`/`0xfe` header, affected rows,
/// last insert id, status, warnings), or `None` if it is too short to hold them.
#[inline]
pub fn ok_status(payload: &[u8]) -> Option<u16> {
    let (_, a) = read_lenenc(payload.get(1..)?)?;
    let (_, b) = read_lenenc(payload.get(1 + a..)?)?;
    let at = 1 + a + b;
    let s = payload.get(at..at + 2)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

/// The status flags of a classic EOF packet payload (`0xfe`, warnings, status).
#[inline]
pub fn eof_status(payload: &[u8]) -> Option<u16> {
    let s = payload.get(3..5)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

/// The error number of an ERR packet payload.
#[inline]
pub fn err_code(payload: &[u8]) -> Option<u16> {
    let s = payload.get(1..3)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

/// Whether a packet of `len` payload bytes starting with 0xfe ends a result set: a
/// classic EOF is shorter than 9 bytes; with DEPRECATE_EOF the OK that replaces it is any
/// 0xfe packet shorter than a full 16 MiB packet (a row cannot start with 0xfe otherwise).
#[inline]
pub fn is_result_terminator(first: u8, len: usize, caps: Caps) -> bool {
    first == EOF
        && if caps.has(Caps::DEPRECATE_EOF) {
            len < super::MAX_PAYLOAD
        } else {
            len < 9
        }
}

/// Status flags of a terminator packet (EOF or OK-as-EOF).
#[inline]
pub fn terminator_status(payload: &[u8], caps: Caps) -> Option<u16> {
    if caps.has(Caps::DEPRECATE_EOF) {
        ok_status(payload)
    } else {
        eof_status(payload)
    }
}

/// A MySQL error the proxy sends itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    /// Error number, as MariaDB uses it (1045, 1153, ...).
    pub code: u16,
    /// Five-character SQLSTATE.
    pub state: [u8; 5],
    /// Message text.
    pub message: String,
}

impl ErrPacket {
    /// An error with the given number, SQLSTATE and message.
    pub fn new(code: u16, state: &str, message: impl Into<String>) -> Self {
        let mut s = *b"HY000";
        if state.len() == 5 {
            s.copy_from_slice(state.as_bytes());
        }
        ErrPacket {
            code,
            state: s,
            message: message.into(),
        }
    }

    /// The whole packet (header included) with sequence id `seq`.
    pub fn to_packet(&self, seq: u8) -> Vec<u8> {
        let mut p = Vec::with_capacity(HEADER_LEN + 9 + self.message.len());
        p.extend_from_slice(&[0, 0, 0, seq, ERR]);
        p.extend_from_slice(&self.code.to_le_bytes());
        p.push(b'#');
        p.extend_from_slice(&self.state);
        p.extend_from_slice(self.message.as_bytes());
        set_header(&mut p, seq);
        p
    }
}

/// A whole OK packet with sequence id `seq`.
pub fn ok_packet(seq: u8, affected_rows: u64, status: u16) -> Vec<u8> {
    let mut p = vec![0, 0, 0, seq, OK];
    put_lenenc(&mut p, affected_rows);
    put_lenenc(&mut p, 0);
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    set_header(&mut p, seq);
    p
}

/// Wraps a payload of at most `MAX_PAYLOAD` bytes into a packet with sequence id `seq`.
pub fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(HEADER_LEN + payload.len());
    p.extend_from_slice(&[0, 0, 0, seq]);
    p.extend_from_slice(payload);
    set_header(&mut p, seq);
    p
}

/// Writes the length (of everything after the header) and `seq` into `p[..4]`.
fn set_header(p: &mut [u8], seq: u8) {
    let len = (p.len() - HEADER_LEN) as u32;
    debug_assert!(len as usize <= super::MAX_PAYLOAD);
    p[..3].copy_from_slice(&len.to_le_bytes()[..3]);
    p[3] = seq;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err_packet_is_what_mariadb_sends_for_access_denied() {
        let e = ErrPacket::new(
            1045,
            "28000",
            "Access denied for user 'koha'@'127.0.0.1' (using password: YES)",
        );
        let p = e.to_packet(2);
        assert_eq!(super::super::payload_len(&p) + 4, p.len());
        assert_eq!(p[3], 2);
        assert_eq!(&p[4..7], &[0xff, 0x15, 0x04]);
        assert_eq!(&p[7..13], b"#28000");
        assert_eq!(err_code(&p[4..]), Some(1045));
    }

    #[test]
    fn ok_status_reads_past_wide_lengths() {
        let p = ok_packet(1, 70_000, 0x4003);
        assert_eq!(ok_status(&p[4..]), Some(0x4003));
        assert_eq!(ok_status(&p[4..8]), None);
    }

    #[test]
    fn terminators_depend_on_deprecate_eof() {
        let classic = Caps(0);
        let modern = Caps(Caps::DEPRECATE_EOF);
        assert!(is_result_terminator(EOF, 5, classic));
        assert!(!is_result_terminator(EOF, 9, classic));
        assert!(is_result_terminator(EOF, 12, modern));
        assert!(!is_result_terminator(
            EOF,
            super::super::MAX_PAYLOAD,
            modern
        ));
        assert!(!is_result_terminator(0x00, 5, modern));
        assert_eq!(eof_status(&[0xfe, 0, 0, 0x0a, 0]), Some(0x000a));
    }
}
