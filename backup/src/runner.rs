//! Running backups: picking the source, taking it out of read rotation, pausing it,
//! dumping, resuming it, recording the outcome and applying retention. One at a time,
//! from the schedule, `BACKUP NOW` or `kohaproxy backup run`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Local;
use kohaproxy_config::Config;
use kohaproxy_health::{Command, Control, Monitor, Topology, TopologyHandle};
use tracing::{debug, error, info, warn};

use crate::dump::{self, DumpJob};
use crate::error::BackupError;
use crate::manifest::{Manifest, State, FORMAT};
use crate::rebuild::AutoRebuild;
use crate::schedule;
use crate::source::{self, Endpoint};
use crate::store::{Listing, Lock, PausedMark, Store};

/// Statements of the proxy running on a server (by index): a backup waits for the
/// reads on its replica to finish before pausing it.
pub type ServerLoad = Arc<dyn Fn(usize) -> u64 + Send + Sync>;

/// How long a resumed replica may take to catch up before it returns to read rotation
/// anyway (the router's lag limit and causal reads still keep stale reads away).
const CATCH_UP: Duration = Duration::from_secs(60);

/// How often the scheduler looks for a replica a failed resume left paused.
const RETRY_RESUME: Duration = Duration::from_secs(30);

/// How often the scheduler looks at the topology (servers due for a rebuild).
const TICK: Duration = Duration::from_secs(5);

/// How long a scheduled backup waits for the monitor to know a source (just after the
/// proxy started, its first snapshot knows no server yet).
const SOURCE_WAIT: Duration = Duration::from_secs(30);

/// Takes, lists and schedules backups; cheap to clone.
#[derive(Clone)]
pub struct Backups(Arc<Inner>);

struct Inner {
    config: Arc<Config>,
    proxy: Option<InProxy>,
    bar: bool,
    /// The server a rebuild is under way on (one at a time).
    rebuilding: std::sync::Mutex<Option<String>>,
}

/// Marks a rebuild under way until dropped.
pub(crate) struct Rebuilding(Backups);

impl Drop for Rebuilding {
    fn drop(&mut self) {
        if let Ok(mut r) = self.0 .0.rebuilding.lock() {
            *r = None;
        }
    }
}

/// What a backup uses of the proxy it runs in.
pub struct InProxy {
    /// The monitor's snapshots (which server is what).
    pub topology: TopologyHandle,
    /// The monitor's commands (maintenance takes the source out of read rotation).
    pub control: Control,
    /// Statements running on each server.
    pub load: ServerLoad,
    /// Cancelled when the proxy shuts down: a running backup stops and resumes its
    /// replica.
    pub stop: tokio_util::sync::CancellationToken,
    /// Keeps the proxy from exiting while the returned value lives.
    pub hold: Hold,
}

/// See [`InProxy::hold`].
pub type Hold = Arc<dyn Fn() -> Box<dyn std::any::Any + Send + Sync> + Send + Sync>;

/// A backup whose lock is held and directory created, not yet run.
struct Prepared {
    lock: Lock,
    id: String,
    started: chrono::DateTime<Local>,
}

impl Backups {
    /// Backups for a tool run beside the proxy (`kohaproxy backup ...`): roles come from
    /// one round of probes; a progress bar shows on a terminal.
    pub fn standalone(config: Arc<Config>) -> Backups {
        Backups(Arc::new(Inner {
            config,
            proxy: None,
            bar: true,
            rebuilding: Default::default(),
        }))
    }

    /// Backups inside the proxy: the monitor's topology, its control (maintenance takes
    /// the source out of read rotation), the proxy's per-server load and its shutdown.
    pub fn in_proxy(config: Arc<Config>, proxy: InProxy) -> Backups {
        Backups(Arc::new(Inner {
            config,
            proxy: Some(proxy),
            bar: false,
            rebuilding: Default::default(),
        }))
    }

    /// The backup directory, or the error saying it is not configured.
    pub fn store(&self) -> Result<Store, BackupError> {
        self.0
            .config
            .backup
            .dir
            .as_ref()
            .map(Store::new)
            .ok_or(BackupError::NoDirectory)
    }

    /// The configuration backups run with.
    pub(crate) fn config(&self) -> &Config {
        &self.0.config
    }

    /// What a backup uses of the proxy, or the error for a tool run without one.
    pub(crate) fn proxy(&self) -> Result<&InProxy, BackupError> {
        self.0
            .proxy
            .as_ref()
            .ok_or_else(|| BackupError::NoSource("no monitor: run it in the proxy".into()))
    }

