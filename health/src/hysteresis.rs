//! Up/down with hysteresis: one failed probe is not an outage.
//!
//! Pure: the caller passes each probe's outcome and the time it finished, so the rules are
//! tested without sleeping.
//!
//! A server is down after `fail_count` failed probes in a row, and a probe that waited
//! several probe intervals for an answer (a hung server: the probe timed out) counts once
//! per interval it waited, so silence is down after `fail_count` intervals as a refusal
//! is. A server with a failure that is not yet down is suspect: the monitor probes it again
//! after a short [`RECHECK`] pause rather than a whole interval, so a crash (connections
//! refused at once) is down within a few hundred milliseconds of its first failed probe.

use std::time::{Duration, Instant};

use crate::topology::ServerState;

/// The pause before probing a suspect server again, as a fraction of the probe interval
/// (a fifth: 100 ms with the default 500 ms).
pub const RECHECK: u32 = 5;

/// How one probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered every probe query in time.
    Success,
    /// It refused, failed or did not answer in time, after `waited` (from the probe's
    /// start).
    Failure {
        /// How long the probe waited before it failed.
        waited: Duration,
    },
}

/// One server's reachability: down only after `fail_count` failed probes in a row, up again
/// after one good probe. A server never probed before is decided by its first probe (there
/// is no earlier state worth keeping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    fail_count: u32,
    interval: Duration,
    state: ServerState,
    failures: u32,
    since: Instant,
}

impl Hysteresis {
    /// A server not probed yet ([`ServerState::Unknown`] since `now`), probed every
    /// `interval`. A `fail_count` of 0 counts as 1.
    pub fn new(fail_count: u32, interval: Duration, now: Instant) -> Self {
        Hysteresis {
            fail_count: fail_count.max(1),
            interval,
            state: ServerState::Unknown,
            failures: 0,
            since: now,
        }
    }

    /// Records a probe that finished at `now`; returns the new state if it changed.
    pub fn record(&mut self, outcome: Outcome, now: Instant) -> Option<ServerState> {
        let next = match outcome {
            Outcome::Success => {
                self.failures = 0;
                ServerState::Up
            }
            Outcome::Failure { waited } => {
                self.failures = self.failures.saturating_add(self.weight(waited));
                match self.state {
                    ServerState::Up if self.failures < self.fail_count => ServerState::Up,
                    _ => ServerState::Down,
                }
            }
        };
        if next == self.state {
            return None;
        }
        self.state = next;
        self.since = now;
        Some(next)
    }

    /// How many failures a probe that failed after `waited` counts for: one per probe
    /// interval it waited, at least one.
    fn weight(&self, waited: Duration) -> u32 {
        let intervals = waited.as_nanos() / self.interval.as_nanos().max(1);
        u32::try_from(intervals).unwrap_or(u32::MAX).max(1)
    }

    /// Up, but its last probe failed: worth probing again soon (see [`RECHECK`]).
    pub fn suspect(&self) -> bool {
        self.state == ServerState::Up && self.failures > 0
    }

    /// The current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// Failed probes in a row (0 after a success).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the current state began.
    pub fn since(&self) -> Instant {
        self.since
    }

    /// How long the current state has lasted at `now`.
    pub fn duration(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::Success;

    const INTERVAL: Duration = Duration::from_millis(500);

    /// A probe that failed at once (a refused connection).
    const REFUSED: Outcome = Outcome::Failure {
        waited: Duration::from_millis(1),
    };

    #[test]
    fn down_only_after_fail_count_failures_in_a_row() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut h = Hysteresis::new(3, INTERVAL, t0);
        assert_eq!(h.record(Success, at(10)), Some(ServerState::Up));
        assert_eq!(h.record(REFUSED, at(500)), None);
        assert_eq!(h.record(REFUSED, at(1000)), None);
        assert_eq!(h.failures(), 2);
        assert_eq!(h.state(), ServerState::Up);
        assert_eq!(h.since(), at(10));
        assert_eq!(h.record(REFUSED, at(1500)), Some(ServerState::Down));
        assert_eq!(h.since(), at(1500));
        assert_eq!(h.duration(at(4500)), Duration::from_secs(3));
        // Staying down is no change.
        assert_eq!(h.record(REFUSED, at(2000)), None);
        assert_eq!(h.failures(), 4);
    }

    #[test]
    fn a_success_resets_the_count_and_one_good_probe_is_up() {
        let t0 = Instant::now();
        let mut h = Hysteresis::new(2, INTERVAL, t0);
        h.record(Success, t0);
        assert_eq!(h.record(REFUSED, t0), None);
        assert_eq!(h.record(Success, t0), None, "still up, count reset");
        assert_eq!(h.failures(), 0);
        assert_eq!(
            h.record(REFUSED, t0),
            None,
            "a new run of failures starts at 1"
        );
        assert_eq!(h.record(REFUSED, t0), Some(ServerState::Down));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(h.record(Success, later), Some(ServerState::Up));
        assert_eq!(h.since(), later);
    }

    #[test]
    fn the_first_probe_decides() {
        let t0 = Instant::now();
        let mut h = Hysteresis::new(3, INTERVAL, t0);
        assert_eq!(h.state(), ServerState::Unknown);
        assert_eq!(h.record(REFUSED, t0), Some(ServerState::Down));
        let mut h = Hysteresis::new(3, INTERVAL, t0);
        assert_eq!(h.record(Success, t0), Some(ServerState::Up));
    }

    #[test]
    fn a_fail_count_of_zero_or_one_is_down_at_the_first_failure() {
        for n in [0, 1] {
            let t0 = Instant::now();
            let mut h = Hysteresis::new(n, INTERVAL, t0);
            h.record(Success, t0);
            assert_eq!(h.record(REFUSED, t0), Some(ServerState::Down));
        }
    }

    #[test]
    fn a_failed_probe_makes_an_up_server_suspect_until_it_is_down_or_answers() {
        let t0 = Instant::now();
        let mut h = Hysteresis::new(3, INTERVAL, t0);
        assert!(!h.suspect(), "unknown");
        h.record(Success, t0);
        assert!(!h.suspect());
        h.record(REFUSED, t0);
        assert!(h.suspect());
        h.record(Success, t0);
        assert!(!h.suspect(), "answered");
        h.record(REFUSED, t0);
        h.record(REFUSED, t0);
        h.record(REFUSED, t0);
        assert_eq!(h.state(), ServerState::Down);
        assert!(!h.suspect(), "down: probed at the usual pace");
    }

    #[test]
    fn a_probe_that_waited_counts_once_per_interval() {
        let t0 = Instant::now();
        let timed_out = Outcome::Failure {
            waited: Duration::from_millis(1000),
        };
        let mut h = Hysteresis::new(3, INTERVAL, t0);
        h.record(Success, t0);
        assert_eq!(h.record(timed_out, t0), None, "two intervals of silence");
        assert_eq!(h.failures(), 2);
        assert_eq!(
            h.record(timed_out, t0),
            Some(ServerState::Down),
            "four intervals: down"
        );
        // A slow refusal inside one interval is one failure.
        let mut h = Hysteresis::new(3, INTERVAL, t0);
        h.record(Success, t0);
        h.record(
            Outcome::Failure {
                waited: Duration::from_millis(499),
            },
            t0,
        );
        assert_eq!(h.failures(), 1);
    }
}
