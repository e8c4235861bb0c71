//! Checking a ledger run against the server: every acknowledged row must be there.

use std::collections::HashSet;
use std::fmt;
use std::time::{Instant, SystemTime};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};

use super::{runtime, tcp_only, LedgerError, LedgerReport};

/// What [`verify`] found on the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Rows acknowledged to the clients.
    pub acked: usize,
    /// Acknowledged rows absent from the server: **must be empty**.
    pub lost: Vec<(u32, u32)>,
    /// When each of `lost` was acknowledged (wall clock, to read beside the proxies' logs).
    pub lost_acked_at: Vec<SystemTime>,
    /// Unacknowledged attempts (failed, timed out, abandoned) whose rows exist anyway:
    /// allowed (indeterminate).
    pub unacked_present: usize,
    /// Unacknowledged attempts whose rows are absent: allowed.
    pub unacked_absent: usize,
    /// Transactions (two-row attempts) with one row present and not the other: an
    /// atomicity violation, must be empty. Keyed by the attempt's first `(client, seq)`.
    pub torn: Vec<(u32, u32)>,
    /// Rows read twice. Always 0: `(client, seq)` is the primary key; kept so that a verdict
    /// states it rather than assumes it.
    pub duplicates: usize,
    /// Rows of this run's clients that no attempt wrote (a seq never sent): must be 0.
    pub unexpected: usize,
}

impl Verdict {
    /// No acknowledged row lost, no torn transaction, no duplicate, no unexpected row.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.torn.is_empty() && self.duplicates == 0 && self.unexpected == 0
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acked rows, {} lost, {} unacked attempts present, {} absent, {} torn, {} duplicates, {} unexpected",
            self.acked,
            self.lost.len(),
            self.unacked_present,
            self.unacked_absent,
            self.torn.len(),
            self.duplicates,
            self.unexpected
        )?;
        if !self.lost.is_empty() {
            let first: Vec<String> = self
                .lost
                .iter()
                .zip(&self.lost_acked_at)
                .take(10)
                .map(|((client, seq), at)| {
                    let at = chrono::DateTime::<chrono::Utc>::from(*at).format("%H:%M:%S%.3f");
                    format!("({client}, {seq}) acked {at}")
                })
                .collect();
            write!(f, "; first lost (client, seq): {}", first.join(", "))?;
        }
        Ok(())
    }
}

/// Reads this run's rows from `server` (connect to the new master directly, not through
/// the proxy) and compares them with the report. Call it after the cluster has settled
/// (e.g. [`wait_converged`](crate::cluster::wait_converged)).
pub async fn verify(report: &LedgerReport, server: Opts) -> Result<Verdict, LedgerError> {
    let (Some(low), Some(high)) = (
        report.clients.iter().map(|c| c.client).min(),
        report.clients.iter().map(|c| c.client).max(),
    ) else {
        return Ok(Verdict::default());
    };
    let mut conn = Conn::new(tcp_only(&server))
        .await
        .map_err(LedgerError::Read)?;
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT client, seq FROM {} WHERE client BETWEEN {low} AND {high}",
            report.table
        ))
        .await
        .map_err(LedgerError::Read)?;
    let _ = conn.disconnect().await;
    let mut present: HashSet<(u32, u32)> = HashSet::with_capacity(rows.len());
    let mut verdict = Verdict::default();
    for row in &rows {
        let get = |i: usize| {
            row.get_opt::<u32, usize>(i)
                .and_then(Result::ok)
                .ok_or_else(|| LedgerError::BadRow(format!("{row:?}")))
        };
        if !present.insert((get(0)?, get(1)?)) {
            verdict.duplicates += 1;
        }
    }
    let mut known: HashSet<(u32, u32)> = HashSet::with_capacity(present.len());
    // Instants to wall-clock time.
    let (now, wall) = (Instant::now(), SystemTime::now());
    let wall_of = |at: Instant| wall - now.saturating_duration_since(at);
    for a in &report.attempts {
        let keys: Vec<(u32, u32)> = a.keys().collect();
        known.extend(keys.iter().copied());
        let here = keys.iter().filter(|k| present.contains(k)).count();
        if here != 0 && here != keys.len() {
            verdict.torn.push((a.client, a.seq));
        }
        if a.outcome.is_acked() {
            verdict.acked += keys.len();
            for key in keys.iter().filter(|k| !present.contains(k)) {
                verdict.lost.push(*key);
                verdict.lost_acked_at.push(wall_of(a.completed));
            }
        } else if here > 0 {
            verdict.unacked_present += 1;
        } else {
            verdict.unacked_absent += 1;
        }
    }
    verdict.unexpected = present.iter().filter(|k| !known.contains(k)).count();
    if verdict.is_clean() {
        tracing::info!("ledger verdict: {verdict}");
    } else {
        tracing::warn!("ledger verdict: {verdict}");
    }
    Ok(verdict)
}

/// [`verify`] on a runtime of its own, blocking the calling thread. Must not be called
/// from inside a tokio runtime.
pub fn verify_blocking(report: &LedgerReport, server: Opts) -> Result<Verdict, LedgerError> {
    runtime()?.block_on(verify(report, server))
}
