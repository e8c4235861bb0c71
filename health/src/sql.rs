//! The monitor's own short-lived connections for acting on servers (promote, fence,
//! re-point, lock), each statement bounded by a deadline.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::probe::{split_address, tcp_opts};

/// One server, as the monitor acts on it.
pub(crate) struct Target<'a> {
    /// Server name (for messages).
    pub name: &'a str,
    /// host:port.
    pub address: &'a str,
}

/// How much longer than its deadline a `STOP SLAVE IO_THREAD` may take: MariaDB signals
/// an IO thread that is still reading again after 2 s.
const STOP_RESIGNAL: Duration = Duration::from_millis(2500);

/// An open connection to act on a server.
pub(crate) struct Session {
    conn: Option<Conn>,
    name: String,
    timeout: Duration,
}

impl Session {
    /// Connects as the monitor user, within `timeout`.
    pub(crate) async fn open(
        target: Target<'_>,
        user: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<Session, String> {
        let opts = tcp_opts(target.address, user, password);
        match tokio::time::timeout(timeout, Conn::new(opts)).await {
            Ok(Ok(conn)) => Ok(Session {
                conn: Some(conn),
                name: target.name.to_string(),
                timeout,
            }),
            Ok(Err(e)) => Err(format!("{}: connect: {e}", target.name)),
            Err(_) => Err(format!(
                "{}: connect: no answer within {} ms",
                target.name,
                timeout.as_millis()
            )),
        }
    }

    /// The deadline each statement gets unless given its own.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The server's name, for logs.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Runs one statement, discarding any result.
    pub(crate) async fn exec(&mut self, sql: &str) -> Result<(), String> {
        self.exec_within(sql, self.timeout).await
    }

    /// Runs one statement with its own deadline.
    pub(crate) async fn exec_within(&mut self, sql: &str, limit: Duration) -> Result<(), String> {
        let conn = self.conn()?;
        let result = tokio::time::timeout(limit, conn.query_drop(sql)).await;
        self.finish(sql, limit, result)
    }

    /// `STOP SLAVE`, without MariaDB's wait on an IO thread blocked reading from a hung
    /// master: STOP SLAVE signals the thread, finds it still reading and signals again
    /// only after two seconds (measured: 2.01 s, every time). The IO threads are KILLed
    /// first, which ends them as STOP SLAVE IO_THREAD does and returns at once; STOP
    /// SLAVE then finds them gone (0.02 s). The relay log is kept either way.
    pub(crate) async fn stop_slave(&mut self) -> Result<(), String> {
        self.kill_io_threads().await;
        self.exec("STOP SLAVE").await
    }

    /// `STOP SLAVE IO_THREAD`, the IO threads KILLed first as in [`Session::stop_slave`];
    /// the SQL thread goes on applying the relay log. The statement gets the usual
    /// deadline plus [`STOP_RESIGNAL`]: when the KILL has not ended a thread reading from
    /// a hung master yet, MariaDB signals it again only after 2 s, and a failover's cut
    /// must not be given up while it is on its way (under load, one replica's stop took
    /// longer than the 1 s probe timeout, and it stayed connected to the old master).
    pub(crate) async fn stop_io_thread(&mut self) -> Result<(), String> {
        self.kill_io_threads().await;
        self.exec_within("STOP SLAVE IO_THREAD", self.timeout + STOP_RESIGNAL)
            .await
    }

    /// KILLs the server's replication IO threads (best effort).
    async fn kill_io_threads(&mut self) {
        let ids = self
            .value(
                "SELECT GROUP_CONCAT(ID) FROM information_schema.PROCESSLIST \
                 WHERE COMMAND = 'Slave_IO'",
                self.timeout,
            )
            .await;
        if let Ok(Some(ids)) = ids {
            for id in ids
                .split(',')
                .filter_map(|id| id.trim().parse::<u64>().ok())
            {
                // One that ended meanwhile is no error.
                let _ = self.exec(&format!("KILL {id}")).await;
            }
        }
    }

    /// Runs one statement and returns the rows it changed.
    pub(crate) async fn affected(&mut self, sql: &str, limit: Duration) -> Result<u64, String> {
        let conn = self.conn()?;
        let result = tokio::time::timeout(limit, async {
            conn.query_drop(sql).await?;
            Ok::<u64, mysql_async::Error>(conn.affected_rows())
        })
        .await;
        self.finish(sql, limit, result)
    }

    /// Runs a query returning one value (NULL and no row are `None`), with its own deadline.
    pub(crate) async fn value(
        &mut self,
        sql: &str,
        limit: Duration,
    ) -> Result<Option<String>, String> {
        Ok(self.row(sql, limit).await?.into_iter().next().flatten())
    }

    /// Runs a query returning one row, as text per column (NULL is `None`; no row is an
    /// empty row).
    pub(crate) async fn row(
        &mut self,
        sql: &str,
        limit: Duration,
    ) -> Result<Vec<Option<String>>, String> {
        let conn = self.conn()?;
        let result = tokio::time::timeout(limit, conn.query_first::<Row, _>(sql)).await;
        let row = self.finish(sql, limit, result)?;
        Ok(row.map_or_else(Vec::new, |row| {
            (0..row.len())
                .map(|i| {
                    row.get_opt::<Option<String>, usize>(i)
                        .and_then(Result::ok)
                        .flatten()
                })
                .collect()
        }))
    }

    /// Runs a query returning one row and returns the text of its column `column`, by name
    /// (`None` for NULL, no row, or no such column): for SHOW statements, whose column
    /// order changes between versions.
    pub(crate) async fn column(
        &mut self,
        sql: &str,
        column: &str,
        limit: Duration,
    ) -> Result<Option<String>, String> {
        let conn = self.conn()?;
        let result = tokio::time::timeout(limit, conn.query_first::<Row, _>(sql)).await;
        let row = self.finish(sql, limit, result)?;
        Ok(row.and_then(|row| {
            row.get_opt::<Option<String>, &str>(column)
                .and_then(Result::ok)
                .flatten()
        }))
    }

    /// The open connection.
    fn conn(&mut self) -> Result<&mut Conn, String> {
        let name = &self.name;
        self.conn
            .as_mut()
            .ok_or_else(|| format!("{name}: no connection"))
    }

    /// The outcome of a bounded statement as this module reports it; a statement that
    /// timed out leaves no connection behind (the server may be hung).
    fn finish<T>(
        &mut self,
        sql: &str,
        limit: Duration,
        result: Result<Result<T, mysql_async::Error>, tokio::time::error::Elapsed>,
    ) -> Result<T, String> {
        let name = &self.name;
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{name}: {}: {e}", first_words(sql))),
            Err(_) => {
                let e = format!(
                    "{name}: {}: no answer within {} ms",
                    first_words(sql),
                    limit.as_millis()
                );
                self.discard();
                Err(e)
            }
        }
    }

