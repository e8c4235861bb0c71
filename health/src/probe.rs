//! Probing one server: what it says about itself (read_only, server_id, GTID positions)
//! and about the replication it runs (SHOW ALL SLAVES STATUS).
//!
//! The parsing is pure (`Status::from_vars`, `Replication::from_fields`); [`Prober`] does
//! the I/O over one mysql_async connection with a deadline.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Row, Value};

use crate::galera::Wsrep;
use crate::gtid::{GtidList, GtidState};
use crate::term::{self, TermRecord};

/// What one good probe read from a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `@@read_only`.
    pub read_only: bool,
    /// `@@server_id`.
    pub server_id: u32,
    /// `@@gtid_current_pos`: the last transaction executed here, as master or replica.
    pub gtid_current_pos: GtidList,
    /// `@@gtid_binlog_pos`: the last transaction written to this server's binlog.
    pub gtid_binlog_pos: GtidList,
    /// `@@gtid_slave_pos`: the last transaction the replica threads applied.
    pub gtid_slave_pos: GtidList,
    /// `@@gtid_binlog_state`: the last GTID per (domain, server_id) ever written to this
    /// server's binlog; what tells a diverged old master from one that can rejoin.
    pub gtid_binlog_state: GtidState,
    /// `Rpl_semi_sync_master_status`: semi-synchronous replication is enabled and acks
    /// arrive (`None` when the server does not say). OFF on a master means its commits
    /// are acknowledged without any replica having them.
    pub semi_sync_active: Option<bool>,
    /// `@@rpl_semi_sync_master_wait_no_slave`: with no replica connected, commits still
    /// wait for an ack (up to the semi-sync timeout) instead of going asynchronous at once.
    pub semi_sync_wait_no_slave: Option<bool>,
    /// `@@rpl_semi_sync_master_timeout` in milliseconds: how long a commit waits for an
    /// ack before semi-sync falls back to asynchronous.
    pub semi_sync_timeout_ms: Option<u64>,
    /// `Rpl_semi_sync_master_clients`: semi-sync replicas connected to it.
    pub semi_sync_clients: Option<u64>,
    /// Its replication connections (SHOW ALL SLAVES STATUS); empty when it replicates
    /// from nobody.
    pub replication: Vec<Replication>,
    /// `@@global.session_track_system_variables`: what a new connection's OK packets
    /// report unless it changes it (the proxy shows its clients exactly that).
    pub session_track_system_variables: String,
    /// `@@global.session_track_schema`.
    pub session_track_schema: bool,
    /// A Galera node's wsrep state (`None` for a replication server).
    pub wsrep: Option<Wsrep>,
    /// The master's term as this server records it ([`crate::term`]); `None` when it
    /// has no record (no promotion by a kohaproxy reached it yet).
    pub master_term: Option<TermRecord>,
    /// The `server_id`s of the replicas connected to it for its binlog (SHOW SLAVE HOSTS),
    /// read before `gtid_binlog_pos`: a replica missing here held nothing beyond that
    /// position when it was read. `None` when the server did not say.
    pub dump_clients: Option<Vec<u32>>,
}

/// The state of a replica's IO or SQL thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadState {
    /// `Yes`.
    Running,
    /// `Connecting` (or `Preparing`): the IO thread is trying to reach its master.
    Connecting,
    /// `No`, or anything this monitor does not know.
    Stopped,
}

impl ThreadState {
    fn parse(s: &str) -> ThreadState {
        match s.trim() {
            "Yes" => ThreadState::Running,
            "Connecting" | "Preparing" => ThreadState::Connecting,
            _ => ThreadState::Stopped,
        }
    }
}

impl std::fmt::Display for ThreadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ThreadState::Running => "running",
            ThreadState::Connecting => "connecting",
            ThreadState::Stopped => "stopped",
        })
    }
}

/// One replication connection of a server (a row of SHOW ALL SLAVES STATUS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    /// `Connection_name` (empty for the default connection).
    pub connection_name: String,
    /// `Master_Host`, as given to CHANGE MASTER.
    pub master_host: String,
    /// `Master_Port`.
    pub master_port: u16,
    /// `Slave_IO_Running`.
    pub io_thread: ThreadState,
    /// `Slave_SQL_Running`.
    pub sql_thread: ThreadState,
    /// `Seconds_Behind_Master`; `None` when the server reports NULL (SQL thread stopped,
    /// IO thread not connected).
    pub seconds_behind_master: Option<u64>,
    /// `Gtid_IO_Pos`: the last GTID received into the relay log.
    pub gtid_io_pos: GtidList,
    /// `Master_Server_Id` (0 before the first connection).
    pub master_server_id: u32,
    /// `Last_IO_Error`, if not empty.
    pub last_io_error: Option<String>,
    /// `Last_SQL_Error`, if not empty.
    pub last_sql_error: Option<String>,
    /// `Slave_received_heartbeats`: rises while the master is alive and idle.
    pub received_heartbeats: u64,
    /// `Slave_heartbeat_period` in milliseconds (0: no heartbeats).
    pub heartbeat_period_ms: u64,
}

