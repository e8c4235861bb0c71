//! Rebuilding a server from a backup (`REBUILD <server>` on the console): a server kept
//! out as diverged (an old master holding transactions no other server has) or any
//! replica an operator wants renewed. Its data is replaced by the newest backup the
//! master can still serve from, and it replicates from the master from the backup's
//! position, as MaxScale's `rebuild-server` does with a physical copy.
//!
//! What is decided here is pure ([`check_target`], [`pick_backup`]); the driver in
//! [`Backups::rebuild`] does the I/O: take the server out of traffic, take a backup first
//! if none will do, empty the server (its own binlog included, so its history is the
//! backup's), load the backup, point it at the master, wait until it caught up, and put
//! it back. A failure after the server was emptied leaves it in maintenance, and says so.

use std::time::{Duration, Instant};

use kohaproxy_health::Note;
use kohaproxy_health::{Command, GtidList, Role, ServerState, Topology};
use tracing::{error, info, warn};

use crate::dump::SYSTEM_DATABASES;
use crate::error::BackupError;
use crate::manifest::{Manifest, State};
use crate::restore::{self, RestoreOptions};
use crate::runner::Backups;
use crate::source::{self, Endpoint};
use crate::store::Listing;

/// How long a rebuilt server may take to apply what the master wrote since the backup.
const CATCH_UP: Duration = Duration::from_secs(600);

/// The lock (`GET_LOCK` on the server rebuilt) a rebuild holds.
const LOCK: &str = "kohaproxy_rebuild";

/// The server to rebuild and the master it will replicate from, as indexes into the
/// topology, or why it cannot be rebuilt now.
pub fn check_target(t: &Topology, name: &str) -> Result<(usize, usize), BackupError> {
    let refuse = |why: String| Err(BackupError::Target(why));
    let Some(i) = t.servers.iter().position(|s| s.name == name) else {
        return refuse(format!("{name}: no server is called {name}"));
    };
    let v = &t.servers[i];
    if v.status.as_ref().is_some_and(|s| s.wsrep.is_some()) {
        return refuse(format!(
            "{name} is a Galera node: it rebuilds itself by state transfer when it rejoins"
        ));
    }
    let Some(h) = t.master else {
        return refuse(format!("{name}: there is no master to replicate from"));
    };
    if h == i || v.role == Role::Master {
        return refuse(format!(
            "{name} is the master: SWITCHOVER to another server first"
        ));
    }
    if t.servers[h].state != ServerState::Up {
        return refuse(format!("{name}: the master {} is down", t.servers[h].name));
    }
    if v.state != ServerState::Up {
        return refuse(format!("{name} is not up"));
    }
    Ok((i, h))
}

/// The newest complete backup that can become a replica of the master: its position is
/// one the master reached (`master_has`, its `gtid_binlog_pos`), and not older than the
/// master's oldest binlog (`master_oldest`: what it can still send). Listings come
/// newest first. `None`: take a new backup.
pub fn pick_backup<'a>(
    listings: &'a [Listing],
    master_has: &GtidList,
    master_oldest: &GtidList,
) -> Option<(&'a Listing, &'a Manifest)> {
    listings.iter().find_map(|l| {
        let m = l.manifest.as_ref()?;
        let complete = m.state == State::Ok && m.verify_error.is_none();
        let position: GtidList = m.gtid_position.parse().ok()?;
        (complete
            && m.galera_position.is_none()
            && master_has.contains(&position)
            && position.contains(master_oldest))
        .then_some((l, m))
    })
}

