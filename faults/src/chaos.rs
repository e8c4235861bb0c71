//! The chaos soak's schedule: a list of faults drawn from a seed, so that a failing run is
//! replayed exactly by running the same seed again.
//!
//! The schedule is pure (no clock, no process): [`Schedule::draw`] turns a seed and a
//! [`Shape`] into timed [`Event`]s; the soak (`benches/chaos.rs`) carries them out against
//! a sandbox and two kohaproxy instances and checks its invariants. The rules the draw
//! keeps, so that every run can end healed and checkable:
//!
//! - no fault starts in the first [`Shape::warmup`] or the last [`Shape::quiet`], and every
//!   fault that lasts ends before the quiet tail begins;
//! - at most [`Shape::max_server_faults`] servers are down, paused, restarting or in
//!   maintenance at once (with three servers and two allowed, a replica can be down when
//!   the master dies: a double fault);
//! - at most one proxy is down at once, and a link fault involves a proxy that is up;
//! - a backup is asked for every [`Shape::backup_every`].

use std::fmt;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One thing the soak does to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL of server `server` (config index); started again after `down`.
    KillServer {
        /// Config index.
        server: usize,
        /// How long it stays dead.
        down: Duration,
    },
    /// SIGSTOP of server `server`; SIGCONT after `down` (a hang).
    PauseServer {
        /// Config index.
        server: usize,
        /// How long it hangs.
        down: Duration,
    },
    /// A clean shutdown of server `server` (SIGTERM), started again at once.
    RestartServer {
        /// Config index.
        server: usize,
    },
    /// SIGKILL of proxy `proxy`; started again after `down`.
    KillProxy {
        /// Which proxy (0 takes the writes, 1 the reads).
        proxy: usize,
        /// How long it stays dead.
        down: Duration,
    },
    /// The link from the relayed proxy to server `server` reset (every connection, and
    /// every new one) for `down`.
    CutLink {
        /// Config index.
        server: usize,
        /// How long.
        down: Duration,
    },
    /// The link from the relayed proxy to server `server` silent (nothing forwarded,
    /// nothing closed) for `down`: a partition.
    BlackholeLink {
        /// Config index.
        server: usize,
        /// How long.
        down: Duration,
    },
    /// `SWITCHOVER` through proxy `via`.
    Switchover {
        /// Which proxy runs it.
        via: usize,
    },
    /// `SET SERVER x MAINTENANCE` through proxy 0, `ONLINE` after `down`.
    Maintenance {
        /// Config index.
        server: usize,
        /// How long.
        down: Duration,
    },
    /// `BACKUP NOW` through proxy 0.
    Backup,
}

impl Fault {
    /// A short name per kind, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::KillServer { .. } => "SIGKILL server",
            Fault::PauseServer { .. } => "SIGSTOP server",
            Fault::RestartServer { .. } => "restart server",
            Fault::KillProxy { .. } => "SIGKILL proxy",
            Fault::CutLink { .. } => "cut proxy link",
            Fault::BlackholeLink { .. } => "blackhole proxy link",
            Fault::Switchover { .. } => "switchover",
            Fault::Maintenance { .. } => "maintenance",
            Fault::Backup => "backup",
        }
    }

    /// How long the fault lasts before the soak undoes it (zero for one-shot faults).
    pub fn down(&self) -> Duration {
        match *self {
            Fault::KillServer { down, .. }
            | Fault::PauseServer { down, .. }
            | Fault::KillProxy { down, .. }
            | Fault::CutLink { down, .. }
            | Fault::BlackholeLink { down, .. }
            | Fault::Maintenance { down, .. } => down,
            Fault::RestartServer { .. } | Fault::Switchover { .. } | Fault::Backup => {
                Duration::ZERO
            }
        }
    }

    /// The server it takes out of service, if any.
    fn server(&self) -> Option<usize> {
        match *self {
            Fault::KillServer { server, .. }
            | Fault::PauseServer { server, .. }
            | Fault::RestartServer { server }
            | Fault::Maintenance { server, .. } => Some(server),
            _ => None,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_millis();
        match *self {
            Fault::KillServer { server, down } => {
                write!(f, "SIGKILL server {server}, restart after {} ms", ms(down))
            }
            Fault::PauseServer { server, down } => {
                write!(f, "SIGSTOP server {server}, SIGCONT after {} ms", ms(down))
            }
            Fault::RestartServer { server } => write!(f, "restart server {server}"),
            Fault::KillProxy { proxy, down } => {
                write!(f, "SIGKILL proxy {proxy}, start after {} ms", ms(down))
            }
            Fault::CutLink { server, down } => {
                write!(f, "cut proxy 1 -> server {server} for {} ms", ms(down))
            }
            Fault::BlackholeLink { server, down } => {
                write!(
                    f,
                    "blackhole proxy 1 -> server {server} for {} ms",
                    ms(down)
                )
            }
            Fault::Switchover { via } => write!(f, "SWITCHOVER through proxy {via}"),
            Fault::Maintenance { server, down } => {
                write!(f, "server {server} in maintenance for {} ms", ms(down))
            }
            Fault::Backup => write!(f, "BACKUP NOW"),
        }
    }
}

