//! The write ledger: workload W1 of the failover test plan, and its loss accounting.
//!
//! [`Ledger::run`] starts N clients, each on ONE connection, that insert unique rows
//! `(client, seq, at_us)` into `DB.acks` (autocommit, text protocol, literal values) as fast
//! as `pause_between` allows, with a fresh `seq` for every attempt (never reused, even after
//! an error). Each attempt is recorded with its invoke and completion [`Instant`]s and its
//! [`Outcome`]. After a fault and the failover, [`verify`] reads the table from the new
//! master directly and reports every acknowledged row that is missing: the number that
//! must be zero.
//!
//! **Connections across errors.** The proxy is meant to keep client sockets open across a
//! failover, so after a server error packet ([`mysql_async::Error::Server`]) a client keeps
//! using the same connection. It reconnects only when the connection itself is broken (an
//! I/O or driver error) or an attempt timed out (its connection is in an unknown state);
//! those reconnects are counted per client ([`ClientStats::reconnects`]).
//!
//! **Client ids.** At start the ledger creates the database and table if missing and
//! numbers its clients after the largest `client` already in the table, so several runs
//! can share one table and [`verify`] looks only at this run's clients.
//!
//! **The database.** The default is [`DEFAULT_DATABASE`] (`koha_ledger`): the sandbox's
//! application user `koha` has every privilege on `koha%` databases and none on others.
//!
//! Instants are [`std::time::Instant`]s: take `Instant::now()` when injecting a fault and
//! hand it to [`LedgerReport::rto`].
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row};
use tokio::sync::watch;

/// The database the ledger writes to unless told otherwise (the sandbox's `koha` user may
/// create `koha%` databases).
pub const DEFAULT_DATABASE: &str = "koha_ledger";

/// How the ledger runs. Build with [`LedgerOptions::new`] or [`LedgerOptions::from_url`]
/// and change the public fields.
#[derive(Clone, Debug)]
pub struct LedgerOptions {
    /// Where the clients connect (normally the proxy), as whom. The ledger always connects
    /// with `prefer_socket = false`: mysql_async otherwise reads `@@socket` after a TCP
    /// login to 127.0.0.1 and reconnects through that Unix socket, i.e. straight to the
    /// server behind the proxy or relay.
    pub opts: Opts,
    /// How many clients (each with one connection at a time). Default 4.
    pub clients: usize,
    /// How long clients start new attempts. Default 5 s.
    pub duration: Duration,
    /// Set to true to stop early (checked every few milliseconds). Default none.
    pub stop: Option<Arc<AtomicBool>>,
    /// The pause after each attempt. Default 5 ms.
    pub pause_between: Duration,
    /// An attempt with no answer after this long is recorded as [`Outcome::TimedOut`] and
    /// its connection is dropped. Default 30 s.
    pub statement_timeout: Duration,
    /// How long one connection attempt may take. Default 5 s.
    pub connect_timeout: Duration,
    /// How long after the end (duration or stop) an attempt still in flight is waited for
    /// before it is recorded as [`Outcome::Abandoned`]. Default 2 s.
    pub stop_grace: Duration,
    /// Each attempt is `BEGIN; INSERT; INSERT; COMMIT` (two rows, acknowledged by the
    /// COMMIT's OK) instead of one autocommit INSERT. Default false.
    pub transactions: bool,
    /// The database holding the `acks` table. Default [`DEFAULT_DATABASE`].
    pub database: String,
}

impl LedgerOptions {
    /// The defaults (see each field) with these connection options.
    pub fn new(opts: Opts) -> LedgerOptions {
        LedgerOptions {
            opts,
            clients: 4,
            duration: Duration::from_secs(5),
            stop: None,
            pause_between: Duration::from_millis(5),
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            stop_grace: Duration::from_secs(2),
            transactions: false,
            database: DEFAULT_DATABASE.to_string(),
        }
    }

