//! One admin connection: opensrv-mysql speaks the protocol, [`AdminShim`] answers.
//!
//! Two small stream adapters close gaps in opensrv-mysql 0.7:
//! - [`LoginDeadline`] fails the read side when the login has not finished within the
//!   proxy's handshake timeout (opensrv waits forever for a silent client);
//! - [`RefusalWriter`] replaces the error opensrv sends for a refused login (1698
//!   "Authenticate failed, ...") with MariaDB's own: 1045, SQLSTATE 28000, "Access denied
//!   for user ...".

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use kohaproxy_proxy::Shared;
use opensrv_mysql::{
    AsyncMysqlIntermediary, AsyncMysqlShim, Column, ColumnFlags, ColumnType, ErrorKind, InitWriter,
    ParamParser, QueryResultWriter, StatementMetaWriter,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::{debug, info};

use crate::command::{parse, Command};
use crate::tables::{self, Cell, Kind, Table};
use kohaproxy_proxy::auth;
use kohaproxy_proxy::protocol::handshake::NATIVE_PASSWORD;

/// The version string in the console's greeting (clients parse the leading number).
pub(crate) const VERSION: &str = concat!("5.7.99-kohaproxy-admin-", env!("CARGO_PKG_VERSION"));

/// Who may log in on a listener.
#[derive(Clone)]
pub(crate) enum Access {
    /// The Unix socket: its file mode is the access control; any user and password.
    Socket,
    /// The TCP port: this password (mysql_native_password), any user name.
    Password(kohaproxy_config::PasswordHash),
}

/// What one connection is, for the shim and the logs.
pub(crate) struct Conn {
    /// Connection id shown in the greeting.
    pub id: u32,
    /// Who may log in.
    pub access: Access,
    /// Where the client is: "localhost" on the socket, its IP address on TCP.
    pub host: String,
}

/// Serves one admin client until it quits, fails, or breaks the protocol. Never panics on
/// what the client sends; errors end this connection only.
pub(crate) async fn serve<S>(
    stream: S,
    shared: Arc<Shared>,
    backups: kohaproxy_backup::Backups,
    conn: Conn,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let id = conn.id;
    let host = conn.host.clone();
    debug!(id, client = %host, "admin connection");
    let logged_in = Arc::new(AtomicBool::new(false));
    let refusal = Arc::new(OnceLock::new());
    let (read, write) = tokio::io::split(stream);
    let limit = shared.config.proxy.handshake_timeout;
    let reader = LoginDeadline {
        inner: read,
        sleep: Box::pin(tokio::time::sleep(limit)),
        logged_in: logged_in.clone(),
        limit,
    };
    let writer = RefusalWriter {
        inner: write,
        refusal: refusal.clone(),
        header: Vec::with_capacity(4),
        out: None,
    };
    let shim = AdminShim {
        shared,
        backups,
        conn,
        salt: auth::new_salt(),
        user: Mutex::new(String::new()),
        logged_in,
        refusal,
        database: None,
    };
    match AsyncMysqlIntermediary::run_on(shim, reader, writer).await {
        Ok(()) => debug!(id, "admin connection closed"),
        // Already logged (wrong password).
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            info!(id, client = %host, "admin connection refused: {e}")
        }
        Err(e) => debug!(id, "admin connection ended: {e}"),
    }
}

/// Answers one admin client's commands.
pub(crate) struct AdminShim {
    shared: Arc<Shared>,
    backups: kohaproxy_backup::Backups,
    conn: Conn,
    salt: [u8; 20],
    /// The user name given at login.
    user: Mutex<String>,
    /// Set once the login was accepted; nothing is answered before.
    logged_in: Arc<AtomicBool>,
    /// The error packet payload to send instead of opensrv's, once a login is refused.
    refusal: Arc<OnceLock<Vec<u8>>>,
    /// The schema given at login or by USE / COM_INIT_DB (only echoed by DATABASE()).
    database: Option<String>,
}

