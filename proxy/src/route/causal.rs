//! Causal reads: which writes a read must see, and which replicas are known to have them.
//!
//! The master's OK for every committed write carries its GTID (the proxy's master
//! connections track `last_gtid`), and the proxy raises `acked` before it forwards that OK
//! to the client. A read that arrives later must therefore be served by a server whose
//! applied position contains `acked` (scope global) or the session's own writes (scope
//! session). Known lower bounds of a replica's position: the monitor's last probe, and
//! every MASTER_GTID_WAIT the proxy saw succeed there.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kohaproxy_health::{Acked, Gtid, GtidList};

/// Shared causal-read bookkeeping, one per proxy.
#[derive(Debug)]
pub struct Causal {
    /// Highest GTID per domain acknowledged to any client through this proxy (shared with
    /// the monitor, which never promotes a replica lacking it).
    acked: Acked,
    /// Per server (config order): a position it is known to have applied.
    applied: Vec<Mutex<GtidList>>,
    /// Per server: until when (ms since `epoch`) no read waits on it, after a wait there
    /// timed out.
    no_wait_until: Vec<AtomicU64>,
    epoch: Instant,
}

impl Causal {
    /// Bookkeeping for `servers` servers, raising `acked`.
    pub fn new(servers: usize, acked: Acked) -> Causal {
        Causal {
            acked,
            applied: (0..servers)
                .map(|_| Mutex::new(GtidList::default()))
                .collect(),
            no_wait_until: (0..servers).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
        }
    }

    /// A write with `gtid` is about to be acknowledged to a client.
    pub fn acknowledge(&self, gtid: Gtid) {
        self.acked.raise(gtid);
    }

    /// Copies the global acknowledged position into `out` (reusing its allocation).
    pub fn acked_into(&self, out: &mut GtidList) {
        self.acked.copy_into(out);
    }

    /// The highest position acknowledged to any client (for the admin console).
    pub fn acked(&self) -> GtidList {
        let mut out = GtidList::default();
        self.acked_into(&mut out);
        out
    }

    /// Whether server `index`, whose last probe read `probed`, is known to have applied
    /// `required`.
    pub fn has_applied(
        &self,
        index: usize,
        probed: Option<&GtidList>,
        required: &GtidList,
    ) -> bool {
        if required.is_empty() || probed.is_some_and(|p| p.contains(required)) {
            return true;
        }
        self.applied
            .get(index)
            .and_then(|a| a.lock().ok())
            .is_some_and(|a| a.contains(required))
    }

    /// Server `index` was seen to have applied `position` (a wait for it succeeded).
    pub fn record_applied(&self, index: usize, position: &GtidList) {
        if let Some(Ok(mut a)) = self.applied.get(index).map(|a| a.lock()) {
            a.raise_all(position);
        }
    }

    /// Whether a read may wait on server `index` now.
    pub fn may_wait(&self, index: usize) -> bool {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.no_wait_until
            .get(index)
            .is_some_and(|t| t.load(Relaxed) <= now)
    }

    /// A wait on server `index` timed out: no read waits there for `pause`.
    pub fn wait_timed_out(&self, index: usize, pause: Duration) {
        let until = (self.epoch.elapsed() + pause).as_millis() as u64;
        if let Some(t) = self.no_wait_until.get(index) {
            t.store(until, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(s: &str) -> GtidList {
        s.parse().unwrap()
    }

    #[test]
    fn a_replica_has_a_write_once_probed_or_waited_past_it() {
        let c = Causal::new(2, Acked::default());
        c.acknowledge("0-1-7".parse().unwrap());
        c.acknowledge("0-1-5".parse().unwrap());
        let required = c.acked();
        assert_eq!(required, pos("0-1-7"));
        assert!(!c.has_applied(1, Some(&pos("0-1-6")), &required));
        assert!(c.has_applied(1, Some(&pos("0-1-7")), &required));
        c.record_applied(1, &pos("0-1-8"));
        assert!(c.has_applied(1, Some(&pos("0-1-6")), &required));
        assert!(!c.has_applied(0, None, &required));
        assert!(c.has_applied(0, None, &GtidList::default()));
        assert!(!c.has_applied(9, None, &required), "unknown server");
    }

    #[test]
    fn a_timed_out_wait_pauses_waiting_on_that_server() {
        let c = Causal::new(2, Acked::default());
        assert!(c.may_wait(0));
        c.wait_timed_out(0, Duration::from_secs(60));
        assert!(!c.may_wait(0));
        assert!(c.may_wait(1));
        assert!(!c.may_wait(5));
    }
}