    /// The defaults with connection options from a `mysql://user:pass@host:port` URL.
    pub fn from_url(url: &str) -> Result<LedgerOptions, mysql_async::UrlError> {
        Ok(LedgerOptions::new(Opts::from_url(url)?))
    }

    /// The ledger table, `DB.acks`, quoted.
    pub fn table(&self) -> String {
        table_name(&self.database)
    }
}

/// `opts` with `prefer_socket = false`, so that a TCP connection to a proxy or relay on
/// 127.0.0.1 is not silently replaced by one to the Unix socket of the server behind it.
pub fn tcp_only(opts: &Opts) -> Opts {
    OptsBuilder::from_opts(opts.clone())
        .prefer_socket(false)
        .into()
}

fn table_name(database: &str) -> String {
    format!("`{}`.`acks`", database.replace('`', "``"))
}

/// Why a ledger could not run.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Creating the table or reading the next client id failed.
    #[error("ledger setup failed: {0}")]
    Setup(#[source] mysql_async::Error),
    /// The setup could not connect within `connect_timeout`.
    #[error("ledger setup: no connection within {0:?}")]
    SetupTimeout(Duration),
    /// Reading the table for [`verify`] failed.
    #[error("reading the ledger table failed: {0}")]
    Read(#[source] mysql_async::Error),
    /// A row of the table could not be understood.
    #[error("unexpected row in the ledger table: {0}")]
    BadRow(String),
    /// No tokio runtime could be built (sync wrappers only).
    #[error("cannot build a tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The ledger's thread panicked ([`LedgerHandle::join`]).
    #[error("the ledger thread panicked")]
    Panicked,
}

mod report;
mod verify;

pub use report::{longest_outage, Attempt, ClientStats, LedgerReport, Outcome};
pub use verify::{verify, verify_blocking, Verdict};

/// The write ledger; see the [module docs](self).
#[derive(Debug)]
pub struct Ledger;

impl Ledger {
    /// Creates the table if missing, runs the clients on the caller's tokio runtime until
    /// `duration` passes or `stop` is set, and returns every attempt. Only the setup can
    /// fail; errors during the run are recorded as outcomes.
    pub async fn run(opts: LedgerOptions) -> Result<LedgerReport, LedgerError> {
        let first_client = setup(&opts).await?;
        tracing::info!(
            table = %opts.table(),
            clients = opts.clients,
            first_client,
            transactions = opts.transactions,
            "ledger starting"
        );
        let (stopping_tx, stopping) = watch::channel(false);
        let (abandon_tx, abandon) = watch::channel(false);
        let started = Instant::now();
        let deadline = started + opts.duration;
        let flag = opts.stop.clone();
        let grace = opts.stop_grace;
        let controller = tokio::spawn(async move {
            loop {
                let flagged = flag.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
                if flagged || Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = stopping_tx.send(true);
            tokio::time::sleep(grace).await;
            let _ = abandon_tx.send(true);
        });
        let shared = Arc::new(opts);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..shared.clients {
            let client = first_client.saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
            set.spawn(client_loop(
                client,
                shared.clone(),
                stopping.clone(),
                abandon.clone(),
            ));
        }
        let mut attempts = Vec::new();
        let mut clients = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((stats, mut a)) => {
                    clients.push(stats);
                    attempts.append(&mut a);
                }
                Err(e) => tracing::error!("a ledger client task failed: {e}"),
            }
        }
        controller.abort();
        let ended = Instant::now();
        attempts.sort_by_key(|a| (a.invoked, a.client));
        clients.sort_by_key(|c| c.client);
        let report = LedgerReport {
            table: shared.table(),
            started,
            ended,
            attempts,
            clients,
        };
        tracing::info!("ledger done: {report}");
        Ok(report)
    }

    /// [`Ledger::run`] on a runtime of its own, blocking the calling thread. Must not be
    /// called from inside a tokio runtime.
    pub fn run_blocking(opts: LedgerOptions) -> Result<LedgerReport, LedgerError> {
        runtime()?.block_on(Ledger::run(opts))
    }

    /// Starts [`Ledger::run`] on a thread of its own (with its own runtime) and returns at
    /// once: inject faults meanwhile, then [`LedgerHandle::join`]. Works from sync and
    /// async code.
    pub fn spawn(mut opts: LedgerOptions) -> LedgerHandle {
        let stop = opts
            .stop
            .get_or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .clone();
        let thread = std::thread::spawn(move || Ledger::run_blocking(opts));
        LedgerHandle { stop, thread }
    }
}