impl AdminShim {
    /// Waits (up to `monitor.failover_hold`) until no statement of this proxy still runs
    /// on `server`, which gets no new ones once in maintenance; says how that went.
    async fn drain(&self, server: &str) -> String {
        let Some(stats) = self.shared.stats.server(server) else {
            return "no statistics for it".into();
        };
        let deadline = tokio::time::Instant::now() + self.shared.config.monitor.failover_hold;
        loop {
            let running = stats.outstanding.load(Ordering::Relaxed);
            if running == 0 {
                return "no statement of this proxy runs there any more".into();
            }
            if tokio::time::Instant::now() >= deadline {
                return format!("{running} statement(s) still running there");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The result set for `command`.
    fn answer(&self, command: &Command) -> Table {
        let shared = &self.shared;
        match command {
            Command::ShowServers => {
                let stats = shared.stats.snapshot(shared.sessions.len());
                tables::servers(&shared.topology.load(), &stats)
            }
            Command::ShowTopology => tables::topology(&shared.topology.load()),
            Command::ShowSessions => {
                let names: Vec<&str> = shared
                    .config
                    .servers
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect();
                tables::sessions(&shared.sessions.snapshot(), SystemTime::now(), &names)
            }
            Command::ShowStats => tables::stats(&shared.stats.snapshot(shared.sessions.len())),
            Command::Cluster(_) | Command::BackupNow { .. } | Command::Rebuild { .. } => {
                tables::message("run elsewhere")
            }
            Command::ShowBackups => match self.backups.list() {
                Ok(list) => tables::backups(&list),
                Err(e) => tables::message(&e.to_string()),
            },
            Command::Select(probes) => {
                let user = self.user.lock().map(|u| u.clone()).unwrap_or_default();
                let user = format!("{user}@{}", self.conn.host);
                let cx = tables::Connection {
                    version: VERSION,
                    database: self.database.as_deref(),
                    user: &user,
                };
                tables::select(probes, &cx)
            }
        }
    }
}

#[async_trait::async_trait]
impl<W: AsyncWrite + Send + Unpin + 'static> AsyncMysqlShim<W> for AdminShim {
    type Error = io::Error;

    fn version(&self) -> String {
        VERSION.to_string()
    }

    fn connect_id(&self) -> u32 {
        self.conn.id
    }

    fn salt(&self) -> [u8; 20] {
        // opensrv asks twice (greeting, then the check): the same per-connection salt.
        self.salt
    }

    async fn authenticate(
        &self,
        auth_plugin: &str,
        username: &[u8],
        salt: &[u8],
        auth_data: &[u8],
    ) -> bool {
        let user: String = String::from_utf8_lossy(username).chars().take(64).collect();
        let ok = match &self.conn.access {
            Access::Socket => true,
            Access::Password(password) => {
                auth_plugin.as_bytes() == NATIVE_PASSWORD
                    && auth::verify(password, salt, auth_data).is_some()
            }
        };
        if ok {
            debug!(id = self.conn.id, %user, "admin login");
            if let Ok(mut u) = self.user.lock() {
                *u = user;
            }
            self.logged_in.store(true, Ordering::Release);
        } else {
            info!(id = self.conn.id, %user, client = %self.conn.host, "admin login refused: wrong password");
            let _ = self
                .refusal
                .set(access_denied(&user, &self.conn.host, !auth_data.is_empty()));
        }
        ok
    }

    async fn on_prepare<'a>(
        &'a mut self,
        _query: &'a str,
        info: StatementMetaWriter<'a, W>,
    ) -> io::Result<()> {
        info.error(
            ErrorKind::ER_UNSUPPORTED_PS,
            b"the admin console does not support prepared statements; send commands as text"
                .as_slice(),
        )
        .await
    }

    async fn on_execute<'a>(
        &'a mut self,
        _id: u32,
        _params: ParamParser<'a>,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        results
            .error(
                ErrorKind::ER_UNKNOWN_STMT_HANDLER,
                b"the admin console does not support prepared statements".as_slice(),
            )
            .await
    }