    /// Closes the connection without waiting for the server (it may be hung).
    fn discard(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = std::thread::Builder::new()
                .name("monitor-discard".into())
                .spawn(move || drop(conn));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.discard();
    }
}

/// The first two words of a statement, for error messages (never the values in it).
fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// A string literal for SQL (single quotes, backslash and quote escaped).
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The heartbeat period kohaproxy gives the replicas it points at a master. A hung master
/// is confirmed dead when its replicas heard nothing for two periods; MariaDB's default
/// period (half of `slave_net_timeout`) is 30 s.
pub const HEARTBEAT_SECONDS: u64 = 1;

/// `CHANGE MASTER TO` the server at `address`, with the replication account, GTID mode
/// (`slave_pos` for a replica, `current_pos` for a rejoining old master) and a heartbeat
/// every [`HEARTBEAT_SECONDS`].
pub fn change_master(address: &str, user: &str, password: &str, gtid_mode: &str) -> String {
    let (host, port) = split_address(address);
    format!(
        "CHANGE MASTER TO MASTER_HOST={}, MASTER_PORT={port}, MASTER_USER={}, \
         MASTER_PASSWORD={}, MASTER_USE_GTID={gtid_mode}, MASTER_CONNECT_RETRY=1, \
         MASTER_HEARTBEAT_PERIOD={HEARTBEAT_SECONDS}",
        literal(&host),
        literal(user),
        literal(password)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_change_master() {
        assert_eq!(literal("a'b\\c"), "'a''b\\\\c'");
        let sql = change_master("127.0.0.1:3307", "repl", "p'w", "slave_pos");
        assert_eq!(
            sql,
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=3307, MASTER_USER='repl', \
             MASTER_PASSWORD='p''w', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
             MASTER_HEARTBEAT_PERIOD=1"
        );
        assert_eq!(first_words("SET GLOBAL read_only = 1"), "SET GLOBAL");
    }
}
