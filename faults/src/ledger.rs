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
use std::collections::{BTreeMap, HashSet};
use std::fmt;
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

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server (through the proxy) answered OK: the rows must survive.
    Acked,
    /// An error: indeterminate (the rows may or may not exist).
    Failed {
        /// The server's error code, None for a broken connection or driver error.
        code: Option<u16>,
        /// The error's text.
        message: String,
    },
    /// No answer within `statement_timeout`: indeterminate.
    TimedOut,
    /// Still unanswered `stop_grace` after the run ended: indeterminate.
    Abandoned,
}

impl Outcome {
    /// True for [`Outcome::Acked`].
    pub fn is_acked(&self) -> bool {
        matches!(self, Outcome::Acked)
    }

    /// A one-line description ("acked", the error message, "timed out", "abandoned").
    pub fn describe(&self) -> String {
        match self {
            Outcome::Acked => "acked".into(),
            Outcome::Failed {
                code: Some(code),
                message,
            } => format!("ERROR {code}: {message}"),
            Outcome::Failed {
                code: None,
                message,
            } => message.clone(),
            Outcome::TimedOut => "timed out".into(),
            Outcome::Abandoned => "abandoned at the end of the run".into(),
        }
    }
}

/// One write attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The client id (the `client` column).
    pub client: u32,
    /// The `seq` of its first row.
    pub seq: u32,
    /// How many rows: 1, or 2 in transactions mode (`seq` and `seq + 1`).
    pub rows: u32,
    /// Which connection of this client made it: 0 for the first, +1 per reconnect.
    pub connection: u32,
    /// Just before the statement (or BEGIN) was sent.
    pub invoked: Instant,
    /// When the outcome was known.
    pub completed: Instant,
    /// How it ended.
    pub outcome: Outcome,
}

impl Attempt {
    /// The `(client, seq)` of each of its rows.
    pub fn keys(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (0..self.rows).map(move |i| (self.client, self.seq.saturating_add(i)))
    }
}

/// Per-client counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// The client id.
    pub client: u32,
    /// New connections after the first one (after a broken connection or a timeout).
    pub reconnects: usize,
    /// Connection attempts that failed.
    pub connect_failures: usize,
}

/// Everything a ledger run did. See [`LedgerReport::rto`] and [`LedgerReport::write_pause`]
/// for the availability measures.
#[derive(Clone, Debug)]
pub struct LedgerReport {
    /// The table written (`DB.acks`, quoted).
    pub table: String,
    /// When the clients started (after the table was created).
    pub started: Instant,
    /// When the last client finished.
    pub ended: Instant,
    /// Every attempt, ordered by invoke instant.
    pub attempts: Vec<Attempt>,
    /// Per-client counters, by client id.
    pub clients: Vec<ClientStats>,
}

impl LedgerReport {
    /// The `(client, seq)` of every acknowledged row.
    pub fn acked(&self) -> Vec<(u32, u32)> {
        self.attempts
            .iter()
            .filter(|a| a.outcome.is_acked())
            .flat_map(Attempt::keys)
            .collect()
    }

    /// How many attempts were acknowledged.
    pub fn acked_attempts(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| a.outcome.is_acked())
            .count()
    }

    /// Every attempt that was not acknowledged (failed, timed out, abandoned).
    pub fn errors(&self) -> Vec<&Attempt> {
        self.attempts
            .iter()
            .filter(|a| !a.outcome.is_acked())
            .collect()
    }

    /// The first `limit` distinct error descriptions ([`Outcome::describe`]) in order of
    /// first appearance, each with how many attempts ended that way.
    pub fn error_summary(&self, limit: usize) -> Vec<(String, usize)> {
        let mut order: Vec<String> = Vec::new();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for a in self.errors() {
            let text = a.outcome.describe();
            let n = counts.entry(text.clone()).or_insert(0);
            if *n == 0 {
                order.push(text);
            }
            *n += 1;
        }
        order
            .into_iter()
            .take(limit)
            .map(|t| {
                let n = counts.get(&t).copied().unwrap_or(0);
                (t, n)
            })
            .collect()
    }

    /// Reconnects over all clients.
    pub fn reconnects(&self) -> usize {
        self.clients.iter().map(|c| c.reconnects).sum()
    }

    /// **RTO**: the time from `fault` to the completion of the first acknowledged attempt
    /// that was *invoked* at or after `fault` (the earliest such completion over all
    /// clients). Attempts invoked before the fault do not count even if acknowledged later:
    /// they may have been answered by the old master before it died. None if no attempt
    /// invoked after the fault was acknowledged.
    pub fn rto(&self, fault: Instant) -> Option<Duration> {
        self.attempts
            .iter()
            .filter(|a| a.outcome.is_acked() && a.invoked >= fault)
            .map(|a| a.completed)
            .min()
            .map(|done| done.saturating_duration_since(fault))
    }

    /// The longest interval in `[after, ended]` during which no acknowledgement completed
    /// (over all clients): the largest of the gap from `after` to the first ack completed
    /// after it, the gaps between consecutive ack completions, and the gap from the last
    /// ack to the end of the run. With no ack after `after`, the whole of `[after, ended]`.
    pub fn longest_gap(&self, after: Instant) -> Duration {
        let mut acks: Vec<Instant> = self
            .attempts
            .iter()
            .filter(|a| a.outcome.is_acked() && a.completed >= after)
            .map(|a| a.completed)
            .collect();
        acks.sort();
        let mut longest = Duration::ZERO;
        let mut previous = after;
        for t in acks
            .into_iter()
            .chain(std::iter::once(self.ended.max(after)))
        {
            longest = longest.max(t.saturating_duration_since(previous));
            previous = t;
        }
        longest
    }

    /// **Write pause**: [`longest_gap`](Self::longest_gap) over the whole run
    /// (`after = started`): the longest interval with no acknowledgement completing, for a
    /// planned switchover. It includes the start-up (connecting, first insert) and the end
    /// of the run, so a run whose writes never recover reports its whole unavailable tail.
    pub fn write_pause(&self) -> Duration {
        self.longest_gap(self.started)
    }

    /// The attempts invoked at or after `at`, in order.
    pub fn attempts_since(&self, at: Instant) -> impl Iterator<Item = &Attempt> + '_ {
        self.attempts.iter().filter(move |a| a.invoked >= at)
    }
}

