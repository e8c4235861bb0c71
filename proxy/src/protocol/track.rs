//! Session state in OK packets (CLIENT_SESSION_TRACK): reading what changed, and writing
//! the OK again with only the changes a client asked to be told about.
//!
//! The proxy's own master connections track every system variable (`'*'`), the schema and
//! `last_gtid`: that is how it learns a session's state and each write's GTID from the
//! server instead of guessing from SQL. A client is shown exactly what its own tracking
//! settings would show on a direct connection.
//!
//! Layout after the status flags and warnings: the info text (lenenc, present when not
//! empty or when state follows), then, when `SESSION_STATE_CHANGED` is set, a lenenc
//! length and the entries, each a type byte, a lenenc length and its data.

use super::status::SESSION_STATE_CHANGED;
use super::wire::{put_lenenc, Reader};
use super::Malformed;

/// Entry type: a system variable's new value (data: lenenc name, lenenc value).
pub const SYSTEM_VARIABLES: u8 = 0;
/// Entry type: the current schema (data: lenenc name).
pub const SCHEMA: u8 = 1;

/// An OK packet payload that carries session state, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateOk<'a> {
    /// Header byte, affected rows and last insert id, as received.
    pub head: &'a [u8],
    /// Status flags.
    pub status: u16,
    /// Warning count.
    pub warnings: u16,
    /// Info text ("Rows matched: ..."), possibly empty.
    pub info: &'a [u8],
    /// The entries (empty when the flag is not set).
    pub state: &'a [u8],
}

/// One session state entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// A system variable and its new value, as text.
    Variable {
        /// Lower-case variable name.
        name: &'a [u8],
        /// New value.
        value: &'a [u8],
    },
    /// The new current schema.
    Schema(&'a [u8]),
    /// Another kind of entry (state change, transaction state, ...), not interpreted.
    Other(u8),
}

impl<'a> StateOk<'a> {
    /// Splits an OK payload (header 0x00, or 0xfe for an OK that ends a result set).
    pub fn parse(payload: &'a [u8]) -> Result<StateOk<'a>, Malformed> {
        let mut r = Reader::new(payload, "OK");
        r.u8()?;
        r.lenenc()?;
        r.lenenc()?;
        let head = &payload[..payload.len() - r.remaining().len()];
        let status = r.u16()?;
        let warnings = r.u16()?;
        let mut info: &[u8] = &[];
        let mut state: &[u8] = &[];
        if !r.is_empty() {
            info = r.lenenc_bytes()?;
            if status & SESSION_STATE_CHANGED != 0 && !r.is_empty() {
                state = r.lenenc_bytes()?;
            }
        }
        Ok(StateOk {
            head,
            status,
            warnings,
            info,
            state,
        })
    }

    /// The entries, in order, each with its raw bytes (type, length and data).
    pub fn entries(&self) -> Entries<'a> {
        Entries { rest: self.state }
    }

