//! Hostile and broken clients never take the proxy down, stall it, or disturb anyone else.
//!
//! One sandbox (a master, the real `kohaproxy` binary with `max_connections = 50`) goes
//! through the phases below while a well-behaved session (mysql_async, as `root`, INSERT +
//! SELECT in a loop on its own table) runs beside them all; every one of its statements
//! must answer, without error, within 5 s. After each phase the proxy process is alive,
//! the master holds no connection of the hostile user (`koha`) any more (no leaked backend
//! connection), and a fresh login works. The healthy session is root on a database koha
//! cannot reach, so that nothing a hostile koha client is allowed to do (KILL, locks)
//! can touch it: whatever disturbs it is the proxy's doing.
//!
//! 0. What the fuzzer found, as fixed cases: a LOCAL INFILE end-of-file packet out of
//!    sequence (error 1156, closed at once), and COM_PROCESS_INFO (a whole result set).
//! 1. A network fuzzer: real client traffic (login, text queries, prepared statements,
//!    COM_INIT_DB, COM_PING, COM_QUIT, LOAD DATA LOCAL INFILE, COM_CHANGE_USER...) as
//!    packet sequences, mutated by a seeded RNG (bit flips, truncation, duplicated,
//!    dropped and spliced packets, wrong sequence ids and lengths, huge length headers,
//!    empty packets, garbage), sent over 16 concurrent connections, before and after a
//!    valid login. Every fuzzed connection is closed by the proxy within 10 s of the
//!    client having sent everything (no hang).
//! 2. Slow readers: four clients read a 64 MiB result at ~10 KiB/s; the proxy's peak
//!    RSS stays bounded (it never buffers what the client does not read).
//! 3. Connect-and-vanish: thousands of connections closed at once, after the greeting,
//!    mid-login, after a login the client never reads, or reset; RSS and open file
//!    descriptors come back to their baseline.
//! 4. A flood past `max_connections`: the excess gets error 1040 "Too many connections"
//!    then a closed connection; the healthy session carries on; new logins work again once
//!    the flood leaves.
//! 5. Hundreds of concurrent wrong-password logins: each gets 1045, memory stays bounded,
//!    and a correct login works afterwards.
//!
//! Lengths and counts come from the environment (see `Settings`); the fuzzer's seed is
//! printed, and `KOHAPROXY_FUZZ_SEED` replays it. A long run is described in
//! benches/README.md ("hostile clients").

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::raw::{self, read_packet, MODERN};
use common::Env;
use kohaproxy_proxy::auth::Credential;
use kohaproxy_proxy::protocol::handshake::{HandshakeV10, NATIVE_PASSWORD};
use kohaproxy_proxy::protocol::{command, Caps};
use mysql_async::prelude::Queryable;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every statement of the healthy session answers within this.
const STATEMENT_BOUND: Duration = Duration::from_secs(5);

/// A fuzzed connection is closed by the proxy within this once the client sent all.
const CLOSE_BOUND: Duration = Duration::from_secs(10);

/// Connecting, the greeting and a valid login each answer within this.
const LOGIN_BOUND: Duration = Duration::from_secs(5);

/// The proxy's `max_connections` in this test.
const MAX_CONNECTIONS: usize = 50;

/// Concurrent fuzzing connections.
const FUZZ_TASKS: usize = 16;

/// Lengths and counts of the phases, from the environment.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// The fuzzer's seed (`KOHAPROXY_FUZZ_SEED`, default: from the clock).
    seed: u64,
    /// How long the fuzzer runs (`KOHAPROXY_HOSTILE_SECS`, default 10).
    fuzz_secs: u64,
    /// Most fuzzed connections (`KOHAPROXY_FUZZ_CONNS`, default 30,000; unbounded when
    /// `KOHAPROXY_HOSTILE_SECS` is set).
    fuzz_conns: u64,
    /// How long the slow readers read (`KOHAPROXY_SLOW_SECS`, default 10).
    slow_secs: u64,
    /// Connect-and-vanish connections (`KOHAPROXY_VANISH_COUNT`, default 2,000).
    vanish: u64,
    /// Wrong-password logins (`KOHAPROXY_WRONG_PASSWORDS`, default 300).
    wrong_passwords: u64,
}

impl Settings {
    /// Reads the settings from the environment.
    fn from_env() -> Settings {
        let var = |name: &str| -> Option<u64> {
            std::env::var(name).ok().map(|v| {
                v.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
            })
        };
        let seed = var("KOHAPROXY_FUZZ_SEED").unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        let long = var("KOHAPROXY_HOSTILE_SECS");
        Settings {
            seed,
            fuzz_secs: long.unwrap_or(10),
            fuzz_conns: var("KOHAPROXY_FUZZ_CONNS").unwrap_or(if long.is_some() {
                u64::MAX
            } else {
                30_000
            }),
            slow_secs: var("KOHAPROXY_SLOW_SECS").unwrap_or(10),
            vanish: var("KOHAPROXY_VANISH_COUNT").unwrap_or(2_000),
            wrong_passwords: var("KOHAPROXY_WRONG_PASSWORDS").unwrap_or(300),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Watching the proxy process and the master.
// ---------------------------------------------------------------------------------------

/// The proxy's memory and descriptors, from /proc.
#[derive(Debug, Clone, Copy)]
struct ProcStats {
    /// Resident set size now (VmRSS), KiB.
    rss_kib: u64,
    /// Peak resident set size so far (VmHWM), KiB.
    hwm_kib: u64,
    /// Open file descriptors.
    fds: usize,
}

impl ProcStats {
    /// Reads the figures of process `pid`.
    fn of(pid: u32) -> ProcStats {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("the proxy (pid {pid}) is gone: {e}"));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/fd: {e}"));
        ProcStats {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            fds,
        }
    }
}

/// KiB as MiB, for printing.
fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Whether process `pid` is still running (not exited and waiting to be reaped).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|state| !state.trim_start().starts_with(['Z', 'X']))
    })
}

/// What the test watches: the proxy process and, through a direct root connection, the
/// master's connections of the hostile user.
struct Watch {
    /// The proxy's pid.
    pid: u32,
    /// A direct connection to the master, as root.
    master: mysql_async::Conn,
    /// Open descriptors of the proxy when only the healthy session is connected.
    fd_baseline: usize,
}

impl Watch {
    /// Connects to the master directly.
    async fn new(env: &Env) -> Watch {
        let master = mysql_async::Conn::new(Env::opts(env.master_port(), "root", "", None))
            .await
            .expect("direct root connection to the master");
        let pid = env.pid();
        Watch {
            pid,
            master,
            fd_baseline: ProcStats::of(pid).fds,
        }
    }

    /// The master's connections of user koha (every hostile client logs in as koha).
    async fn koha_connections(&mut self) -> u64 {
        self.master
            .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'koha'")
            .await
            .expect("count koha connections")
            .unwrap_or(0)
    }

