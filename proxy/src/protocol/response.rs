//! Follows a server's response to one command, packet by packet, to find where it ends.
//!
//! The tracker sees only each packet's length and first bytes (`PEEK` at most): enough to
//! tell OK, ERR, EOF, LOCAL INFILE and column counts apart and to read status flags. The
//! packets themselves are forwarded untouched by the caller. Continuation packets of a
//! message longer than 16 MiB - 1 must not be passed in: only a message's first packet.

use super::packets::{
    self, err_code, is_result_terminator, ok_status, terminator_status, EOF, ERR, LOCAL_INFILE, OK,
};
use super::wire::read_lenenc;
use super::{command, status, Caps, Malformed};

/// How many payload bytes of a packet the tracker needs to classify it (or the whole
/// payload if shorter).
pub const PEEK: usize = 64;

/// What the caller does after a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The response goes on: forward this packet and read the next.
    More,
    /// The server asked for a LOCAL INFILE: forward this packet, then relay the client's
    /// file packets to the server up to and including an empty packet, then read on.
    LocalInfile,
    /// This packet ends the response.
    Done,
}

/// Where in a response the tracker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The first packet of a (possibly further) result: OK, ERR, LOCAL INFILE or a column count.
    Result,
    /// Column (or parameter) definitions, then what follows them.
    Defs { remaining: u64, then: AfterDefs },
    /// The classic EOF after definitions.
    DefsEof { then: AfterDefs },
    /// Rows up to a terminator or ERR.
    Rows,
    /// COM_STMT_PREPARE's first packet: its OK (with statement id and counts) or ERR.
    PrepareOk,
    /// Any one packet.
    Single,
    /// Packets up to an EOF or ERR (COM_FIELD_LIST).
    UntilTerminator,
    /// Finished.
    Done,
}

/// What follows a block of definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterDefs {
    /// Rows of a result set.
    Rows,
    /// The column definitions of a prepared statement.
    PrepareColumns(u16),
    /// Nothing: the response ends.
    Done,
}

/// Tracks one command's response.
#[derive(Debug, Clone)]
pub struct ResponseTracker {
    caps: Caps,
    state: State,
    status: Option<u16>,
    /// The last packet was an OK (or an OK ending rows) with session state.
    state_ok: bool,
    /// The response ended with an error.
    failed: bool,
}

impl ResponseTracker {
    /// A tracker for the response to command byte `cmd` on a connection that negotiated
    /// `caps`, or `None` if the command has no response (COM_STMT_CLOSE,
    /// COM_STMT_SEND_LONG_DATA, COM_QUIT).
    pub fn for_command(cmd: u8, caps: Caps) -> Option<Self> {
        let state = match cmd {
            // COM_PROCESS_INFO is answered with a result set too: tracked as one packet,
            // the rest of the rows would be taken for the next command's answer and the
            // session would wait forever for a response that already went by.
            command::QUERY
            | command::STMT_EXECUTE
            | command::STMT_BULK_EXECUTE
            | command::PROCESS_INFO => State::Result,
            command::STMT_PREPARE => State::PrepareOk,
            command::STMT_FETCH => State::Rows,
            command::FIELD_LIST => State::UntilTerminator,
            command::STMT_CLOSE | command::STMT_SEND_LONG_DATA | command::QUIT => return None,
            _ => State::Single,
        };
        Some(ResponseTracker {
            caps,
            state,
            status: None,
            state_ok: false,
            failed: false,
        })
    }

    /// The status flags of the last OK or EOF seen, if any.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// Whether the packet just consumed was an OK carrying session state
    /// (`SESSION_STATE_CHANGED`).
    pub fn state_ok(&self) -> bool {
        self.state_ok
    }