impl fmt::Display for LedgerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} attempts by {} clients in {:.1?}: {} acked, {} not, {} reconnects, longest write pause {:.1?}",
            self.attempts.len(),
            self.clients.len(),
            self.ended.saturating_duration_since(self.started),
            self.acked_attempts(),
            self.attempts.len() - self.acked_attempts(),
            self.reconnects(),
            self.write_pause(),
        )?;
        for (text, n) in self.error_summary(5) {
            write!(f, "\n  {n} x {text}")?;
        }
        Ok(())
    }
}

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

/// What [`verify`] found on the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Rows acknowledged to the clients.
    pub acked: usize,
    /// Acknowledged rows absent from the server: **must be empty**.
    pub lost: Vec<(u32, u32)>,
    /// Unacknowledged attempts (failed, timed out, abandoned) whose rows exist anyway:
    /// allowed (indeterminate).
    pub unacked_present: usize,
    /// Unacknowledged attempts whose rows are absent: allowed.
    pub unacked_absent: usize,
    /// Transactions (two-row attempts) with one row present and not the other: an
    /// atomicity violation, must be empty. Keyed by the attempt's first `(client, seq)`.
    pub torn: Vec<(u32, u32)>,
    /// Rows read twice. Always 0: `(client, seq)` is the primary key; kept so that a verdict
    /// states it rather than assumes it.
    pub duplicates: usize,
    /// Rows of this run's clients that no attempt wrote (a seq never sent): must be 0.
    pub unexpected: usize,
}

impl Verdict {
    /// No acknowledged row lost, no torn transaction, no duplicate, no unexpected row.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.torn.is_empty() && self.duplicates == 0 && self.unexpected == 0
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} acked rows, {} lost, {} unacked attempts present, {} absent, {} torn, {} duplicates, {} unexpected",
            self.acked,
            self.lost.len(),
            self.unacked_present,
            self.unacked_absent,
            self.torn.len(),
            self.duplicates,
            self.unexpected
        )?;
        if !self.lost.is_empty() {
            let first: Vec<_> = self.lost.iter().take(10).collect();
            write!(f, "; first lost (client, seq): {first:?}")?;
        }
        Ok(())
    }
}

