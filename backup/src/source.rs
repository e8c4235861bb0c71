//! The server a backup reads: chosen among the healthy replicas (or, on Galera, the
//! Synced nodes that are not the writer), held still while it is dumped, and let go.
//!
//! A replica is paused by stopping its SQL thread (the IO thread keeps receiving). A
//! Galera node has no SQL thread: it is held by `FLUSH TABLES WITH READ LOCK` on a
//! connection of the backup's own, which makes the node desync from the cluster (the
//! cluster stops waiting for it: no flow control) and pause applying write sets, which it
//! queues and applies once the lock is released; the node resyncs by itself. The lock
//! belongs to that connection, so a backup process that dies releases it with nothing to
//! recover.

use std::time::Duration;

use kohaproxy_health::{split_address, tcp_opts, Role, ServerState, ThreadState, Topology};
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use crate::error::BackupError;

/// How long connecting to a server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server and the account the backup uses on it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Name (from the config) or the address, for messages.
    pub name: String,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Account.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl Endpoint {
    /// `address` (`host:port`) as `user`.
    pub fn new(name: &str, address: &str, user: &str, password: &str) -> Endpoint {
        let (host, port) = split_address(address);
        Endpoint {
            name: name.to_owned(),
            host,
            port,
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Opens a connection (TCP, never the server's socket).
    pub async fn connect(&self) -> Result<Conn, BackupError> {
        let opts = tcp_opts(&self.address(), &self.user, &self.password);
        match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts)).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(BackupError::sql(&self.name, "connect", e)),
            Err(_) => Err(BackupError::sql(&self.name, "connect", "timed out")),
        }
    }
}

/// Runs `sql` on `conn`; the error names the server and the statement's first words.
pub(crate) async fn exec(conn: &mut Conn, server: &str, sql: &str) -> Result<(), BackupError> {
    conn.query_drop(sql)
        .await
        .map_err(|e| BackupError::sql(server, sql, e))
}

/// The first column of the first row of `sql`, as text.
pub(crate) async fn value(
    conn: &mut Conn,
    server: &str,
    sql: &str,
) -> Result<Option<String>, BackupError> {
    let row: Option<mysql_async::Row> = conn
        .query_first(sql)
        .await
        .map_err(|e| BackupError::sql(server, sql, e))?;
    Ok(row.and_then(|r| r.get_opt::<Option<String>, _>(0)?.ok().flatten()))
}

/// Which server to back up from: `from` if given (a replica, or the master when
/// `allow_master`), else the up replica with its threads running, not in maintenance, with
/// the least lag (then config order); the master only if `allow_master` and no replica
/// qualifies. Returns the index and whether it is the master.
pub fn choose(
    t: &Topology,
    from: Option<&str>,
    allow_master: bool,
) -> Result<(usize, bool), BackupError> {
    // A Galera node is a Replica in the topology only when it may serve reads (Synced,
    // Primary, ready, not desynced: see `Topology::galera`).
    let healthy = |i: usize| {
        let v = &t.servers[i];
        v.state == ServerState::Up
            && v.role == Role::Replica
            && !v.maintenance
            && v.status.as_ref().is_some_and(|s| {
                s.wsrep.is_some()
                    || s.replication.iter().any(|r| {
                        r.io_thread == ThreadState::Running && r.sql_thread == ThreadState::Running
                    })
            })
    };
    if let Some(name) = from {
        let i = t
            .servers
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| BackupError::NoSource(format!("no server is called {name}")))?;
        if t.master == Some(i) {
            return if allow_master {
                Ok((i, true))
            } else {
                Err(BackupError::NoSource(format!(
                    "{name} is the master; backups come from a replica (set backup.allow_master \
                     to allow the master)"
                )))
            };
        }
        if !healthy(i) {
            return Err(BackupError::NoSource(format!(
                "{name} is not a healthy replica (up, replicating, not in maintenance)"
            )));
        }
        return Ok((i, false));
    }
    let lag = |i: usize| {
        t.servers[i]
            .lag
            .as_ref()
            .map_or(u64::MAX, |l| l.transactions_behind)
    };
    if let Some(i) = (0..t.servers.len())
        .filter(|&i| healthy(i))
        .min_by_key(|&i| (lag(i), i))
    {
        return Ok((i, false));
    }
    match t.master {
        Some(m) if allow_master && t.servers[m].state == ServerState::Up => Ok((m, true)),
        _ => Err(BackupError::NoSource(
            "no healthy replica to back up from (up, replicating, not in maintenance)".to_owned()
                + if allow_master {
                    " and no master"
                } else {
                    "; backup.allow_master is off"
                },
        )),
    }
}