impl Backups {
    /// Starts rebuilding `name` in the background (`REBUILD <name>`): what it will do, or
    /// why it cannot start (no backup directory, no master, the master itself, another
    /// rebuild running).
    pub fn start_rebuild(&self, name: &str) -> Result<String, BackupError> {
        let proxy = self.proxy()?;
        self.store()?;
        let t = proxy.topology.load();
        let (i, h) = check_target(&t, name)?;
        let guard = self.rebuilding(name)?;
        let (this, server) = (self.clone(), name.to_owned());
        let master = t.servers[h].name.clone();
        tokio::spawn(async move {
            let _guard = guard;
            match this.rebuild(&server).await {
                Ok(done) => info!(server = %server, "{done}"),
                Err(BackupError::Busy(why)) => info!(server = %server, "not rebuilt now: {why}"),
                Err(e) => error!(server = %server, "rebuild failed: {e}"),
            }
        });
        let diverged = t.servers[i].note.as_ref().is_some_and(Note::is_diverged);
        Ok(format!(
            "rebuilding {name}{} from a backup as a replica of {master}; its data is \
             replaced; the log says when it is done",
            if diverged { " (diverged)" } else { "" }
        ))
    }

    /// Rebuilds `name` and waits for it: see the module comment.
    pub async fn rebuild(&self, name: &str) -> Result<String, BackupError> {
        let proxy = self.proxy()?;
        let t = proxy.topology.load();
        let (i, h) = check_target(&t, name)?;
        let config = self.config();
        let b = &config.backup;
        let endpoint = |i: usize| {
            let v = &t.servers[i];
            Endpoint::new(&v.name, &v.address, &b.user, &b.password)
        };
        let (target, master) = (endpoint(i), endpoint(h));
        // One rebuild of a server at a time, whichever kohaproxy runs it: a lock on the
        // server itself (kohaproxy instances may disagree for a moment on the master, and
        // two rebuilds at once would load one backup twice: seen in the chaos soak with a
        // lock on the master), held by this connection until the rebuild ends.
        let mut lock = target.connect().await?;
        let sql = format!("SELECT GET_LOCK({}, 0)", kohaproxy_health::literal(LOCK));
        if source::value(&mut lock, name, &sql).await?.as_deref() != Some("1") {
            return Err(BackupError::Busy(format!(
                "another kohaproxy rebuilds {name} ({LOCK} is held there)"
            )));
        }
        // Looked at again under the lock: another kohaproxy may have rebuilt it, or the
        // master changed, meanwhile.
        let now = proxy.topology.load();
        if needs_rebuild(&t.servers[i]) && !needs_rebuild(&now.servers[i]) {
            return Ok(format!("{name} no longer needs a rebuild: not rebuilt"));
        }
        // The monitor's view may be a round old: a server another kohaproxy just rebuilt
        // replicates already.
        if needs_rebuild(&t.servers[i]) && replicates(&target).await? {
            return Ok(format!(
                "{name} replicates (rebuilt meanwhile?): not rebuilt"
            ));
        }
        if now.master != Some(h) || now.operation.is_some() {
            return Err(BackupError::Busy(format!(
                "the master changed or an operation is under way: {name} not rebuilt now"
            )));
        }
        let (has, oldest) = master_positions(&master).await?;
        let listings = self.list()?;
        let picked = pick_backup(&listings, &has, &oldest).map(|(l, m)| (l.dir.clone(), m.clone()));
        let (dir, manifest) = match picked {
            Some(found) => found,
            None => {
                info!(server = %name, "no backup the master {} can serve from: taking one first", master.name);
                let m = self.run_allowing_master().await?;
                self.store()?.find(&m.id)?
            }
        };
        info!(server = %name, backup = %manifest.id, gtid = %manifest.gtid_position, master = %master.name, "rebuild: emptying the server, then loading the backup");
        if let Some(note) = t.servers[i].note.as_ref().filter(|n| n.is_diverged()) {
            let m = &config.monitor;
            let dumper = Endpoint::new(
                name,
                &t.servers[i].address,
                &m.replication_user,
                &m.replication_password,
            );
            let to = self.store()?.dir().join(SAVED).join(format!(
                "{name}-{}",
                chrono::Local::now().format("%Y%m%d-%H%M%S")
            ));
            save_binlogs(&b.mariadb, &target, &dumper, &to, &note.to_string()).await?;
            warn!(server = %name, saved = %to.display(), "rebuild: the binlog files holding what only this server had are kept there");
        }
        let control = &proxy.control;
        let maintenance = |on: bool| Command::Maintenance {
            server: name.to_owned(),
            on,
        };
        control
            .run(maintenance(true))
            .await
            .map_err(|e| BackupError::Target(format!("{name}: {e}")))?;
        let rebuilt = async {
            empty(&target).await?;
            let options = RestoreOptions {
                program: b.mariadb.clone(),
                parallel: b.parallel.max(1),
                binlog: false,
                bar: false,
                accounts: false,
            };
            restore::restore(&dir, &manifest, &target, &options).await?;
            let m = &config.monitor;
            restore::make_replica(
                &target,
                &manifest,
                &master.address(),
                &m.replication_user,
                &m.replication_password,
            )
            .await?;
            source::catch_up(&target, &master, CATCH_UP).await
        }
        .await;
        // Back online either way: an emptied server gets no traffic and is not made a
        // replica by the monitor ("empty"); it waits for the next rebuild.
        if let Err(e) = control.run(maintenance(false)).await {
            warn!(server = %name, "could not be put back online: {e}");
        }
        if let Err(e) = rebuilt {
            error!(server = %name, "rebuild failed after the server was emptied; it stays empty until a rebuild succeeds: {e}");
            return Err(e);
        }
        let _ = lock.disconnect().await;
        Ok(format!(
            "{name} rebuilt from backup {} (position {}) and replicating from {}",
            manifest.id, manifest.gtid_position, master.name
        ))
    }
}