    /// Marks a rebuild of `server` under way, or says which one already is.
    pub(crate) fn rebuilding(&self, server: &str) -> Result<Rebuilding, BackupError> {
        let mut r = self
            .0
            .rebuilding
            .lock()
            .map_err(|_| BackupError::Busy("a rebuild".into()))?;
        if let Some(other) = r.as_ref() {
            return Err(BackupError::Busy(format!("a rebuild of {other}")));
        }
        *r = Some(server.to_owned());
        Ok(Rebuilding(self.clone()))
    }

    /// Takes a backup now, from the master if no replica is healthy whatever
    /// `backup.allow_master` says (a rebuild that has no other source).
    pub(crate) async fn run_allowing_master(&self) -> Result<Manifest, BackupError> {
        self.recover().await;
        let topology = self.topology().await;
        let prepared = self.prepare()?;
        self.execute(prepared, topology, None, true).await
    }

    /// Every backup, newest first.
    pub fn list(&self) -> Result<Vec<Listing>, BackupError> {
        self.store()?.list()
    }

    /// Cleans up after a process that stopped mid-backup: resumes the replica it paused
    /// and records its backup as failed. Harmless when there is nothing to do or another
    /// backup runs.
    pub async fn recover(&self) {
        let Ok(store) = self.store() else { return };
        let Ok(lock) = store.lock() else { return };
        if let Some(mark) = store.paused() {
            let e = self.endpoint(&mark.server, &mark.address);
            match source::resume(&e).await {
                Ok(()) => {
                    warn!(server = %mark.server, id = %mark.id, "replication resumed on the replica an interrupted backup had paused");
                    store.clear_paused();
                }
                Err(err) => {
                    error!(server = %mark.server, id = %mark.id, "an interrupted backup left this replica paused and it cannot be resumed yet: {err}")
                }
            }
        }
        store.recover(&lock);
    }

    /// Takes a backup now and waits for it (`kohaproxy backup run`, the schedule).
    pub async fn run(&self, from: Option<&str>) -> Result<Manifest, BackupError> {
        self.recover().await;
        let topology = self.topology().await;
        let prepared = self.prepare()?;
        let allow_master = self.0.config.backup.allow_master;
        self.execute(prepared, topology, from.map(str::to_owned), allow_master)
            .await
    }

    /// Starts a backup in the background (`BACKUP NOW`): its id and source, or why it
    /// cannot start (another runs, no source).
    pub fn start(&self, from: Option<String>) -> Result<(String, String), BackupError> {
        let Some(handle) = self.0.proxy.as_ref().map(|p| &p.topology) else {
            return Err(BackupError::NoSource("no monitor".into()));
        };
        let topology = handle.load();
        let (i, _) = source::choose(
            &topology,
            from.as_deref(),
            self.0.config.backup.allow_master,
        )?;
        let name = topology.servers[i].name.clone();
        let prepared = self.prepare()?;
        let id = prepared.id.clone();
        let (this, from) = (self.clone(), name.clone());
        tokio::spawn(async move {
            let allow_master = this.0.config.backup.allow_master;
            let _ = this
                .execute(prepared, topology, Some(from), allow_master)
                .await;
        });
        Ok((id, name))
    }

    /// Runs the schedule forever: a backup at every time `backup.schedule` names (if
    /// `backup.dir` is set), retries resuming a replica a failed resume left paused, and
    /// rebuilds servers kept out as diverged (`backup.rebuild_diverged_after_s`).
    pub async fn scheduler(self) {
        let Ok(store) = self.store() else { return };
        self.recover().await;
        let when = self.0.config.backup.schedule;
        let mut next = schedule::next_local(when);
        if let Some(at) = next {
            info!(schedule = %when, next = %at.format("%Y-%m-%d %H:%M %Z"), "backups scheduled");
        }
        let newest = store
            .list()
            .ok()
            .and_then(|l| l.iter().find_map(Listing::started));
        if let Some(at) = schedule::missed(when, newest, &Local::now()) {
            info!(
                missed = %at.format("%Y-%m-%d %H:%M %Z"),
                "a scheduled backup was missed (the newest began before it): taking it now"
            );
            next = Some(Local::now());
        }
        let mut auto = AutoRebuild::default();
        let mut resumed_at = Instant::now();
        loop {
            let wait = next
                .map(|at| (at - Local::now()).to_std().unwrap_or_default())
                .unwrap_or(TICK)
                .min(TICK);
            tokio::time::sleep(wait).await;
            if store.paused().is_some() && resumed_at.elapsed() >= RETRY_RESUME {
                resumed_at = Instant::now();
                self.recover().await;
            }
            self.rebuild_when_due(&mut auto);
            if next.is_some_and(|at| Local::now() >= at) {
                next = schedule::next_local(when);
                self.wait_for_source(SOURCE_WAIT).await;
                match self.run(None).await {
                    Ok(_) => {}
                    Err(BackupError::Busy(other)) => {
                        warn!("scheduled backup skipped: a backup is already running ({other})")
                    }
                    Err(e) => error!("scheduled backup failed: {e}"),
                }
            }
        }
    }

