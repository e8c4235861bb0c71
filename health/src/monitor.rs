//! The monitor task: probes each server over its own connection with the monitor user,
//! applies the up/down hysteresis, discovers the roles and publishes a snapshot when
//! anything changed.

use std::time::{Duration, Instant};

use kohaproxy_config::{Config, FailoverMode, MonitorConfig, ServerConfig};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

mod changes;
mod commands;
mod cut;
mod galera;
mod keep;
mod promote;
mod slot;
mod switchover;

use changes::log_changes;
use slot::Slot;

use promote::Why;

use crate::acked::Acked;
use crate::control::{Control, Request};
use crate::failover;
use crate::probe::ThreadState;
use crate::roles::{self, Followed};
use crate::term;
use crate::topology::{Role, ServerState, ServerView, Topology, TopologyHandle};

/// The least time between two rounds a session asked for (see `Monitor::spawn_with`).
const REQUEST_GAP: Duration = Duration::from_millis(100);

/// The name of the lock a kohaproxy holds on a majority of the servers while it changes
/// the topology, so that of several proxies watching one cluster only one acts.
const LOCK: &str = "kohaproxy_topology";

/// How long a switchover (replication or Galera) waits for statements that looked at the
/// master before the hold to finish. Only statements sent but not yet started can meet
/// the read-only master (a running write holds `SET GLOBAL read_only` back), so this is
/// short.
const DRAIN_BOUND: Duration = Duration::from_secs(1);

/// Probes the servers, publishes snapshots, and keeps the cluster whole: adopts the
/// master, fails over, fences, rejoins, and runs the admin's switchovers.
pub struct Monitor {
    servers: Vec<Slot>,
    interval: Duration,
    handle: TopologyHandle,
    config: MonitorConfig,
    server_config: Vec<ServerConfig>,
    acked: Acked,
    commands: mpsc::Receiver<Request>,
    /// The current term (see [`Topology::term`]).
    term: u64,
    /// The master of the current term (config index), once one was found or promoted.
    master: Option<usize>,
    /// Whether `master` may take writes as soon as it answers writable.
    trust: Trust,
    /// New statements are held: a switchover is swapping roles.
    holding: bool,
    /// What is under way or was refused, for people.
    operation: Option<String>,
    /// The monitor may change the servers (fence, rejoin, fail over, switch over, claim
    /// the Galera writer); false for tools that only look.
    acts: bool,
    /// The cluster is Galera: the writer is recorded on the cluster and followed (see
    /// `monitor/galera.rs`); `None` for replication.
    galera: Option<galera::GaleraState>,
}

/// Whether the term's master may take writes as soon as it answers writable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trust {
    /// Found, promoted, followed or confirmed: it takes writes while it is up and
    /// writable.
    Confirmed,
    /// It was seen down. Meanwhile another kohaproxy may have begun promoting a replica
    /// (this one's failover may have begun and failed, or found the lock taken): when it
    /// answers again it is confirmed under the topology lock, after any such promotion
    /// (and its term record) is complete, before it takes a write.
    Doubted,
}

impl Monitor {
    /// Runs one round of probes (so the first snapshot is real), then spawns the monitor
    /// task on the current tokio runtime and returns the handle to read snapshots.
    pub async fn spawn(config: &Config) -> TopologyHandle {
        Monitor::spawn_with(config, Acked::default()).await.0
    }