    /// Whether the response ended with an ERR packet.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Whether the response has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes the next packet: its payload length and first `min(len, PEEK)` bytes.
    pub fn on_packet(&mut self, len: usize, head: &[u8]) -> Result<Step, Malformed> {
        let malformed = Malformed { what: "response" };
        let first = head.first().copied();
        self.state_ok = false;
        let step = match self.state {
            State::Done => return Err(malformed),
            State::Single => {
                if first == Some(OK) {
                    self.status = ok_status(head).or(self.status);
                    self.state_ok = self.status.is_some_and(has_state);
                }
                self.finish()
            }
            State::PrepareOk => match first {
                Some(OK) => self.on_prepare_ok(head)?,
                _ => self.on_err(head),
            },
            State::Result => self.on_result_head(head)?,
            State::Defs { remaining, then } => {
                if first == Some(ERR) {
                    return Ok(self.on_err(head));
                }
                self.on_definition(remaining, then)
            }
            State::DefsEof { then } => match first {
                Some(EOF) if len < 9 => {
                    let s = packets::eof_status(head).ok_or(malformed)?;
                    self.status = Some(s);
                    if then == AfterDefs::Rows && s & status::CURSOR_EXISTS != 0 {
                        self.finish()
                    } else {
                        self.enter(then)
                    }
                }
                Some(ERR) => self.on_err(head),
                _ => return Err(malformed),
            },
            State::Rows => match first {
                Some(f) if is_result_terminator(f, len, self.caps) => {
                    let s = terminator_status(head, self.caps).ok_or(malformed)?;
                    self.state_ok = self.caps.has(Caps::DEPRECATE_EOF) && has_state(s);
                    self.after_result(s)
                }
                Some(ERR) => self.on_err(head),
                Some(_) => Step::More,
                None => return Err(malformed),
            },
            State::UntilTerminator => match first {
                Some(f) if is_result_terminator(f, len, self.caps) => {
                    self.status = terminator_status(head, self.caps).or(self.status);
                    self.finish()
                }
                Some(ERR) => self.on_err(head),
                _ => Step::More,
            },
        };
        Ok(step)
    }

    /// COM_STMT_PREPARE's OK: parameter definitions follow, then column definitions.
    fn on_prepare_ok(&mut self, head: &[u8]) -> Result<Step, Malformed> {
        // 0x00, statement id (4), columns (2), params (2), filler, warnings.
        let b = head.get(5..9).ok_or(Malformed { what: "response" })?;
        let columns = u16::from_le_bytes([b[0], b[1]]);
        let params = u16::from_le_bytes([b[2], b[3]]);
        let then = AfterDefs::PrepareColumns(columns);
        Ok(if params > 0 {
            self.state = State::Defs {
                remaining: params as u64,
                then,
            };
            Step::More
        } else {
            self.enter(then)
        })
    }

    /// The first packet of a result: OK, ERR, a LOCAL INFILE request, or a column count.
    fn on_result_head(&mut self, head: &[u8]) -> Result<Step, Malformed> {
        let malformed = Malformed { what: "response" };
        Ok(match head.first().copied() {
            Some(OK) => {
                let s = ok_status(head).ok_or(malformed)?;
                self.state_ok = has_state(s);
                self.after_result(s)
            }
            Some(ERR) => self.on_err(head),
            Some(LOCAL_INFILE) => Step::LocalInfile,
            Some(_) => {
                let (columns, _) = read_lenenc(head).ok_or(malformed)?;
                if columns == 0 {
                    return Err(malformed);
                }
                self.state = State::Defs {
                    remaining: columns,
                    then: AfterDefs::Rows,
                };
                Step::More
            }
            None => return Err(malformed),
        })
    }

    /// One column or parameter definition, `remaining` of them left counting this one.
    fn on_definition(&mut self, remaining: u64, then: AfterDefs) -> Step {
        if remaining > 1 {
            self.state = State::Defs {
                remaining: remaining - 1,
                then,
            };
            Step::More
        } else if self.caps.has(Caps::DEPRECATE_EOF) {
            self.enter(then)
        } else {
            self.state = State::DefsEof { then };
            Step::More
        }
    }

    /// After the OK or terminator ending one result: another follows or the response ends.
    fn after_result(&mut self, s: u16) -> Step {
        self.status = Some(s);
        if s & status::MORE_RESULTS_EXISTS != 0 {
            self.state = State::Result;
            Step::More
        } else {
            self.finish()
        }
    }

    /// An ERR ends the response, except MariaDB's progress reports (error number 0xffff).
    fn on_err(&mut self, head: &[u8]) -> Step {
        if err_code(head) == Some(0xffff) {
            Step::More
        } else {
            self.failed = true;
            self.finish()
        }
    }

    fn enter(&mut self, then: AfterDefs) -> Step {
        match then {
            AfterDefs::Rows => {
                self.state = State::Rows;
                Step::More
            }
            AfterDefs::PrepareColumns(0) | AfterDefs::Done => self.finish(),
            AfterDefs::PrepareColumns(n) => {
                self.state = State::Defs {
                    remaining: n as u64,
                    then: AfterDefs::Done,
                };
                Step::More
            }
        }
    }

    fn finish(&mut self) -> Step {
        self.state = State::Done;
        Step::Done
    }
}

