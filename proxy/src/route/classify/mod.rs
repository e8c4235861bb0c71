//! The statement classifier: reads a COM_QUERY text and says whether it may run on a
//! replica, must run on the master, or must run where the previous statement ran, and what
//! it does to the session. A pure function: no I/O, no allocation.
//!
//! Misclassifying a write as a read loses data, so anything not recognised as a plain read
//! goes to the master.
//!
//! One forward pass of a small lexer (whitespace, comments, quoted strings and identifiers,
//! numbers, variables, punctuation; executable comments `/*! ... */` are lexed as code)
//! feeds a reader that looks at the statement's first keywords for its shape (SELECT,
//! WITH, SHOW WARNINGS, SET, START TRANSACTION, ...) and at every token for what rules out
//! a replica: write and locking keywords, INTO, `:=`, calls to anything but a side-effect
//! free built-in, session-result system variables, a second statement.

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
    /// The statement starts a transaction (`BEGIN [WORK]`, `START TRANSACTION ...`), and
    /// which kind.
    pub starts: Option<TransactionStart>,
    /// A hint comment, if the statement has one.
    pub hint: Option<Hint>,
}

/// Classifies one COM_QUERY statement text (the bytes after the command byte).
///
/// The text is lexed the way MariaDB lexes it with backslash escapes on (the default
/// `sql_mode`, and Koha's). When a quoted string holds a backslash, the token boundaries
/// would differ under `NO_BACKSLASH_ESCAPES` (or `ANSI_QUOTES`), so the text is lexed that
/// way too and the stricter of the two answers is returned; a reading the server would
/// reject as unterminated is left out, since the server runs nothing in that case. The
/// lexer works on bytes, which matches the server for ASCII-safe connection character sets
/// (utf8mb3, utf8mb4, latin1, binary), not for ones such as GBK or SJIS whose multi-byte
/// characters may contain a backslash byte.
pub fn classify(sql: &[u8]) -> Class {
    let with_backslash_escapes = Classifier::run(sql, Escapes::Backslash);
    if !with_backslash_escapes.backslash_in_quotes {
        return with_backslash_escapes.class.unwrap_or(MASTER);
    }
    let without_backslash_escapes = Classifier::run(sql, Escapes::DoubledQuoteOnly);
    match (
        with_backslash_escapes.class,
        without_backslash_escapes.class,
    ) {
        (Some(a), Some(b)) => stricter(a, b),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => MASTER,
    }
}

/// The kind of transaction a statement starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStart {
    /// `START TRANSACTION READ ONLY` (possibly WITH CONSISTENT SNAPSHOT): a replica may
    /// run it.
    ReadOnly,
    /// Any other `BEGIN [WORK]` or `START TRANSACTION`.
    ReadWrite,
}

/// The answer for text the classifier cannot vouch for.
const MASTER: Class = Class {
    route: Route::Master,
    pin: false,
    replay: false,
    starts: None,
    hint: None,
};

/// The answer that is safe under both of two readings of the same text.
fn stricter(a: Class, b: Class) -> Class {
    if a == b {
        return a;
    }
    Class {
        route: if a.route == b.route {
            a.route
        } else {
            Route::Master
        },
        pin: a.pin || b.pin || a.replay != b.replay,
        replay: a.replay && b.replay,
        starts: match (a.starts, b.starts) {
            (None, None) => None,
            (Some(TransactionStart::ReadOnly), Some(TransactionStart::ReadOnly)) => {
                Some(TransactionStart::ReadOnly)
            }
            // A start under either reading counts as one (the master checks it).
            _ => Some(TransactionStart::ReadWrite),
        },
        hint: match (a.hint, b.hint) {
            (Some(Hint::Master), _) | (_, Some(Hint::Master)) => Some(Hint::Master),
            (first, second) => first.or(second),
        },
    }
}

mod lexer;
mod reader;
mod words;

use lexer::Escapes;
use reader::Classifier;
#[cfg(test)]
mod tests;