impl Replication {
    /// Reads one SHOW [ALL] SLAVES STATUS row; `field` returns a column's text by name
    /// (`None` for NULL or a missing column: columns are matched by name, their order
    /// changes between versions).
    pub fn from_fields(field: impl Fn(&str) -> Option<String>) -> Result<Replication, String> {
        let text = |name: &str| field(name).unwrap_or_default();
        let nonempty = |name: &str| field(name).filter(|s| !s.trim().is_empty());
        let master_port = text("Master_Port");
        Ok(Replication {
            connection_name: text("Connection_name"),
            master_host: text("Master_Host"),
            master_port: master_port
                .trim()
                .parse()
                .map_err(|_| format!("bad Master_Port {master_port:?}"))?,
            io_thread: ThreadState::parse(&text("Slave_IO_Running")),
            sql_thread: ThreadState::parse(&text("Slave_SQL_Running")),
            seconds_behind_master: nonempty("Seconds_Behind_Master")
                .map(|s| {
                    s.trim()
                        .parse()
                        .map_err(|_| format!("bad Seconds_Behind_Master {s:?}"))
                })
                .transpose()?,
            gtid_io_pos: text("Gtid_IO_Pos").parse().map_err(|e| format!("{e}"))?,
            master_server_id: nonempty("Master_Server_Id")
                .map(|s| {
                    s.trim()
                        .parse()
                        .map_err(|_| format!("bad Master_Server_Id {s:?}"))
                })
                .transpose()?
                .unwrap_or(0),
            last_io_error: nonempty("Last_IO_Error"),
            last_sql_error: nonempty("Last_SQL_Error"),
            received_heartbeats: nonempty("Slave_received_heartbeats")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
            heartbeat_period_ms: nonempty("Slave_heartbeat_period")
                .and_then(|s| s.trim().parse::<f64>().ok())
                .map_or(0, |s| (s * 1000.0) as u64),
        })
    }

    /// True when either thread runs or tries to: the server is replicating, not merely
    /// left with a stopped connection.
    pub fn is_active(&self) -> bool {
        self.io_thread != ThreadState::Stopped || self.sql_thread != ThreadState::Stopped
    }
}

/// The variables query, one row: read_only, server_id, the three GTID positions, then
/// what new connections' session tracking reports.
const VARS_SQL: &str = "SELECT @@read_only, @@server_id, @@gtid_current_pos, \
     @@gtid_binlog_pos, @@gtid_slave_pos, @@global.session_track_system_variables, \
     @@global.session_track_schema, @@gtid_binlog_state, \
     (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
      WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_STATUS'), \
     @@rpl_semi_sync_master_wait_no_slave, @@rpl_semi_sync_master_timeout, \
     (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
      WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS')";

impl Status {
    /// Builds a status from the [`VARS_SQL`] row (as text, `None` for NULL) and the
    /// replication rows.
    pub fn from_vars(
        vars: &[Option<String>],
        replication: Vec<Replication>,
    ) -> Result<Status, String> {
        let var = |i: usize| vars.get(i).cloned().flatten().unwrap_or_default();
        let gtid = |i: usize, name: &str| {
            var(i)
                .parse::<GtidList>()
                .map_err(|e| format!("@@{name}: {e}"))
        };
        let read_only = var(0);
        let server_id = var(1);
        Ok(Status {
            // 0/OFF is writable; anything else (ON, NO_LOCK, ...) or nothing is read-only:
            // in doubt, never a write target.
            read_only: !matches!(read_only.trim(), "0" | "OFF"),
            server_id: server_id
                .trim()
                .parse()
                .map_err(|_| format!("bad @@server_id {server_id:?}"))?,
            gtid_current_pos: gtid(2, "gtid_current_pos")?,
            gtid_binlog_pos: gtid(3, "gtid_binlog_pos")?,
            gtid_slave_pos: gtid(4, "gtid_slave_pos")?,
            replication,
            session_track_system_variables: var(5),
            session_track_schema: matches!(var(6).trim(), "1" | "ON"),
            semi_sync_active: vars
                .get(8)
                .cloned()
                .flatten()
                .map(|v| matches!(v.trim(), "ON" | "1")),
            semi_sync_wait_no_slave: vars
                .get(9)
                .cloned()
                .flatten()
                .map(|v| matches!(v.trim(), "ON" | "1")),
            semi_sync_timeout_ms: vars
                .get(10)
                .cloned()
                .flatten()
                .and_then(|v| v.trim().parse().ok()),
            semi_sync_clients: vars
                .get(11)
                .cloned()
                .flatten()
                .and_then(|v| v.trim().parse().ok()),
            gtid_binlog_state: var(7)
                .parse::<GtidState>()
                .map_err(|e| format!("@@gtid_binlog_state: {e}"))?,
            wsrep: None,
            master_term: None,
            dump_clients: None,
        })
    }
}

