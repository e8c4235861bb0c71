//! A session's state as the master reported it (system variables, schema) plus the
//! user-variable assignments it made, and the statements that give a replica connection the
//! same state before it serves the session's reads.
//!
//! System variables are learned from the server's session tracking (the proxy's master
//! connection tracks `*`), never parsed from SQL: what the server says it set is what gets
//! replayed. User variables are not tracked by the server; `SET @x = <literal>` statements
//! are replayed verbatim (the classifier says which), anything else pins the session to the
//! master.

/// Variables never replayed on replicas: results of the last statement, replication and
/// binlog controls, the proxy's own tracking, and autocommit (a session with autocommit off
/// runs on the master only).
const NOT_REPLAYED: &[&[u8]] = &[
    b"autocommit",
    b"gtid_domain_id",
    b"gtid_seq_no",
    b"identity",
    b"in_transaction",
    b"insert_id",
    b"last_gtid",
    b"last_insert_id",
    b"pseudo_slave_mode",
    b"pseudo_thread_id",
    b"server_id",
    b"session_track_schema",
    b"session_track_state_change",
    b"session_track_system_variables",
    b"session_track_transaction_info",
    b"skip_replication",
    b"sql_log_bin",
    b"transaction_read_only",
    b"tx_read_only",
];

/// Variables whose empty tracked value means NULL.
const NULLABLE: &[&[u8]] = &[b"character_set_results"];

/// Most user-variable statements kept for replay; past this the session is pinned.
pub const MAX_REPLAYED_STATEMENTS: usize = 256;

/// What a session changed since login.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionState {
    /// System variables set, in the order first set, each with its latest value.
    vars: Vec<(Vec<u8>, Vec<u8>)>,
    /// The current schema, once changed.
    schema: Option<Vec<u8>>,
    /// `SET @x = literal` statements, in order.
    user_statements: Vec<Vec<u8>>,
    /// Bumped on every change: a backend connection replayed up to a version is current
    /// while the version stays.
    version: u64,
}

impl SessionState {
    /// The state version (0 for a fresh session).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Records a system variable's new value; returns false if it is one the proxy does
    /// not replay.
    pub fn set_variable(&mut self, name: &[u8], value: &[u8]) -> bool {
        if NOT_REPLAYED.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return false;
        }
        match self
            .vars
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, v)) if v == value => return true,
            Some((_, v)) => *v = value.to_vec(),
            None => self.vars.push((name.to_ascii_lowercase(), value.to_vec())),
        }
        self.version += 1;
        true
    }

    /// Records the new current schema.
    pub fn set_schema(&mut self, schema: &[u8]) {
        if self.schema.as_deref() != Some(schema) {
            self.schema = Some(schema.to_vec());
            self.version += 1;
        }
    }

    /// The current schema, if it changed since login.
    pub fn schema(&self) -> Option<&[u8]> {
        self.schema.as_deref()
    }

    /// Records a `SET @x = literal` statement; false when too many are kept already (the
    /// caller pins the session).
    pub fn add_user_statement(&mut self, sql: &[u8]) -> bool {
        if self.user_statements.len() >= MAX_REPLAYED_STATEMENTS {
            return false;
        }
        self.user_statements.push(sql.to_vec());
        self.version += 1;
        true
    }

    /// Forgets everything (COM_RESET_CONNECTION, COM_CHANGE_USER): the schema is kept by a
    /// reset and set anew by a change of user, so the caller sets it.
    pub fn clear(&mut self) {
        self.vars.clear();
        self.user_statements.clear();
        self.version += 1;
    }

    /// The statements that bring a fresh or reset connection to this state: one `SET` for
    /// every system variable, then each user-variable statement. The schema is set
    /// separately (COM_INIT_DB).
    pub fn replay(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(1 + self.user_statements.len());
        if !self.vars.is_empty() {
            // A character set resets its collation: character sets first, collations
            // after, the rest in the order set.
            let mut vars: Vec<&(Vec<u8>, Vec<u8>)> = self.vars.iter().collect();
            vars.sort_by_key(|(name, _)| {
                if name.starts_with(b"character_set_") {
                    0
                } else if name.starts_with(b"collation_") {
                    1
                } else {
                    2
                }
            });
            let mut sql = b"SET ".to_vec();
            for (i, (name, value)) in vars.into_iter().enumerate() {
                if i > 0 {
                    sql.extend_from_slice(b", ");
                }
                sql.extend_from_slice(b"SESSION ");
                sql.extend_from_slice(name);
                sql.extend_from_slice(b" = ");
                push_value(&mut sql, name, value);
            }
            out.push(sql);
        }
        out.extend(self.user_statements.iter().cloned());
        out
    }
}

/// Writes a tracked value as SQL: numbers bare, NULL for an empty nullable variable, text
/// quoted (the server accepts quoted ON/OFF and enum names).
fn push_value(sql: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    if value.is_empty() && NULLABLE.iter().any(|n| n.eq_ignore_ascii_case(name)) {
        sql.extend_from_slice(b"NULL");
    } else if is_number(value) {
        sql.extend_from_slice(value);
    } else {
        sql.push(b'\'');
        for &b in value {
            if b == b'\'' || b == b'\\' {
                sql.push(b'\\');
            }
            sql.push(b);
        }
        sql.push(b'\'');
    }
}