    /// Panics unless the proxy process is running.
    fn assert_alive(&self, phase: &str, env: &Env) {
        assert!(
            alive(self.pid),
            "the proxy died during {phase}:\n{}",
            env.proxy_log()
        );
    }

    /// Waits (polling, up to `limit`) until the master holds no koha connection and the
    /// proxy's descriptors are back to the baseline (+`slack`); panics with the figures
    /// otherwise. Returns the proxy's figures then and how long it took.
    async fn settled(
        &mut self,
        phase: &str,
        env: &Env,
        slack: usize,
        limit: Duration,
    ) -> (ProcStats, Duration) {
        let start = Instant::now();
        loop {
            self.assert_alive(phase, env);
            let koha = self.koha_connections().await;
            let stats = ProcStats::of(self.pid);
            if koha == 0 && stats.fds <= self.fd_baseline + slack {
                return (stats, start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "after {phase}: {koha} koha connections left on the master and {} proxy fds \
                 (baseline {}) after {limit:?}",
                stats.fds,
                self.fd_baseline
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The healthy session.
// ---------------------------------------------------------------------------------------

/// What the healthy session saw.
#[derive(Debug, Default)]
struct HealthLog {
    /// Statements answered.
    statements: u64,
    /// The slowest statement since the last check.
    slowest: Duration,
    /// The slowest statement of the whole run.
    slowest_ever: Duration,
    /// Errors (and statements over the bound), with the phase they happened in.
    errors: Vec<String>,
    /// The phase under way (for the messages).
    phase: String,
}

/// A well-behaved client (mysql_async as root on its own table) doing INSERT + SELECT in
/// a loop beside the hostile ones, timing every statement.
struct Healthy {
    /// What it saw, shared with its task.
    log: Arc<Mutex<HealthLog>>,
    /// Set to end the loop.
    stop: Arc<AtomicBool>,
    /// The loop.
    task: tokio::task::JoinHandle<()>,
    /// Statements counted at the last check.
    last_count: u64,
}

impl Healthy {
    /// Opens the session (creates its table) and starts the loop.
    async fn start(env: &Env) -> Healthy {
        let opts = Env::opts(env.proxy_port(), "root", "", None);
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .expect("healthy session login");
        conn.query_drop("CREATE DATABASE healthy").await.unwrap();
        conn.query_drop(
            "CREATE TABLE healthy.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64))",
        )
        .await
        .unwrap();
        let log = Arc::new(Mutex::new(HealthLog {
            phase: "start".into(),
            ..HealthLog::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(Healthy::run(conn, log.clone(), stop.clone()));
        Healthy {
            log,
            stop,
            task,
            last_count: 0,
        }
    }

    /// The loop: an INSERT and a SELECT every 20 ms (paced, so that it does not take a
    /// core of this 2-core box away from the proxy), each within `STATEMENT_BOUND`.
    async fn run(mut conn: mysql_async::Conn, log: Arc<Mutex<HealthLog>>, stop: Arc<AtomicBool>) {
        let mut n = 0u64;
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        while !stop.load(Ordering::Relaxed) {
            pace.tick().await;
            n += 1;
            let insert = format!("INSERT INTO healthy.t (v) VALUES ('row {n}')");
            let select = "SELECT COUNT(*), MAX(id) FROM healthy.t";
            for (what, sql) in [("INSERT", insert.as_str()), ("SELECT", select)] {
                let start = Instant::now();
                let result = tokio::time::timeout(STATEMENT_BOUND, async {
                    if what == "INSERT" {
                        conn.query_drop(sql).await
                    } else {
                        conn.query_first::<(i64, i64), _>(sql).await.map(|_| ())
                    }
                })
                .await;
                let took = start.elapsed();
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                match result {
                    Ok(Ok(())) => {
                        l.statements += 1;
                        l.slowest = l.slowest.max(took);
                        l.slowest_ever = l.slowest_ever.max(took);
                    }
                    Ok(Err(e)) => {
                        let msg = format!("{what} failed during {}: {e}", l.phase);
                        l.errors.push(msg);
                        return;
                    }
                    Err(_) => {
                        let msg = format!(
                            "{what} did not answer within {STATEMENT_BOUND:?} during {}",
                            l.phase
                        );
                        l.errors.push(msg);
                        return;
                    }
                }
            }
        }
        let _ = conn.disconnect().await;
    }

    /// Names the phase that starts (for error messages).
    fn phase(&self, name: &str) {
        let mut l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        l.phase = name.to_string();
        l.slowest = Duration::ZERO;
    }

    /// Panics if the session saw an error, or if it does not answer one more statement
    /// (polled, within `STATEMENT_BOUND`) after the last check; prints its figures.
    async fn check(&mut self, phase: &str, env: &Env) {
        let start = Instant::now();
        loop {
            let (statements, slowest) = {
                let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
                assert!(
                    l.errors.is_empty(),
                    "the healthy session was disturbed: {:?}\n{}",
                    l.errors,
                    env.proxy_log()
                );
                (l.statements, l.slowest)
            };
            if statements > self.last_count {
                println!(
                    "  healthy session: {} statements during {phase}, slowest {slowest:?}",
                    statements - self.last_count
                );
                self.last_count = statements;
                return;
            }
            assert!(
                start.elapsed() < STATEMENT_BOUND,
                "the healthy session answered nothing for {STATEMENT_BOUND:?} after {phase}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the loop and checks it one last time; returns (statements, slowest).
    async fn finish(mut self, env: &Env) -> (u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        tokio::time::timeout(STATEMENT_BOUND * 3, &mut self.task)
            .await
            .expect("the healthy session did not stop")
            .expect("the healthy session panicked");
        let l = self.log.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            l.errors.is_empty(),
            "the healthy session was disturbed: {:?}\n{}",
            l.errors,
            env.proxy_log()
        );
        (l.statements, l.slowest_ever)
    }
}

/// A new koha login through the proxy answers SELECT 1 within `LOGIN_BOUND`.
async fn fresh_login(env: &Env) -> Result<(), String> {
    tokio::time::timeout(LOGIN_BOUND, async {
        let mut c = mysql_async::Conn::new(env.proxy_opts())
            .await
            .map_err(|e| e.to_string())?;
        let one: Option<i64> = c.query_first("SELECT 1").await.map_err(|e| e.to_string())?;
        c.disconnect().await.map_err(|e| e.to_string())?;
        if one == Some(1) {
            Ok(())
        } else {
            Err(format!("SELECT 1 returned {one:?}"))
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {LOGIN_BOUND:?}")))
}

// ---------------------------------------------------------------------------------------
// Raw protocol helpers.
// ---------------------------------------------------------------------------------------

/// The error code of an ERR payload.
fn err_code(payload: &[u8]) -> Option<u16> {
    (payload.first() == Some(&0xff) && payload.len() >= 3)
        .then(|| u16::from_le_bytes([payload[1], payload[2]]))
}

/// A login payload for `greeting` (koha's database, mysql_native_password), with
/// connection attributes when `attrs`.
fn login_payload(greeting: &HandshakeV10, user: &str, password: &str, attrs: bool) -> Vec<u8> {
    let mut caps = MODERN;
    if attrs {
        caps |= Caps::CONNECT_ATTRS;
    }
    let mut login = raw::login_response(greeting, user, password, caps);
    login.attrs = attrs.then(|| b"\x0c_client_name\x0ahostile-rs\x04_pid\x0512345".to_vec());
    login.encode()
}

/// Why a raw login did not give a session.
#[derive(Debug)]
enum LoginFail {
    /// The proxy answered with this error (in place of the greeting, or to the login).
    Refused(u16, String),
    /// The connection failed, closed or stalled.
    Broken(String),
}

/// Connects to the proxy and reads its greeting (an ERR instead is `Refused`).
async fn greet(port: u16) -> Result<(TcpStream, HandshakeV10), LoginFail> {
    tokio::time::timeout(LOGIN_BOUND, async {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| LoginFail::Broken(format!("connect: {e}")))?;
        let _ = s.set_nodelay(true);
        let (_, payload) = read_packet(&mut s)
            .await
            .ok_or_else(|| LoginFail::Broken("closed before the greeting".into()))?;
        if let Some(code) = err_code(&payload) {
            return Err(LoginFail::Refused(
                code,
                String::from_utf8_lossy(&payload[9.min(payload.len())..]).into_owned(),
            ));
        }
        let greeting = HandshakeV10::decode(&payload)
            .map_err(|e| LoginFail::Broken(format!("bad greeting: {e}")))?;
        Ok((s, greeting))
    })
    .await
    .unwrap_or_else(|_| Err(LoginFail::Broken("no greeting in time".into())))
}

/// A raw login as `user`/`password`; the socket once the proxy said OK.
async fn raw_login(port: u16, user: &str, password: &str) -> Result<TcpStream, LoginFail> {
    let (mut s, greeting) = greet(port).await?;
    tokio::time::timeout(LOGIN_BOUND, async {
        let login = login_payload(&greeting, user, password, false);
        s.write_all(&packet(1, &login))
            .await
            .map_err(|e| LoginFail::Broken(format!("send login: {e}")))?;
        let (_, reply) = read_packet(&mut s)
            .await
            .ok_or_else(|| LoginFail::Broken("closed before the login reply".into()))?;
        match err_code(&reply) {
            Some(code) => Err(LoginFail::Refused(
                code,
                String::from_utf8_lossy(&reply[9.min(reply.len())..]).into_owned(),
            )),
            None if reply.first() == Some(&0) => Ok(()),
            None => Err(LoginFail::Broken(format!("login reply {reply:?}"))),
        }
    })
    .await
    .unwrap_or_else(|_| Err(LoginFail::Broken("no login reply in time".into())))?;
    Ok(s)
}

/// A packet: header then payload.
fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    kohaproxy_proxy::protocol::packets::packet(seq, payload)
}

/// Reads until the proxy closes `s` (end of stream or reset); returns how long that took,
/// or None if it was still open after `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// 1. The network fuzzer.
// ---------------------------------------------------------------------------------------

/// One packet of a client's stream, before it is encoded: a mutation may make its header
/// lie about the payload's length.
#[derive(Debug, Clone)]
struct Pkt {
    /// Sequence id.
    seq: u8,
    /// Payload.
    payload: Vec<u8>,
    /// The length the header announces, when not the payload's.
    len: Option<u32>,
}

impl Pkt {
    /// A well-formed packet.
    fn new(seq: u8, payload: impl Into<Vec<u8>>) -> Pkt {
        Pkt {
            seq,
            payload: payload.into(),
            len: None,
        }
    }

    /// A one-packet command.
    fn command(payload: impl Into<Vec<u8>>) -> Vec<Pkt> {
        vec![Pkt::new(0, payload)]
    }

    /// A one-packet COM_QUERY.
    fn query(sql: &str) -> Vec<Pkt> {
        let mut p = vec![command::QUERY];
        p.extend_from_slice(sql.as_bytes());
        Pkt::command(p)
    }
}

/// The bytes of a packet sequence.
fn encode(pkts: &[Pkt]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pkts {
        let len = p.len.unwrap_or(p.payload.len() as u32).min(0xff_ffff);
        out.extend_from_slice(&len.to_le_bytes()[..3]);
        out.push(p.seq);
        out.extend_from_slice(&p.payload);
    }
    out
}

/// Real client commands (after the login) as packet sequences: what drivers send for
/// text queries, prepared statements, LOAD DATA LOCAL INFILE, COM_CHANGE_USER and the
/// small commands. `salt` is the greeting's scramble (COM_CHANGE_USER answers it).
/// Nothing here is expensive for the server, and the hostile user can only touch its own
/// tables (`koha.fuzz_t`).
fn corpus(salt: &[u8]) -> Vec<Vec<Pkt>> {
    let stmt = 1u32.to_le_bytes();
    let mut execute = vec![command::STMT_EXECUTE];
    execute.extend_from_slice(&stmt);
    execute.push(0); // no cursor
    execute.extend_from_slice(&1u32.to_le_bytes());
    execute.push(0); // null bitmap (2 parameters)
    execute.push(1); // types follow
    execute.extend_from_slice(&[0x08, 0x00, 0xfd, 0x00]); // LONGLONG, VAR_STRING
    execute.extend_from_slice(&41i64.to_le_bytes());
    execute.extend_from_slice(b"\x03abc");
    let mut cursor = execute.clone();
    cursor[5] = 1; // CURSOR_TYPE_READ_ONLY
    let mut fetch = vec![command::STMT_FETCH];
    fetch.extend_from_slice(&stmt);
    fetch.extend_from_slice(&10u32.to_le_bytes());
    let mut long_data = vec![command::STMT_SEND_LONG_DATA];
    long_data.extend_from_slice(&stmt);
    long_data.extend_from_slice(&1u16.to_le_bytes());
    long_data.extend_from_slice(b"long data chunk");
    let with_stmt = |cmd: u8| {
        let mut p = vec![cmd];
        p.extend_from_slice(&stmt);
        p
    };
    let mut change_user = vec![command::CHANGE_USER];
    change_user.extend_from_slice(b"koha\0");
    change_user.push(20);
    change_user.extend_from_slice(&Credential::from_password("koha").scramble(salt));
    change_user.extend_from_slice(b"koha\0");
    change_user.extend_from_slice(&45u16.to_le_bytes());
    change_user.extend_from_slice(NATIVE_PASSWORD);
    change_user.push(0);
    vec![
        Pkt::query("SELECT 1"),
        Pkt::query("SELECT @@version, CONNECTION_ID(), DATABASE()"),
        Pkt::query("INSERT INTO koha.fuzz_t VALUES (1, 'fuzz')"),
        Pkt::query("SELECT a, b FROM koha.fuzz_t LIMIT 3"),
        Pkt::query("SET @x = 'abc', NAMES utf8mb4"),
        Pkt::query("SHOW WARNINGS"),
        Pkt::query("BEGIN"),
        Pkt::query("COMMIT"),
        Pkt::query("SELECT 1; SELECT 'two', 2"),
        Pkt::query("SELECT * FROM no_such_table"),
        Pkt::command(b"\x02koha".to_vec()),
        Pkt::command(vec![command::PING]),
        Pkt::command(vec![command::STATISTICS]),
        Pkt::command(b"\x04fuzz_t\0".to_vec()),
        Pkt::command(b"\x16SELECT ? + 1, ? FROM DUAL".to_vec()),
        Pkt::command(execute),
        Pkt::command(cursor),
        Pkt::command(fetch),
        Pkt::command(long_data),
        Pkt::command(with_stmt(command::STMT_RESET)),
        Pkt::command(with_stmt(command::STMT_CLOSE)),
        Pkt::command(vec![command::SET_OPTION, 0, 0]),
        Pkt::command(vec![command::RESET_CONNECTION]),
        vec![
            Pkt::new(
                0,
                b"\x03LOAD DATA LOCAL INFILE 'fuzz.tsv' INTO TABLE koha.fuzz_t".to_vec(),
            ),
            Pkt::new(2, b"7\tseven\n8\teight\n".to_vec()),
            Pkt::new(3, Vec::new()),
        ],
        Pkt::command(change_user),
        Pkt::command(vec![command::QUIT]),
    ]
}

/// Applies 1 to 4 random mutations to `pkts`, splicing from `corpus`; returns their names.
fn mutate(rng: &mut ChaCha8Rng, pkts: &mut Vec<Pkt>, corpus: &[Vec<Pkt>]) -> Vec<&'static str> {
    let mut done = Vec::new();
    for _ in 0..rng.random_range(1..=4) {
        if pkts.is_empty() {
            pkts.push(Pkt::new(0, Vec::new()));
        }
        let i = rng.random_range(0..pkts.len());
        let p = &mut pkts[i];
        let name = match rng.random_range(0..12) {
            0 => {
                for _ in 0..rng.random_range(1..=3) {
                    if !p.payload.is_empty() {
                        let j = rng.random_range(0..p.payload.len());
                        p.payload[j] ^= 1 << rng.random_range(0..8);
                    }
                }
                "bit flip"
            }
            1 => {
                if !p.payload.is_empty() {
                    let j = rng.random_range(0..p.payload.len());
                    p.payload[j] = rng.random();
                }
                "random byte"
            }
            2 => {
                let keep = rng.random_range(0..=p.payload.len());
                p.payload.truncate(keep);
                "truncated packet"
            }
            3 => {
                let announced = p.payload.len() as u32;
                let keep = rng.random_range(0..=p.payload.len());
                p.payload.truncate(keep);
                p.len = Some(announced);
                "truncated payload, header unchanged"
            }
            4 => {
                let copy = p.clone();
                pkts.insert(i, copy);
                "duplicated packet"
            }
            5 => {
                pkts.remove(i);
                "dropped packet"
            }
            6 => {
                p.seq = rng.random();
                "wrong sequence id"
            }
            7 => {
                let delta = rng.random_range(1..=8i64) * if rng.random() { 1 } else { -1 };
                p.len = Some((p.payload.len() as i64 + delta).clamp(0, 0xff_ffff) as u32);
                "wrong length"
            }
            8 => {
                let from = &corpus[rng.random_range(0..corpus.len())];
                let spliced = from[rng.random_range(0..from.len())].clone();
                pkts.insert(i, spliced);
                "spliced packet"
            }
            9 => {
                p.len = Some(if rng.random() {
                    0xff_ffff
                } else {
                    rng.random_range(0x1_0000..0xff_ffff)
                });
                "huge length header"
            }
            10 => {
                pkts.insert(i, Pkt::new(rng.random_range(0..3), Vec::new()));
                "zero-length packet"
            }
            _ => {
                let n = if rng.random_ratio(1, 50) {
                    rng.random_range(1 << 20..5 << 20) // past max_allowed_packet (4M) sometimes
                } else {
                    rng.random_range(1..64)
                };
                let mut junk = vec![0u8; n];
                rng.fill(&mut junk[..]);
                let at = rng.random_range(0..=p.payload.len());
                p.payload.splice(at..at, junk);
                "garbage in payload"
            }
        };
        done.push(name);
    }
    done
}

/// What one fuzzed connection saw.
#[derive(Debug, Default)]
struct CaseReport {
    /// Fuzzed before the login (the login itself mutated).
    pre_login: bool,
    /// Refused at the greeting with this code (the proxy was full).
    refused: Option<u16>,
    /// Bytes sent.
    sent: usize,
    /// Bytes the proxy answered.
    received: usize,
    /// Error codes in the answers.
    codes: Vec<u16>,
    /// From the client's last byte to the proxy's close.
    close_after: Duration,
    /// What was sent (for a replay).
    bytes: Vec<u8>,
    /// The answer's first MiB (for a replay).
    answer: Vec<u8>,
}

/// The RNG of case `case` under `seed` (each case replays alone).
fn case_rng(seed: u64, case: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Error codes of the ERR packets in a stream of server packets.
fn codes_in(mut bytes: &[u8]) -> Vec<u16> {
    let mut codes = Vec::new();
    while bytes.len() >= 4 {
        let len = bytes[0] as usize | (bytes[1] as usize) << 8 | (bytes[2] as usize) << 16;
        let end = (4 + len).min(bytes.len());
        codes.extend(err_code(&bytes[4..end]));
        bytes = &bytes[end..];
    }
    codes
}

/// One fuzzed connection: greeting, then either a mutated login followed by commands, or
/// a valid login followed by mutated commands; everything is written (in random pieces)
/// while the answers are read, then the client half-closes and the proxy must close the
/// connection within `CLOSE_BOUND`.
async fn fuzz_case(
    port: u16,
    seed: u64,
    case: u64,
    close_bound: Duration,
) -> Result<CaseReport, String> {
    let mut rng = case_rng(seed, case);
    let mut report = CaseReport {
        pre_login: rng.random_bool(0.4),
        ..CaseReport::default()
    };
    let (mut s, greeting) = match greet(port).await {
        Ok(g) => g,
        Err(LoginFail::Refused(code, _)) => {
            report.refused = Some(code);
            return Ok(report);
        }
        Err(LoginFail::Broken(e)) => return Err(e),
    };
    let corpus = corpus(&greeting.scramble);
    let mut pkts = Vec::new();
    if report.pre_login {
        let login = login_payload(&greeting, "koha", "koha", rng.random());
        pkts.push(Pkt::new(1, login));
    } else {
        let login = login_payload(&greeting, "koha", "koha", false);
        let reply = tokio::time::timeout(LOGIN_BOUND, async {
            s.write_all(&packet(1, &login)).await.ok()?;
            read_packet(&mut s).await
        })
        .await;
        match reply {
            Ok(Some((_, r))) if r.first() == Some(&0) => {}
            other => return Err(format!("a valid login was not accepted: {other:?}")),
        }
    }
    for _ in 0..rng.random_range(1..=6) {
        pkts.extend(corpus[rng.random_range(0..corpus.len())].iter().cloned());
    }
    let mutations = mutate(&mut rng, &mut pkts, &corpus);
    let mut bytes = encode(&pkts);
    if rng.random_ratio(1, 10) {
        let cut = rng.random_range(0..=bytes.len());
        bytes.truncate(cut);
    }
    report.sent = bytes.len();
    let pieces = rng.random_range(1..=4);
    let mut cuts: Vec<usize> = (1..pieces)
        .map(|_| rng.random_range(0..=bytes.len()))
        .collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());

    let (mut r, mut w) = s.into_split();
    let writer = async {
        let mut from = 0;
        for to in cuts {
            if w.write_all(&bytes[from..to]).await.is_err() {
                break; // the proxy closed first
            }
            from = to;
            tokio::task::yield_now().await;
        }
        let _ = w.shutdown().await;
        Instant::now()
    };
    let reader = async {
        let mut got = Vec::new();
        let mut total = 0usize;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return (got, total, Instant::now()),
                Ok(n) => {
                    total += n;
                    if got.len() < 1 << 20 {
                        got.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
    };
    let both = tokio::time::timeout(LOGIN_BOUND + close_bound, async {
        tokio::join!(writer, reader)
    })
    .await;
    let describe = || {
        format!(
            "{} stream, mutations {mutations:?}, first bytes {:02x?}",
            if report.pre_login {
                "pre-login"
            } else {
                "post-login"
            },
            &bytes[..bytes.len().min(96)]
        )
    };
    let Ok((written, (got, total, closed))) = both else {
        return Err(format!(
            "connection neither closed nor finished: {}",
            describe()
        ));
    };
    report.close_after = closed.saturating_duration_since(written);
    if report.close_after > close_bound {
        return Err(format!(
            "closed only {:?} after the client's last byte: {}",
            report.close_after,
            describe()
        ));
    }
    report.received = total;
    report.codes = codes_in(&got);
    report.bytes = bytes;
    report.answer = got;
    Ok(report)
}

/// Totals of a fuzzing run.
#[derive(Debug, Default)]
struct FuzzTotals {
    /// Connections fuzzed before the login.
    pre_login: u64,
    /// Connections fuzzed after a valid login.
    post_login: u64,
    /// Connections refused at the greeting, by code.
    refused: BTreeMap<u16, u64>,
    /// Error codes the proxy (or the server through it) answered.
    codes: BTreeMap<u16, u64>,
    /// Bytes sent.
    sent: u64,
    /// Bytes received.
    received: u64,
    /// The slowest close after the client's last byte, and its case.
    slowest_close: Duration,
    slowest_case: u64,
    /// Failed cases: (case, what went wrong).
    failures: Vec<(u64, String)>,
}

/// Runs the fuzzer: `FUZZ_TASKS` connections at a time until `settings.fuzz_conns`
/// connections or `settings.fuzz_secs` seconds.
async fn fuzz(port: u16, settings: Settings) -> FuzzTotals {
    let next = Arc::new(AtomicU64::new(0));
    let totals = Arc::new(Mutex::new(FuzzTotals::default()));
    let end = Instant::now() + Duration::from_secs(settings.fuzz_secs);
    let mut tasks = Vec::new();
    for _ in 0..FUZZ_TASKS {
        let (next, totals) = (next.clone(), totals.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let case = next.fetch_add(1, Ordering::Relaxed);
                if case >= settings.fuzz_conns {
                    break;
                }
                let result = fuzz_case(port, settings.seed, case, CLOSE_BOUND).await;
                let mut t = totals.lock().unwrap();
                match result {
                    Ok(r) => {
                        if let Some(code) = r.refused {
                            *t.refused.entry(code).or_default() += 1;
                            continue;
                        }
                        if r.pre_login {
                            t.pre_login += 1;
                        } else {
                            t.post_login += 1;
                        }
                        for c in r.codes {
                            *t.codes.entry(c).or_default() += 1;
                        }
                        t.sent += r.sent as u64;
                        t.received += r.received as u64;
                        if r.close_after > t.slowest_close {
                            t.slowest_close = r.close_after;
                            t.slowest_case = case;
                        }
                    }
                    Err(e) => t.failures.push((case, e)),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("fuzzing task panicked");
    }
    let mut totals = totals.lock().unwrap();
    std::mem::take(&mut *totals)
}

/// Replays fuzzing cases (`KOHAPROXY_FUZZ_CASE=57,77` with the failing run's seed) one
/// by one, through the proxy and directly against the master, waiting up to 60 s for each
/// close, and prints what each sent and answered.
async fn replay(env: &Env, seed: u64, cases: &str) {
    for case in cases
        .split(',')
        .map(|c| c.trim().parse::<u64>().expect("case number"))
    {
        for (route, port) in [("proxy", env.proxy_port()), ("direct", env.master_port())] {
            match fuzz_case(port, seed, case, Duration::from_secs(60)).await {
                Ok(r) => println!(
                    "case {case} {route}: closed {:?} after the last byte; codes {:?}\n  sent \
                     {:02x?}\n  answer {:02x?}",
                    r.close_after,
                    r.codes,
                    &r.bytes[..r.bytes.len().min(2048)],
                    &r.answer[..r.answer.len().min(2048)]
                ),
                Err(e) => println!("case {case} {route}: {e}"),
            }
        }
    }
}

/// LOAD DATA LOCAL INFILE whose file ends with an empty packet of the wrong sequence id:
/// the proxy answers 1156 and closes within 5 s; returns how long the close took.
async fn load_data_out_of_order(port: u16) -> Duration {
    let mut s = raw_login(port, "koha", "koha")
        .await
        .unwrap_or_else(|e| panic!("login: {e:?}"));
    s.write_all(&packet(
        0,
        b"\x03LOAD DATA LOCAL INFILE 'f.tsv' INTO TABLE koha.fuzz_t",
    ))
    .await
    .unwrap();
    let (seq, request) = read_packet(&mut s).await.expect("LOCAL INFILE request");
    assert_eq!(request.first(), Some(&0xfb), "not a LOCAL INFILE request");
    let mut file = packet(seq.wrapping_add(1), b"1\tone\n");
    file.extend(packet(seq.wrapping_add(9), b""));
    s.write_all(&file).await.unwrap();
    let start = Instant::now();
    let (_, reply) = tokio::time::timeout(Duration::from_secs(5), read_packet(&mut s))
        .await
        .expect("no answer within 5 s to a LOCAL INFILE packet out of order")
        .expect("closed without an error");
    assert_eq!(err_code(&reply), Some(1156), "{reply:?}");
    closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("still open 5 s after error 1156");
    start.elapsed()
}

/// COM_PROCESS_INFO (answered with a result set, as SHOW PROCESSLIST) then COM_PING: the
/// whole result set arrives, then the ping's OK, each within 5 s; returns the rows.
async fn process_info_then_ping(port: u16) -> usize {
    let mut s = raw_login(port, "koha", "koha")
        .await
        .unwrap_or_else(|e| panic!("login: {e:?}"));
    let within = |what: &'static str| {
        move |r: Result<Option<(u8, Vec<u8>)>, tokio::time::error::Elapsed>| {
            r.unwrap_or_else(|_| panic!("{what}: nothing within 5 s"))
                .unwrap_or_else(|| panic!("{what}: closed"))
        }
    };
    let bound = Duration::from_secs(5);
    s.write_all(&packet(0, &[0x0a])).await.unwrap();
    let (_, count) = within("column count")(tokio::time::timeout(bound, read_packet(&mut s)).await);
    assert!(
        err_code(&count).is_none(),
        "COM_PROCESS_INFO refused: {count:?}"
    );
    for _ in 0..count[0] {
        within("column definition")(tokio::time::timeout(bound, read_packet(&mut s)).await);
    }
    // DEPRECATE_EOF (raw::MODERN): the rows end with an OK starting 0xfe.
    let mut rows = 0;
    loop {
        let (_, p) = within("rows")(tokio::time::timeout(bound, read_packet(&mut s)).await);
        if p.first() == Some(&0xfe) {
            break;
        }
        rows += 1;
    }
    s.write_all(&packet(0, &[command::PING])).await.unwrap();
    let (seq, ok) = within("ping")(tokio::time::timeout(bound, read_packet(&mut s)).await);
    assert_eq!(
        (seq, ok.first()),
        (1, Some(&0)),
        "the ping's answer: {ok:?}"
    );
    rows
}

// ---------------------------------------------------------------------------------------
// 2. Slow readers.
// ---------------------------------------------------------------------------------------

/// Result rows of 1 MB each (64 MiB): far more than the kernel's socket buffers can hold.
const BIG_QUERY: &[u8] = b"\x03SELECT REPEAT('x', 1000000) FROM seq_1_to_64";

/// A client with a small receive buffer that asks for `BIG_QUERY` and reads its answer at
/// about 10 KiB/s (1 KiB every 100 ms) for `secs`, then leaves; returns the bytes read.
async fn slow_reader(port: u16, secs: u64) -> Result<u64, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .set_recv_buffer_size(16 * 1024)
        .map_err(|e| e.to_string())?;
    let mut s = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .map_err(|e| e.to_string())?;
    let (_, greeting) = read_packet(&mut s).await.ok_or("no greeting")?;
    let greeting = HandshakeV10::decode(&greeting).map_err(|e| e.to_string())?;
    s.write_all(&packet(1, &login_payload(&greeting, "koha", "koha", false)))
        .await
        .map_err(|e| e.to_string())?;
    let (_, ok) = read_packet(&mut s).await.ok_or("no login reply")?;
    if ok.first() != Some(&0) {
        return Err(format!("login refused: {ok:?}"));
    }
    s.write_all(&packet(0, BIG_QUERY))
        .await
        .map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut buf = [0u8; 1024];
    let mut read = 0u64;
    while Instant::now() < end {
        pace.tick().await;
        match s.read(&mut buf).await {
            Ok(0) => return Err(format!("the proxy closed the result after {read} bytes")),
            Ok(n) => read += n as u64,
            Err(e) => return Err(format!("read failed after {read} bytes: {e}")),
        }
    }
    Ok(read)
}

/// Samples the proxy's VmRSS every 200 ms until `stop`; returns the largest seen (KiB).
async fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> u64 {
    let mut max = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        max = max.max(ProcStats::of(pid).rss_kib);
    }
    max
}

// ---------------------------------------------------------------------------------------
// 3. Connect and vanish.
// ---------------------------------------------------------------------------------------

/// Ways a client vanishes, in the order `vanish_once` takes them.
const VANISH_KINDS: [&str; 5] = [
    "close at once",
    "close after the greeting",
    "close mid-login",
    "close after sending a valid login",
    "reset after the greeting",
];

/// Connection number `i` connects and vanishes the `i % 5`th way (see `VANISH_KINDS`);
/// returns the code when the proxy refused it at the greeting.
async fn vanish_once(port: u16, i: u64) -> Result<Option<u16>, String> {
    let kind = (i % VANISH_KINDS.len() as u64) as usize;
    if kind == 0 {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        drop(s);
        return Ok(None);
    }
    let (mut s, greeting) = match greet(port).await {
        Ok(g) => g,
        Err(LoginFail::Refused(code, _)) => return Ok(Some(code)),
        Err(LoginFail::Broken(e)) => return Err(e),
    };
    let login = packet(1, &login_payload(&greeting, "koha", "koha", false));
    match kind {
        1 => {}
        2 => {
            let _ = s.write_all(&login[..login.len() / 2]).await;
        }
        3 => {
            let _ = s.write_all(&login).await;
        }
        _ => s.set_zero_linger().map_err(|e| e.to_string())?,
    }
    drop(s);
    Ok(None)
}

// ---------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------

/// The sandbox, what watches it, and the healthy session, shared by the phases.
struct Suite {
    /// The sandbox and the proxy.
    env: Env,
    /// The proxy process and the master's connections.
    watch: Watch,
    /// The well-behaved session beside the phases.
    healthy: Healthy,
    /// Lengths and counts.
    settings: Settings,
}

impl Suite {
    /// The proxy's client port.
    fn port(&self) -> u16 {
        self.env.proxy_port()
    }

    /// Waits until the phase's connections are gone (see [`Watch::settled`]).
    async fn settled(&mut self, phase: &str) -> (ProcStats, Duration) {
        self.watch
            .settled(phase, &self.env, 2, Duration::from_secs(10))
            .await
    }

    /// After a phase: the proxy lives, its connections are gone, the healthy session
    /// answers and a new login works. Returns the proxy's figures and the time the
    /// connections took to go.
    async fn after(&mut self, phase: &str) -> (ProcStats, Duration) {
        self.watch.assert_alive(phase, &self.env);
        let settled = self.settled(phase).await;
        self.healthy.check(phase, &self.env).await;
        fresh_login(&self.env)
            .await
            .unwrap_or_else(|e| panic!("a new login after {phase} failed: {e}"));
        let settled_again = self.settled(phase).await;
        (settled_again.0, settled.1)
    }

    /// The proxy's figures now.
    fn stats(&self) -> ProcStats {
        ProcStats::of(self.watch.pid)
    }

    /// Phase 0, what the fuzzer found (regressions): an end of LOCAL INFILE data numbered
    /// out of sequence left the proxy and the server waiting on each other for 30 s; a
    /// COM_PROCESS_INFO, answered with a result set the proxy took for one packet, left
    /// the session waiting forever.
    async fn fuzzer_finds(&mut self) {
        self.healthy.phase("the fuzzer's finds");
        let took = load_data_out_of_order(self.port()).await;
        println!("LOCAL INFILE end out of sequence: error 1156, closed in {took:?}");
        let rows = process_info_then_ping(self.port()).await;
        println!("COM_PROCESS_INFO: a result set of {rows} rows, then COM_PING answered");
        self.after("the fuzzer's finds").await;
    }

    /// Phase 1, the fuzzer: no failed case, and connections of both kinds ran.
    async fn fuzzing(&mut self) {
        self.healthy.phase("fuzzing");
        let before = self.stats();
        let t = Instant::now();
        let totals = fuzz(self.port(), self.settings).await;
        let took = t.elapsed();
        self.watch.assert_alive("fuzzing", &self.env);
        let seed = self.settings.seed;
        assert!(
            totals.failures.is_empty(),
            "{} fuzzed connection(s) failed (replay with KOHAPROXY_FUZZ_SEED={seed} \
             KOHAPROXY_FUZZ_CASE=<case>): {:#?}\n{}",
            totals.failures.len(),
            &totals.failures[..totals.failures.len().min(5)],
            self.env.proxy_log()
        );
        let (after, settle) = self.after("fuzzing").await;
        println!(
            "fuzzing: {} connections ({} before the login, {} after) in {took:.1?}, seed \
             {seed}; sent {:.1} MiB, received {:.1} MiB; refused at the greeting {:?}; error \
             codes answered {:?}; slowest close after the client's last byte {:?} (case {}); \
             settled in {settle:?}; proxy RSS {:.1} -> {:.1} MiB, peak {:.1} -> {:.1} MiB, \
             fds {} -> {}",
            totals.pre_login + totals.post_login,
            totals.pre_login,
            totals.post_login,
            totals.sent as f64 / 1048576.0,
            totals.received as f64 / 1048576.0,
            totals.refused,
            totals.codes,
            totals.slowest_close,
            totals.slowest_case,
            mib(before.rss_kib),
            mib(after.rss_kib),
            mib(before.hwm_kib),
            mib(after.hwm_kib),
            before.fds,
            after.fds
        );
        assert!(
            totals.pre_login > 0 && totals.post_login > 0,
            "the fuzzer ran no connection of one kind: {totals:?}"
        );
    }

    /// Phase 2, four slow readers: the proxy's memory does not grow with what they leave
    /// unread.
    async fn slow_readers(&mut self) {
        self.healthy.phase("slow readers");
        let before = self.stats();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = tokio::spawn(sample_rss(self.watch.pid, stop.clone()));
        let t = Instant::now();
        let readers: Vec<_> = (0..4)
            .map(|_| tokio::spawn(slow_reader(self.port(), self.settings.slow_secs)))
            .collect();
        let mut bytes = Vec::new();
        for r in readers {
            let read = r.await.unwrap();
            bytes.push(read.unwrap_or_else(|e| {
                panic!("slow reader: {e}\n{}", self.env.proxy_log());
            }));
        }
        let took = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let max_rss = sampler.await.unwrap();
        let during = self.stats();
        let (after, settle) = self.after("slow readers").await;
        let growth = during.hwm_kib.saturating_sub(before.hwm_kib);
        println!(
            "slow readers: 4 readers for {took:.1?} read {bytes:?} bytes ({:.1} KiB/s each); \
             proxy RSS {:.1} MiB before, {:.1} MiB at most during, {:.1} MiB after; peak \
             {:.1} -> {:.1} MiB (+{:.1} MiB); settled in {settle:?}",
            bytes.iter().sum::<u64>() as f64 / 4.0 / 1024.0 / took.as_secs_f64(),
            mib(before.rss_kib),
            mib(max_rss),
            mib(after.rss_kib),
            mib(before.hwm_kib),
            mib(during.hwm_kib),
            mib(growth)
        );
        assert!(
            growth < 64 * 1024 && max_rss.saturating_sub(before.rss_kib) < 64 * 1024,
            "the proxy's memory grew with slow readers: peak +{:.1} MiB, RSS {:.1} -> {:.1} MiB",
            mib(growth),
            mib(before.rss_kib),
            mib(max_rss)
        );
    }

    /// Phase 3, connect-and-vanish, 32 at a time: RSS and descriptors come back.
    async fn connect_and_vanish(&mut self) {
        self.healthy.phase("connect-and-vanish");
        let before = self.stats();
        let t = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(Mutex::new(BTreeMap::<u16, u64>::new()));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (next, refused) = (next.clone(), refused.clone());
            let (port, total) = (self.port(), self.settings.vanish);
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return Ok::<(), String>(());
                    }
                    if let Some(code) = vanish_once(port, i).await? {
                        *refused.lock().unwrap().entry(code).or_default() += 1;
                    }
                }
            }));
        }
        for task in tasks {
            task.await
                .unwrap()
                .unwrap_or_else(|e| panic!("connect-and-vanish: {e}\n{}", self.env.proxy_log()));
        }
        let took = t.elapsed();
        let (after, settle) = self.after("connect-and-vanish").await;
        let refused = refused.lock().unwrap().clone();
        println!(
            "connect-and-vanish: {} connections ({}) in {took:.1?}; refused at the greeting \
             {refused:?}; settled in {settle:?}; proxy RSS {:.1} -> {:.1} MiB, peak {:.1} -> \
             {:.1} MiB, fds {} -> {}",
            self.settings.vanish,
            VANISH_KINDS.join(", "),
            mib(before.rss_kib),
            mib(after.rss_kib),
            mib(before.hwm_kib),
            mib(after.hwm_kib),
            before.fds,
            after.fds
        );
        assert!(
            refused.keys().all(|&code| code == 1040),
            "refused with something else than 1040: {refused:?}"
        );
        assert!(
            after.rss_kib < before.rss_kib + 16 * 1024,
            "RSS did not come back after connect-and-vanish: {:.1} -> {:.1} MiB",
            mib(before.rss_kib),
            mib(after.rss_kib)
        );
    }

    /// Phase 4, twice `max_connections` logins at once while the healthy session holds
    /// one slot: exactly the free slots are served, the rest get 1040 and a closed
    /// connection; the served ones and the healthy one keep working; logins work again
    /// once the flood leaves.
    async fn flood(&mut self) {
        self.healthy.phase("flood");
        let port = self.port();
        let flood = 2 * MAX_CONNECTIONS;
        let t = Instant::now();
        let attempts: Vec<_> = (0..flood)
            .map(|_| tokio::spawn(raw_login(port, "koha", "koha")))
            .collect();
        let mut held = Vec::new();
        let mut refused = Vec::new();
        let mut codes = BTreeMap::<u16, u64>::new();
        for a in attempts {
            match a.await.unwrap() {
                Ok(s) => held.push(s),
                Err(LoginFail::Refused(code, msg)) => {
                    *codes.entry(code).or_default() += 1;
                    refused.push((code, msg));
                }
                Err(LoginFail::Broken(e)) => panic!("flood: a login broke: {e}"),
            }
        }
        let took = t.elapsed();
        println!(
            "flood: {flood} logins in {took:.1?}: {} served, refused {codes:?} ({:?})",
            held.len(),
            refused.first().map(|r| &r.1)
        );
        assert_eq!(
            held.len(),
            MAX_CONNECTIONS - 1,
            "max_connections = {MAX_CONNECTIONS} with the healthy session open"
        );
        assert!(
            refused
                .iter()
                .all(|(code, msg)| *code == 1040 && msg == "Too many connections"),
            "the excess got something else than 1040: {refused:?}"
        );
        // A refused client is closed, too.
        let mut extra = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (_, first) = read_packet(&mut extra).await.expect("an answer while full");
        assert_eq!(err_code(&first), Some(1040), "while full: {first:?}");
        let closed = closed_within(&mut extra, CLOSE_BOUND).await;
        assert!(closed.is_some(), "a refused connection stayed open");
        // The held sessions still answer (the healthy one is checked below).
        for s in held.iter_mut() {
            s.write_all(&packet(0, &[command::PING])).await.unwrap();
            let (_, reply) = tokio::time::timeout(STATEMENT_BOUND, read_packet(s))
                .await
                .expect("a ping while full did not answer in time")
                .expect("closed instead of answering a ping");
            assert_eq!(reply.first(), Some(&0), "ping while full");
        }
        self.healthy
            .check("the flood (while full)", &self.env)
            .await;
        drop(held);
        let t = Instant::now();
        while let Err(e) = fresh_login(&self.env).await {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "logins still refused 5 s after the flood left: {e}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "flood: a new login works {:?} after the flood left",
            t.elapsed()
        );
        let (after, settle) = self.after("flood").await;
        println!(
            "flood: settled in {settle:?}; proxy RSS {:.1} MiB, peak {:.1} MiB, {} fds after",
            mib(after.rss_kib),
            mib(after.hwm_kib),
            after.fds
        );
    }

    /// Phase 5, wrong passwords, 16 at a time: each gets 1045; memory stays bounded; a
    /// correct login works afterwards.
    async fn wrong_passwords(&mut self) {
        self.healthy.phase("wrong passwords");
        let before = self.stats();
        let t = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let codes = Arc::new(Mutex::new(BTreeMap::<u16, u64>::new()));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (next, codes) = (next.clone(), codes.clone());
            let (port, total) = (self.port(), self.settings.wrong_passwords);
            tasks.push(tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    match raw_login(port, "koha", "not the password").await {
                        Err(LoginFail::Refused(code, _)) => {
                            *codes.lock().unwrap().entry(code).or_default() += 1;
                        }
                        Ok(_) => panic!("a wrong password was accepted"),
                        Err(LoginFail::Broken(e)) => panic!("a wrong-password login broke: {e}"),
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let took = t.elapsed();
        let codes = codes.lock().unwrap().clone();
        let (after, _) = self.after("wrong passwords").await;
        println!(
            "wrong passwords: {} logins in {took:.1?}: {codes:?}; proxy RSS {:.1} -> {:.1} MiB, \
             peak {:.1} -> {:.1} MiB, fds {} -> {}",
            self.settings.wrong_passwords,
            mib(before.rss_kib),
            mib(after.rss_kib),
            mib(before.hwm_kib),
            mib(after.hwm_kib),
            before.fds,
            after.fds
        );
        assert_eq!(
            codes,
            BTreeMap::from([(1045, self.settings.wrong_passwords)]),
            "every wrong password gets 1045"
        );
        assert!(
            after.hwm_kib < before.hwm_kib + 16 * 1024,
            "wrong passwords grew the proxy's peak memory: {:.1} -> {:.1} MiB",
            mib(before.hwm_kib),
            mib(after.hwm_kib)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_never_disturb_the_proxy_or_others() {
    let settings = Settings::from_env();
    println!(
        "hostile clients: {settings:?} (replay with KOHAPROXY_FUZZ_SEED={})",
        settings.seed
    );
    let started = Instant::now();
    let env = tokio::task::spawn_blocking(|| {
        Env::start_with(0, |toml| {
            *toml = toml.replace(
                "[proxy]\n",
                &format!(
                    "[proxy]\nmax_connections = {MAX_CONNECTIONS}\nhandshake_timeout_ms = 3000\n\
                     max_allowed_packet = \"4M\"\n"
                ),
            );
        })
    })
    .await
    .unwrap();
    let healthy = Healthy::start(&env).await;
    let mut koha = mysql_async::Conn::new(env.proxy_opts()).await.unwrap();
    koha.query_drop("CREATE TABLE koha.fuzz_t (a INT, b VARCHAR(64))")
        .await
        .unwrap();
    koha.disconnect().await.unwrap();
    let mut watch = Watch::new(&env).await;
    // The baseline: the healthy session only (the setup's connection gone).
    watch
        .settled("setup", &env, usize::MAX / 2, Duration::from_secs(5))
        .await;
    let start = ProcStats::of(watch.pid);
    watch.fd_baseline = start.fds;
    println!(
        "baseline: proxy RSS {:.1} MiB, peak {:.1} MiB, {} fds",
        mib(start.rss_kib),
        mib(start.hwm_kib),
        start.fds
    );
    if let Ok(cases) = std::env::var("KOHAPROXY_FUZZ_CASE") {
        replay(&env, settings.seed, &cases).await;
        return;
    }
    let mut suite = Suite {
        env,
        watch,
        healthy,
        settings,
    };
    suite.fuzzer_finds().await;
    suite.fuzzing().await;
    suite.slow_readers().await;
    suite.connect_and_vanish().await;
    suite.flood().await;
    suite.wrong_passwords().await;

    let Suite {
        env,
        watch,
        healthy,
        ..
    } = suite;
    let (statements, slowest) = healthy.finish(&env).await;
    watch.assert_alive("the end", &env);
    let end = ProcStats::of(watch.pid);
    println!(
        "end: the healthy session ran {statements} statements without error, slowest \
         {slowest:?}; proxy RSS {:.1} MiB (started at {:.1}), peak {:.1} MiB, {} fds (started \
         at {}); {:.1?} in all",
        mib(end.rss_kib),
        mib(start.rss_kib),
        mib(end.hwm_kib),
        end.fds,
        start.fds,
        started.elapsed()
    );
}