/// Probes one server over its own connection, which lives from one good probe to the next.
/// A connection that failed or timed out is thrown away, never reused.
pub(crate) struct Prober {
    opts: mysql_async::Opts,
    conn: Option<mysql_async::Conn>,
    timeout: Duration,
    /// False once the server refused SHOW ALL SLAVES STATUS as a syntax error (not MariaDB).
    all_slaves: bool,
    /// The server is a Galera node: read its wsrep state, not its replication.
    galera: bool,
}

impl Prober {
    /// A prober for `address` (host:port) as `user`; each probe is bounded by `timeout`.
    pub(crate) fn new(address: &str, user: &str, password: &str, timeout: Duration) -> Prober {
        Prober {
            opts: tcp_opts(address, user, password),
            conn: None,
            timeout,
            all_slaves: true,
            galera: false,
        }
    }

    /// A prober for a Galera node: reads its wsrep state, and reads it even when the
    /// node refuses queries (`wsrep_dirty_reads` on the probe's connection).
    pub(crate) fn galera(mut self) -> Prober {
        self.galera = true;
        self
    }

    /// One probe: connect if needed, read the variables and the replication status.
    pub(crate) async fn probe(&mut self) -> Result<Status, String> {
        let result = match tokio::time::timeout(self.timeout, self.read()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        };
        if result.is_err() {
            self.discard();
        }
        result
    }

