//! Finds how much of a server's buffered output can be forwarded to the client, without
//! holding whole packets: a packet's header and first bytes are classified by the
//! [`ResponseTracker`], and its body is streamed through as it arrives. A 20 MiB row
//! therefore costs no 20 MiB buffer, and a small result costs one read and one write.

use super::response::{ResponseTracker, Step, PEEK};
use super::{payload_len, Malformed, HEADER_LEN, MAX_PAYLOAD};

/// Outcome of one scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Forward the ready bytes, then read more from the server.
    NeedMore,
    /// Forward the ready bytes: the LOCAL INFILE request is complete, relay the client's file.
    LocalInfile,
    /// Forward the ready bytes; the next packet, of this many bytes with its header, is an
    /// OK carrying session state: take it whole (to learn from it and show the client
    /// what it tracks), then scan on.
    StateOk(usize),
    /// Forward the ready bytes: they end the response.
    Done,
}

/// Scans one response as it arrives.
#[derive(Debug, Clone)]
pub struct Relay {
    tracker: ResponseTracker,
    /// Body bytes of the current packet not yet passed.
    skip: usize,
    /// The current packet is 16 MiB - 1 long: the next one continues its message.
    continuation: bool,
    /// The step the current packet produced, acted on once its body has passed.
    pending: Option<Step>,
    /// Hand OKs with session state to the caller instead of forwarding them.
    hold_state: bool,
    /// Sequence id of the last packet header scanned.
    seq: u8,
}

impl Relay {
    /// A relay for the response that `tracker` follows.
    pub fn new(tracker: ResponseTracker) -> Self {
        Relay {
            tracker,
            skip: 0,
            continuation: false,
            pending: None,
            hold_state: false,
            seq: 0,
        }
    }

    /// A relay that stops at every OK carrying session state ([`Scan::StateOk`]).
    pub fn holding_state(tracker: ResponseTracker) -> Self {
        Relay {
            hold_state: true,
            ..Relay::new(tracker)
        }
    }

    /// Sequence id of the last packet header scanned: after [`Scan::LocalInfile`], the
    /// request's, so the client's file packets are numbered from the next one.
    pub fn last_seq(&self) -> u8 {
        self.seq
    }

    /// The tracker (for the status flags once done).
    pub fn tracker(&self) -> &ResponseTracker {
        &self.tracker
    }

    /// Scans `buf`, which starts at the first byte not yet forwarded. Returns how many
    /// bytes from its start may be forwarded now, and what to do next.
    pub fn scan(&mut self, buf: &[u8]) -> Result<(usize, Scan), Malformed> {
        let mut i = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(buf.len() - i);
                i += n;
                self.skip -= n;
                if self.skip > 0 {
                    return Ok((i, Scan::NeedMore));
                }
            }
            if !self.continuation {
                match self.pending.take() {
                    Some(Step::Done) => return Ok((i, Scan::Done)),
                    Some(Step::LocalInfile) => return Ok((i, Scan::LocalInfile)),
                    _ => {}
                }
            }
            let rest = &buf[i..];
            if rest.len() < HEADER_LEN {
                return Ok((i, Scan::NeedMore));
            }
            let len = payload_len(rest);
            self.seq = rest[3];
            if self.continuation {
                self.continuation = len == MAX_PAYLOAD;
                i += HEADER_LEN;
                self.skip = len;
                continue;
            }
            let need = len.min(PEEK);
            if rest.len() < HEADER_LEN + need {
                return Ok((i, Scan::NeedMore));
            }
            let step = self
                .tracker
                .on_packet(len, &rest[HEADER_LEN..HEADER_LEN + need])?;
            self.continuation = len == MAX_PAYLOAD;
            if step != Step::More {
                self.pending = Some(step);
            }
            if self.hold_state && self.tracker.state_ok() && !self.continuation {
                return Ok((i, Scan::StateOk(HEADER_LEN + len)));
            }
            i += HEADER_LEN;
            self.skip = len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packets::{ok_packet, packet};
    use crate::protocol::{command, Caps};

    const MODERN: Caps = Caps(Caps::PROTOCOL_41 | Caps::DEPRECATE_EOF);

