//! Causal reads: which writes a read must see, and which replicas are known to have them.
//!
//! Scopes (`routing.causal_reads`):
//! - `global`: every write acknowledged through any proxy of the cluster. Only the master
//!   knows them all, so each read sent to a replica reads the master's `gtid_binlog_pos`
//!   (on the session's master connection, sent at the same moment as the read itself and a
//!   position query to the replica, so the round trips overlap) and is served only if the
//!   replica's position, read just before the statement ran there, contains it.
//! - `local`: every write this proxy process acknowledged. The master's OK for every
//!   committed write carries its GTID (`last_gtid`), and the proxy raises `acked` before it
//!   forwards that OK; after a start, the master's position at its first probe is the
//!   floor (what an earlier process may have acknowledged), and until it is known reads go
//!   to the master.
//! - `session`: the session's own writes. `off`: none.
//!
//! Known lower bounds of a replica's position: the monitor's last probe, every position
//! query and every MASTER_GTID_WAIT the proxy saw succeed there.
//!
//! The decisions are pure functions over the candidates ([`need`], [`pick`]); the session
//! does the I/O.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kohaproxy_config::CausalReads;
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
    /// Per server: until when (ms since `epoch`) checked reads ask the master first, after
    /// a checked read found the server behind the master's position.
    master_first_until: Vec<AtomicU64>,
    epoch: Instant,
    /// The master's position when this process first saw it: covers every write an
    /// earlier process acknowledged (scope `local`).
    floor: OnceLock<GtidList>,
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
            master_first_until: (0..servers).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            floor: OnceLock::new(),
        }
    }

    /// Sets the start floor once, from the master's `gtid_binlog_pos` as this process's
    /// monitor first read it (every earlier process's acknowledgements came before it).
    /// Later calls change nothing.
    pub fn learn_floor(&self, master_position: &GtidList) {
        if self.floor.set(master_position.clone()).is_ok() {
            tracing::info!(position = %master_position, "causal reads: the master's position at start is known; reads may use replicas");
        }
    }

    /// Whether the start floor is known.
    pub fn floor_known(&self) -> bool {
        self.floor.get().is_some()
    }

    /// Copies this proxy's acknowledged position raised to the start floor into `out`.
    pub fn local_into(&self, out: &mut GtidList) {
        self.acked.copy_into(out);
        if let Some(floor) = self.floor.get() {
            out.raise_all(floor);
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

    /// How a `global` read checked on server `index` learns the master's position now.
    pub fn check_order(&self, index: usize) -> CheckOrder {
        let now = self.epoch.elapsed().as_millis() as u64;
        let until = self
            .master_first_until
            .get(index)
            .map_or(0, |t| t.load(Relaxed));
        check_order(now, until)
    }

    /// A checked read found server `index` behind the master's position: for
    /// [`BEHIND_MEMORY`], checked reads there ask the master first.
    pub fn found_behind(&self, index: usize) {
        let until = (self.epoch.elapsed() + BEHIND_MEMORY).as_millis() as u64;
        if let Some(t) = self.master_first_until.get(index) {
            t.store(until, Relaxed);
        }
    }
}

/// How long a replica found behind the master's position is checked master first. Under
/// a steady write load a replica stays a replication delay behind the master's position,
/// so every read together with its check would be thrown away and run again; after this
/// long one read is tried together again (at most one wasted statement per replica per
/// period).
pub const BEHIND_MEMORY: Duration = Duration::from_secs(1);

/// The two ways a `global` read learns that its replica has the master's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOrder {
    /// The master's position query, and the replica's position query with the statement,
    /// leave together: one round trip (the longer of the two) if the replica has it, but a
    /// replica that lacks it runs the statement for nothing, and it runs again behind a
    /// wait.
    Together,
    /// The master's position first, then a wait for it and the statement on the replica in
    /// one write: two round trips in a row, the statement runs once.
    MasterFirst,
}

/// The order for a check at `now` on a server checked master first until `until` (both
/// in ms of one clock).
pub fn check_order(now: u64, until: u64) -> CheckOrder {
    if now < until {
        CheckOrder::MasterFirst
    } else {
        CheckOrder::Together
    }
}

/// What a read routed to a replica must be shown to have applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing (scope `off`, or a `session` that wrote nothing yet).
    Nothing,
    /// A position the session holds: its own writes (`session`), or this proxy's
    /// acknowledged writes and start floor (`local`).
    Known,
    /// The master's position, read after the read arrived (`global`); the position in
    /// hand (this proxy's writes) is waited for with the read where a replica is not
    /// known to have it.
    MasterNow,
    /// Not knowable yet: the proxy started and has not seen the master's position
    /// (`local`); the read goes to the master.
    Unknown,
}