/// Reads this run's rows from `server` (connect to the new master directly, not through
/// the proxy) and compares them with the report. Call it after the cluster has settled
/// (e.g. [`wait_converged`](crate::cluster::wait_converged)).
pub async fn verify(report: &LedgerReport, server: Opts) -> Result<Verdict, LedgerError> {
    let (Some(low), Some(high)) = (
        report.clients.iter().map(|c| c.client).min(),
        report.clients.iter().map(|c| c.client).max(),
    ) else {
        return Ok(Verdict::default());
    };
    let mut conn = Conn::new(tcp_only(&server))
        .await
        .map_err(LedgerError::Read)?;
    let rows: Vec<Row> = conn
        .query(format!(
            "SELECT client, seq FROM {} WHERE client BETWEEN {low} AND {high}",
            report.table
        ))
        .await
        .map_err(LedgerError::Read)?;
    let _ = conn.disconnect().await;
    let mut present: HashSet<(u32, u32)> = HashSet::with_capacity(rows.len());
    let mut verdict = Verdict::default();
    for row in &rows {
        let get = |i: usize| {
            row.get_opt::<u32, usize>(i)
                .and_then(Result::ok)
                .ok_or_else(|| LedgerError::BadRow(format!("{row:?}")))
        };
        if !present.insert((get(0)?, get(1)?)) {
            verdict.duplicates += 1;
        }
    }
    let mut known: HashSet<(u32, u32)> = HashSet::with_capacity(present.len());
    for a in &report.attempts {
        let keys: Vec<(u32, u32)> = a.keys().collect();
        known.extend(keys.iter().copied());
        let here = keys.iter().filter(|k| present.contains(k)).count();
        if here != 0 && here != keys.len() {
            verdict.torn.push((a.client, a.seq));
        }
        if a.outcome.is_acked() {
            verdict.acked += keys.len();
            verdict
                .lost
                .extend(keys.iter().filter(|k| !present.contains(k)).copied());
        } else if here > 0 {
            verdict.unacked_present += 1;
        } else {
            verdict.unacked_absent += 1;
        }
    }
    verdict.unexpected = present.iter().filter(|k| !known.contains(k)).count();
    if verdict.is_clean() {
        tracing::info!("ledger verdict: {verdict}");
    } else {
        tracing::warn!("ledger verdict: {verdict}");
    }
    Ok(verdict)
}

/// The longest stretch within `[from, to]` in which no write of any of `reports` was
/// acknowledged (a write outage, or a switchover's pause).
pub fn longest_outage(reports: &[&LedgerReport], from: Instant, to: Instant) -> Duration {
    let mut acks: Vec<Instant> = reports
        .iter()
        .flat_map(|r| r.attempts.iter())
        .filter(|a| a.outcome.is_acked() && a.completed >= from && a.completed <= to)
        .map(|a| a.completed)
        .collect();
    acks.sort();
    let mut longest = Duration::ZERO;
    let mut last = from;
    for t in acks {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to.saturating_duration_since(last))
}

/// [`verify`] on a runtime of its own, blocking the calling thread. Must not be called
/// from inside a tokio runtime.
pub fn verify_blocking(report: &LedgerReport, server: Opts) -> Result<Verdict, LedgerError> {
    runtime()?.block_on(verify(report, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(
        client: u32,
        seq: u32,
        start_ms: u64,
        end_ms: u64,
        acked: bool,
        t0: Instant,
    ) -> Attempt {
        Attempt {
            client,
            seq,
            rows: 1,
            connection: 0,
            invoked: t0 + Duration::from_millis(start_ms),
            completed: t0 + Duration::from_millis(end_ms),
            outcome: if acked {
                Outcome::Acked
            } else {
                Outcome::Failed {
                    code: Some(2013),
                    message: "Lost connection".into(),
                }
            },
        }
    }

    fn report(t0: Instant, attempts: Vec<Attempt>, end_ms: u64) -> LedgerReport {
        LedgerReport {
            table: table_name(DEFAULT_DATABASE),
            started: t0,
            ended: t0 + Duration::from_millis(end_ms),
            attempts,
            clients: vec![ClientStats {
                client: 1,
                ..ClientStats::default()
            }],
        }
    }

    #[test]
    fn rto_counts_only_attempts_invoked_after_the_fault() {
        let t0 = Instant::now();
        let r = report(
            t0,
            vec![
                attempt(1, 1, 0, 10, true, t0),
                // invoked before the fault at 100, acked after: not recovery
                attempt(1, 2, 90, 150, true, t0),
                attempt(2, 1, 100, 300, false, t0),
                attempt(2, 2, 400, 700, true, t0),
                attempt(1, 3, 500, 600, true, t0),
            ],
            1000,
        );
        let fault = t0 + Duration::from_millis(100);
        assert_eq!(r.rto(fault), Some(Duration::from_millis(500)));
        assert_eq!(r.rto(t0 + Duration::from_millis(900)), None);
        // acks at 10, 150, 600, 700, end 1000: the longest gap is 150 -> 600
        assert_eq!(r.write_pause(), Duration::from_millis(450));
        assert_eq!(
            r.longest_gap(t0 + Duration::from_millis(650)),
            Duration::from_millis(300)
        );
        assert_eq!(r.acked(), vec![(1, 1), (1, 2), (2, 2), (1, 3)]);
        assert_eq!(r.errors().len(), 1);
        assert_eq!(
            r.error_summary(3),
            vec![("ERROR 2013: Lost connection".to_string(), 1)]
        );
    }

    #[test]
    fn no_acks_means_the_whole_run_is_a_pause() {
        let t0 = Instant::now();
        let r = report(t0, vec![attempt(1, 1, 0, 10, false, t0)], 800);
        assert_eq!(r.write_pause(), Duration::from_millis(800));
        assert_eq!(r.rto(t0), None);
    }

    #[test]
    fn table_names_are_quoted() {
        assert_eq!(table_name("a`b"), "`a``b`.`acks`");
    }
}