    /// Starts the rebuild of each server [`AutoRebuild`] says is due, if
    /// `backup.rebuild_diverged_after_s` asks for it (in a proxy only: a rebuild needs the
    /// monitor).
    fn rebuild_when_due(&self, auto: &mut AutoRebuild) {
        let (Some(after), Some(proxy)) =
            (self.0.config.backup.rebuild_diverged_after, &self.0.proxy)
        else {
            return;
        };
        let now = Instant::now();
        for name in auto.due(&proxy.topology.load(), now, after) {
            match self.start_rebuild(&name) {
                Ok(said) => {
                    info!(server = %name, "kept out for {} s: {said}", after.as_secs());
                    auto.started(&name, now);
                }
                // One rebuild at a time: this one waits for the next tick.
                Err(BackupError::Busy(why)) => debug!(server = %name, "rebuild waits: {why}"),
                Err(e) => {
                    warn!(server = %name, "not rebuilt: {e}");
                    auto.started(&name, now);
                }
            }
        }
    }

    /// Waits, at most `limit`, until the topology names a server a backup can be taken
    /// from; the backup that follows says why if none came.
    async fn wait_for_source(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let topology = self.topology().await;
            let allow_master = self.0.config.backup.allow_master;
            if source::choose(&topology, None, allow_master).is_ok() || Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn topology(&self) -> Arc<Topology> {
        match &self.0.proxy {
            Some(p) => p.topology.load(),
            None => Monitor::observe(&self.0.config).await,
        }
    }

    fn endpoint(&self, name: &str, address: &str) -> Endpoint {
        let b = &self.0.config.backup;
        Endpoint::new(name, address, &b.user, &b.password)
    }

    fn prepare(&self) -> Result<Prepared, BackupError> {
        let store = self.store()?;
        let mut lock = store.lock()?;
        let started = Local::now();
        let id = store.new_id(started);
        store.begin(&mut lock, &id)?;
        Ok(Prepared { lock, id, started })
    }

    /// Runs a prepared backup to its end; the outcome is in the directory and the log.
    async fn execute(
        &self,
        prepared: Prepared,
        topology: Arc<Topology>,
        from: Option<String>,
        allow_master: bool,
    ) -> Result<Manifest, BackupError> {
        let store = self.store()?;
        let _hold = self.0.proxy.as_ref().map(|p| (p.hold)());
        // `abort` stops the dump (a failed part raises it too); `stopped` says the proxy
        // is shutting down.
        let abort = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let watcher = self.0.proxy.as_ref().map(|p| {
            let (stop, abort, stopped) = (p.stop.clone(), abort.clone(), stopped.clone());
            tokio::spawn(async move {
                stop.cancelled().await;
                warn!("the proxy is shutting down: stopping the backup and resuming its replica");
                stopped.store(true, Ordering::Relaxed);
                abort.store(true, Ordering::Relaxed);
            })
        });
        let clock = Instant::now();
        let mut m = blank_manifest(&prepared.id);
        m.started = prepared
            .started
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
        let outcome = self
            .take(
                &store,
                &topology,
                from.as_deref(),
                allow_master,
                &mut m,
                (&abort, &stopped),
            )
            .await;
        if let Some(w) = watcher {
            w.abort();
        }
        m.finished = Some(Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false));
        m.duration_ms = clock.elapsed().as_millis() as u64;
        let done = match outcome {
            Ok(()) => {
                m.state = State::Ok;
                let partial = store.partial(&m.id);
                m.write(&partial).and_then(|()| store.finish(&m.id))
            }
            Err(e) => Err(e),
        };
        match done {
            Ok(_) => {
                info!(
                    id = %m.id, source = %m.source, gtid = %m.gtid_position,
                    bytes = m.bytes(), files = m.files.len(), duration_ms = m.duration_ms,
                    paused_ms = m.paused_ms, "backup done"
                );
                let b = &self.0.config.backup;
                if let Err(e) = store.retain(b.keep, b.keep_days, Local::now().fixed_offset()) {
                    warn!("retention after backup {}: {e}", m.id);
                }
                drop(prepared.lock);
                Ok(m)
            }
            Err(e) => {
                m.state = State::Failed;
                m.error = Some(e.to_string());
                error!(id = %m.id, source = %m.source, "backup failed: {e}");
                store.fail(&m);
                drop(prepared.lock);
                Err(e)
            }
        }
    }

