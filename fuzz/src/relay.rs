//! The relay scanner (`protocol::relay`) and the response tracker under it, driven the way
//! the session drives them: server bytes arrive in chunks, the ready bytes are forwarded,
//! OKs with session state are taken whole.

use kohaproxy_proxy::protocol::relay::{Relay, Scan};
use kohaproxy_proxy::protocol::response::ResponseTracker;
use kohaproxy_proxy::protocol::track::StateOk;
use kohaproxy_proxy::protocol::{Caps, HEADER_LEN};

/// How one run over a server stream ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// The command has no response.
    NoResponse,
    /// The response ended after this many bytes.
    Done(usize),
    /// The stream ran out with this many bytes forwarded or taken.
    Truncated(usize),
    /// The scanner refused a packet.
    Malformed,
    /// An OK with session state did not parse (the session drops the connection).
    BadStateOk,
}

/// What one run saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    end: End,
    /// LOCAL INFILE requests and held OKs, by where they start.
    events: Vec<(usize, Scan)>,
    status: Option<u16>,
    failed: bool,
}

/// Input: a command byte, a flags byte (bit 0: DEPRECATE_EOF, bit 1: hold OKs with
/// session state), a chunk size byte, then the server's bytes. The stream is scanned as
/// it would arrive in chunks of that size, and again in one piece: both runs must agree,
/// and no scan may claim more bytes than it was given.
pub fn relay(data: &[u8]) {
    let ([cmd, flags, chunk], stream) = crate::prefix::<3>(data);
    let mut caps = Caps::PROTOCOL_41 | Caps::SESSION_TRACK | Caps::MULTI_RESULTS;
    if flags & 1 != 0 {
        caps |= Caps::DEPRECATE_EOF;
    }
    let caps = Caps(caps);
    let hold = flags & 2 != 0;
    let chunk = usize::from(chunk % 64) + 1;
    let whole = run(cmd, caps, hold, stream, stream.len().max(1));
    let chunked = run(cmd, caps, hold, stream, chunk);
    assert_eq!(whole, chunked, "chunks of {chunk} bytes change the outcome");
}

fn run(cmd: u8, caps: Caps, hold: bool, stream: &[u8], chunk: usize) -> Outcome {
    let Some(tracker) = ResponseTracker::for_command(cmd, caps) else {
        return Outcome {
            end: End::NoResponse,
            events: Vec::new(),
            status: None,
            failed: false,
        };
    };
    let mut relay = if hold {
        Relay::holding_state(tracker)
    } else {
        Relay::new(tracker)
    };
    let mut events = Vec::new();
    // stream[..start] is forwarded or taken; stream[start..fed] is buffered.
    let (mut start, mut fed) = (0usize, 0usize);
    let mut holding: Option<usize> = None;
    let mut rounds = 0usize;
    let end = loop {
        rounds += 1;
        assert!(
            rounds <= 4 * stream.len() + 16,
            "the relay makes no progress"
        );
        if let Some(len) = holding {
            if fed - start < len {
                if fed == stream.len() {
                    break End::Truncated(start);
                }
                fed = (fed + chunk).min(stream.len());
                continue;
            }
            if StateOk::parse(&stream[start + HEADER_LEN..start + len]).is_err() {
                break End::BadStateOk;
            }
            start += len;
            holding = None;
            continue;
        }
        let buf = &stream[start..fed];
        let Ok((n, scan)) = relay.scan(buf) else {
            break End::Malformed;
        };
        assert!(n <= buf.len(), "scan claimed {n} of {} bytes", buf.len());
        start += n;
        match scan {
            Scan::NeedMore => {
                if fed == stream.len() {
                    break End::Truncated(start);
                }
                fed = (fed + chunk).min(stream.len());
            }
            Scan::Done => {
                assert!(relay.tracker().is_done());
                break End::Done(start);
            }
            Scan::LocalInfile => events.push((start, scan)),
            Scan::StateOk(len) => {
                assert!(hold && len >= HEADER_LEN);
                assert!(relay.tracker().state_ok());
                events.push((start, scan));
                holding = Some(len);
            }
        }
    };
    Outcome {
        end,
        events,
        status: relay.tracker().status(),
        failed: relay.tracker().failed(),
    }
}