    fn result_set(row: &[u8]) -> Vec<u8> {
        let mut out = packet(1, &[1]);
        out.extend(packet(2, b"\x03def\x00\x00\x00\x01b\x00\x0c"));
        // A row may span several packets.
        let mut seq = 3u8;
        let mut rest = row;
        loop {
            let n = rest.len().min(MAX_PAYLOAD);
            out.extend(packet(seq, &rest[..n]));
            seq = seq.wrapping_add(1);
            rest = &rest[n..];
            if n < MAX_PAYLOAD {
                break;
            }
        }
        let mut end = ok_packet(seq, 0, 2);
        end[4] = 0xfe;
        out.extend(end);
        out
    }

    /// Feeds `bytes` in chunks of `chunk`, as reads from a socket would, and returns what
    /// was forwarded and the final outcome.
    fn relay_in_chunks(bytes: &[u8], chunk: usize) -> (Vec<u8>, Scan) {
        let tracker = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        let mut relay = Relay::new(tracker);
        let mut buffered: Vec<u8> = Vec::new();
        let mut forwarded = Vec::new();
        for piece in bytes.chunks(chunk) {
            buffered.extend_from_slice(piece);
            let (n, scan) = relay.scan(&buffered).unwrap();
            forwarded.extend(buffered.drain(..n));
            if scan != Scan::NeedMore {
                assert!(buffered.is_empty(), "bytes after the end of the response");
                return (forwarded, scan);
            }
        }
        (forwarded, Scan::NeedMore)
    }

    #[test]
    fn small_result_passes_whole_whatever_the_read_sizes() {
        let bytes = result_set(b"\x05hello");
        for chunk in [1, 2, 3, 5, 7, 64, bytes.len()] {
            let (out, scan) = relay_in_chunks(&bytes, chunk);
            assert_eq!(scan, Scan::Done, "chunk {chunk}");
            assert_eq!(out, bytes, "chunk {chunk}");
        }
    }

    #[test]
    fn a_row_longer_than_16_mib_streams_through() {
        let mut row = vec![0xfe];
        row.extend_from_slice(&(20u64 << 20).to_le_bytes());
        row.resize(9 + (20 << 20), 0xab);
        let bytes = result_set(&row);
        let (out, scan) = relay_in_chunks(&bytes, 65536);
        assert_eq!(scan, Scan::Done);
        assert_eq!(out.len(), bytes.len());
        assert!(out == bytes);
    }

    #[test]
    fn a_row_of_exactly_16_mib_minus_one_is_followed_by_an_empty_packet() {
        let mut row = vec![0xfd];
        let n = MAX_PAYLOAD - 4;
        row.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        row.resize(MAX_PAYLOAD, b'x');
        // result_set adds the empty continuation packet because n == MAX_PAYLOAD.
        let bytes = result_set(&row);
        let (out, scan) = relay_in_chunks(&bytes, 1 << 20);
        assert_eq!(scan, Scan::Done);
        assert!(out == bytes);
    }

    #[test]
    fn an_ok_with_session_state_is_held_whole() {
        let tracker = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        let mut relay = Relay::holding_state(tracker);
        let ok = b"\x00\x01\x00\x02\x40\x00\x00\x00\x12\x00\x10\x09last_gtid\x050-1-2";
        let bytes = packet(1, ok);
        assert_eq!(relay.scan(&bytes[..3]).unwrap(), (0, Scan::NeedMore));
        assert_eq!(relay.scan(&bytes).unwrap(), (0, Scan::StateOk(bytes.len())));
        // The caller took the packet: the scan goes on after it.
        assert_eq!(relay.scan(&[]).unwrap(), (0, Scan::Done));
        // A plain OK is not held.
        let tracker = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        let mut relay = Relay::holding_state(tracker);
        let plain = ok_packet(1, 0, 2);
        assert_eq!(relay.scan(&plain).unwrap(), (plain.len(), Scan::Done));
    }

    #[test]
    fn local_infile_request_stops_the_scan() {
        let bytes = packet(1, b"\xfbdata.csv");
        let (out, scan) = relay_in_chunks(&bytes, 4);
        assert_eq!(scan, Scan::LocalInfile);
        assert_eq!(out, bytes);
        let mut relay = Relay::new(ResponseTracker::for_command(command::QUERY, MODERN).unwrap());
        assert_eq!(
            relay.scan(&packet(3, b"\xfbx")).unwrap(),
            (6, Scan::LocalInfile)
        );
        assert_eq!(relay.last_seq(), 3, "the client's file starts at 4");
    }
}
