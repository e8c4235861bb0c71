//! What the monitor did to a server or found about it that people must see (SHOW
//! SERVERS' `note`), as a typed value: decisions read the kind (a diverged server is kept
//! out and rebuilt), people read its text.

use std::fmt;

/// A note on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// Was writable while another server is the master: made read-only.
    Fenced {
        /// The master at the time.
        master: String,
        /// The monitor's term.
        term: u64,
    },
    /// Writable while another server is the master, and could not be made read-only.
    FenceFailed {
        /// The master at the time.
        master: String,
        /// Why the fence failed.
        error: String,
    },
    /// Holds transactions the master lacks: kept out until rebuilt.
    Diverged {
        /// The server itself (for the REBUILD command in the text).
        server: String,
        /// The master.
        master: String,
        /// The transactions it has that the master lacks (GTIDs, comma-separated).
        extra: String,
    },
    /// Holds no transaction while the master has some (emptied by a rebuild under way,
    /// or new): kept out until rebuilt.
    Empty {
        /// The server itself.
        server: String,
    },
    /// Made a replica of the master again.
    Rejoined {
        /// The master.
        master: String,
        /// The monitor's term.
        term: u64,
    },
    /// A step of a failover, switchover, rejoin or re-pointing failed: what and why.
    StepFailed(String),
    /// Anything else the monitor reports (the master's durability state, Galera node
    /// states, replication started again).
    Said(String),
}

impl Note {
    /// Kept out as diverged.
    pub fn is_diverged(&self) -> bool {
        matches!(self, Note::Diverged { .. })
    }

    /// Kept out for want of a rebuild: diverged, or empty while the master has data.
    pub fn needs_rebuild(&self) -> bool {
        matches!(self, Note::Diverged { .. } | Note::Empty { .. })
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Fenced { master, term } => {
                write!(
                    f,
                    "fenced: was writable while {master} is the master (term {term})"
                )
            }
            Note::FenceFailed { master, error } => {
                write!(
                    f,
                    "writable while {master} is the master, and cannot be fenced: {error}"
                )
            }
            Note::Diverged {
                server,
                master,
                extra,
            } => write!(
                f,
                "diverged: has {extra} that the master {master} lacks; kept out (REBUILD \
                 {server} on the console replaces its data by a backup and keeps its last \
                 binlog files)"
            ),
            Note::Empty { server } => write!(
                f,
                "empty: no transaction yet; not made a replica from the master's first \
                 binlog (REBUILD {server} loads a backup and makes it one)"
            ),
            Note::Rejoined { master, term } => {
                write!(f, "rejoined as a replica of {master} (term {term})")
            }
            Note::StepFailed(text) | Note::Said(text) => f.write_str(text),
        }
    }
}

impl From<String> for Note {
    fn from(text: String) -> Self {
        Note::Said(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_people_read_and_the_kind_decisions_read() {
        let diverged = Note::Diverged {
            server: "db2".into(),
            master: "db1".into(),
            extra: "0-2-97076".into(),
        };
        assert!(diverged.is_diverged() && diverged.needs_rebuild());
        assert!(diverged.to_string().starts_with(
            "diverged: has 0-2-97076 that the master db1 lacks; kept out (REBUILD db2"
        ));
        let empty = Note::Empty {
            server: "db3".into(),
        };
        assert!(!empty.is_diverged() && empty.needs_rebuild());
        let fenced = Note::Fenced {
            master: "db1".into(),
            term: 7,
        };
        assert_eq!(
            fenced.to_string(),
            "fenced: was writable while db1 is the master (term 7)"
        );
        assert!(!fenced.needs_rebuild());
        assert!(!Note::StepFailed("diverged: but only as text".into()).is_diverged());
    }
}
