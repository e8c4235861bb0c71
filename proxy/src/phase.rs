//! Where a client session is in its life: the states the session's module comment draws,
//! as a value the session records at each move and SHOW SESSIONS shows (`state`).
//!
//! ```text
//!                   COM_CHANGE_USER
//!        ┌────────────── LoggingIn ◄──────────────┐
//!        ▼                                         │
//!  ──► Idle ──command──► Running{Master|Replica} ──┴──► Idle ...
//!        │  │                ▲        ▲
//!        │  └─no master─► WaitingForMaster
//!        │        (failover, switchover hold, moving to the new master)
//!        │  └─read behind─► CausalWait{replica} ──► Running{Replica} (or Master)
//!        └─shutdown, in a transaction─► Draining ──COMMIT/ROLLBACK──► closed
//! ```
//!
//! A session is created logged in (the login runs before it has an entry), so it starts
//! `Idle`; it leaves the registry (and SHOW SESSIONS) when it closes. The value is one
//! relaxed atomic store per move (two per statement: running, then idle), read only by
//! the console.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// Which backend connection a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// The master (its config index, if the config lists it).
    Master(Option<usize>),
    /// The replica with this config index.
    Replica(usize),
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Re-authenticating (COM_CHANGE_USER).
    LoggingIn,
    /// Waiting for the client's next command.
    Idle,
    /// A command waits for a master: none is known (a failover, a switchover's hold), or
    /// the session is moving to a new one.
    WaitingForMaster,
    /// A read waits until the replica (config index) has applied what it must see.
    CausalWait(usize),
    /// A command runs on a backend: sent, its answer relayed.
    Running(On),
    /// The proxy is shutting down and this session's transaction is still open: it
    /// closes once the transaction ends.
    Draining,
}

/// No server in the encoded value.
const NO_SERVER: u32 = 0;

impl Phase {
    /// The phase as one `u32`: a tag in the low byte, the server's config index + 1 above.
    fn encode(self) -> u32 {
        let (tag, server) = match self {
            Phase::LoggingIn => (0, None),
            Phase::Idle => (1, None),
            Phase::WaitingForMaster => (2, None),
            Phase::CausalWait(i) => (3, Some(i)),
            Phase::Running(On::Master(i)) => (4, i),
            Phase::Running(On::Replica(i)) => (5, Some(i)),
            Phase::Draining => (6, None),
        };
        let server = server.map_or(NO_SERVER, |i| {
            u32::try_from(i).map_or(NO_SERVER, |i| i.saturating_add(1))
        });
        tag | server << 8
    }

    /// The phase [`Phase::encode`] made (an unknown tag reads as `Idle`).
    fn decode(v: u32) -> Phase {
        let server = match v >> 8 {
            NO_SERVER => None,
            n => Some((n - 1) as usize),
        };
        match (v & 0xff, server) {
            (0, _) => Phase::LoggingIn,
            (2, _) => Phase::WaitingForMaster,
            (3, Some(i)) => Phase::CausalWait(i),
            (4, i) => Phase::Running(On::Master(i)),
            (5, Some(i)) => Phase::Running(On::Replica(i)),
            (6, _) => Phase::Draining,
            _ => Phase::Idle,
        }
    }

    /// How SHOW SESSIONS shows it; `name` gives a server's name from its config index.
    pub fn describe(self, name: impl Fn(usize) -> Option<String>) -> String {
        let server = |i: usize| name(i).unwrap_or_else(|| format!("server {i}"));
        match self {
            Phase::LoggingIn => "logging in".into(),
            Phase::Idle => "idle".into(),
            Phase::WaitingForMaster => "waiting for a master".into(),
            Phase::CausalWait(i) => format!("causal wait on {}", server(i)),
            Phase::Running(On::Master(Some(i))) => format!("running on {} (master)", server(i)),
            Phase::Running(On::Master(None)) => "running on the master".into(),
            Phase::Running(On::Replica(i)) => format!("running on {}", server(i)),
            Phase::Draining => "draining (shutdown, transaction open)".into(),
        }
    }
}

/// A session's phase, shared with the console.
#[derive(Debug)]
pub struct PhaseCell(AtomicU32);

impl Default for PhaseCell {
    fn default() -> Self {
        PhaseCell(AtomicU32::new(Phase::Idle.encode()))
    }
}

impl PhaseCell {
    /// Records the session's move to `phase`.
    pub fn set(&self, phase: Phase) {
        self.0.store(phase.encode(), Relaxed);
    }

    /// The phase last recorded.
    pub fn get(&self) -> Phase {
        Phase::decode(self.0.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_survives_its_encoding() {
        for phase in [
            Phase::LoggingIn,
            Phase::Idle,
            Phase::WaitingForMaster,
            Phase::CausalWait(0),
            Phase::CausalWait(7),
            Phase::Running(On::Master(None)),
            Phase::Running(On::Master(Some(0))),
            Phase::Running(On::Master(Some(2))),
            Phase::Running(On::Replica(0)),
            Phase::Running(On::Replica(65_000)),
            Phase::Draining,
        ] {
            let cell = PhaseCell::default();
            cell.set(phase);
            assert_eq!(cell.get(), phase);
        }
    }

    #[test]
    fn a_new_cell_is_idle_and_an_unknown_value_reads_idle() {
        assert_eq!(PhaseCell::default().get(), Phase::Idle);
        assert_eq!(Phase::decode(0xfe), Phase::Idle);
        // A tag that needs a server but has none.
        assert_eq!(Phase::decode(3), Phase::Idle);
    }

    #[test]
    fn phases_read_with_server_names() {
        let names = |i: usize| ["db1", "db2"].get(i).map(|n| n.to_string());
        assert_eq!(Phase::Idle.describe(names), "idle");
        assert_eq!(
            Phase::Running(On::Master(Some(0))).describe(names),
            "running on db1 (master)"
        );
        assert_eq!(
            Phase::Running(On::Replica(1)).describe(names),
            "running on db2"
        );
        assert_eq!(
            Phase::CausalWait(5).describe(names),
            "causal wait on server 5"
        );
    }
}
