//! Crash points, for tests that kill a kohaproxy in the middle of an operation.
//!
//! `KOHAPROXY_CRASH_AT=<point>` in the environment makes the process abort (no cleanup,
//! as SIGKILL would leave it: its server connections, and the topology locks they hold,
//! close with it) the first time it reaches the point of that name. The points are named
//! `operation:step`, for example `failover:recorded`; docs/ARCHITECTURE.md lists them.
//! Unset (production), a point costs one load of a value read once.

use std::sync::OnceLock;

/// The environment variable naming the point to crash at.
pub const VARIABLE: &str = "KOHAPROXY_CRASH_AT";

/// Aborts the process if `KOHAPROXY_CRASH_AT` names `point`.
pub(crate) fn point(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    let at = AT.get_or_init(|| std::env::var(VARIABLE).ok().filter(|s| !s.is_empty()));
    if at.as_deref() == Some(point) {
        // stderr is unbuffered: the line is out before the abort.
        eprintln!("{VARIABLE}={point} reached: aborting");
        std::process::abort();
    }
}