fn is_number(v: &[u8]) -> bool {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    let mut parts = digits.splitn(2, |&b| b == b'.');
    let int = parts.next().unwrap_or_default();
    let frac = parts.next();
    !int.is_empty()
        && int.iter().all(u8::is_ascii_digit)
        && frac.is_none_or(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit))
}

/// Writes `identifier` as a backquoted SQL identifier.
pub fn quote_identifier(out: &mut Vec<u8>, identifier: &[u8]) {
    out.push(b'`');
    for &b in identifier {
        if b == b'`' {
            out.push(b'`');
        }
        out.push(b);
    }
    out.push(b'`');
}

/// How far a replica connection is from the session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaSync {
    /// The session was reset (COM_RESET_CONNECTION) since this connection last served it:
    /// the connection is reset first, then given the state.
    ResetPending,
    /// Given the state up to this version (`None`: nothing given since it was opened).
    At(Option<u64>),
}

/// What bringing a replica connection to the session's state takes (see
/// [`ReplicaSync::catch_up`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUp {
    /// COM_RESET_CONNECTION first.
    pub reset: bool,
    /// Replay [`SessionState::replay`] and set the schema: the list is built only then.
    pub replay: bool,
}

impl ReplicaSync {
    /// What a connection in this state needs before it serves a read of a session whose
    /// state is at `version`: nothing while it is current (most reads).
    pub fn catch_up(self, version: u64) -> CatchUp {
        match self {
            ReplicaSync::ResetPending => CatchUp {
                reset: true,
                replay: true,
            },
            ReplicaSync::At(at) => CatchUp {
                reset: false,
                replay: at != Some(version),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_connection_catches_up_only_when_behind() {
        use ReplicaSync::*;
        let none = CatchUp {
            reset: false,
            replay: false,
        };
        let replay = CatchUp {
            reset: false,
            replay: true,
        };
        let reset = CatchUp {
            reset: true,
            replay: true,
        };
        for (sync, version, want) in [
            (At(Some(3)), 3, none),
            (At(Some(2)), 3, replay),
            (At(None), 0, replay),
            (At(None), 3, replay),
            (ResetPending, 0, reset),
            (ResetPending, 3, reset),
        ] {
            assert_eq!(
                sync.catch_up(version),
                want,
                "{sync:?} at version {version}"
            );
        }
    }

    fn text(v: &[Vec<u8>]) -> Vec<String> {
        v.iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    #[test]
    fn replays_the_latest_value_of_each_variable_in_one_set() {
        let mut s = SessionState::default();
        assert_eq!(s.replay(), Vec::<Vec<u8>>::new());
        assert!(s.set_variable(b"character_set_client", b"utf8mb4"));
        assert!(s.set_variable(b"sql_mode", b"ANSI_QUOTES,STRICT_TRANS_TABLES"));
        assert!(s.set_variable(b"wait_timeout", b"100"));
        assert!(s.set_variable(b"time_zone", b"+02:00"));
        assert!(s.set_variable(b"character_set_client", b"latin1"));
        assert!(s.set_variable(b"character_set_results", b""));
        assert!(s.set_variable(b"lc_time_names", b"it'\\x"));
        assert!(!s.set_variable(b"last_gtid", b"0-1-5"));
        assert!(!s.set_variable(b"autocommit", b"OFF"));
        assert!(s.add_user_statement(b"SET @borrower = 42"));
        assert!(s.set_variable(b"collation_connection", b"utf8mb4_unicode_ci"));
        assert_eq!(
            text(&s.replay()),
            [
                "SET SESSION character_set_client = 'latin1', SESSION character_set_results \
                 = NULL, SESSION collation_connection = 'utf8mb4_unicode_ci', SESSION \
                 sql_mode = 'ANSI_QUOTES,STRICT_TRANS_TABLES', SESSION wait_timeout = 100, \
                 SESSION time_zone = '+02:00', SESSION lc_time_names = 'it\\'\\\\x'",
                "SET @borrower = 42"
            ]
        );
    }

    #[test]
    fn the_version_moves_only_on_change() {
        let mut s = SessionState::default();
        s.set_variable(b"sql_mode", b"");
        let v = s.version();
        s.set_variable(b"sql_mode", b"");
        s.set_schema(b"koha");
        assert_eq!(s.version(), v + 1);
        s.set_schema(b"koha");
        assert_eq!(s.version(), v + 1);
        s.clear();
        assert_eq!(s.version(), v + 2);
        assert!(s.replay().is_empty());
        assert_eq!(s.schema(), Some(&b"koha"[..]));
    }

    #[test]
    fn numbers_are_bare_and_the_rest_quoted() {
        for (v, bare) in [
            (&b"10"[..], true),
            (b"-1", true),
            (b"0.5", true),
            (b"1.", false),
            (b"", false),
            (b"ON", false),
            (b"1e3", false),
        ] {
            assert_eq!(is_number(v), bare, "{:?}", String::from_utf8_lossy(v));
        }
        let mut out = Vec::new();
        quote_identifier(&mut out, b"we`ird");
        assert_eq!(out, b"`we``ird`");
    }

    #[test]
    fn user_statements_are_bounded() {
        let mut s = SessionState::default();
        for _ in 0..MAX_REPLAYED_STATEMENTS {
            assert!(s.add_user_statement(b"SET @a = 1"));
        }
        assert!(!s.add_user_statement(b"SET @a = 1"));
    }
}
