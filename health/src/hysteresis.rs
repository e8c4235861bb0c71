//! Up/down with hysteresis: one failed probe is not an outage.
//!
//! Pure: the caller passes each probe's outcome and the time it finished, so the rules are
//! tested without sleeping.

use std::time::{Duration, Instant};

use crate::topology::ServerState;

/// How one probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered every probe query in time.
    Success,
    /// It refused, failed or did not answer in time.
    Failure,
}

/// One server's reachability: down only after `fail_count` failed probes in a row, up again
/// after one good probe. A server never probed before is decided by its first probe (there
/// is no earlier state worth keeping).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hysteresis {
    fail_count: u32,
    state: ServerState,
    failures: u32,
    since: Instant,
}

impl Hysteresis {
    /// A server not probed yet ([`ServerState::Unknown`] since `now`). A `fail_count` of 0
    /// counts as 1.
    pub fn new(fail_count: u32, now: Instant) -> Self {
        Hysteresis {
            fail_count: fail_count.max(1),
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
            Outcome::Failure => {
                self.failures = self.failures.saturating_add(1);
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
    use Outcome::{Failure, Success};

    #[test]
    fn down_only_after_fail_count_failures_in_a_row() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut h = Hysteresis::new(3, t0);
        assert_eq!(h.record(Success, at(10)), Some(ServerState::Up));
        assert_eq!(h.record(Failure, at(500)), None);
        assert_eq!(h.record(Failure, at(1000)), None);
        assert_eq!(h.failures(), 2);
        assert_eq!(h.state(), ServerState::Up);
        assert_eq!(h.since(), at(10));
        assert_eq!(h.record(Failure, at(1500)), Some(ServerState::Down));
        assert_eq!(h.since(), at(1500));
        assert_eq!(h.duration(at(4500)), Duration::from_secs(3));
        // Staying down is no change.
        assert_eq!(h.record(Failure, at(2000)), None);
        assert_eq!(h.failures(), 4);
    }

    #[test]
    fn a_success_resets_the_count_and_one_good_probe_is_up() {
        let t0 = Instant::now();
        let mut h = Hysteresis::new(2, t0);
        h.record(Success, t0);
        assert_eq!(h.record(Failure, t0), None);
        assert_eq!(h.record(Success, t0), None, "still up, count reset");
        assert_eq!(h.failures(), 0);
        assert_eq!(
            h.record(Failure, t0),
            None,
            "a new run of failures starts at 1"
        );
        assert_eq!(h.record(Failure, t0), Some(ServerState::Down));
        let later = t0 + Duration::from_secs(1);
        assert_eq!(h.record(Success, later), Some(ServerState::Up));
        assert_eq!(h.since(), later);
    }

    #[test]
    fn the_first_probe_decides() {
        let t0 = Instant::now();
        let mut h = Hysteresis::new(3, t0);
        assert_eq!(h.state(), ServerState::Unknown);
        assert_eq!(h.record(Failure, t0), Some(ServerState::Down));
        let mut h = Hysteresis::new(3, t0);
        assert_eq!(h.record(Success, t0), Some(ServerState::Up));
    }

    #[test]
    fn a_fail_count_of_zero_or_one_is_down_at_the_first_failure() {
        for n in [0, 1] {
            let t0 = Instant::now();
            let mut h = Hysteresis::new(n, t0);
            h.record(Success, t0);
            assert_eq!(h.record(Failure, t0), Some(ServerState::Down));
        }
    }
}