    /// Picks and freezes the source, dumps, and lets it go again.
    async fn take(
        &self,
        store: &Store,
        topology: &Topology,
        from: Option<&str>,
        allow_master: bool,
        m: &mut Manifest,
        (abort, stopped): (&Arc<AtomicBool>, &Arc<AtomicBool>),
    ) -> Result<(), BackupError> {
        let b = &self.0.config.backup;
        let (i, from_master) = source::choose(topology, from, allow_master)?;
        let view = &topology.servers[i];
        let src = self.endpoint(&view.name, &view.address);
        let galera = view.status.as_ref().is_some_and(|s| s.wsrep.is_some());
        m.source = view.name.clone();
        m.source_address = view.address.clone();
        m.source_role = match (from_master, galera) {
            (true, _) => "master",
            (false, true) => "galera node",
            (false, false) => "replica",
        }
        .into();
        m.master = topology.master.map(|h| topology.servers[h].name.clone());
        m.compression_level = b.compression_level;
        m.write(&store.partial(&m.id))?;
        info!(id = %m.id, source = %src.name, role = %m.source_role, "backup started");
        let partial = store.partial(&m.id);
        let job = |from_master| DumpJob {
            source: &src,
            program: &b.mariadb_dump,
            level: b.compression_level,
            priority: b.priority,
            parallel: b.parallel,
            dir: &partial,
            from_master,
            abort: abort.clone(),
            bar: self.0.bar,
        };
        if from_master {
            let mut conn = src.connect().await?;
            let pos = source::position(&mut conn, &src.name).await?;
            m.server_version = pos.version;
            let dumped = dump::dump(job(true)).await?;
            m.gtid_position = dumped.master_position.unwrap_or_default();
            m.gtid_binlog_pos = m.gtid_position.clone();
            m.files = dumped.files;
            return Ok(());
        }

        let took_out = self.take_out(i, &view.name, view.maintenance).await;
        // A replica stays paused if this process dies: the marker lets the next one
        // resume it. A held Galera node is released when the connection closes.
        if !galera {
            store.mark_paused(&PausedMark {
                id: m.id.clone(),
                server: src.name.clone(),
                address: src.address(),
            })?;
        }
        let paused_at = Instant::now();
        let mut held = None;
        let dumped = async {
            let pos = if galera {
                let (pos, node) = source::hold_node(&src).await?;
                held = Some(node);
                pos
            } else {
                source::pause(&src).await?
            };
            m.gtid_position = pos.current;
            m.gtid_slave_pos = pos.slave;
            m.gtid_binlog_pos = pos.binlog;
            m.galera_position = pos.galera;
            m.server_version = pos.version;
            m.write(&store.partial(&m.id))?;
            let dumped = dump::dump(job(false)).await?;
            // The data must not have moved while it was dumped (someone started the SQL
            // thread, a failover re-pointed the replica, the node's lock was lost): the
            // tables would not be of one moment.
            let mut conn = src.connect().await?;
            let after = source::position(&mut conn, &src.name).await?;
            let galera_after = match galera {
                true => source::galera_position(&src).await?,
                false => None,
            };
            if after.current != m.gtid_position || galera_after != m.galera_position {
                return Err(BackupError::Stopped(format!(
                    "the source's data changed during the dump (GTID position {} became {}): \
                     the backup would not be consistent",
                    m.gtid_position, after.current
                )));
            }
            Ok(dumped)
        }
        .await;
        let resumed = match held {
            Some(node) => source::release_node(node, &src.name).await,
            None if galera => Ok(()),
            None => self.resume(store, &src).await,
        };
        m.paused_ms = paused_at.elapsed().as_millis() as u64;
        if took_out {
            let master = topology
                .master
                .map(|h| self.endpoint(&topology.servers[h].name, &topology.servers[h].address));
            let master = master.filter(|_| !stopped.load(Ordering::Relaxed) && !galera);
            let wait = if galera && !stopped.load(Ordering::Relaxed) {
                CatchUp::Resync
            } else {
                master.as_ref().map_or(CatchUp::No, CatchUp::Master)
            };
            self.put_back(&view.name, &src, wait).await;
        }
        if stopped.load(Ordering::Relaxed) {
            resumed?;
            return Err(BackupError::Stopped("the proxy shut down".into()));
        }
        let dumped = dumped?;
        resumed?;
        m.files = dumped.files;
        m.tables = dumped.tables;
        Ok(())
    }

