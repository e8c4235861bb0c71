//! What a ledger run recorded: every attempt with its instants and outcome, per-client
//! counters, and the availability measures read from them (RTO, write pauses, outages).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server (through the proxy) answered OK: the rows must survive.
    Acked,
    /// An error: indeterminate (the rows may or may not exist).
    Failed {
        /// The server's error code, None for a broken connection or driver error.
        code: Option<u16>,
        /// The error's text.
        message: String,
    },
    /// No answer within `statement_timeout`: indeterminate.
    TimedOut,
    /// Still unanswered `stop_grace` after the run ended: indeterminate.
    Abandoned,
}

impl Outcome {
    /// True for [`Outcome::Acked`].
    pub fn is_acked(&self) -> bool {
        matches!(self, Outcome::Acked)
    }

    /// A one-line description ("acked", the error message, "timed out", "abandoned").
    pub fn describe(&self) -> String {
        match self {
            Outcome::Acked => "acked".into(),
            Outcome::Failed {
                code: Some(code),
                message,
            } => format!("ERROR {code}: {message}"),
            Outcome::Failed {
                code: None,
                message,
            } => message.clone(),
            Outcome::TimedOut => "timed out".into(),
            Outcome::Abandoned => "abandoned at the end of the run".into(),
        }
    }
}

/// One write attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The client id (the `client` column).
    pub client: u32,
    /// The `seq` of its first row.
    pub seq: u32,
    /// How many rows: 1, or 2 in transactions mode (`seq` and `seq + 1`).
    pub rows: u32,
    /// Which connection of this client made it: 0 for the first, +1 per reconnect.
    pub connection: u32,
    /// Just before the statement (or BEGIN) was sent.
    pub invoked: Instant,
    /// When the outcome was known.
    pub completed: Instant,
    /// How it ended.
    pub outcome: Outcome,
}

impl Attempt {
    /// The `(client, seq)` of each of its rows.
    pub fn keys(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..self.rows).map(move |i| (self.client, self.seq.saturating_add(i)))
    }
}

/// Per-client counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// The client id.
    pub client: u32,
    /// New connections after the first one (after a broken connection or a timeout).
    pub reconnects: usize,
    /// Connection attempts that failed.
    pub connect_failures: usize,
}

/// Everything a ledger run did. See [`LedgerReport::rto`] and [`LedgerReport::write_pause`]
/// for the availability measures.
#[derive(Clone, Debug)]
pub struct LedgerReport {
    /// The table written (`DB.acks`, quoted).
    pub table: String,
    /// When the clients started (after the table was created).
    pub started: Instant,
    /// When the last client finished.
    pub ended: Instant,
    /// Every attempt, ordered by invoke instant.
    pub attempts: Vec<Attempt>,
    /// Per-client counters, by client id.
    pub clients: Vec<ClientStats>,
}

impl LedgerReport {
    /// The `(client, seq)` of every acknowledged row.
    pub fn acked(&self) -> Vec<(u32, u32)> {
        self.attempts
            .iter()
            .filter(|a| a.outcome.is_acked())
            .flat_map(Attempt::keys)
            .collect()
    }

    /// How many attempts were acknowledged.
    pub fn acked_attempts(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.outcome.is_acked())
            .count()
    }

    /// Every attempt that was not acknowledged (failed, timed out, abandoned).
    pub fn errors(&self) -> Vec<&Attempt> {
        self.attempts
            .iter()
            .filter(|a| !a.outcome.is_acked())
            .collect()
    }

    /// The first `limit` distinct error descriptions ([`Outcome::describe`]) in order of
    /// first appearance, each with how many attempts ended that way.
    pub fn error_summary(&self, limit: usize) -> Vec<(String, usize)> {
        let mut order: Vec<String> = Vec::new();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for a in self.errors() {
            let text = a.outcome.describe();
            let n = counts.entry(text.clone()).or_insert(0);
            if *n == 0 {
                order.push(text);
            }
            *n += 1;
        }
        order
            .into_iter()
            .take(limit)
            .map(|t| {
                let n = counts.get(&t).copied().unwrap_or(0);
                (t, n)
            })
            .collect()
    }

    /// Reconnects over all clients.
    pub fn reconnects(&self) -> usize {
        self.clients.iter().map(|c| c.reconnects).sum()
    }

    /// **RTO**: the time from `fault` to the completion of the first acknowledged attempt
    /// that was *invoked* at or after `fault` (the earliest such completion over all
    /// clients). Attempts invoked before the fault do not count even if acknowledged later:
    /// they may have been answered by the old master before it died. None if no attempt
    /// invoked after the fault was acknowledged.
    pub fn rto(&self, fault: Instant) -> Option<Duration> {
        self.attempts
            .iter()
            .filter(|a| a.outcome.is_acked() && a.invoked >= fault)
            .map(|a| a.completed)
            .min()
            .map(|done| done.saturating_duration_since(fault))
    }

    /// The longest interval in `[after, ended]` during which no acknowledgement completed
    /// (over all clients): the largest of the gap from `after` to the first ack completed
    /// after it, the gaps between consecutive ack completions, and the gap from the last
    /// ack to the end of the run. With no ack after `after`, the whole of `[after, ended]`.
    pub fn longest_gap(&self, after: Instant) -> Duration {
        longest_outage(&[self], after, self.ended.max(after))
    }

    /// **Write pause**: [`longest_gap`](Self::longest_gap) over the whole run
    /// (`after = started`): the longest interval with no acknowledgement completing, for a
    /// planned switchover. It includes the start-up (connecting, first insert) and the end
    /// of the run, so a run whose writes never recover reports its whole unavailable tail.
    pub fn write_pause(&self) -> Duration {
        self.longest_gap(self.started)
    }

    /// The attempts invoked at or after `at`, in order.
    pub fn attempts_since(&self, at: Instant) -> impl Iterator<Item = &Attempt> + '_ {
        self.attempts.iter().filter(move |a| a.invoked >= at)
    }
}