/// What scope `mode` asks of a read, given whether the start floor is known and whether
/// the position in hand is empty.
pub fn need(mode: CausalReads, floor_known: bool, known_is_empty: bool) -> Need {
    match mode {
        CausalReads::Off => Need::Nothing,
        CausalReads::Session if known_is_empty => Need::Nothing,
        CausalReads::Session => Need::Known,
        CausalReads::Local if !floor_known => Need::Unknown,
        CausalReads::Local => Need::Known,
        CausalReads::Global => Need::MasterNow,
    }
}

/// Why a read that could have gone to a replica went to the master for causality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToMaster {
    /// The proxy started and has not seen the master's position yet (`local`).
    Starting,
    /// No usable replica is known to have the writes, and none may wait for them (the
    /// wait is 0, or a wait on each timed out within the last monitor interval).
    Behind,
    /// The replica's wait for the writes timed out.
    WaitTimedOut,
    /// The master's position could not be read (`global`).
    NoMasterPosition,
}

impl ToMaster {
    /// Every reason, in the order of [`ToMaster::index`].
    pub const ALL: [ToMaster; 4] = [
        ToMaster::Starting,
        ToMaster::Behind,
        ToMaster::WaitTimedOut,
        ToMaster::NoMasterPosition,
    ];

    /// Position in [`ToMaster::ALL`] (and in the counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name shown in SHOW STATS and the log.
    pub fn name(self) -> &'static str {
        match self {
            ToMaster::Starting => "starting",
            ToMaster::Behind => "behind",
            ToMaster::WaitTimedOut => "wait_timed_out",
            ToMaster::NoMasterPosition => "no_master_position",
        }
    }
}

/// A usable replica (role, state, lag limit and maintenance already checked), as the
/// router sees it for one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Config index.
    pub index: usize,
    /// Statements this proxy has in flight there.
    pub load: u64,
    /// The session already has a connection to it.
    pub connected: bool,
    /// Known to have applied the position in hand (this proxy's writes, or the
    /// session's).
    pub known: bool,
    /// A wait there did not time out within the last monitor interval.
    pub may_wait: bool,
}

/// Which replica serves a read, and what must happen first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// This replica serves the read as it is.
    Ready(usize),
    /// This replica serves the read once it is shown to have the master's position
    /// (read with the statement; [`Need::MasterNow`]).
    Check(usize),
    /// This replica serves the read after a MASTER_GTID_WAIT for the position in hand.
    Wait(usize),
    /// The master serves the read; `None` when no replica is usable at all (not a
    /// causality decision).
    Master(Option<ToMaster>),
}