    async fn read(&mut self) -> Result<Status, String> {
        if self.conn.is_none() {
            let conn = mysql_async::Conn::new(self.opts.clone())
                .await
                .map_err(|e| format!("connect: {e}"))?;
            self.conn = Some(conn);
            if self.galera {
                let conn = self.conn.as_mut().ok_or("no connection")?;
                // A node out of the Primary component, or not ready, answers SELECTs only
                // with dirty reads on (error 1047 otherwise); SHOW always works.
                if let Err(e) = conn.query_drop("SET SESSION wsrep_dirty_reads = ON").await {
                    tracing::debug!("cannot turn on wsrep_dirty_reads for the probe: {e}");
                }
            }
        }
        if self.galera {
            return self.read_galera().await;
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        // Before the variables: every replica connected after this read is listed, so one
        // that is not held nothing beyond the `gtid_binlog_pos` read next.
        let dump_clients = read_dump_clients(conn).await;
        let vars = read_vars(conn).await?;
        let rows: Vec<Row> = if self.all_slaves {
            match conn.query::<Row, _>("SHOW ALL SLAVES STATUS").await {
                Err(mysql_async::Error::Server(e)) if e.code == 1064 => {
                    self.all_slaves = false;
                    conn.query::<Row, _>("SHOW SLAVE STATUS").await
                }
                other => other,
            }
        } else {
            conn.query::<Row, _>("SHOW SLAVE STATUS").await
        }
        .map_err(|e| e.to_string())?;
        let replication = rows
            .iter()
            .map(|row| Replication::from_fields(|name| field(row, name)))
            .collect::<Result<Vec<_>, String>>()?;
        let master_term = read_term(conn).await?;
        let mut status = Status::from_vars(&vars, replication)?;
        status.master_term = master_term;
        status.dump_clients = dump_clients;
        Ok(status)
    }

    /// A Galera node's probe: the variables every server answers, then its wsrep status
    /// and variables (it has no replication connections of its own).
    async fn read_galera(&mut self) -> Result<Status, String> {
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let vars = read_vars(conn).await?;
        let mut values = std::collections::HashMap::new();
        for sql in [crate::galera::STATUS_SQL, crate::galera::VARIABLES_SQL] {
            let rows: Vec<Row> = conn.query(sql).await.map_err(|e| e.to_string())?;
            for row in &rows {
                if let (Some(name), value) =
                    (row.as_ref(0).and_then(text), row.as_ref(1).and_then(text))
                {
                    values.insert(name.to_ascii_lowercase(), value.unwrap_or_default());
                }
            }
        }
        let wsrep = Wsrep::from_values(|name| values.get(name).cloned())?;
        let mut status = Status::from_vars(&vars, Vec::new())?;
        status.wsrep = Some(wsrep);
        Ok(status)
    }

    /// Drops the connection without the polite COM_QUIT: mysql_async's `Drop` would spawn
    /// a task that first drains any pending result, which waits forever on a hung server.
    /// Dropped off the runtime, the socket is just closed.
    fn discard(&mut self) {
        if let Some(conn) = self.conn.take() {
            let spawned = std::thread::Builder::new()
                .name("monitor-discard".into())
                .spawn(move || drop(conn));
            if let Err(e) = spawned {
                tracing::debug!("cannot spawn a thread to drop a probe connection: {e}");
            }
        }
    }
}

/// The master's term recorded on this server; `None` when there is no record (no table,
/// no schema, no row: no promotion by a kohaproxy reached this server).
async fn read_term(conn: &mut mysql_async::Conn) -> Result<Option<TermRecord>, String> {
    let mut read = conn.query_first::<Row, _>(term::READ_SQL).await;
    if matches!(&read, Err(mysql_async::Error::Server(e)) if e.code == 1054) {
        // A table from an older kohaproxy, without `binlog_before`.
        read = conn
            .query_first::<Row, _>(term::READ_SQL_WITHOUT_BINLOG)
            .await;
    }
    match read {
        Ok(Some(row)) => {
            let column = |i: usize| row.as_ref(i).and_then(text);
            TermRecord::from_row(
                &column(0).unwrap_or_default(),
                &column(1).unwrap_or_default(),
                column(2).as_deref(),
            )
            .map(Some)
        }
        Ok(None) => Ok(None),
        // No such table (1146) or schema (1049): no record yet. Any other refusal (a
        // monitor user without SELECT on it) must not make the server look down.
        Err(mysql_async::Error::Server(e)) => {
            if e.code != 1146 && e.code != 1049 {
                tracing::debug!("cannot read the recorded term: {e}");
            }
            Ok(None)
        }
        Err(e) => Err(format!("reading the recorded term: {e}")),
    }
}

/// The [`VARS_SQL`] row, as text per column.
/// The `server_id`s of the replicas reading this server's binlog, or `None` when the
/// server refuses to say (privileges): then no replica is known to be absent.
async fn read_dump_clients(conn: &mut mysql_async::Conn) -> Option<Vec<u32>> {
    match conn.query::<Row, _>("SHOW SLAVE HOSTS").await {
        Ok(rows) => rows
            .iter()
            .map(|row| field(row, "Server_id").and_then(|id| id.trim().parse().ok()))
            .collect(),
        Err(e) => {
            tracing::debug!("SHOW SLAVE HOSTS: {e}");
            None
        }
    }
}

async fn read_vars(conn: &mut mysql_async::Conn) -> Result<Vec<Option<String>>, String> {
    let row: Option<Row> = conn
        .query_first(VARS_SQL)
        .await
        .map_err(|e| e.to_string())?;
    let row = row.ok_or("the variables query returned no row")?;
    Ok((0..row.len())
        .map(|i| row.as_ref(i).and_then(text))
        .collect())
}

/// Connection options for `address` (host:port) as `user`, over TCP only (mysql_async
/// would otherwise switch to the server's Unix socket on 127.0.0.1: another route than
/// the configured one).
pub fn tcp_opts(address: &str, user: &str, password: &str) -> mysql_async::Opts {
    let (host, port) = split_address(address);
    mysql_async::OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .into()
}

/// A column of `row` by name, as text (`None` for NULL or no such column).
fn field(row: &Row, name: &str) -> Option<String> {
    let i = row
        .columns_ref()
        .iter()
        .position(|c| c.name_str().eq_ignore_ascii_case(name))?;
    row.as_ref(i).and_then(text)
}

/// A value of the text protocol as text.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        _ => None,
    }
}