    /// Like [`Monitor::spawn`], with the proxy's acknowledged position (never promote a
    /// replica lacking it) and the channel for admin commands.
    pub async fn spawn_with(config: &Config, acked: Acked) -> (TopologyHandle, Control) {
        let (mut monitor, commands) = Monitor::new(config, acked);
        monitor.round().await;
        let handle = monitor.handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(monitor.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let requests = monitor.handle.clone();
            // At most 100 ms, whatever the interval: a session waiting on a probe round
            // (a monitor with a long interval is woken only by such requests) must not
            // wait a fifth of the interval.
            let gap = (monitor.interval / crate::hysteresis::RECHECK).min(REQUEST_GAP);
            let mut last = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = requests.probe_requested() => {
                        // Requests come in bursts (every session of a dead master asks):
                        // rounds stay `gap` apart, so `fail_count` failed probes span at
                        // least `fail_count - 1` gaps, never a burst of refusals.
                        tokio::time::sleep_until(last + gap).await;
                    }
                    Some((command, reply)) = monitor.commands.recv() => {
                        let answer = monitor.command(command).await;
                        let _ = reply.send(answer);
                        monitor.publish();
                        continue;
                    }
                }
                last = tokio::time::Instant::now();
                monitor.round().await;
                monitor.handle.round_done();
                tick.reset_after(monitor.next_round());
            }
        });
        (handle, commands)
    }

    /// One round of probes that changes nothing on the servers: the roles as they are
    /// now, for tools that run beside the proxy (`kohaproxy backup run`).
    pub async fn observe(config: &Config) -> std::sync::Arc<Topology> {
        let (mut monitor, _commands) = Monitor::new(config, Acked::default());
        monitor.acts = false;
        monitor.round().await;
        monitor.handle.load()
    }

    /// A monitor of `config`'s servers that has not probed yet, and its command channel.
    fn new(config: &Config, acked: Acked) -> (Monitor, Control) {
        let now = Instant::now();
        let m = &config.monitor;
        let servers: Vec<Slot> = config
            .servers
            .iter()
            .map(|s| Slot::new(s, m, config.cluster.kind, now))
            .collect();
        let initial = Topology::build(
            servers
                .iter()
                .map(|s| ServerView::new(&s.name, &s.address, now))
                .collect(),
        );
        let (tx, rx) = mpsc::channel(8);
        let monitor = Monitor {
            servers,
            interval: m.interval,
            handle: TopologyHandle::new(initial),
            config: m.clone(),
            server_config: config.servers.clone(),
            acked,
            commands: rx,
            term: 0,
            master: None,
            trust: Trust::Confirmed,
            holding: false,
            operation: None,
            acts: true,
            galera: (config.cluster.kind == kohaproxy_config::ClusterKind::Galera)
                .then(|| galera::GaleraState::new(&config.cluster)),
        };
        (monitor, Control(tx))
    }

    /// One round: probe every server concurrently (at most `monitor.timeout`), act on
    /// what the probes show, publish.
    async fn round(&mut self) {
        self.probe().await;
        self.act().await;
        self.publish();
    }

    /// How long until the next round: a whole interval, or a fraction of it while a
    /// server that is up has just failed a probe (see [`crate::hysteresis`]), and while
    /// the master is down and not yet replaced, up to `failover_hold` (the time
    /// statements wait for a new master): a failover waiting for the replicas to confirm
    /// the master's death goes ahead as soon as they do.
    fn next_round(&self) -> Duration {
        let now = Instant::now();
        let master_down = self
            .master
            .and_then(|m| self.servers.get(m))
            .is_some_and(|m| {
                m.health.state() == ServerState::Down
                    && m.health.duration(now) < self.config.failover_hold
            });
        if master_down || self.servers.iter().any(|s| s.health.suspect()) {
            self.interval / crate::hysteresis::RECHECK
        } else {
            self.interval
        }
    }

    /// Probes every server and records the outcomes.
    async fn probe(&mut self) {
        self.probe_except(None).await;
    }

    /// Probes every server but `skip` (a failed master under failover: a hung one would
    /// cost a whole probe timeout for nothing).
    pub(super) async fn probe_except(&mut self, skip: Option<usize>) {
        let probes = self
            .servers
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(i, s)| async move {
                let started = Instant::now();
                let outcome = s.prober.probe().await;
                (i, outcome, started, Instant::now())
            });
        // Each outcome dates from its own probe's end: a hung server's probe, which
        // lasts the whole timeout, must not make the others' news look later.
        for (i, outcome, started, finished) in futures::future::join_all(probes).await {
            self.servers[i].record(outcome, finished - started, finished);
        }
        self.check_settings().await;
    }

    /// Reads, once per server after its first good probe, the settings that decide
    /// whether a failover can lose an acknowledged write, and warns about each risky one.
    async fn check_settings(&mut self) {
        for i in 0..self.servers.len() {
            if self.servers[i].settings_checked
                || self.servers[i].status.is_none()
                || self.galera.is_some()
            {
                continue;
            }
            self.servers[i].settings_checked = true;
            let period = self.servers[i]
                .status
                .as_ref()
                .and_then(|s| s.replication.first())
                .map_or(0, |r| r.heartbeat_period_ms);
            if let Some(risk) = crate::settings::heartbeat_risk(period) {
                warn!(server = %self.servers[i].name, "{risk}");
            }
            let values = match self.open(i).await {
                Ok(mut s) => s.row(crate::settings::QUERY, self.config.timeout).await,
                Err(e) => Err(e),
            };
            match values {
                Ok(values) => {
                    for risk in crate::settings::risks(&values) {
                        warn!(server = %self.servers[i].name, "{risk}");
                    }
                }
                Err(e) => {
                    debug!(server = %self.servers[i].name, "cannot read the replication settings: {e}")
                }
            }
        }
    }

    /// The snapshot the current state makes.
    fn topology(&self) -> Topology {
        if let Some(g) = &self.galera {
            let mut t = self.galera_topology(g, self.master.filter(|_| !self.holding));
            t.term = self.term;
            t.operation = self.operation.clone();
            return t;
        }
        let mut t =
            Topology::build_under(self.servers.iter().map(Slot::view).collect(), self.master);
        if self.holding || t.master != self.master || self.trust != Trust::Confirmed {
            // Only the term's master takes writes; while roles swap, nobody does.
            if let Some(m) = t.master {
                if let Some(v) = t.servers.get_mut(m) {
                    v.role = Role::Unknown;
                }
            }
            t.master = None;
        }
        t.term = self.term;
        t.operation = self.operation.clone();
        t
    }

    /// Publishes the current snapshot if anything changed.
    fn publish(&mut self) {
        self.handle.set_holding(self.holding);
        let next = self.topology();
        let current = self.handle.load();
        if *current != next {
            log_changes(&current, &next);
            self.handle.publish(next);
        }
    }

    /// Sets what is under way (logged when it changes).
    fn set_operation(&mut self, operation: Option<String>) {
        if operation != self.operation {
            if let Some(o) = &operation {
                warn!(term = self.term, "{o}");
            }
            self.operation = operation;
        }
    }

    /// Whether replica `i`'s link showed progress recently enough to prove its master
    /// alive: within two heartbeat periods (and two probe intervals). Without heartbeats
    /// configured, a running IO thread is taken at its word.
    fn receiving(&self, i: usize, view: &ServerView, now: Instant) -> bool {
        let period = view
            .status
            .as_ref()
            .and_then(|s| s.replication.first())
            .map_or(0, |r| r.heartbeat_period_ms);
        if period == 0 {
            return true;
        }
        let window = Duration::from_millis(period.saturating_mul(2)).max(self.interval * 2);
        now.duration_since(self.servers[i].link_progress) <= window
    }

    /// Why `view` may not become the master, if it lacks writes the proxy acknowledged.
    fn lacks_acked(&self, view: &ServerView) -> Option<String> {
        let acked = self.acked.get();
        let holds = view
            .status
            .as_ref()
            .is_some_and(|st| st.gtid_current_pos.contains(&acked));
        (!holds).then(|| {
            format!(
                "{} is writable but lacks acknowledged writes ({acked}): not followed",
                view.name
            )
        })
    }

    /// Makes `index` the master of a new term: one above this proxy's, and at least the
    /// newest term the servers record (`recorded`), so a restarted proxy never goes back.
    /// Clears `out_of_sight_since` of each server seen replicating from this monitor's
    /// master again (its IO thread connected to it): it fetches again whatever it lost.
    fn note_back_in_sight(&mut self, t: &Topology) {
        let Some(h) = self.master else { return };
        for (i, v) in t.servers.iter().enumerate() {
            if i == h || self.servers[i].out_of_sight_since.is_none() {
                continue;
            }
            let follows = v
                .status
                .as_ref()
                .and_then(|s| s.replication.first())
                .is_some_and(|r| {
                    r.io_thread == ThreadState::Running
                        && roles::master_of(&t.servers, r) == Some(h)
                });
            if v.state == ServerState::Up && follows {
                self.servers[i].out_of_sight_since = None;
            }
        }
    }

    fn adopt(&mut self, index: usize, recorded: u64, why: &str) {
        self.term = (self.term + 1).max(recorded);
        self.master = Some(index);
        self.trust = Trust::Confirmed;
        info!(master = %self.servers[index].name, term = self.term, "{why}");
    }

    /// Looks at the last probes and keeps the cluster whole.
    async fn act(&mut self) {
        if self.galera.is_some() {
            self.act_galera().await;
            return;
        }
        let views: Vec<ServerView> = self.servers.iter().map(Slot::view).collect();
        let (newest, under) = term::master_to_follow(&views, self.master);
        let t = Topology::build_under(views, under);
        self.note_back_in_sight(&t);
        if !self.acts {
            if let Some(m) = t.master.filter(|&m| self.master != Some(m)) {
                self.adopt(m, newest.term, "master found");
            }
            return;
        }
        if let Some(m) = t.master.filter(|&m| self.master != Some(m)) {
            let newer = newest.master == Some(m) && self.master.is_some();
            if let Some(refusal) = self.lacks_acked(&t.servers[m]) {
                // Following it would lose a write a client was told is saved.
                if newer {
                    // Nor may this proxy keep writing to the server it superseded: no
                    // writes until a person decides (SHOW TOPOLOGY says why).
                    self.master = None;
                    self.set_operation(Some(format!(
                        "{refusal}; it holds the newest recorded term ({}), so writes stop here",
                        newest.term
                    )));
                    return;
                }
                self.set_operation(Some(refusal));
            } else {
                let why = if self.master.is_none() {
                    "master found".to_string()
                } else if newer {
                    format!(
                        "another kohaproxy promoted this server in term {}, after this proxy's master: following it",
                        newest.term
                    )
                } else {
                    "another server was made master (another kohaproxy, or by hand): following it"
                        .to_string()
                };
                self.adopt(m, newest.term, &why);
            }
        }
        if self.master.is_none() {
            if term::unfinished_promotion(&t.servers).is_some() {
                self.finish_unfinished_promotion().await;
                return;
            }
            match roles::followed_by_all(&t.servers) {
                // Every server read-only (all restarted, as production servers come up):
                // the one all replicas follow, itself replicating from nobody, is the master.
                Some(Followed::Alive(x)) => self.adopt(
                    x,
                    newest.term,
                    "every replica follows this read-only server: it is the master",
                ),
                // The master all replicas follow is down, and this proxy never saw it
                // alive (it started after the master died, or during another proxy's
                // failover that changed nothing yet): it is the master, seen down, and
                // the usual failover decides below. As for a master seen alive, only
                // after `fail_count` failed probes in a row (a first probe decides a new
                // server's state alone).
                Some(Followed::Dead(x))
                    if self.servers[x].health.failures() >= self.config.fail_count.max(1) =>
                {
                    self.term = self.term.max(newest.term);
                    self.master = Some(x);
                    self.trust = Trust::Doubted;
                    warn!(master = %self.servers[x].name, term = self.term, "every replica follows this server, which is down: it is the master, and it is down");
                }
                Some(Followed::Dead(_)) | None => {}
            }
        }
        let Some(h) = self.master else { return };
        for (i, v) in t.servers.iter().enumerate() {
            if matches!(v.role, Role::Replica | Role::Master) && i != h
                || i == h && t.master == Some(h)
            {
                if let Some(slot) = self.servers.get_mut(i) {
                    if slot.note.as_ref().is_some_and(|n| !n.is_diverged()) {
                        slot.note = None;
                    }
                }
            }
        }
        let view = &t.servers[h];
        match view.state {
            ServerState::Up if t.master == Some(h) => {
                if self.trust != Trust::Confirmed && !self.confirm_master(h).await {
                    return;
                }
                if self.operation.is_some() && !self.holding {
                    self.set_operation(None);
                }
                self.fence(&t, h).await;
                self.rejoin(&t, h).await;
                self.reconnect_cut_off(&t, h).await;
                self.semi_sync_follows_roles(&t, h).await;
            }
            ServerState::Up => self.make_writable(&t, h).await,
            ServerState::Down => {
                self.trust = Trust::Doubted;
                let _ = self.master_down(&t, h, Why::Down).await;
            }
            ServerState::Unknown => {}
        }
    }

    /// This proxy has no master and the servers show a promotion left half-way
    /// ([`term::unfinished_promotion`]): under the topology lock (a promotion still under
    /// way elsewhere holds it until it is done), look again and finish it.
    async fn finish_unfinished_promotion(&mut self) {
        let _locks = match self.lock_majority(None).await {
            Ok(locks) => locks,
            Err(e) => {
                debug!("a promotion looks unfinished; not finished this round: {e}");
                return;
            }
        };
        self.probe().await;
        let views: Vec<ServerView> = self.servers.iter().map(Slot::view).collect();
        let Some(c) = term::unfinished_promotion(&views) else {
            return;
        };
        let recorded = term::newest(&views).term;
        if let Err(e) = self.finish_promotion(c, recorded).await {
            warn!("{e}");
        }
    }

    /// The term's master `h`, seen down (see [`Trust::Doubted`]), answers writable again: it is confirmed as the master under the topology lock (so that a
    /// promotion another kohaproxy is running completes first, term record included), and
    /// only if the records still name it. False: not confirmed this round.
    async fn confirm_master(&mut self, h: usize) -> bool {
        let name = self.servers[h].name.clone();
        let _locks = match self.lock_majority(None).await {
            Ok(locks) => locks,
            Err(e) => {
                self.set_operation(Some(format!(
                    "{name} answers again after it was down; not confirmed yet: {e}"
                )));
                return false;
            }
        };
        self.probe().await;
        let views: Vec<ServerView> = self.servers.iter().map(Slot::view).collect();
        let (_, under) = term::master_to_follow(&views, self.master);
        if Topology::build_under(views, under).master != Some(h) {
            return false;
        }
        self.trust = Trust::Confirmed;
        info!(master = %name, term = self.term, "the master answers again and no other server was promoted: it stays the master");
        true
    }

    /// What master `h`'s replicas hold that it lacks, when any does
    /// ([`failover::ahead_of_master`]), as "db2 has 0-1-103".
    fn lost_by_master(&self, views: &[ServerView], h: usize) -> Option<String> {
        let t = Topology::build_under(views.to_vec(), None);
        let has = t.servers[h].status.as_ref()?.gtid_current_pos.clone();
        let candidates = self.candidates(&t, &replicas_of(&t, h));
        let ahead = failover::ahead_of_master(&candidates, &has);
        (!ahead.is_empty()).then(|| {
            candidates
                .iter()
                .filter(|c| ahead.contains(&c.index))
                .map(|c| format!("{} has {}", c.name, c.received))
                .collect::<Vec<_>>()
                .join(", ")
        })
    }

    /// The term's master is up but read-only (restarted with read_only=ON, as production
    /// servers should be): if it replicates from nobody and no other server is writable,
    /// it is made writable again.
    async fn make_writable(&mut self, t: &Topology, h: usize) {
        let view = &t.servers[h];
        let Some(st) = view
            .status
            .as_ref()
            .filter(|_| view.state == ServerState::Up)
        else {
            return;
        };
        let other_writable = t
            .servers
            .iter()
            .enumerate()
            .any(|(i, s)| i != h && s.state == ServerState::Up && s.read_only == Some(false));
        if !st.read_only || st.replication.iter().any(|r| r.is_active()) || other_writable {
            return;
        }
        if self.servers[h].maintenance {
            return;
        }
        // Another kohaproxy may be switching over right now (it made this server
        // read-only and is promoting another): take the topology lock it holds while it
        // does, and look again, so that this proxy never undoes its switch.
        let locks = match self.lock_majority(None).await {
            Ok(locks) => locks,
            Err(e) => {
                debug!(server = %self.servers[h].name, "the master is read-only; not made writable this round: {e}");
                return;
            }
        };
        self.probe().await;
        let still = self.servers[h]
            .status
            .as_ref()
            .is_some_and(|st| st.read_only && !st.replication.iter().any(|r| r.is_active()))
            && !self.servers.iter().enumerate().any(|(i, s)| {
                i != h
                    && s.health.state() == ServerState::Up
                    && s.status.as_ref().is_some_and(|st| !st.read_only)
            });
        // Nor if a newer promotion is recorded (another kohaproxy promoted a replica while
        // this one was down): this server is no longer the master, whatever this proxy
        // remembers.
        let views: Vec<ServerView> = self.servers.iter().map(Slot::view).collect();
        let own = self.servers[h]
            .status
            .as_ref()
            .and_then(|st| st.master_term.as_ref())
            .map_or(0, |r| r.term);
        let newer = term::newest(&views).term > own;
        if !still || newer {
            if newer {
                debug!(server = %self.servers[h].name, "the master is read-only and a newer term is recorded elsewhere: not made writable");
            }
            return;
        }
        // Nor if it came back from a crash without transactions a replica holds (and a
        // client may have been told are saved): the replica is promoted instead.
        if let Some(lost) = self.lost_by_master(&views, h) {
            drop(locks);
            let name = self.servers[h].name.clone();
            let why = format!(
                "{name} came back without transactions its replicas hold ({lost}): \
                 not made writable again"
            );
            if self.config.failover == FailoverMode::Manual {
                self.set_operation(Some(format!(
                    "{why}; failover is manual: run FAILOVER on the admin console"
                )));
                return;
            }
            warn!(
                term = self.term,
                "{why}; promoting the replica that holds them"
            );
            if let Err(e) = self.failover(h, Why::BehindReplicas).await {
                warn!("{e}");
            }
            return;
        }
        if self.lacks_acked(&views[h]).is_some() {
            // No server has them (none is ahead of it): they are gone, and waiting would
            // not bring them back. Say so, loudly, and take writes again.
            error!(
                server = %self.servers[h].name, acked = %self.acked.get(),
                "the master came back without writes this kohaproxy acknowledged, and no \
                 other server has them: they are lost (both copies were lost at once, or \
                 semi-sync had fallen back to asynchronous)"
            );
        }
        let name = self.servers[h].name.clone();
        match self.open(h).await {
            Ok(mut s) => {
                // A restarted server has its configuration's semi-sync settings (often
                // a replica's: no wait without replicas): the durability setting's
                // come first, or its first writes are acknowledged with no replica
                // having them (the chaos soak lost two that way).
                self.semi_sync_as_master(&mut s, h).await;
                match s.exec("SET GLOBAL read_only = OFF").await {
                    Ok(()) => {
                        info!(server = %name, term = self.term, "the master came back read-only: made it writable");
                        // Under the lock, after a probe: nobody else was promoted meanwhile.
                        self.trust = Trust::Confirmed;
                        if let Some(st) = self.servers[h].status.as_mut() {
                            st.read_only = false;
                        }
                    }
                    Err(e) => warn!(server = %name, "cannot make the master writable: {e}"),
                }
            }
            Err(e) => warn!(server = %name, "cannot make the master writable: {e}"),
        }
    }

    /// The term's master `h` is down. Fails over when the mode allows and the replicas
    /// confirm it ([`Why::Forced`] skips that confirmation, never the acknowledged-write
    /// check).
    async fn master_down(&mut self, t: &Topology, h: usize, why: Why) -> Result<String, String> {
        let name = self.servers[h].name.clone();
        if self.config.failover == FailoverMode::Manual && why != Why::Forced {
            let op = format!(
                "master {name} is down; failover is manual: run FAILOVER on the admin console"
            );
            self.set_operation(Some(op.clone()));
            return Err(op);
        }
        let replicas = replicas_of(t, h);
        if replicas.is_empty() {
            let op = format!(
                "master {name} is down and no replica of it is reachable: nothing to promote"
            );
            self.set_operation(Some(op.clone()));
            return Err(op);
        }
        if why == Why::Down {
            let now = Instant::now();
            let seeing: Vec<&str> = replicas
                .iter()
                .filter(|&&i| io_running(&t.servers[i]) && self.receiving(i, &t.servers[i], now))
                .map(|&i| t.servers[i].name.as_str())
                .collect();
            if !seeing.is_empty() {
                let op = format!(
                    "this kohaproxy cannot reach master {name}, but {} still replicate from it: no failover",
                    seeing.join(", ")
                );
                self.set_operation(Some(op.clone()));
                return Err(op);
            }
        }
        self.failover(h, why).await
    }
}

/// The reachable servers whose replication link points at server `h` (any thread state).
pub(crate) fn replicas_of(t: &Topology, h: usize) -> Vec<usize> {
    t.servers
        .iter()
        .enumerate()
        .filter(|(i, v)| {
            *i != h
                && v.state == ServerState::Up
                && v.status.as_ref().is_some_and(|st| {
                    st.replication
                        .iter()
                        .any(|r| roles::master_of(&t.servers, r) == Some(h))
                })
        })
        .map(|(i, _)| i)
        .collect()
}

/// Whether the server's IO thread still reads from its master: it has not lost it.
pub(crate) fn io_running(v: &ServerView) -> bool {
    v.status
        .as_ref()
        .and_then(|s| s.replication.first())
        .is_some_and(|r| r.io_thread == ThreadState::Running)
}