    /// Takes server `i` out of read rotation and waits (at most `failover_hold`) for the
    /// reads running there to finish; true if this backup did it (it was not already in
    /// maintenance), so it must put it back.
    async fn take_out(&self, i: usize, name: &str, already: bool) -> bool {
        let Some(control) = self.0.proxy.as_ref().map(|p| &p.control) else {
            return false;
        };
        if already {
            return false;
        }
        let command = Command::Maintenance {
            server: name.to_owned(),
            on: true,
        };
        if let Err(e) = control.run(command).await {
            warn!(server = %name, "backup could not take the replica out of read rotation: {e}");
            return false;
        }
        if let Some(load) = self.0.proxy.as_ref().map(|p| &p.load) {
            let until = Instant::now() + self.0.config.monitor.failover_hold;
            while load(i) > 0 && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        true
    }

    /// Resumes replication on the source, retrying a few times; leaves the marker (for the
    /// next start or the scheduler) if it cannot.
    async fn resume(&self, store: &Store, src: &Endpoint) -> Result<(), BackupError> {
        let mut last = None;
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            match source::resume(src).await {
                Ok(()) => {
                    store.clear_paused();
                    return Ok(());
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.unwrap_or_else(|| BackupError::Stopped("resume".into()));
        error!(server = %src.name, "replication could not be resumed after the backup (retried every 30 s and at the next start): {e}");
        Err(e)
    }

    /// Returns the source to read rotation once it caught up (bounded).
    async fn put_back(&self, name: &str, src: &Endpoint, wait: CatchUp<'_>) {
        match wait {
            CatchUp::Master(master) => {
                if source::catch_up(src, master, CATCH_UP).await.is_err() {
                    warn!(server = %name, "replica not caught up {} s after the backup; back in rotation (the lag limit still applies)", CATCH_UP.as_secs());
                }
            }
            CatchUp::Resync => {
                if !source::resynced(src, CATCH_UP).await {
                    warn!(server = %name, "Galera node not Synced {} s after the backup; back in rotation (it serves reads once Synced)", CATCH_UP.as_secs());
                }
            }
            CatchUp::No => {}
        }
        if let Some(control) = self.0.proxy.as_ref().map(|p| &p.control) {
            let command = Command::Maintenance {
                server: name.to_owned(),
                on: false,
            };
            if let Err(e) = control.run(command).await {
                error!(server = %name, "backup could not return the replica to read rotation: {e}");
            }
        }
    }
}

/// What a source waits for before it returns to read rotation after a backup.
enum CatchUp<'a> {
    /// A replica: the master's position as it is now.
    Master(&'a Endpoint),
    /// A Galera node: Synced with its cluster again.
    Resync,
    /// Nothing (shutting down, or no master known).
    No,
}

/// A manifest with only its id, before anything is known.
pub(crate) fn blank_manifest(id: &str) -> Manifest {
    Manifest {
        format: FORMAT,
        id: id.to_owned(),
        state: State::Running,
        error: None,
        verified: None,
        verify_error: None,
        source: String::new(),
        source_address: String::new(),
        source_role: String::new(),
        master: None,
        gtid_position: String::new(),
        gtid_slave_pos: String::new(),
        gtid_binlog_pos: String::new(),
        galera_position: None,
        server_version: String::new(),
        started: String::new(),
        finished: None,
        duration_ms: 0,
        paused_ms: 0,
        kohaproxy_version: env!("CARGO_PKG_VERSION").to_owned(),
        compression_level: 0,
        files: Vec::new(),
        tables: Vec::new(),
    }
}