/// Splits `host:port` (`[v6]:port` too); no or a bad port means 3306.
pub fn split_address(address: &str) -> (String, u16) {
    let (host, port) = match address.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => match p.parse::<u16>() {
            Ok(port) => (h, port),
            Err(_) => (address, 3306),
        },
        _ => (address, 3306),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (host.to_string(), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_running_replica_row() {
        let row = [
            ("Connection_name", ""),
            ("Master_Host", "127.0.0.1"),
            ("Master_Port", "3306"),
            ("Slave_IO_Running", "Yes"),
            ("Slave_SQL_Running", "Yes"),
            ("Seconds_Behind_Master", "0"),
            ("Gtid_IO_Pos", "0-1-42"),
            ("Master_Server_Id", "1"),
            ("Last_IO_Error", ""),
            ("Last_SQL_Error", ""),
        ];
        let r = Replication::from_fields(fields(&row)).unwrap();
        assert_eq!(r.master_host, "127.0.0.1");
        assert_eq!(r.master_port, 3306);
        assert_eq!(r.io_thread, ThreadState::Running);
        assert_eq!(r.sql_thread, ThreadState::Running);
        assert_eq!(r.seconds_behind_master, Some(0));
        assert_eq!(r.gtid_io_pos.to_string(), "0-1-42");
        assert_eq!(r.master_server_id, 1);
        assert_eq!((&r.last_io_error, &r.last_sql_error), (&None, &None));
        assert!(r.is_active());
    }

    #[test]
    fn a_broken_replica_row() {
        let row = [
            ("Master_Host", "db1.example"),
            ("Master_Port", "3307"),
            ("Slave_IO_Running", "Connecting"),
            ("Slave_SQL_Running", "No"),
            ("Gtid_IO_Pos", ""),
            ("Last_IO_Error", "error reconnecting to master"),
            ("Last_SQL_Error", "Duplicate entry"),
        ];
        let r = Replication::from_fields(fields(&row)).unwrap();
        assert_eq!(r.io_thread, ThreadState::Connecting);
        assert_eq!(r.sql_thread, ThreadState::Stopped);
        assert_eq!(r.seconds_behind_master, None, "NULL");
        assert!(r.gtid_io_pos.is_empty());
        assert_eq!(r.master_server_id, 0);
        assert_eq!(
            r.last_io_error.as_deref(),
            Some("error reconnecting to master")
        );
        assert!(r.is_active());
        let stopped = [
            ("Master_Host", "h"),
            ("Master_Port", "1"),
            ("Slave_IO_Running", "No"),
            ("Slave_SQL_Running", "No"),
        ];
        assert!(!Replication::from_fields(fields(&stopped))
            .unwrap()
            .is_active());
    }

    #[test]
    fn bad_replica_rows_are_errors_not_panics() {
        let bad_port = [("Master_Host", "h"), ("Master_Port", "x")];
        assert!(Replication::from_fields(fields(&bad_port))
            .unwrap_err()
            .contains("Master_Port"));
        let bad_gtid = [("Master_Port", "1"), ("Gtid_IO_Pos", "0-1")];
        assert!(Replication::from_fields(fields(&bad_gtid)).is_err());
        let bad_lag = [("Master_Port", "1"), ("Seconds_Behind_Master", "-")];
        assert!(Replication::from_fields(fields(&bad_lag)).is_err());
    }

    #[test]
    fn variables() {
        let v = |s: &[Option<&str>]| s.iter().map(|x| x.map(String::from)).collect::<Vec<_>>();
        let s = Status::from_vars(
            &v(&[Some("0"), Some("1"), Some("0-1-5"), Some("0-1-5"), Some("")]),
            vec![],
        )
        .unwrap();
        assert!(!s.read_only);
        assert_eq!(s.server_id, 1);
        assert_eq!(s.gtid_binlog_pos.to_string(), "0-1-5");
        assert!(s.gtid_slave_pos.is_empty());
        for ro in [Some("1"), Some("ON"), Some("NO_LOCK"), None] {
            let s = Status::from_vars(&v(&[ro, Some("2"), None, None, None]), vec![]).unwrap();
            assert!(s.read_only, "{ro:?} is read-only");
        }
        let off = Status::from_vars(&v(&[Some("OFF"), Some("2")]), vec![]).unwrap();
        assert!(!off.read_only);
        assert!(Status::from_vars(&v(&[Some("0"), Some("x")]), vec![]).is_err());
        let e = Status::from_vars(&v(&[Some("0"), Some("1"), Some("junk")]), vec![]).unwrap_err();
        assert!(e.contains("gtid_current_pos"), "{e}");
    }

    #[test]
    fn addresses() {
        assert_eq!(split_address("127.0.0.1:3307"), ("127.0.0.1".into(), 3307));
        assert_eq!(split_address("db1"), ("db1".into(), 3306));
        assert_eq!(split_address("[::1]:3308"), ("::1".into(), 3308));
        assert_eq!(split_address("[::1]"), ("::1".into(), 3306));
        assert_eq!(split_address("db1:x"), ("db1:x".into(), 3306));
    }
}
