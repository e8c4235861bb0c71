//! The statement classifier: reads a COM_QUERY text and says whether it may run on a
//! replica, must run on the master, or must run where the previous statement ran, and what
//! it does to the session. A pure function: no I/O, no allocation.
//!
//! Misclassifying a write as a read loses data, so anything not recognised as a plain read
//! goes to the master.

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A plain read: may run on a replica.
    Read,
    /// Must run on the master.
    Master,
    /// Must run on the backend the previous statement ran on (SHOW WARNINGS, SHOW ERRORS,
    /// `@@warning_count`, `@@error_count`).
    Previous,
}

/// A routing hint written in a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// `/* kohaproxy:master */`
    Master,
    /// `/* kohaproxy:replica */`
    Replica,
}

/// What the classifier found out about one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// Where it may run (hints not applied: see `hint`).
    pub route: Route,
    /// After it, the session must stay on the master (until COM_RESET_CONNECTION or
    /// COM_CHANGE_USER): it creates a temporary table, takes a named or table lock, opens a
    /// HANDLER, prepares an SQL-level statement, uses SQL_CALC_FOUND_ROWS, or assigns a user
    /// variable in a way the proxy cannot replay.
    pub pin: bool,
    /// A `SET` whose user-variable assignments (`@x = ...`) all have literal right-hand
    /// sides (numbers, quoted strings, NULL, TRUE/FALSE): the proxy replays its text on
    /// replicas. System variables it sets are learned from the server, not from the text.
    pub replay: bool,
    /// `START TRANSACTION READ ONLY` (possibly with WITH CONSISTENT SNAPSHOT).
    pub read_only_transaction: bool,
    /// A hint comment, if the statement has one.
    pub hint: Option<Hint>,
}

/// Classifies one COM_QUERY statement text (the bytes after the command byte).
pub fn classify(sql: &[u8]) -> Class {
    let _ = sql;
    Class {
        route: Route::Master,
        pin: false,
        replay: false,
        read_only_transaction: false,
        hint: None,
    }
}