/// Where, under the backup directory, a diverged server's last binlog files are kept
/// before a rebuild removes them (hidden from the backup list).
pub const SAVED: &str = ".diverged";

/// How many of its newest binlog files a diverged server's rebuild keeps: the
/// transactions only it had are its last ones (a restart begins a new file).
const SAVED_FILES: usize = 2;

/// Copies the newest binlog files of a server into `to`, raw, with `note` (what the
/// monitor said it holds) beside them, using the `mariadb-binlog` program next to
/// `mariadb`: `lister` (the backup's account) lists them, `server` (the replication
/// account: a binlog dump) reads them.
async fn save_binlogs(
    mariadb: &std::path::Path,
    lister: &Endpoint,
    server: &Endpoint,
    to: &std::path::Path,
    note: &str,
) -> Result<(), BackupError> {
    let mut conn = lister.connect().await?;
    // Log_name, File_size.
    let files: Vec<(String, u64)> =
        mysql_async::prelude::Queryable::query(&mut conn, "SHOW BINARY LOGS")
            .await
            .map_err(|e| BackupError::sql(&server.name, "SHOW BINARY LOGS", e))?;
    let _ = conn.disconnect().await;
    let newest: Vec<String> = files
        .iter()
        .rev()
        .take(SAVED_FILES)
        .rev()
        .map(|(name, _)| name.clone())
        .collect();
    std::fs::create_dir_all(to).map_err(|e| BackupError::io(to, e))?;
    let readme = to.join("diverged.txt");
    let text = format!(
        "{}: {note}\nBinlog files {}, copied raw before a rebuild removed them; read them with \
         mariadb-binlog.\n",
        server.name,
        newest.join(", ")
    );
    std::fs::write(&readme, text).map_err(|e| BackupError::io(&readme, e))?;
    let program = mariadb.with_file_name("mariadb-binlog");
    let program = if program.exists() {
        program
    } else {
        "mariadb-binlog".into()
    };
    let secret = crate::dump::password_file(&server.password)?;
    let mut cmd = std::process::Command::new(&program);
    cmd.arg(format!("--defaults-extra-file={}", secret.path().display()))
        .arg("--read-from-remote-server")
        .arg("--protocol=TCP")
        .arg(format!("--host={}", server.host))
        .arg(format!("--port={}", server.port))
        .arg(format!("--user={}", server.user))
        .arg("--raw")
        .arg(format!("--result-file={}/", to.display()))
        .args(&newest);
    let what = to.display().to_string();
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| BackupError::Stopped(e.to_string()))?
        .map_err(|e| BackupError::io(&program, e))?;
    if !out.status.success() {
        return Err(BackupError::Tool {
            program: "mariadb-binlog".into(),
            what,
            message: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Whether the monitor keeps `v` out for want of a rebuild: diverged, or emptied (a
/// rebuild that failed half-way) while the master has data.
pub fn needs_rebuild(v: &kohaproxy_health::ServerView) -> bool {
    v.note.as_ref().is_some_and(Note::needs_rebuild)
}

/// How long after a rebuild it started on its own [`AutoRebuild`] tries the same server
/// again, if it still needs one (the rebuild failed: its error is in the log).
pub const AUTO_RETRY: Duration = Duration::from_secs(600);

/// The servers to rebuild without being asked (`backup.rebuild_diverged_after_s`): each
/// one kept out for want of a rebuild ([`needs_rebuild`]), up and not in maintenance,
/// for the whole delay. Pure: time is a parameter.
#[derive(Debug, Default)]
pub struct AutoRebuild {
    /// When each server seen needing a rebuild becomes due.
    due_at: std::collections::BTreeMap<String, Instant>,
}

impl AutoRebuild {
    /// Notes what `t` shows at `now` and returns the servers due, given `after`, the
    /// time a server must have needed a rebuild first.
    pub fn due(&mut self, t: &Topology, now: Instant, after: Duration) -> Vec<String> {
        let waiting: Vec<&str> = t
            .servers
            .iter()
            .filter(|v| v.state == ServerState::Up && !v.maintenance && needs_rebuild(v))
            .map(|v| v.name.as_str())
            .collect();
        self.due_at
            .retain(|name, _| waiting.contains(&name.as_str()));
        for name in &waiting {
            self.due_at.entry((*name).to_owned()).or_insert(now + after);
        }
        if t.master.is_none() {
            return Vec::new();
        }
        self.due_at
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// A rebuild of `name` started at `now`: not due again before [`AUTO_RETRY`].
    pub fn started(&mut self, name: &str, now: Instant) {
        if let Some(at) = self.due_at.get_mut(name) {
            *at = now + AUTO_RETRY;
        }
    }
}

/// Whether `server` has a replication link whose SQL thread runs.
async fn replicates(server: &Endpoint) -> Result<bool, BackupError> {
    let mut conn = server.connect().await?;
    let rows: Vec<mysql_async::Row> =
        mysql_async::prelude::Queryable::query(&mut conn, "SHOW ALL SLAVES STATUS")
            .await
            .map_err(|e| BackupError::sql(&server.name, "SHOW ALL SLAVES STATUS", e))?;
    let _ = conn.disconnect().await;
    Ok(rows.iter().any(|r| {
        r.get_opt::<String, _>("Slave_SQL_Running")
            .and_then(Result::ok)
            .is_some_and(|v| v == "Yes")
    }))
}

/// The master's `gtid_binlog_pos` and the position at the start of its oldest binlog.
async fn master_positions(master: &Endpoint) -> Result<(GtidList, GtidList), BackupError> {
    let mut conn = master.connect().await?;
    let parse = |what: &str, text: Option<String>| -> Result<GtidList, BackupError> {
        let text = text.unwrap_or_default();
        text.parse()
            .map_err(|e| BackupError::sql(&master.name, what, format!("{text:?}: {e}")))
    };
    let has = source::value(&mut conn, &master.name, "SELECT @@gtid_binlog_pos").await?;
    let has = parse("@@gtid_binlog_pos", has)?;
    let first = source::value(&mut conn, &master.name, "SHOW BINARY LOGS").await?;
    let oldest = match first {
        Some(file) => {
            let sql = format!(
                "SELECT BINLOG_GTID_POS({}, 4)",
                kohaproxy_health::literal(&file)
            );
            let pos = source::value(&mut conn, &master.name, &sql).await?;
            parse("BINLOG_GTID_POS", pos)?
        }
        None => GtidList::default(),
    };
    Ok((has, oldest))
}

/// Empties `target` for a restore: no replication, no database but the server's own,
/// and no binlog (its history becomes the backup's; transactions only it had go).
async fn empty(target: &Endpoint) -> Result<(), BackupError> {
    let mut conn = target.connect().await?;
    let name = &target.name;
    // Not running is no error.
    let _ = source::exec(&mut conn, name, "STOP SLAVE").await;
    source::exec(&mut conn, name, "RESET SLAVE ALL").await?;
    source::exec(&mut conn, name, "SET SESSION sql_log_bin = 0").await?;
    let system = SYSTEM_DATABASES
        .iter()
        .map(|d| kohaproxy_health::literal(d))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT GROUP_CONCAT(SCHEMA_NAME SEPARATOR '\\n') FROM information_schema.SCHEMATA \
         WHERE SCHEMA_NAME NOT IN ({system})"
    );
    let dbs = source::value(&mut conn, name, &sql)
        .await?
        .unwrap_or_default();
    for db in dbs.lines().filter(|d| !d.is_empty()) {
        let quoted = format!("`{}`", db.replace('`', "``"));
        source::exec(&mut conn, name, &format!("DROP DATABASE {quoted}")).await?;
    }
    source::exec(&mut conn, name, "RESET MASTER").await?;
    source::exec(&mut conn, name, "SET GLOBAL gtid_slave_pos = ''").await?;
    warn!(server = %name, databases = dbs.lines().count(), "rebuild: server emptied (its databases and binlog removed)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use kohaproxy_health::ServerView;

    use super::*;
    use crate::runner::blank_manifest;

    fn listing(id: &str, state: State, gtid: &str) -> Listing {
        let mut m = blank_manifest(id);
        m.state = state;
        m.gtid_position = gtid.into();
        Listing {
            id: id.into(),
            dir: PathBuf::from(id),
            manifest: Some(m),
            status: String::new(),
            problem: None,
        }
    }

    fn at(s: &str) -> GtidList {
        s.parse().expect("gtid")
    }

    #[test]
    fn the_newest_backup_the_master_can_serve_from_is_picked() {
        let list = [
            listing("4", State::Failed, "0-1-400"),
            listing("3", State::Ok, "0-3-300"),
            listing("2", State::Ok, "0-1-200"),
            listing("1", State::Ok, "0-1-100"),
        ];
        let id = |p: Option<(&Listing, &Manifest)>| p.map(|(l, _)| l.id.clone());
        // The failed one is never used; the master reached 0-x-350.
        assert_eq!(
            id(pick_backup(&list, &at("0-2-350"), &at(""))),
            Some("3".into())
        );
        // A backup ahead of the master (taken before a loss): not one of its positions.
        assert_eq!(
            id(pick_backup(&list, &at("0-2-250"), &at(""))),
            Some("2".into())
        );
        // The master purged its binlogs up to 0-1-150: the backup of 100 cannot catch up.
        assert_eq!(id(pick_backup(&list, &at("0-2-120"), &at("0-1-110"))), None);
        assert_eq!(
            id(pick_backup(&list, &at("0-2-250"), &at("0-1-150"))),
            Some("2".into())
        );
        // A verify failure disqualifies.
        let mut bad = list.clone();
        if let Some(m) = bad[1].manifest.as_mut() {
            m.verify_error = Some("checksum".into());
        }
        assert_eq!(
            id(pick_backup(&bad, &at("0-2-350"), &at(""))),
            Some("2".into())
        );
    }

    fn view(name: &str, role: Role, state: ServerState) -> ServerView {
        let mut v = ServerView::new(name, "127.0.0.1:1", Instant::now());
        v.role = role;
        v.state = state;
        v
    }

    #[test]
    fn only_an_up_server_other_than_an_up_master_is_rebuilt() {
        let t = |master: ServerState, other: ServerState| Topology {
            servers: vec![
                view("db1", Role::Master, master),
                view("db2", Role::Standalone, other),
            ],
            master: Some(0),
            problem: None,
            term: 1,
            operation: None,
        };
        let up = ServerState::Up;
        assert_eq!(check_target(&t(up, up), "db2").ok(), Some((1, 0)));
        let why = |r: Result<(usize, usize), BackupError>| r.err().map(|e| e.to_string());
        assert!(why(check_target(&t(up, up), "db1")).is_some_and(|w| w.contains("SWITCHOVER")));
        assert!(why(check_target(&t(up, up), "db9")).is_some_and(|w| w.contains("no server")));
        assert!(
            why(check_target(&t(ServerState::Down, up), "db2")).is_some_and(|w| w.contains("down"))
        );
        assert!(why(check_target(&t(up, ServerState::Down), "db2"))
            .is_some_and(|w| w.contains("not up")));
        let mut none = t(up, up);
        none.master = None;
        assert!(why(check_target(&none, "db2")).is_some_and(|w| w.contains("no master")));
    }

    #[test]
    fn a_server_diverged_for_the_whole_delay_is_rebuilt_once_then_retried_late() {
        let t0 = Instant::now();
        let after = Duration::from_secs(60);
        let topology = |note: Option<&str>, state: ServerState, maintenance: bool| {
            let mut db2 = view("db2", Role::Standalone, state);
            db2.note = note.map(|n| match n.strip_prefix("diverged: has ") {
                Some(extra) => Note::Diverged {
                    server: "db2".into(),
                    master: "db1".into(),
                    extra: extra.into(),
                },
                None => Note::Said(n.into()),
            });
            db2.maintenance = maintenance;
            Topology {
                servers: vec![view("db1", Role::Master, ServerState::Up), db2],
                master: Some(0),
                problem: None,
                term: 1,
                operation: None,
            }
        };
        let diverged = topology(Some("diverged: has 0-1-5"), ServerState::Up, false);
        let mut auto = AutoRebuild::default();
        assert!(auto.due(&diverged, t0, after).is_empty());
        assert!(auto
            .due(&diverged, t0 + Duration::from_secs(59), after)
            .is_empty());
        let at = t0 + after;
        assert_eq!(auto.due(&diverged, at, after), vec!["db2".to_owned()]);
        // Started: the rebuild under way is not started again, a failed one is retried
        // only after AUTO_RETRY.
        auto.started("db2", at);
        assert!(auto
            .due(&diverged, at + Duration::from_secs(300), after)
            .is_empty());
        assert_eq!(
            auto.due(&diverged, at + AUTO_RETRY, after),
            vec!["db2".to_owned()]
        );
        // Back to normal, then diverged again: the delay starts over.
        let fine = topology(None, ServerState::Up, false);
        assert!(auto.due(&fine, at, after).is_empty());
        assert!(auto.due(&diverged, at, after).is_empty());
        // Down, in maintenance, or no master: never due; the delay starts over.
        let mut auto = AutoRebuild::default();
        for t in [
            topology(Some("diverged: has 0-1-5"), ServerState::Down, false),
            topology(Some("diverged: has 0-1-5"), ServerState::Up, true),
        ] {
            auto.due(&t, t0, after);
            assert!(auto.due(&t, t0 + after * 2, after).is_empty());
        }
        let mut headless = diverged.clone();
        headless.master = None;
        assert!(auto.due(&headless, t0, after).is_empty());
        assert!(auto.due(&headless, t0 + after, after).is_empty());
        assert_eq!(
            auto.due(&diverged, t0 + after, after),
            vec!["db2".to_owned()]
        );
    }
}
