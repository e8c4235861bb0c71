//! Causal reads beyond one proxy process, with Koha-shaped Perl DBI workers
//! (`tests/perl/koha_pages.pl`: DBD::mysql, `mysql_enable_utf8`, SET NAMES utf8mb4) that
//! write the web-session row through one kohaproxy and read it back through another, as
//! Koha's app servers behind a load balancer do, while one replica lags: no stale read
//! through two proxies, across a restart of either proxy, across a switchover and a
//! failover, and through one proxy in scope `local` killed and restarted. A control run in
//! scope `local` through two proxies must see stale reads (else the test proves nothing).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, Peer};
use kohaproxy_sandbox::Signal;

/// A peer proxy with `causal_reads = scope`.
fn peer(env: &Env, name: &str, scope: &str) -> Peer {
    Peer::new(env, name, |text| with_scope(&text, scope))
}

/// One counter of a peer's SHOW STATS.
fn peer_stat(peer: &Peer, name: &str) -> u64 {
    stat(&peer.socket, name)
}

/// The config `text` with `[routing] causal_reads = scope`.
fn with_scope(text: &str, scope: &str) -> String {
    format!("{text}[routing]\ncausal_reads = \"{scope}\"\n")
}

/// One counter of SHOW STATS on the admin socket `socket`.
fn stat(socket: &Path, name: &str) -> u64 {
    let out = kohaproxy_faults::admin(socket, "SHOW STATS").expect("SHOW STATS");
    out.lines()
        .find_map(|l| {
            let (n, v) = l.split_once('\t')?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no {name} in SHOW STATS:\n{out}"))
}

/// What one run of koha_pages.pl reported.
#[derive(Debug, Default)]
struct Pages {
    line: String,
    pages: u64,
    stale: u64,
    errors: u64,
}

/// koha_pages.pl running in the background.
struct Workers {
    child: Child,
    what: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/perl/koha_pages.pl")
}

impl Workers {
    /// `workers` Koha-shaped workers for `seconds`, writing through `write` and reading
    /// through `read` (ports).
    fn start(run: u32, write: u16, read: u16, workers: u32, seconds: u32) -> Workers {
        let child = Command::new("perl")
            .arg(script())
            .args(["--run", &run.to_string()])
            .args(["--write-port", &write.to_string()])
            .args(["--read-port", &read.to_string()])
            .args(["--workers", &workers.to_string()])
            .args(["--seconds", &seconds.to_string()])
            .args(["--no-setup", "--max-connect-wait", "30"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run perl");
        Workers {
            child,
            what: format!("write {write}, read {read}"),
        }
    }

    /// Waits for the summary line.
    fn finish(self) -> Pages {
        let out = self.child.wait_with_output().expect("wait for perl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "koha_pages.pl ({}) failed ({}):\n{stdout}\n{stderr}",
            self.what,
            out.status
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with("pages="))
            .unwrap_or_else(|| panic!("no summary line:\n{stdout}\n{stderr}"))
            .to_string();
        let field = |key: &str| -> u64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line}"))
        };
        let pages = Pages {
            pages: field("pages"),
            stale: field("stale"),
            errors: field("errors"),
            line: line.clone(),
        };
        eprintln!("{}: {line}", self.what);
        if pages.stale > 0 {
            eprintln!("{stderr}");
        }
        pages
    }
}

/// Creates the workload's tables through the master and waits for the replicas.
fn setup(env: &Env) {
    let out = Command::new("perl")
        .arg(script())
        .args(["--write-port", &env.master_port().to_string()])
        .args(["--read-port", &env.master_port().to_string()])
        .args(["--seconds", "1", "--workers", "4", "--setup-only"])
        .output()
        .expect("run perl");
    assert!(
        out.status.success(),
        "setup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env.sb()
        .wait_replication(Duration::from_secs(30))
        .expect("replicas catch up");
}

/// Has `replica` apply what it receives `seconds` late (within the lag limit, so it keeps
/// serving reads: only causality keeps them fresh).
fn delay(env: &Env, replica: &str, seconds: u32) {
    // One statement list: kohaproxy starts a replication found stopped.
    let sql = format!("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = {seconds}; START SLAVE");
    env.sb().sql(replica, &sql).expect(&sql);
}

/// Waits until a fresh session's plain read through `port` reaches a replica.
fn wait_for_replica_reads(env: &Env, port: u16) {
    let master = env.sb().servers()[0].server_id.to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Env::mariadb(port, &["-N", "-e", "SELECT @@server_id"], b"");
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !id.is_empty() && id != master {
            return;
        }
        assert!(Instant::now() < deadline, "reads never reached a replica");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn reads_through_one_proxy_see_writes_through_another() {
    let env = Env::start(2);
    setup(&env);
    let b = peer(&env, "b", "global");
    let control = peer(&env, "control", "local");
    wait_for_replica_reads(&env, b.port);
    wait_for_replica_reads(&env, control.port);

    // db3 stops applying: until the monitor takes it out of rotation, reads meet it.
    env.sb().sql("db3", "STOP SLAVE SQL_THREAD").unwrap();
    let stopped = Workers::start(1, env.proxy_port(), b.port, 4, 5).finish();
    env.sb().sql("db3", "START SLAVE SQL_THREAD").unwrap();
    // Then it applies everything a second late, and keeps serving reads.
    delay(&env, "db3", 1);
    let delayed = Workers::start(2, env.proxy_port(), b.port, 4, 8).finish();
    for (what, run) in [("SQL thread stopped", &stopped), ("MASTER_DELAY", &delayed)] {
        assert!(run.pages > 20, "{what}: too few pages: {}", run.line);
        assert_eq!(
            (run.stale, run.errors),
            (0, 0),
            "{what}: {}\n--- proxy b:\n{}",
            run.line,
            b.log()
        );
    }
    // Replicas served reads, and the late one's answers were checked and turned away.
    assert!(peer_stat(&b, "causal_master_positions") > 0);
    assert!(
        peer_stat(&b, "causal_ready") > 0,
        "no read served by a replica"
    );
    assert!(
        peer_stat(&b, "causal_discarded") + peer_stat(&b, "causal_to_master") > 0,
        "the late replica was never caught lacking a write"
    );

    // The control: scope local knows only its own proxy's writes.
    let local = Workers::start(3, env.proxy_port(), control.port, 4, 5).finish();
    assert!(
        local.stale > 0,
        "scope local through two proxies saw no stale read: this test cannot tell ({})",
        local.line
    );
}

#[test]
fn restarts_switchover_and_failover_keep_reads_causal() {
    let env = Env::start(2);
    let mut env = env;
    setup(&env);
    let mut b = peer(&env, "b", "global");
    let mut local = peer(&env, "local", "local");
    wait_for_replica_reads(&env, b.port);
    wait_for_replica_reads(&env, local.port);
    delay(&env, "db3", 1);

    // Two proxies in scope global (write through the sandbox's, read through b), and one
    // in scope local on its own.
    let across = Workers::start(1, env.proxy_port(), b.port, 3, 30);
    let alone = Workers::start(2, local.port, local.port, 2, 30);
    let start = Instant::now();
    let at = |s: u64| {
        let t = Duration::from_secs(s);
        if let Some(left) = t.checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
    };
    at(3);
    eprintln!("SIGKILL and restart: proxy b, the local proxy");
    b.start();
    local.start();
    at(7);
    eprintln!("SIGKILL and restart: the writers' proxy");
    env.start_proxy();
    at(11);
    let socket = env.sb().dir().join("admin.sock");
    let switched = kohaproxy_faults::admin(&socket, "SWITCHOVER TO db2");
    eprintln!("switchover to db2: {switched:?}");
    assert!(switched.is_ok(), "{switched:?}\n{}", env.proxy_log());
    at(16);
    eprintln!("SIGKILL the master (db2)");
    env.sb().kill("db2", Signal::Kill).expect("kill db2");
    at(19);
    eprintln!("SIGKILL and restart: the local proxy, during the failover");
    local.start();
    at(24);
    env.sb().start("db2").expect("start db2");

    let across = across.finish();
    let alone = alone.finish();
    for (what, run, log) in [
        ("two proxies, global", &across, b.log()),
        ("one proxy, local", &alone, local.log()),
    ] {
        assert!(run.pages > 20, "{what}: too few pages: {}", run.line);
        assert_eq!(
            run.stale,
            0,
            "{what}: {}\n--- its log:\n{log}\n--- the writers' proxy's log:\n{}",
            run.line,
            env.proxy_log()
        );
    }
    let master = kohaproxy_faults::proxy_master(&socket);
    eprintln!("master after the failover: {master:?}");
    assert!(
        matches!(master.as_deref(), Some("db1" | "db3")),
        "{master:?}"
    );
}

/// Another proxy switched over, and this one's monitor has not looked yet: it still
/// knows the old master as the master. What it sends there must not be answered by the
/// demoted server, which lacks what the new master acknowledged since; the check that
/// travels with the statement finds it read-only. Three rounds, one switchover each (the
/// split is off, so every read goes to the master): a plain read and a `BEGIN` (with the
/// transaction's read after it) run on the new master; a pinned session's read (its
/// temporary table lives on the demoted server) gets an error, never the old row.
#[test]
fn a_read_through_a_proxy_that_missed_a_switchover_runs_on_the_new_master() {
    let env = Env::start(2);
    // b probes every 60 s: only a session's request makes it look again.
    let b = Peer::new(&env, "b", |text| {
        with_scope(&text, "global").replace("interval_ms = 500", "interval_ms = 60000")
            + "read_write_split = false\n"
    });
    let run = |port: u16, stmt: &str| Env::mariadb(port, &["-N", "-e", stmt], b"");
    let sql = |port: u16, stmt: &str| -> String {
        let out = run(port, stmt);
        assert!(
            out.status.success(),
            "{stmt}: {}\n--- the writers' proxy:\n{}\n--- b:\n{}",
            String::from_utf8_lossy(&out.stderr),
            env.proxy_log(),
            b.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let socket = env.sb().dir().join("admin.sock");
    // Switches the writers' proxy over from `old` to `new`, then stops `old` applying
    // (so it keeps the old row) and writes `v` through the writers' proxy.
    let switch_and_write = |old: &str, new: &str, v: u32| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while kohaproxy_faults::server_row(&socket, new)
            .is_none_or(|row| row.role != "replica" || row.read_only != "ON")
        {
            assert!(Instant::now() < deadline, "{new} never became a replica");
            std::thread::sleep(Duration::from_millis(100));
        }
        let switched = kohaproxy_faults::admin(&socket, &format!("SWITCHOVER TO {new}"));
        assert!(switched.is_ok(), "{switched:?}\n{}", env.proxy_log());
        let new_port = env.sb().server(new).expect("server").port.to_string();
        loop {
            let status = env.sb().sql(old, "SHOW SLAVE STATUS").unwrap_or_default();
            if status.contains(&new_port) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{old} never followed {new}: {status}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        env.sb().sql(old, "STOP SLAVE SQL_THREAD").unwrap();
        sql(
            env.proxy_port(),
            &format!("UPDATE koha.flip SET v = {v} WHERE id = 1"),
        );
        assert_eq!(
            env.sb()
                .sql(old, "SELECT v FROM koha.flip WHERE id = 1")
                .unwrap()
                .trim(),
            (v - 1).to_string(),
            "{old} should lack the update (else this test proves nothing)"
        );
    };
    sql(
        env.proxy_port(),
        "CREATE TABLE koha.flip (id INT PRIMARY KEY, v INT); INSERT INTO koha.flip VALUES (1, 0)",
    );
    assert_eq!(sql(b.port, "SELECT v FROM koha.flip WHERE id = 1"), "0");

    // A plain read.
    switch_and_write("db1", "db2", 1);
    let seen = sql(b.port, "SELECT v FROM koha.flip WHERE id = 1");
    env.sb().sql("db1", "START SLAVE SQL_THREAD").unwrap();
    assert_eq!(seen, "1", "stale read through b:\n{}", b.log());
    assert!(peer_stat(&b, "causal_master_demoted") >= 1, "{}", b.log());
    assert!(b.log().contains("following it master=db2"), "{}", b.log());

    // A transaction: its start is checked, its read follows it to the new master.
    switch_and_write("db2", "db1", 2);
    let seen = sql(
        b.port,
        "BEGIN; SELECT v FROM koha.flip WHERE id = 1; COMMIT",
    );
    env.sb().sql("db2", "START SLAVE SQL_THREAD").unwrap();
    assert_eq!(
        seen,
        "2",
        "stale read in a transaction through b:\n{}",
        b.log()
    );
    assert!(peer_stat(&b, "causal_master_demoted") >= 2, "{}", b.log());

    // A pinned session: its state cannot follow, so its read fails instead.
    switch_and_write("db1", "db2", 3);
    let out = run(
        b.port,
        "CREATE TEMPORARY TABLE koha.pinned (x INT); SELECT v FROM koha.flip WHERE id = 1",
    );
    env.sb().sql("db1", "START SLAVE SQL_THREAD").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stdout.trim().is_empty() && stderr.contains("reconnect"),
        "a pinned read through b after a switchover elsewhere: status {}, stdout {stdout:?}, \
         stderr {stderr:?}\n{}",
        out.status,
        b.log()
    );
    assert!(peer_stat(&b, "causal_master_demoted") >= 3, "{}", b.log());
    // A new session through b runs on the new master.
    assert_eq!(sql(b.port, "SELECT v FROM koha.flip WHERE id = 1"), "3");
}
