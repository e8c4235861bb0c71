//! Hostile and broken clients never take the proxy down, stall it, or disturb anyone else.
//!
//! The parts live in `tests/hostile/`: `watch.rs` (the proxy's RSS and descriptors, the
//! master's connections), `healthy.rs` (the session that must see no error), `wire.rs`
//! (raw protocol helpers), `fuzz.rs` (the network fuzzer), `load.rs` (slow readers,
//! connect-and-vanish); this file holds the settings and the phases.
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

#[path = "hostile/fuzz.rs"]
mod fuzz;
#[path = "hostile/healthy.rs"]
mod healthy;
#[path = "hostile/load.rs"]
mod load;
#[path = "hostile/watch.rs"]
mod watch;
#[path = "hostile/wire.rs"]
mod wire;

use fuzz::*;
use healthy::*;
use load::*;
use watch::*;
use wire::*;

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
pub(crate) const STATEMENT_BOUND: Duration = Duration::from_secs(5);

/// A fuzzed connection is closed by the proxy within this once the client sent all.
pub(crate) const CLOSE_BOUND: Duration = Duration::from_secs(10);

/// Connecting, the greeting and a valid login each answer within this.
pub(crate) const LOGIN_BOUND: Duration = Duration::from_secs(5);

/// The proxy's `max_connections` in this test.
pub(crate) const MAX_CONNECTIONS: usize = 50;

/// Concurrent fuzzing connections.
pub(crate) const FUZZ_TASKS: usize = 16;

/// Lengths and counts of the phases, from the environment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
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