/// A fault and when it starts (from the start of the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// When it starts.
    pub at: Duration,
    /// What it does.
    pub fault: Fault,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>8.3} s  {}", self.at.as_secs_f64(), self.fault)
    }
}

/// The size and pace of a run.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The whole run.
    pub duration: Duration,
    /// Servers in the sandbox (config order).
    pub servers: usize,
    /// Proxies (proxy 1 reaches the servers through fault relays).
    pub proxies: usize,
    /// No fault before this.
    pub warmup: Duration,
    /// No fault in this tail of the run, so that the end is checked healed.
    pub quiet: Duration,
    /// The gap between two faults is drawn from this range.
    pub gap: (Duration, Duration),
    /// How long a lasting fault lasts is drawn from this range.
    pub down: (Duration, Duration),
    /// At most this many servers out of service at once.
    pub max_server_faults: usize,
    /// A backup every this long (none if zero).
    pub backup_every: Duration,
}

impl Shape {
    /// Three servers, two proxies, a fault every 2-8 s lasting 1-8 s, a backup every
    /// minute, 10 s of warm-up and 20 s of quiet tail.
    pub fn new(duration: Duration) -> Shape {
        Shape {
            duration,
            servers: 3,
            proxies: 2,
            warmup: Duration::from_secs(10),
            quiet: Duration::from_secs(20),
            gap: (Duration::from_secs(2), Duration::from_secs(8)),
            down: (Duration::from_secs(1), Duration::from_secs(8)),
            max_server_faults: 2,
            backup_every: Duration::from_secs(60),
        }
    }
}

impl Shape {
    /// [`Shape::new`] for a three-node Galera cluster: one node out of service at a time,
    /// so that two of three always form the Primary component (two out would leave the
    /// third non-Primary until a person bootstraps it, which the soak does not test).
    pub fn galera(duration: Duration) -> Shape {
        Shape {
            max_server_faults: 1,
            ..Shape::new(duration)
        }
    }
}

/// The faults of one run, in order of start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// What it was drawn from.
    pub seed: u64,
    /// In order of `at`.
    pub events: Vec<Event>,
}