/// A ledger running on its own thread ([`Ledger::spawn`]).
#[derive(Debug)]
pub struct LedgerHandle {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<LedgerReport, LedgerError>>,
}

impl LedgerHandle {
    /// Asks the clients to stop now (instead of at the end of `duration`).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for the run to end (at `duration`, or after [`stop`](Self::stop)) and returns
    /// its report. Blocks the calling thread.
    pub fn join(self) -> Result<LedgerReport, LedgerError> {
        self.thread.join().unwrap_or(Err(LedgerError::Panicked))
    }

    /// [`stop`](Self::stop), then [`join`](Self::join).
    pub fn stop_and_join(self) -> Result<LedgerReport, LedgerError> {
        self.stop();
        self.join()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, LedgerError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(LedgerError::Runtime)
}

/// Creates the database and table; returns the first client id of this run.
async fn setup(opts: &LedgerOptions) -> Result<u32, LedgerError> {
    let table = opts.table();
    let mut conn = tokio::time::timeout(opts.connect_timeout, Conn::new(tcp_only(&opts.opts)))
        .await
        .map_err(|_| LedgerError::SetupTimeout(opts.connect_timeout))?
        .map_err(LedgerError::Setup)?;
    let db = format!("`{}`", opts.database.replace('`', "``"));
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .await
        .map_err(LedgerError::Setup)?;
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {table} (client INT NOT NULL, seq INT NOT NULL, \
         at_us BIGINT NOT NULL, PRIMARY KEY (client, seq)) ENGINE=InnoDB"
    ))
    .await
    .map_err(LedgerError::Setup)?;
    let rows: Vec<Row> = conn
        .query(format!("SELECT COALESCE(MAX(client), 0) FROM {table}"))
        .await
        .map_err(LedgerError::Setup)?;
    let max = rows
        .first()
        .and_then(|r| r.get_opt::<u32, usize>(0))
        .and_then(Result::ok)
        .ok_or_else(|| LedgerError::BadRow("MAX(client) is not a number".into()))?;
    let _ = conn.disconnect().await;
    Ok(max.saturating_add(1))
}

/// What one statement-level step produced.
enum Step {
    Done(Result<(), mysql_async::Error>),
    TimedOut,
    Abandoned,
}