/// Whether status flags announce session state in the OK.
fn has_state(s: u16) -> bool {
    s & status::SESSION_STATE_CHANGED != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::packets::ok_packet;

    const CLASSIC: Caps = Caps(Caps::PROTOCOL_41);
    const MODERN: Caps = Caps(Caps::PROTOCOL_41 | Caps::DEPRECATE_EOF);

    fn ok(status: u16) -> Vec<u8> {
        ok_packet(1, 0, status)[4..].to_vec()
    }
    fn ok_eof(status: u16) -> Vec<u8> {
        let mut p = ok(status);
        p[0] = EOF;
        p
    }
    fn eof(status: u16) -> Vec<u8> {
        let s = status.to_le_bytes();
        vec![EOF, 0, 0, s[0], s[1]]
    }
    const ERRP: &[u8] = &[ERR, 0x15, 0x04, b'#', b'2', b'8', b'0', b'0', b'0'];

    /// Feeds packets; returns the steps.
    fn feed(t: &mut ResponseTracker, packets: &[&[u8]]) -> Vec<Step> {
        packets
            .iter()
            .map(|p| {
                let head = &p[..p.len().min(PEEK)];
                t.on_packet(p.len(), head).unwrap()
            })
            .collect()
    }

    #[test]
    fn ok_and_err_end_a_query() {
        let mut t = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        assert_eq!(feed(&mut t, &[&ok(status::AUTOCOMMIT)]), [Step::Done]);
        assert_eq!(t.status(), Some(status::AUTOCOMMIT));
        let mut t = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        assert_eq!(feed(&mut t, &[ERRP]), [Step::Done]);
    }

    #[test]
    fn classic_result_set_ends_at_the_second_eof() {
        let mut t = ResponseTracker::for_command(command::QUERY, CLASSIC).unwrap();
        let col: &[u8] = b"\x03def\x00\x00\x00\x01a\x00\x0c";
        let steps = feed(
            &mut t,
            &[
                &[2],
                col,
                col,
                &eof(2),
                b"\x011\x012",
                &[0xfb, 0x01, b'x'],
                &eof(3),
            ],
        );
        assert_eq!(steps.last(), Some(&Step::Done));
        assert!(steps[..steps.len() - 1].iter().all(|s| *s == Step::More));
        assert_eq!(t.status(), Some(3));
    }

    #[test]
    fn deprecate_eof_result_set_ends_at_the_ok() {
        let mut t = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        let steps = feed(&mut t, &[&[1], b"coldef", b"\x01a", &ok_eof(2)]);
        assert_eq!(steps, [Step::More, Step::More, Step::More, Step::Done]);
    }

    #[test]
    fn a_row_that_starts_with_0xfe_in_a_full_packet_is_a_row() {
        let mut t = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        feed(&mut t, &[&[1], b"coldef"]);
        let head = [0xfe, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(
            t.on_packet(crate::protocol::MAX_PAYLOAD, &head),
            Ok(Step::More)
        );
        assert_eq!(feed(&mut t, &[&ok_eof(2)]), [Step::Done]);
    }

    #[test]
    fn multi_results_continue_until_no_more_results_flag() {
        let more = status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS;
        let mut t = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        let steps = feed(
            &mut t,
            &[&ok(more), &[1], b"c", b"\x01a", &ok_eof(more), &ok(2)],
        );
        assert_eq!(steps.last(), Some(&Step::Done));
        assert_eq!(steps.iter().filter(|s| **s == Step::Done).count(), 1);
    }

    #[test]
    fn error_in_the_middle_of_rows_ends_the_response_but_progress_does_not() {
        let mut t = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        let progress: &[u8] = &[ERR, 0xff, 0xff, 1, 2];
        let steps = feed(&mut t, &[progress, &[1], b"c", b"\x01a", ERRP]);
        assert_eq!(
            steps,
            [Step::More, Step::More, Step::More, Step::More, Step::Done]
        );
    }

    #[test]
    fn local_infile_then_ok() {
        let mut t = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        assert_eq!(feed(&mut t, &[b"\xfb/tmp/x.csv"]), [Step::LocalInfile]);
        assert_eq!(feed(&mut t, &[&ok(2)]), [Step::Done]);
    }

    #[test]
    fn prepare_reads_params_then_columns() {
        let prep = |cols: u16, params: u16| {
            let mut p = vec![0, 1, 0, 0, 0];
            p.extend_from_slice(&cols.to_le_bytes());
            p.extend_from_slice(&params.to_le_bytes());
            p.extend_from_slice(&[0, 0, 0]);
            p
        };
        let mut t = ResponseTracker::for_command(command::STMT_PREPARE, CLASSIC).unwrap();
        let steps = feed(&mut t, &[&prep(1, 2), b"p", b"p", &eof(2), b"c", &eof(2)]);
        assert_eq!(steps.last(), Some(&Step::Done));
        assert_eq!(steps.len(), 6);
        let mut t = ResponseTracker::for_command(command::STMT_PREPARE, MODERN).unwrap();
        assert_eq!(
            feed(&mut t, &[&prep(1, 1), b"p", b"c"]),
            [Step::More, Step::More, Step::Done]
        );
        let mut t = ResponseTracker::for_command(command::STMT_PREPARE, MODERN).unwrap();
        assert_eq!(feed(&mut t, &[&prep(0, 0)]), [Step::Done]);
        let mut t = ResponseTracker::for_command(command::STMT_PREPARE, MODERN).unwrap();
        assert_eq!(feed(&mut t, &[ERRP]), [Step::Done]);
    }

    #[test]
    fn binary_rows_start_with_zero_and_cursor_ends_after_metadata() {
        let mut t = ResponseTracker::for_command(command::STMT_EXECUTE, MODERN).unwrap();
        let steps = feed(&mut t, &[&[1], b"c", &[0, 0, 1, 2], &ok_eof(2)]);
        assert_eq!(steps.last(), Some(&Step::Done));
        let mut t = ResponseTracker::for_command(command::STMT_EXECUTE, CLASSIC).unwrap();
        let steps = feed(&mut t, &[&[1], b"c", &eof(status::CURSOR_EXISTS)]);
        assert_eq!(steps, [Step::More, Step::More, Step::Done]);
        let mut t = ResponseTracker::for_command(command::STMT_FETCH, CLASSIC).unwrap();
        assert_eq!(
            feed(&mut t, &[&[0, 0], &eof(0x80)]),
            [Step::More, Step::Done]
        );
    }

    #[test]
    fn process_info_is_answered_with_a_result_set() {
        // What MariaDB 10.11 sends for COM_PROCESS_INFO (9 columns, shortened to 2 here).
        let col: &[u8] = b"\x03def\x00\x00\x00\x02Id\x00\x0c\x3f\x00";
        let row: &[u8] = b"\x0216\x04koha";
        let mut t = ResponseTracker::for_command(command::PROCESS_INFO, CLASSIC).unwrap();
        assert_eq!(
            feed(&mut t, &[&[2], col, col, &eof(2), row, row, &eof(2)]),
            [
                Step::More,
                Step::More,
                Step::More,
                Step::More,
                Step::More,
                Step::More,
                Step::Done
            ]
        );
        let mut t = ResponseTracker::for_command(command::PROCESS_INFO, MODERN).unwrap();
        assert_eq!(
            feed(&mut t, &[&[1], col, row, &ok_eof(2)]),
            [Step::More, Step::More, Step::More, Step::Done]
        );
        let mut t = ResponseTracker::for_command(command::PROCESS_INFO, MODERN).unwrap();
        assert_eq!(feed(&mut t, &[ERRP]), [Step::Done], "without PROCESS");
    }

    #[test]
    fn simple_commands_and_no_response_commands() {
        for cmd in [
            command::PING,
            command::INIT_DB,
            command::RESET_CONNECTION,
            command::STATISTICS,
        ] {
            let mut t = ResponseTracker::for_command(cmd, MODERN).unwrap();
            assert_eq!(feed(&mut t, &[b"Uptime: 5"]), [Step::Done]);
        }
        for cmd in [
            command::STMT_CLOSE,
            command::STMT_SEND_LONG_DATA,
            command::QUIT,
        ] {
            assert!(ResponseTracker::for_command(cmd, MODERN).is_none());
        }
        let mut t = ResponseTracker::for_command(command::FIELD_LIST, CLASSIC).unwrap();
        assert_eq!(
            feed(&mut t, &[b"c", b"c", &eof(2)]),
            [Step::More, Step::More, Step::Done]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut t = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        assert!(t.on_packet(0, &[]).is_err());
        let mut t = ResponseTracker::for_command(command::QUERY, MODERN).unwrap();
        assert!(t.on_packet(1, &[0xfc]).is_err());
        let mut t = ResponseTracker::for_command(command::QUERY, CLASSIC).unwrap();
        feed(&mut t, &[&[1], b"c"]);
        assert!(t.on_packet(1, b"x").is_err());
    }
}