impl Schedule {
    /// The schedule `seed` gives for `shape` (the same seed and shape always give the same
    /// schedule; see the module docs for the rules).
    pub fn draw(seed: u64, shape: &Shape) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let end = shape.duration.saturating_sub(shape.quiet);
        let mut events: Vec<Event> = Vec::new();
        let mut at = shape.warmup;
        loop {
            at += draw_between(&mut rng, shape.gap);
            if at >= end {
                break;
            }
            let active: Vec<&Event> = events
                .iter()
                .filter(|e| e.at <= at && at < e.at + e.fault.down() + SETTLE)
                .collect();
            let servers_out: Vec<usize> = active.iter().filter_map(|e| e.fault.server()).collect();
            let proxy_down = active
                .iter()
                .any(|e| matches!(e.fault, Fault::KillProxy { .. }));
            let link_down = active
                .iter()
                .any(|e| matches!(e.fault, Fault::CutLink { .. } | Fault::BlackholeLink { .. }));
            let free: Vec<usize> = (0..shape.servers)
                .filter(|s| !servers_out.contains(s))
                .collect();
            let room = servers_out.len() < shape.max_server_faults && !free.is_empty();
            let mut down = draw_between(&mut rng, shape.down);
            if at + down >= end {
                down = end.saturating_sub(at);
            }
            let roll = rng.random_range(0..100u32);
            let server = free
                .get(rng.random_range(0..free.len().max(1)))
                .copied()
                .unwrap_or(0);
            let fault = match roll {
                0..=19 if room => Fault::KillServer { server, down },
                20..=31 if room => Fault::PauseServer { server, down },
                32..=39 if room => Fault::RestartServer { server },
                40..=47 if room => Fault::Maintenance { server, down },
                48..=61 if !proxy_down && shape.proxies > 0 => Fault::KillProxy {
                    proxy: rng.random_range(0..shape.proxies),
                    down,
                },
                62..=71 if !link_down && !proxy_down && shape.proxies > 1 => Fault::CutLink {
                    server: rng.random_range(0..shape.servers),
                    down,
                },
                72..=81 if !link_down && !proxy_down && shape.proxies > 1 => Fault::BlackholeLink {
                    server: rng.random_range(0..shape.servers),
                    down,
                },
                82..=99 if servers_out.is_empty() && !proxy_down => Fault::Switchover {
                    via: rng.random_range(0..shape.proxies.max(1)),
                },
                // The kind drawn does not fit now: nothing this time.
                _ => continue,
            };
            events.push(Event { at, fault });
        }
        if !shape.backup_every.is_zero() {
            let mut at = shape.warmup + shape.backup_every / 2;
            while at < end {
                events.push(Event {
                    at,
                    fault: Fault::Backup,
                });
                at += shape.backup_every;
            }
        }
        events.sort_by_key(|e| e.at);
        Schedule { seed, events }
    }

    /// How many events of each kind, in a stable order.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for e in &self.events {
            match counts.iter_mut().find(|(k, _)| *k == e.fault.kind()) {
                Some((_, n)) => *n += 1,
                None => counts.push((e.fault.kind(), 1)),
            }
        }
        counts.sort();
        counts
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {}: {} events", self.seed, self.events.len())?;
        for e in &self.events {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

/// After a fault is undone, the time it takes the cluster to be whole again (a restarted
/// server to start and rejoin) before the draw counts it as back in service.
const SETTLE: Duration = Duration::from_secs(5);

/// A duration in `[low, high]`, to the millisecond.
fn draw_between(rng: &mut ChaCha8Rng, (low, high): (Duration, Duration)) -> Duration {
    let (low, high) = (low.as_millis() as u64, high.as_millis() as u64);
    Duration::from_millis(rng.random_range(low..=high.max(low)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> Shape {
        Shape::new(Duration::from_secs(600))
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let a = Schedule::draw(7, &shape());
        assert_eq!(a, Schedule::draw(7, &shape()));
        assert_ne!(a.events, Schedule::draw(8, &shape()).events);
        assert!(a.events.len() > 60, "{a}");
    }

    #[test]
    fn every_fault_is_undone_before_the_quiet_tail_and_none_starts_in_the_warmup() {
        let s = shape();
        for seed in 0..50 {
            for e in Schedule::draw(seed, &s).events {
                assert!(e.at >= s.warmup, "seed {seed}: {e}");
                assert!(
                    e.at + e.fault.down() <= s.duration - s.quiet,
                    "seed {seed}: {e}"
                );
            }
        }
    }

    #[test]
    fn server_and_proxy_faults_stay_within_their_bounds() {
        let s = shape();
        for seed in 0..50 {
            let events = Schedule::draw(seed, &s).events;
            for e in &events {
                let active: Vec<&Event> = events
                    .iter()
                    .filter(|o| o.at <= e.at && e.at < o.at + o.fault.down() + SETTLE)
                    .collect();
                let servers: Vec<usize> = active.iter().filter_map(|o| o.fault.server()).collect();
                assert!(servers.len() <= s.max_server_faults, "seed {seed} at {e}");
                let mut unique = servers.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(
                    unique.len(),
                    servers.len(),
                    "seed {seed}: a server twice at {e}"
                );
                let proxies = active
                    .iter()
                    .filter(|o| matches!(o.fault, Fault::KillProxy { .. }))
                    .count();
                assert!(proxies <= 1, "seed {seed}: two proxies down at {e}");
            }
        }
    }

    #[test]
    fn every_kind_is_drawn_over_a_long_run() {
        let counts = Schedule::draw(1, &Shape::new(Duration::from_secs(3600))).counts();
        let kinds: Vec<&str> = counts.iter().map(|(k, _)| *k).collect();
        for kind in [
            "SIGKILL server",
            "SIGSTOP server",
            "restart server",
            "SIGKILL proxy",
            "cut proxy link",
            "blackhole proxy link",
            "switchover",
            "maintenance",
            "backup",
        ] {
            assert!(kinds.contains(&kind), "{kind} never drawn: {counts:?}");
        }
    }
}
