//! The monitor task: probes each server over its own connection with the monitor user,
//! applies the up/down hysteresis, discovers the roles and publishes a snapshot when
//! anything changed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use kohaproxy_config::Config;
use tracing::{debug, info, warn};

use crate::hysteresis::{Hysteresis, Outcome};
use crate::probe::{Prober, Status, ThreadState};
use crate::topology::{Role, ServerState, ServerView, Topology, TopologyHandle};

/// Probes the servers and publishes snapshots.
pub struct Monitor {
    servers: Vec<Slot>,
    interval: Duration,
    published: Arc<ArcSwap<Topology>>,
}

/// One server: its prober, its hysteresis and what the last probes said.
struct Slot {
    name: String,
    address: String,
    prober: Prober,
    health: Hysteresis,
    status: Option<Status>,
    last_error: Option<String>,
}

impl Monitor {
    /// Runs one round of probes (so the first snapshot is real), then spawns the probe
    /// loop on the current tokio runtime and returns the handle to read snapshots.
    pub async fn spawn(config: &Config) -> TopologyHandle {
        let now = Instant::now();
        let m = &config.monitor;
        let servers: Vec<Slot> = config
            .servers
            .iter()
            .map(|s| Slot {
                name: s.name.clone(),
                address: s.address.clone(),
                prober: Prober::new(&s.address, &m.user, &m.password, m.timeout),
                health: Hysteresis::new(m.fail_count, now),
                status: None,
                last_error: None,
            })
            .collect();
        let initial = Topology::build(
            servers
                .iter()
                .map(|s| ServerView::new(&s.name, &s.address, now))
                .collect(),
        );
        let mut monitor = Monitor {
            servers,
            interval: m.interval,
            published: Arc::new(ArcSwap::from_pointee(initial)),
        };
        monitor.round().await;
        let handle = TopologyHandle(monitor.published.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(monitor.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                monitor.round().await;
            }
        });
        handle
    }

    /// Probes every server concurrently (a round lasts at most `monitor.timeout`), then
    /// publishes if anything changed.
    async fn round(&mut self) {
        let outcomes =
            futures::future::join_all(self.servers.iter_mut().map(|s| s.prober.probe())).await;
        let now = Instant::now();
        for (slot, outcome) in self.servers.iter_mut().zip(outcomes) {
            slot.record(outcome, now);
        }
        let next = Topology::build(self.servers.iter().map(Slot::view).collect());
        let current = self.published.load_full();
        if *current != next {
            log_changes(&current, &next);
            self.published.store(Arc::new(next));
        }
    }
}

impl Slot {
    /// Applies one probe's outcome; logs a change of up/down once, with the reason.
    fn record(&mut self, outcome: Result<Status, String>, now: Instant) {
        let change = match outcome {
            Ok(status) => {
                self.status = Some(status);
                self.last_error = None;
                self.health.record(Outcome::Success, now)
            }
            Err(error) => {
                debug!(server = %self.name, %error, failures = self.health.failures().saturating_add(1), "probe failed");
                self.last_error = Some(error);
                self.health.record(Outcome::Failure, now)
            }
        };
        match change {
            Some(ServerState::Up) => {
                info!(server = %self.name, address = %self.address, "server is up")
            }
            Some(ServerState::Down) => warn!(
                server = %self.name,
                address = %self.address,
                failures = self.health.failures(),
                error = self.last_error.as_deref().unwrap_or(""),
                "server is down"
            ),
            Some(ServerState::Unknown) | None => {}
        }
    }

    /// This server's view (role and lag are filled by [`Topology::build`]).
    fn view(&self) -> ServerView {
        let mut v = ServerView::new(&self.name, &self.address, self.health.since());
        v.state = self.health.state();
        v.failures = self.health.failures();
        v.read_only = self.status.as_ref().map(|s| s.read_only);
        v.last_error = self.last_error.clone();
        v.status = self.status.clone();
        v
    }
}

/// Logs what changed between two snapshots that matters to people: the master, the
/// topology problem, each server's role and its replication threads. Lag and GTID
/// positions change all the time and are not logged.
fn log_changes(old: &Topology, new: &Topology) {
    if old.problem != new.problem {
        match &new.problem {
            Some(problem) => {
                warn!(%problem, "the topology makes no sense; no master until it does")
            }
            None => info!("the topology makes sense again"),
        }
    }
    if old.master().map(|m| &m.name) != new.master().map(|m| &m.name) {
        match new.master() {
            Some(m) => info!(master = %m.name, address = %m.address, "master found"),
            None if new.problem.is_some() => warn!("no master: the topology makes no sense"),
            None => warn!("no master: no reachable writable server"),
        }
    }
    for (i, s) in new.servers.iter().enumerate() {
        let before = old.servers.get(i);
        if before.map(|b| b.role) != Some(s.role) {
            let reason = match s.role {
                Role::Master => "the single writable server, replicating from nobody",
                Role::Replica => "read-only, replicating from the master",
                Role::Standalone => "read-only, replicating from nobody",
                Role::Unknown if s.state != ServerState::Up => "not up",
                Role::Unknown if new.problem.is_some() => "the topology makes no sense",
                Role::Unknown => "there is no master to follow",
            };
            info!(server = %s.name, role = %s.role, reason, "role changed");
        }
        let threads = |v: &ServerView| {
            v.status
                .as_ref()
                .and_then(|st| st.replication.first())
                .map(|r| (r.io_thread, r.sql_thread))
        };
        let (was, is) = (before.and_then(threads), threads(s));
        if s.state == ServerState::Up && was != is {
            let link = s.status.as_ref().and_then(|st| st.replication.first());
            match link {
                Some(r)
                    if r.io_thread == ThreadState::Running
                        && r.sql_thread == ThreadState::Running =>
                {
                    info!(server = %s.name, master = %format!("{}:{}", r.master_host, r.master_port), "replication running")
                }
                Some(r) => warn!(
                    server = %s.name,
                    io = %r.io_thread,
                    sql = %r.sql_thread,
                    io_error = r.last_io_error.as_deref().unwrap_or(""),
                    sql_error = r.last_sql_error.as_deref().unwrap_or(""),
                    "replication not fully running"
                ),
                None => info!(server = %s.name, "not replicating"),
            }
        }
    }
}