impl fmt::Display for LedgerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} attempts by {} clients in {:.1?}: {} acked, {} not, {} reconnects, longest write pause {:.1?}",
            self.attempts.len(),
            self.clients.len(),
            self.ended.saturating_duration_since(self.started),
            self.acked_attempts(),
            self.attempts.len() - self.acked_attempts(),
            self.reconnects(),
            self.write_pause(),
        )?;
        for (text, n) in self.error_summary(5) {
            write!(f, "\n  {n} x {text}")?;
        }
        Ok(())
    }
}

/// The longest stretch within `[from, to]` in which no write of any of `reports` was
/// acknowledged (a write outage, or a switchover's pause).
pub fn longest_outage(reports: &[&LedgerReport], from: Instant, to: Instant) -> Duration {
    let mut acks: Vec<Instant> = reports
        .iter()
        .flat_map(|r| r.attempts.iter())
        .filter(|a| a.outcome.is_acked() && a.completed >= from && a.completed <= to)
        .map(|a| a.completed)
        .collect();
    acks.sort();
    let mut longest = Duration::ZERO;
    let mut last = from;
    for t in acks {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to.saturating_duration_since(last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{table_name, DEFAULT_DATABASE};

    fn attempt(
        client: u32,
        seq: u32,
        start_ms: u64,
        end_ms: u64,
        acked: bool,
        t0: Instant,
    ) -> Attempt {
        Attempt {
            client,
            seq,
            rows: 1,
            connection: 0,
            invoked: t0 + Duration::from_millis(start_ms),
            completed: t0 + Duration::from_millis(end_ms),
            outcome: if acked {
                Outcome::Acked
            } else {
                Outcome::Failed {
                    code: Some(2013),
                    message: "Lost connection".into(),
                }
            },
        }
    }

    fn report(t0: Instant, attempts: Vec<Attempt>, end_ms: u64) -> LedgerReport {
        LedgerReport {
            table: table_name(DEFAULT_DATABASE),
            started: t0,
            ended: t0 + Duration::from_millis(end_ms),
            attempts,
            clients: vec![ClientStats {
                client: 1,
                ..ClientStats::default()
            }],
        }
    }

    #[test]
    fn rto_counts_only_attempts_invoked_after_the_fault() {
        let t0 = Instant::now();
        let r = report(
            t0,
            vec![
                attempt(1, 1, 0, 10, true, t0),
                // invoked before the fault at 100, acked after: not recovery
                attempt(1, 2, 90, 150, true, t0),
                attempt(2, 1, 100, 300, false, t0),
                attempt(2, 2, 400, 700, true, t0),
                attempt(1, 3, 500, 600, true, t0),
            ],
            1000,
        );
        let fault = t0 + Duration::from_millis(100);
        assert_eq!(r.rto(fault), Some(Duration::from_millis(500)));
        assert_eq!(r.rto(t0 + Duration::from_millis(900)), None);
        // acks at 10, 150, 600, 700, end 1000: the longest gap is 150 -> 600
        assert_eq!(r.write_pause(), Duration::from_millis(450));
        assert_eq!(
            r.longest_gap(t0 + Duration::from_millis(650)),
            Duration::from_millis(300)
        );
        assert_eq!(r.acked(), vec![(1, 1), (1, 2), (2, 2), (1, 3)]);
        assert_eq!(r.errors().len(), 1);
        assert_eq!(
            r.error_summary(3),
            vec![("ERROR 2013: Lost connection".to_string(), 1)]
        );
    }

    #[test]
    fn no_acks_means_the_whole_run_is_a_pause() {
        let t0 = Instant::now();
        let r = report(t0, vec![attempt(1, 1, 0, 10, false, t0)], 800);
        assert_eq!(r.write_pause(), Duration::from_millis(800));
        assert_eq!(r.rto(t0), None);
    }
}
