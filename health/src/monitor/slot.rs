//! One server as the monitor keeps it: its prober, its up/down hysteresis, what its last
//! probes said and since when it has not answered.

use crate::note::Note;
use std::time::{Duration, Instant};

use kohaproxy_config::{ClusterKind, MonitorConfig, ServerConfig};
use tracing::{debug, info, warn};

use crate::hysteresis::{Hysteresis, Outcome};
use crate::probe::{Prober, Status};
use crate::topology::{ServerState, ServerView};

/// One server: its prober, its hysteresis and what the last probes said.
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) address: String,
    pub(super) prober: Prober,
    pub(super) health: Hysteresis,
    pub(super) status: Option<Status>,
    pub(super) last_error: Option<String>,
    pub(super) note: Option<Note>,
    pub(super) maintenance: bool,
    pub(super) settings_checked: bool,
    /// When this server's replication link last showed progress (a heartbeat or an
    /// event received): a replica whose IO thread still says "running" but receives
    /// nothing has lost a hung master.
    pub(super) link_progress: Instant,
    /// The end of its first failed probe since it last answered; `None` while its latest
    /// probe was answered.
    pub(super) unreachable_since: Option<Instant>,
    /// When its last answered probe began.
    pub(super) answered_at: Option<Instant>,
    /// The end of its first failed probe since it was last seen replicating from the
    /// master: from then on it may have lost what it had received and not applied (a
    /// restarted replica discards its relay log and fetches again from the master), so it
    /// is not trusted to hold what it acknowledged until it replicates again (see
    /// `failover::absent`). Unlike `unreachable_since`, answering again does not clear it.
    pub(super) out_of_sight_since: Option<Instant>,
}

impl Slot {
    /// A server of the config that has not been probed yet.
    pub(super) fn new(
        s: &ServerConfig,
        m: &MonitorConfig,
        kind: ClusterKind,
        now: Instant,
    ) -> Slot {
        let prober = Prober::new(&s.address, &m.user, &m.password, m.timeout);
        Slot {
            name: s.name.clone(),
            address: s.address.clone(),
            prober: match kind {
                ClusterKind::Replication => prober,
                ClusterKind::Galera => prober.galera(),
            },
            health: Hysteresis::new(m.fail_count, m.interval, now),
            status: None,
            last_error: None,
            note: None,
            maintenance: false,
            settings_checked: false,
            link_progress: now,
            unreachable_since: None,
            answered_at: None,
            out_of_sight_since: None,
        }
    }

    /// Applies the outcome of one probe that took `waited` and ended at `now`; logs a
    /// change of up/down once, with the reason.
    pub(super) fn record(
        &mut self,
        outcome: Result<Status, String>,
        waited: Duration,
        now: Instant,
    ) {
        let change = match outcome {
            Ok(status) => {
                let progress = |s: &Status| {
                    s.replication
                        .first()
                        .map(|r| (r.received_heartbeats, r.gtid_io_pos.clone()))
                };
                if self.status.as_ref().and_then(progress) != progress(&status) {
                    self.link_progress = now;
                }
                self.status = Some(status);
                self.last_error = None;
                self.unreachable_since = None;
                self.answered_at = Some(now - waited);
                self.health.record(Outcome::Success, now)
            }
            Err(error) => {
                self.unreachable_since.get_or_insert(now);
                self.out_of_sight_since.get_or_insert(now);
                let change = self.health.record(Outcome::Failure { waited }, now);
                debug!(server = %self.name, %error, failures = self.health.failures(), "probe failed");
                self.last_error = Some(error);
                change
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
    pub(super) fn view(&self) -> ServerView {
        let mut v = ServerView::new(&self.name, &self.address, self.health.since());
        v.state = self.health.state();
        v.failures = self.health.failures();
        v.read_only = self.status.as_ref().map(|s| s.read_only);
        v.last_error = self.last_error.clone();
        v.status = self.status.clone();
        v.note = self.note.clone();
        v.maintenance = self.maintenance;
        v
    }
}