    /// Writes this OK again with only the entries `keep` accepts: the state flag is
    /// cleared when none is left, and the info text is written only when it is not
    /// empty or state follows (as the server does).
    pub fn write_filtered(
        &self,
        out: &mut Vec<u8>,
        mut keep: impl FnMut(&Change<'_>) -> bool,
    ) -> Result<(), Malformed> {
        let mut kept: Vec<&[u8]> = Vec::new();
        for entry in self.entries() {
            let (change, raw) = entry?;
            if keep(&change) {
                kept.push(raw);
            }
        }
        let any = !kept.is_empty();
        out.extend_from_slice(self.head);
        let status = if any {
            self.status | SESSION_STATE_CHANGED
        } else {
            self.status & !SESSION_STATE_CHANGED
        };
        out.extend_from_slice(&status.to_le_bytes());
        out.extend_from_slice(&self.warnings.to_le_bytes());
        if any || !self.info.is_empty() {
            put_lenenc(out, self.info.len() as u64);
            out.extend_from_slice(self.info);
        }
        if any {
            let total: usize = kept.iter().map(|k| k.len()).sum();
            put_lenenc(out, total as u64);
            for k in kept {
                out.extend_from_slice(k);
            }
        }
        Ok(())
    }
}

/// Iterator over session state entries: each item is the entry and its raw bytes.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(Change<'a>, &'a [u8]), Malformed>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let all = self.rest;
        let mut r = Reader::new(all, "session state");
        let parsed = (|| {
            let kind = r.u8()?;
            let data = r.lenenc_bytes()?;
            let mut d = Reader::new(data, "session state");
            let change = match kind {
                SYSTEM_VARIABLES => Change::Variable {
                    name: d.lenenc_bytes()?,
                    value: d.lenenc_bytes()?,
                },
                SCHEMA => Change::Schema(d.lenenc_bytes()?),
                other => Change::Other(other),
            };
            Ok(change)
        })();
        match parsed {
            Ok(change) => {
                let used = all.len() - r.remaining().len();
                self.rest = r.remaining();
                Some(Ok((change, &all[..used])))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// What a client asked its session to report (its own `session_track_system_variables`
/// and `session_track_schema`), so the proxy shows it no more than a direct connection
/// would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTracking {
    /// Every variable (`*`), or these lower-case names.
    all_variables: bool,
    variables: Vec<Vec<u8>>,
    /// Schema changes are reported.
    pub schema: bool,
}

impl ClientTracking {
    /// Tracking as set by a `session_track_system_variables` value and
    /// `session_track_schema`.
    pub fn new(variables: &[u8], schema: bool) -> ClientTracking {
        let mut t = ClientTracking {
            all_variables: false,
            variables: Vec::new(),
            schema,
        };
        t.set_variables(variables);
        t
    }

    /// The client changed `session_track_system_variables` to `value`.
    pub fn set_variables(&mut self, value: &[u8]) {
        self.variables.clear();
        self.all_variables = false;
        for name in value.split(|&b| b == b',') {
            let name = name.trim_ascii();
            if name == b"*" {
                self.all_variables = true;
            } else if !name.is_empty() {
                self.variables.push(name.to_ascii_lowercase());
            }
        }
    }

    /// Whether the client would have been told about `change`. Entries of kinds the
    /// proxy does not change the tracking of (state change, transaction state) pass.
    pub fn shows(&self, change: &Change<'_>) -> bool {
        match change {
            Change::Variable { name, .. } => {
                self.all_variables || self.variables.iter().any(|v| v.eq_ignore_ascii_case(name))
            }
            Change::Schema(_) => self.schema,
            Change::Other(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `SET NAMES utf8mb4` on a connection tracking `*`, as MariaDB 10.11 sent it.
    const SET_NAMES: &[u8] = b"\x00\x00\x00\x02\x40\x00\x00\x00\x62\x00\x1d\x14character_set_client\x07utf8mb4\x00\x21\x18character_set_connection\x07utf8mb4\x00\x1e\x15character_set_results\x07utf8mb4";
    /// An INSERT's OK with last_gtid.
    const INSERT: &[u8] = b"\x00\x01\x00\x02\x40\x00\x00\x00\x12\x00\x10\x09last_gtid\x050-1-2";
    /// `USE koha`.
    const USE: &[u8] = b"\x00\x00\x00\x02\xc0\x00\x00\x00\x07\x01\x05\x04koha";
    /// An UPDATE's OK with info and no state.
    const UPDATE: &[u8] =
        b"\x00\x00\x00\x22\x00\x00\x00\x28Rows matched: 0  Changed: 0  Warnings: 0";

    fn changes(p: &[u8]) -> Vec<Change<'_>> {
        let ok = StateOk::parse(p).unwrap();
        ok.entries().map(|e| e.unwrap().0).collect()
    }

    #[test]
    fn reads_variables_schema_and_gtid() {
        assert_eq!(
            changes(SET_NAMES)[1],
            Change::Variable {
                name: b"character_set_connection",
                value: b"utf8mb4"
            }
        );
        assert_eq!(changes(SET_NAMES).len(), 3);
        assert_eq!(
            changes(INSERT),
            [Change::Variable {
                name: b"last_gtid",
                value: b"0-1-2"
            }]
        );
        assert_eq!(changes(USE), [Change::Schema(b"koha")]);
        assert!(changes(UPDATE).is_empty());
    }

    #[test]
    fn filtering_everything_gives_the_plain_ok() {
        let mut out = Vec::new();
        StateOk::parse(INSERT)
            .unwrap()
            .write_filtered(&mut out, |_| false)
            .unwrap();
        assert_eq!(out, b"\x00\x01\x00\x02\x00\x00\x00");
        let mut out = Vec::new();
        StateOk::parse(UPDATE)
            .unwrap()
            .write_filtered(&mut out, |_| false)
            .unwrap();
        assert_eq!(out, UPDATE, "info kept as is");
    }

    #[test]
    fn keeping_everything_is_the_identity() {
        for p in [SET_NAMES, INSERT, USE, UPDATE] {
            let mut out = Vec::new();
            StateOk::parse(p)
                .unwrap()
                .write_filtered(&mut out, |_| true)
                .unwrap();
            assert_eq!(out, p);
        }
    }

    #[test]
    fn default_tracking_shows_charset_but_not_last_gtid() {
        let t = ClientTracking::new(
            b"autocommit,character_set_client,character_set_connection,character_set_results,time_zone",
            true,
        );
        let mut out = Vec::new();
        StateOk::parse(SET_NAMES)
            .unwrap()
            .write_filtered(&mut out, |c| t.shows(c))
            .unwrap();
        assert_eq!(out, SET_NAMES);
        assert!(!t.shows(&changes(INSERT)[0]));
        assert!(t.shows(&changes(USE)[0]));
        let star = ClientTracking::new(b" * ", false);
        assert!(star.shows(&changes(INSERT)[0]));
        assert!(!star.shows(&changes(USE)[0]));
    }

    #[test]
    fn truncated_state_is_an_error_not_a_panic() {
        for n in 0..SET_NAMES.len() {
            if let Ok(ok) = StateOk::parse(&SET_NAMES[..n]) {
                let _ = ok.entries().count();
                let _ = ok.write_filtered(&mut Vec::new(), |_| true);
            }
        }
    }
}