    async fn on_close<'a>(&'a mut self, _stmt: u32)
    where
        W: 'async_trait,
    {
    }

    async fn on_query<'a>(
        &'a mut self,
        query: &'a str,
        results: QueryResultWriter<'a, W>,
    ) -> io::Result<()> {
        if !self.logged_in.load(Ordering::Acquire) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "command before login",
            ));
        }
        match parse(query) {
            Ok(Command::Cluster(op)) => {
                info!(id = self.conn.id, command = ?op, "admin command");
                let draining = match &op {
                    kohaproxy_health::Command::Maintenance { server, on: true } => {
                        Some(server.clone())
                    }
                    _ => None,
                };
                match self.shared.control.run(op).await {
                    Ok(mut done) => {
                        if let Some(server) = draining {
                            done.push_str("; ");
                            done.push_str(&self.drain(&server).await);
                        }
                        write_table(results, &tables::message(&done)).await
                    }
                    Err(why) => {
                        results
                            .error(ErrorKind::ER_UNKNOWN_ERROR, why.as_bytes())
                            .await
                    }
                }
            }
            Ok(Command::BackupNow { from }) => {
                info!(id = self.conn.id, from = ?from, "admin command: BACKUP NOW");
                match self.backups.start(from) {
                    Ok((id, source)) => {
                        let done = format!(
                            "backup {id} started from {source}; SHOW BACKUPS shows its progress"
                        );
                        write_table(results, &tables::message(&done)).await
                    }
                    Err(why) => {
                        let why = why.to_string();
                        results
                            .error(ErrorKind::ER_UNKNOWN_ERROR, why.as_bytes())
                            .await
                    }
                }
            }
            Ok(Command::Rebuild { server }) => {
                info!(id = self.conn.id, server = %server, "admin command: REBUILD");
                match self.backups.start_rebuild(&server) {
                    Ok(done) => write_table(results, &tables::message(&done)).await,
                    Err(why) => {
                        let why = why.to_string();
                        results
                            .error(ErrorKind::ER_UNKNOWN_ERROR, why.as_bytes())
                            .await
                    }
                }
            }
            Ok(command) => {
                debug!(id = self.conn.id, ?command, "admin command");
                write_table(results, &self.answer(&command)).await
            }
            Err(e) => {
                debug!(id = self.conn.id, statement = %e.statement, "unknown admin command");
                results
                    .error(ErrorKind::ER_PARSE_ERROR, e.to_string().as_bytes())
                    .await
            }
        }
    }

    async fn on_init<'a>(
        &'a mut self,
        schema: &'a str,
        writer: InitWriter<'a, W>,
    ) -> io::Result<()> {
        // Accepted and remembered so `mariadb -D x` and `USE x` work; nothing depends on it.
        self.database = Some(schema.to_string());
        writer.ok().await
    }
}

/// Sends `table` as a text result set.
async fn write_table<W: AsyncWrite + Send + Unpin>(
    results: QueryResultWriter<'_, W>,
    table: &Table,
) -> io::Result<()> {
    let columns: Vec<Column> = table
        .columns
        .iter()
        .map(|(name, kind)| Column {
            table: String::new(),
            column: name.clone(),
            coltype: match kind {
                Kind::Text => ColumnType::MYSQL_TYPE_VAR_STRING,
                Kind::Count => ColumnType::MYSQL_TYPE_LONGLONG,
            },
            colflags: match kind {
                Kind::Text => ColumnFlags::empty(),
                Kind::Count => ColumnFlags::UNSIGNED_FLAG,
            },
        })
        .collect();
    let mut rows = results.start(&columns).await?;
    for row in &table.rows {
        for cell in row {
            match cell {
                Cell::Text(v) => rows.write_col(v.as_deref())?,
                Cell::Count(v) => rows.write_col(*v)?,
            }
        }
        rows.end_row().await?;
    }
    rows.finish().await
}