/// One client: one connection, one row (or transaction) at a time.
async fn client_loop(
    client: u32,
    opts: Arc<LedgerOptions>,
    mut stopping: watch::Receiver<bool>,
    mut abandon: watch::Receiver<bool>,
) -> (ClientStats, Vec<Attempt>) {
    let mut stats = ClientStats {
        client,
        ..ClientStats::default()
    };
    let mut attempts = Vec::new();
    let mut conn: Option<Conn> = None;
    let mut connections: u32 = 0;
    let mut seq: u32 = 1;
    let rows: u32 = if opts.transactions { 2 } else { 1 };
    while !*stopping.borrow() {
        let Some(c) = conn.as_mut() else {
            let connect =
                tokio::time::timeout(opts.connect_timeout, Conn::new(tcp_only(&opts.opts)));
            let result = tokio::select! {
                r = connect => r,
                _ = stopping.wait_for(|s| *s) => break,
            };
            match result {
                Ok(Ok(c)) => {
                    if connections > 0 {
                        stats.reconnects += 1;
                        tracing::info!(client, "ledger client reconnected");
                    }
                    connections += 1;
                    conn = Some(c);
                }
                Ok(Err(e)) => {
                    stats.connect_failures += 1;
                    tracing::debug!(client, "ledger client cannot connect: {e}");
                    pause(
                        &mut stopping,
                        Duration::from_millis(50).max(opts.pause_between),
                    )
                    .await;
                }
                Err(_) => {
                    stats.connect_failures += 1;
                    tracing::debug!(client, "ledger client: connect timed out");
                }
            }
            continue;
        };
        let invoked = Instant::now();
        let step = {
            let op = attempt(c, &opts, client, seq);
            tokio::select! {
                r = tokio::time::timeout(opts.statement_timeout, op) => match r {
                    Ok(r) => Step::Done(r),
                    Err(_) => Step::TimedOut,
                },
                _ = abandon.wait_for(|a| *a) => Step::Abandoned,
            }
        };
        let completed = Instant::now();
        let outcome = match step {
            Step::Done(Ok(())) => Outcome::Acked,
            Step::Done(Err(mysql_async::Error::Server(e))) => {
                tracing::debug!(
                    client,
                    seq,
                    code = e.code,
                    "ledger write failed: {}",
                    e.message
                );
                if opts.transactions && !rollback(c, &opts).await {
                    conn = None;
                }
                Outcome::Failed {
                    code: Some(e.code),
                    message: e.message,
                }
            }
            Step::Done(Err(e)) => {
                tracing::debug!(client, seq, "ledger connection broken: {e}");
                conn = None;
                Outcome::Failed {
                    code: None,
                    message: e.to_string(),
                }
            }
            Step::TimedOut => {
                tracing::debug!(client, seq, "ledger write timed out");
                conn = None;
                Outcome::TimedOut
            }
            Step::Abandoned => {
                conn = None;
                Outcome::Abandoned
            }
        };
        attempts.push(Attempt {
            client,
            seq,
            rows,
            connection: connections.saturating_sub(1),
            invoked,
            completed,
            outcome,
        });
        seq = seq.saturating_add(rows);
        pause(&mut stopping, opts.pause_between).await;
    }
    if let Some(c) = conn {
        // Bounded: a hung server must not hold the run.
        let _ = tokio::time::timeout(Duration::from_secs(1), c.disconnect()).await;
    }
    (stats, attempts)
}

/// Sleeps, or returns early when the run stops.
async fn pause(stopping: &mut watch::Receiver<bool>, d: Duration) {
    if d.is_zero() {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        _ = stopping.wait_for(|s| *s) => {}
    }
}

/// The statements of one attempt.
async fn attempt(
    c: &mut Conn,
    opts: &LedgerOptions,
    client: u32,
    seq: u32,
) -> Result<(), mysql_async::Error> {
    let table = opts.table();
    let insert = |s: u32| {
        let at_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        format!("INSERT INTO {table} (client, seq, at_us) VALUES ({client}, {s}, {at_us})")
    };
    if opts.transactions {
        c.query_drop("BEGIN").await?;
        c.query_drop(insert(seq)).await?;
        c.query_drop(insert(seq.saturating_add(1))).await?;
        c.query_drop("COMMIT").await
    } else {
        c.query_drop(insert(seq)).await
    }
}

/// Rolls back after a failed transaction; false if the connection should be dropped.
async fn rollback(c: &mut Conn, opts: &LedgerOptions) -> bool {
    match tokio::time::timeout(opts.statement_timeout, c.query_drop("ROLLBACK")).await {
        Ok(Ok(())) | Ok(Err(mysql_async::Error::Server(_))) => true,
        Ok(Err(_)) | Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_quoted() {
        assert_eq!(table_name("a`b"), "`a``b`.`acks`");
    }
}