/// The frozen position of a paused replica.
#[derive(Debug, Clone, Default)]
pub struct Position {
    /// `@@gtid_current_pos`.
    pub current: String,
    /// `@@gtid_slave_pos`.
    pub slave: String,
    /// `@@gtid_binlog_pos`.
    pub binlog: String,
    /// `@@version`.
    pub version: String,
    /// A Galera node's `wsrep_local_state_uuid:wsrep_last_committed`: the cluster's
    /// history and the last write set the node committed (None off Galera).
    pub galera: Option<String>,
}

/// A Galera node's position: `wsrep_local_state_uuid:wsrep_last_committed`.
const GALERA_POSITION: &str = "SELECT CONCAT(\
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
     WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE_UUID'), ':', \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
     WHERE VARIABLE_NAME = 'WSREP_LAST_COMMITTED'))";

/// A Galera node held still: `FLUSH TABLES WITH READ LOCK` on this connection.
pub struct HeldNode(Conn);

/// Holds a Galera node still (see the module comment) and reads where it stopped.
pub async fn hold_node(source: &Endpoint) -> Result<(Position, HeldNode), BackupError> {
    let mut conn = source.connect().await?;
    exec(&mut conn, &source.name, "FLUSH TABLES WITH READ LOCK").await?;
    let mut pos = position(&mut conn, &source.name).await?;
    pos.galera = value(&mut conn, &source.name, GALERA_POSITION).await?;
    Ok((pos, HeldNode(conn)))
}

/// Releases a held Galera node. A connection that broke released the lock as it closed.
pub async fn release_node(held: HeldNode, name: &str) -> Result<(), BackupError> {
    let mut conn = held.0;
    exec(&mut conn, name, "UNLOCK TABLES").await?;
    let _ = conn.disconnect().await;
    Ok(())
}

/// The Galera position of a node now (`uuid:seqno`, as in [`Position::galera`]).
pub async fn galera_position(source: &Endpoint) -> Result<Option<String>, BackupError> {
    let mut conn = source.connect().await?;
    value(&mut conn, &source.name, GALERA_POSITION).await
}

/// Waits (at most `bound`) until a released Galera node is Synced again (it applied
/// what it queued while held). False if it did not in time.
pub async fn resynced(source: &Endpoint, bound: Duration) -> bool {
    let until = tokio::time::Instant::now() + bound;
    let sql = "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
               WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE'";
    while tokio::time::Instant::now() < until {
        if let Ok(mut conn) = source.connect().await {
            if value(&mut conn, &source.name, sql)
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some(kohaproxy_health::galera::SYNCED.to_string().as_str())
            {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Stops the replica's SQL thread (the IO thread keeps receiving) and reads where it
/// stopped.
pub async fn pause(source: &Endpoint) -> Result<Position, BackupError> {
    let mut conn = source.connect().await?;
    exec(&mut conn, &source.name, "STOP SLAVE SQL_THREAD").await?;
    position(&mut conn, &source.name).await
}

/// Reads the GTID positions and version.
pub async fn position(conn: &mut Conn, name: &str) -> Result<Position, BackupError> {
    let sql = "SELECT @@gtid_current_pos, @@gtid_slave_pos, @@gtid_binlog_pos, @@version";
    type Row = (Option<String>, Option<String>, Option<String>, String);
    let row: Option<Row> = conn
        .query_first(sql)
        .await
        .map_err(|e| BackupError::sql(name, sql, e))?;
    let (current, slave, binlog, version) = row.unwrap_or_default();
    Ok(Position {
        current: current.unwrap_or_default(),
        slave: slave.unwrap_or_default(),
        binlog: binlog.unwrap_or_default(),
        version,
        galera: None,
    })
}

/// Starts the replica's SQL thread again (a no-op if it runs).
pub async fn resume(source: &Endpoint) -> Result<(), BackupError> {
    let mut conn = source.connect().await?;
    exec(&mut conn, &source.name, "START SLAVE SQL_THREAD").await
}

/// Waits (at most `bound`) until `target` applied everything `master` had written when
/// this was called; the error says what stopped it.
pub async fn catch_up(
    target: &Endpoint,
    master: &Endpoint,
    bound: Duration,
) -> Result<(), BackupError> {
    let mut m = master.connect().await?;
    let pos = value(&mut m, &master.name, "SELECT @@gtid_binlog_pos")
        .await?
        .unwrap_or_default();
    let _ = m.disconnect().await;
    let mut r = target.connect().await?;
    let sql = format!(
        "SELECT MASTER_GTID_WAIT({}, {})",
        kohaproxy_health::literal(&pos),
        bound.as_secs_f64()
    );
    match value(&mut r, &target.name, &sql).await?.as_deref() {
        Some("0") => Ok(()),
        _ => Err(BackupError::Target(format!(
            "{} replicates from {} but did not reach {pos} within {} s (SHOW SLAVE STATUS \
             on it says why)",
            target.name,
            master.name,
            bound.as_secs()
        ))),
    }
}