/// The payload of MariaDB's error for a refused login.
fn access_denied(user: &str, host: &str, used_password: bool) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&1045u16.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(b"28000");
    let using = if used_password { "YES" } else { "NO" };
    p.extend_from_slice(
        format!("Access denied for user '{user}'@'{host}' (using password: {using})").as_bytes(),
    );
    p
}

/// The read side of a connection, failing with `TimedOut` when the login has not finished
/// within `limit`.
struct LoginDeadline<R> {
    inner: R,
    sleep: Pin<Box<tokio::time::Sleep>>,
    logged_in: Arc<AtomicBool>,
    limit: Duration,
}

impl<R: AsyncRead + Unpin> AsyncRead for LoginDeadline<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.logged_in.load(Ordering::Acquire) && this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("login not finished within {:?}", this.limit),
            )));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

/// The write side of a connection. Once a login is refused (`refusal` set), what opensrv
/// writes (its own error packet) is swallowed except for the packet's sequence number, and
/// the refusal payload is sent in its place at the next flush.
struct RefusalWriter<W> {
    inner: W,
    refusal: Arc<OnceLock<Vec<u8>>>,
    /// The first bytes opensrv wrote after the refusal: its packet header.
    header: Vec<u8>,
    /// The replacement packet and how much of it is written.
    out: Option<(Vec<u8>, usize)>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for RefusalWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.refusal.get().is_none() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        let need = 4usize.saturating_sub(this.header.len()).min(buf.len());
        this.header.extend_from_slice(&buf[..need]);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(payload) = this.refusal.get() {
            if this.out.is_none() && this.header.len() >= 4 {
                let len = payload.len().to_le_bytes();
                let mut packet = vec![len[0], len[1], len[2], this.header[3]];
                packet.extend_from_slice(payload);
                this.out = Some((packet, 0));
            }
            if let Some((packet, written)) = &mut this.out {
                while *written < packet.len() {
                    let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &packet[*written..]))?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    *written += n;
                }
            }
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_refused_login_gets_mariadbs_error_with_opensrvs_sequence_number() {
        let (a, mut b) = tokio::io::duplex(1024);
        let refusal = Arc::new(OnceLock::new());
        let mut w = RefusalWriter {
            inner: a,
            refusal: refusal.clone(),
            header: Vec::new(),
            out: None,
        };
        w.write_all(&[1, 0, 0, 0, 0xaa]).await.unwrap();
        w.flush().await.unwrap();
        refusal
            .set(access_denied("bob", "127.0.0.1", true))
            .unwrap();
        // What opensrv would write: a header (seq 2) and its own error.
        w.write_all(&[9, 0, 0, 2]).await.unwrap();
        w.write_all(b"\xff\xa2\x06#28000whatever").await.unwrap();
        w.flush().await.unwrap();
        w.flush().await.unwrap();
        drop(w);
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..5], &[1, 0, 0, 0, 0xaa]);
        let packet = &got[5..];
        let len = usize::from(packet[0]) | usize::from(packet[1]) << 8;
        assert_eq!(packet.len(), 4 + len);
        assert_eq!(packet[3], 2);
        assert_eq!(&packet[4..7], &[0xff, 0x15, 0x04]); // 1045
        assert_eq!(
            std::str::from_utf8(&packet[7..]).unwrap(),
            "#28000Access denied for user 'bob'@'127.0.0.1' (using password: YES)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_times_out_before_login_only() {
        let (a, _b) = tokio::io::duplex(64);
        let logged_in = Arc::new(AtomicBool::new(false));
        let mut r = LoginDeadline {
            inner: a,
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
            logged_in: logged_in.clone(),
            limit: Duration::from_secs(1),
        };
        let mut buf = [0u8; 4];
        let e = r.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        logged_in.store(true, Ordering::Release);
        let idle = tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf)).await;
        assert!(
            idle.is_err(),
            "after login, reads wait as long as the client"
        );
    }
}