/// Chooses the replica for a read among `candidates`: the least loaded, then one this
/// session is connected to, then a rotation by `session` so idle replicas share new
/// sessions. `wait` tells whether reads may wait at all (`routing.causal_wait_ms` > 0).
pub fn pick(candidates: &[Candidate], need: Need, wait: bool, session: u32) -> Pick {
    let n = candidates.iter().map(|c| c.index + 1).max().unwrap_or(1);
    let key = |c: &Candidate| {
        (
            c.load,
            !c.connected,
            (c.index + session as usize) % n,
            c.index,
        )
    };
    let best = |keep: &dyn Fn(&Candidate) -> bool| {
        candidates
            .iter()
            .filter(|c| keep(c))
            .min_by_key(|c| key(c))
            .map(|c| c.index)
    };
    if candidates.is_empty() {
        return Pick::Master(None);
    }
    match need {
        Need::Nothing => best(&|_| true).map_or(Pick::Master(None), Pick::Ready),
        Need::Unknown => Pick::Master(Some(ToMaster::Starting)),
        Need::Known => match best(&|c| c.known) {
            Some(i) => Pick::Ready(i),
            None => match best(&|c| wait && c.may_wait) {
                Some(i) => Pick::Wait(i),
                None => Pick::Master(Some(ToMaster::Behind)),
            },
        },
        Need::MasterNow => match best(&|c| c.may_wait && c.known).or_else(|| best(&|c| c.may_wait))
        {
            Some(i) => Pick::Check(i),
            None => Pick::Master(Some(ToMaster::Behind)),
        },
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
    fn the_start_floor_raises_what_local_reads_need() {
        let c = Causal::new(2, Acked::default());
        assert!(!c.floor_known());
        c.acknowledge("0-1-3".parse().unwrap());
        let mut out = GtidList::default();
        c.local_into(&mut out);
        assert_eq!(out, pos("0-1-3"));
        c.learn_floor(&pos("0-1-9,1-2-4"));
        c.learn_floor(&pos("0-1-20"));
        assert!(c.floor_known());
        c.local_into(&mut out);
        assert_eq!(out, pos("0-1-9,1-2-4"), "the first floor stays");
        assert_eq!(c.acked(), pos("0-1-3"), "the floor is not acknowledged");
    }

    #[test]
    fn what_each_scope_needs() {
        use CausalReads::*;
        let table = [
            // (mode, floor known, position in hand empty) -> need
            (Off, false, false, Need::Nothing),
            (Session, true, true, Need::Nothing),
            (Session, false, false, Need::Known),
            (Local, false, true, Need::Unknown),
            (Local, false, false, Need::Unknown),
            (Local, true, true, Need::Known),
            (Global, false, true, Need::MasterNow),
            (Global, true, false, Need::MasterNow),
        ];
        for (mode, floor, empty, want) in table {
            assert_eq!(need(mode, floor, empty), want, "{mode:?} {floor} {empty}");
        }
    }

    fn cand(index: usize, load: u64, connected: bool, known: bool, may_wait: bool) -> Candidate {
        Candidate {
            index,
            load,
            connected,
            known,
            may_wait,
        }
    }

    #[test]
    fn which_replica_serves_a_read() {
        let a = cand(1, 0, false, false, true);
        let b = cand(2, 0, true, true, true);
        let busy = cand(3, 4, true, true, true);
        let lagging = cand(4, 0, true, false, false);
        let cases: &[(&[Candidate], Need, bool, Pick)] = &[
            (&[], Need::Nothing, true, Pick::Master(None)),
            (&[], Need::MasterNow, true, Pick::Master(None)),
            // Least loaded, then connected.
            (&[a, b, busy], Need::Nothing, true, Pick::Ready(2)),
            (&[busy, a], Need::Nothing, true, Pick::Ready(1)),
            // Known beats less loaded but unknown.
            (&[a, busy], Need::Known, true, Pick::Ready(3)),
            (&[a, lagging], Need::Known, true, Pick::Wait(1)),
            (
                &[a, lagging],
                Need::Known,
                false,
                Pick::Master(Some(ToMaster::Behind)),
            ),
            (
                &[lagging],
                Need::Known,
                true,
                Pick::Master(Some(ToMaster::Behind)),
            ),
            (
                &[a, b],
                Need::Unknown,
                true,
                Pick::Master(Some(ToMaster::Starting)),
            ),
            // Global: every read is checked; a replica whose wait timed out is skipped.
            (&[a, b], Need::MasterNow, true, Pick::Check(2)),
            // ... preferring one known to have this proxy's writes over a less loaded one.
            (&[a, busy], Need::MasterNow, true, Pick::Check(3)),
            (&[lagging, a], Need::MasterNow, false, Pick::Check(1)),
            (
                &[lagging],
                Need::MasterNow,
                true,
                Pick::Master(Some(ToMaster::Behind)),
            ),
        ];
        for (candidates, need, wait, want) in cases {
            assert_eq!(
                pick(candidates, *need, *wait, 0),
                *want,
                "{candidates:?} {need:?}"
            );
        }
    }

    #[test]
    fn idle_replicas_share_sessions_by_rotation() {
        let c = [
            cand(1, 0, false, false, true),
            cand(2, 0, false, false, true),
        ];
        let chosen: Vec<Pick> = (0..4).map(|s| pick(&c, Need::Nothing, true, s)).collect();
        assert!(
            chosen.contains(&Pick::Ready(1)) && chosen.contains(&Pick::Ready(2)),
            "{chosen:?}"
        );
    }

    #[test]
    fn reasons_have_distinct_names_and_indexes() {
        for (i, r) in ToMaster::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = ToMaster::ALL.iter().map(|r| r.name()).collect();
        names.dedup();
        assert_eq!(names.len(), ToMaster::ALL.len());
    }

    #[test]
    fn a_replica_found_behind_is_checked_master_first_for_a_while() {
        assert_eq!(check_order(0, 0), CheckOrder::Together);
        assert_eq!(check_order(10, 11), CheckOrder::MasterFirst);
        assert_eq!(check_order(11, 11), CheckOrder::Together);
        let causal = Causal::new(2, Acked::default());
        assert_eq!(causal.check_order(1), CheckOrder::Together);
        causal.found_behind(1);
        assert_eq!(causal.check_order(1), CheckOrder::MasterFirst);
        assert_eq!(causal.check_order(0), CheckOrder::Together);
        assert_eq!(causal.check_order(7), CheckOrder::Together);
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
