//! End to end on a real three-node Galera cluster behind the real kohaproxy: reads reach
//! the nodes that are not the writer, writes one node; the write ledger under SIGKILL of
//! the writer (twice, with a rejoin between) and SIGSTOP of the writer loses no
//! acknowledged write; a switchover and maintenance of the writer cost no client error (a
//! transaction open on the old writer finishes there), nor does SIGKILL of a reader
//! beyond Galera's own commit errors; a second
//! proxy agrees on the writer, also after its restart; with
//! two of three nodes gone the last one is non-Primary and writes are refused with a clear
//! error, and they resume by themselves once the cluster is Primary again; Koha-shaped
//! pages written through one proxy and read through another see no stale read; sysbench
//! writes through the proxy while a backup is taken off a node (held with FLUSH TABLES
//! WITH READ LOCK, then resynced), which is restored and verified.
//!
//! Run with `--nocapture` to see the RTO of each fault.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Env, Peer};
use kohaproxy_faults::{verify_blocking, Ledger, LedgerHandle, LedgerOptions, LedgerReport};
use kohaproxy_sandbox::Signal;

const DEADLINE: Duration = Duration::from_secs(60);

/// A `SHOW ...` of the admin console at `socket`, as tab-separated lines.
fn admin(socket: &Path, sql: &str) -> String {
    kohaproxy_faults::admin(socket, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The writer and term a proxy's console shows (`SHOW TOPOLOGY`).
fn writer(socket: &Path) -> (Option<String>, u64) {
    let out = admin(socket, "SHOW TOPOLOGY");
    let row: Vec<&str> = out.trim_end().split('\t').collect();
    let name = row.first().filter(|n| **n != "NULL").map(|n| n.to_string());
    let term = row.get(2).and_then(|t| t.parse().ok()).unwrap_or(0);
    (name, term)
}

/// Waits until `check` holds, at most `limit`.
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `sql` through the proxy at `port` as koha (database koha); the text output or
/// the error text.
fn through(port: u16, sql: &str) -> Result<String, String> {
    // The proxy holds a login up to `failover_hold_ms` (10 s) while there is no writer,
    // then answers with the reason: wait for it.
    let out = Env::mariadb(
        port,
        &["--connect-timeout=30", "-N", "-B", "koha", "-e", sql],
        b"",
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The error a new koha session through the proxy at `port` gets for a write (a
/// Rust client: it shows the proxy's error as sent).
fn write_error(port: u16) -> String {
    use mysql_async::prelude::Queryable;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let opts = Env::opts(port, "koha", "koha", Some("koha"));
        match mysql_async::Conn::new(opts).await {
            Ok(mut conn) => match conn.query_drop("INSERT INTO g (v) VALUES (-1)").await {
                Ok(()) => panic!("a write on a non-Primary cluster was accepted"),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        }
    })
}

/// The ledger through the proxy, writing until stopped: autocommit INSERTs, or
/// `BEGIN; INSERT; INSERT; COMMIT` with `transactions`.
fn ledger(env: &Env, transactions: bool) -> LedgerHandle {
    let mut opts = LedgerOptions::new(env.proxy_opts());
    opts.clients = if transactions { 2 } else { 4 };
    opts.transactions = transactions;
    if transactions {
        // Its own table: two ledgers at once would number their clients alike.
        opts.database = "koha_ledger_txn".into();
    }
    opts.duration = Duration::from_secs(300);
    Ledger::spawn(opts)
}

/// koha_pages.pl through the proxies at `write_port` and `read_port` for `seconds`; its
/// summary line, after asserting it exited well.
fn koha_pages(write_port: u16, read_port: u16, seconds: u32, workers: u32) -> String {
    let perl = std::process::Command::new("perl")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/perl/koha_pages.pl"))
        .args(["--write-port", &write_port.to_string()])
        .args(["--read-port", &read_port.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--workers", &workers.to_string()])
        .output()
        .expect("run koha_pages.pl");
    let pages = String::from_utf8_lossy(&perl.stdout).trim().to_string();
    assert!(
        perl.status.success(),
        "{pages}\n{}",
        String::from_utf8_lossy(&perl.stderr)
    );
    pages
}

/// Stops the ledger and checks every acknowledged write is on node `on`; prints the run.
fn verify(
    env: &Env,
    scenario: &str,
    ledger: LedgerHandle,
    fault: Instant,
    on: &str,
) -> LedgerReport {
    let report = ledger.stop_and_join().expect("ledger");
    let port = env.sb().server(on).expect("node").port;
    let verdict = verify_blocking(&report, Env::opts(port, "koha", "koha", None)).expect("verify");
    let rto = report
        .rto(fault)
        .map_or("none".to_string(), |d| format!("{} ms", d.as_millis()));
    eprintln!(
        "RUN galera {scenario}: RTO {rto}, acknowledged {} lost {}, client errors {} ({:?})",
        verdict.acked,
        verdict.lost.len(),
        report.errors().len(),
        report.error_summary(4),
    );
    assert!(verdict.acked > 0, "{scenario}: nothing was acknowledged");
    assert!(
        verdict.lost.is_empty() && verdict.torn.is_empty() && verdict.unexpected == 0,
        "{scenario}: {verdict}"
    );
    report
}

/// Certification failures and brute-force aborts summed over the nodes: both count a
/// write set that met a conflicting one from another node, which one writer never causes.
fn certification_conflicts(env: &Env) -> u64 {
    env.sb()
        .servers()
        .iter()
        .map(|node| {
            env.sb()
                .sql(
                    &node.name,
                    "SELECT SUM(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS \
                     WHERE VARIABLE_NAME IN ('WSREP_LOCAL_CERT_FAILURES', 'WSREP_LOCAL_BF_ABORTS')",
                )
                .expect("wsrep counters")
                .trim()
                .parse::<u64>()
                .expect("a count")
        })
        .sum()
}

/// `BACKUP NOW` under load: the source is a node other than `writer`, held out of read
/// rotation while it is dumped and Synced and back afterwards. Returns the backup's id.
fn backup_from_a_node(env: &Env, socket: &Path, writer: &str) -> String {
    let said = admin(socket, "BACKUP NOW");
    eprintln!("RUN galera {}", said.trim());
    let words: Vec<&str> = said.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"backup"), "{said}");
    let (id, source) = (words[1].to_owned(), words[4].trim_end_matches(';'));
    assert_ne!(source, writer, "a backup from the writer: {said}");
    let started = Instant::now();
    let mut held = false;
    wait_for("the backup to finish", DEADLINE, || {
        let servers = admin(socket, "SHOW SERVERS");
        held |= servers
            .lines()
            .any(|l| l.starts_with(&format!("{source}\t")) && l.contains("maintenance"));
        let backups = admin(socket, "SHOW BACKUPS");
        backups
            .lines()
            .find(|l| l.starts_with(&id))
            .is_some_and(|row| !row.contains("\trunning\t"))
    });
    let row = admin(socket, "SHOW BACKUPS");
    assert!(row.contains("\tok\t"), "the backup failed: {row}");
    eprintln!(
        "RUN galera backup {id} from {source} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(held, "{source} was never seen out of read rotation");
    wait_for("the source Synced and serving again", DEADLINE, || {
        admin(socket, "SHOW SERVERS").lines().any(|l| {
            l.starts_with(&format!("{source}\t"))
                && l.contains("\treplica\t")
                && l.contains("Synced")
                && !l.contains("maintenance")
        })
    });
    let manifest = kohaproxy_backup::Manifest::read(&env.sb().dir().join("backups").join(&id))
        .expect("manifest");
    assert_eq!(manifest.source_role, "galera node", "{manifest:?}");
    assert!(
        manifest
            .galera_position
            .as_ref()
            .is_some_and(|p| p.contains(':')),
        "{manifest:?}"
    );
    assert!(
        manifest.tables.iter().any(|t| t.table == "sbtest1"),
        "{manifest:?}"
    );
    id
}

/// `kohaproxy backup verify --restore-test`: the backup loads into a fresh server and
/// every table's count and checksum match the manifest.
fn verify_backup(env: &Env, id: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kohaproxy"))
        .args(["backup", "verify", id, "--restore-test", "--config"])
        .arg(env.sb().config_path())
        .output()
        .expect("run kohaproxy backup verify");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("counts and checksums match"), "{text}");
}

#[test]
fn one_writer_reads_elsewhere_writer_failures_lose_nothing_two_proxies_agree() {
    let test_start = Instant::now();
    let env = Env::start_galera(3);
    let socket = env.sb().dir().join("admin.sock");
    let port_of = |env: &Env, name: &str| env.sb().server(name).expect("node").port;
    wait_for("a writer", DEADLINE, || writer(&socket).0.is_some());
    let (first, term) = writer(&socket);
    let first = first.expect("writer");
    assert!(term >= 1, "term {term}");

    // Writes go to the writer, plain reads to the other nodes (wsrep_sync_wait makes
    // them see the write just made).
    through(
        env.proxy_port(),
        "CREATE TABLE IF NOT EXISTS g (id INT PRIMARY KEY AUTO_INCREMENT, v INT)",
    )
    .expect("create");
    let writer_port = port_of(&env, &first).to_string();
    for i in 0..20 {
        let out = through(
            env.proxy_port(),
            &format!(
                "INSERT INTO g (v) VALUES ({i}); SELECT @@port, (SELECT COUNT(*) FROM g WHERE v = {i})"
            ),
        )
        .expect("write then read");
        let (port, seen) = out.split_once('\t').expect("two columns");
        assert_ne!(port, writer_port, "a plain read went to the writer");
        assert_eq!(seen, "1", "the read missed the write just acknowledged");
    }
    let servers = admin(&socket, "SHOW SERVERS");
    assert!(servers.contains("Synced, Primary, size 3"), "{servers}");
    let in_txn = through(
        env.proxy_port(),
        "BEGIN; SELECT @@port; INSERT INTO g (v) VALUES (100); COMMIT",
    )
    .expect("transaction");
    assert_eq!(in_txn, writer_port, "a transaction runs on the writer");

    // A second proxy follows the writer the first one recorded.
    let mut peer = Peer::new(&env, "b", |text| text);
    wait_for("the second proxy to follow", DEADLINE, || {
        writer(&peer.socket) == writer(&socket)
    });

    // Koha-shaped Perl DBI pages: the session row written through one proxy and read back
    // through the other, checkouts as SET autocommit=0 ... COMMIT: no stale read.
    let pages = koha_pages(env.proxy_port(), peer.port, 5, 3);
    eprintln!("RUN galera Koha pages through two proxies: {pages}");
    assert!(pages.contains(" stale=0 errors=0 "), "{pages}");

    // sysbench oltp_read_write through the proxy: no error; meanwhile a backup is taken
    // from a node that is not the writer.
    env.sb()
        .sql(&first, "CREATE DATABASE IF NOT EXISTS sbtest")
        .expect("sbtest");
    let bench = |step: &[&str]| {
        let out = common::sysbench(env.proxy_port(), "oltp_read_write", 1000)
            .args(step)
            .output()
            .expect("run sysbench");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "sysbench {step:?}: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    bench(&["prepare"]);
    let conflicts_before = certification_conflicts(&env);
    let (run, backup) = std::thread::scope(|scope| {
        let load = scope.spawn(|| bench(&["--threads=4", "--time=8", "run"]));
        std::thread::sleep(Duration::from_millis(1500));
        let backup = backup_from_a_node(&env, &socket, &first);
        (load.join().expect("sysbench thread"), backup)
    });
    let conflicts = certification_conflicts(&env) - conflicts_before;
    let line = |key: &str| {
        run.lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or("")
            .trim()
            .to_string()
    };
    eprintln!(
        "RUN galera sysbench oltp_read_write: {}; {}",
        line("transactions:"),
        line("ignored errors:")
    );
    // sysbench stops on any error but the three it retries (1213, 1205, 1020); a 1213 can
    // be InnoDB's own deadlock between its threads on one node, which a direct connection
    // sees too. Writes on two nodes would show as certification conflicts: there are none.
    assert_eq!(conflicts, 0, "writes reached two nodes: {run}");
    verify_backup(&env, &backup);

    // Moving the writer on purpose costs clients nothing: SWITCHOVER TO a node, then
    // maintenance of the new writer (moved again first), under the ledger (autocommit
    // INSERTs and BEGIN ... COMMIT transactions: one open on the old writer finishes
    // there) and Koha-shaped pages. No client error, nothing lost, no stale read.
    let nodes: Vec<String> = env.sb().servers().iter().map(|s| s.name.clone()).collect();
    let target = nodes.iter().find(|n| **n != first).expect("node").clone();
    let autocommit = ledger(&env, false);
    let transactions = ledger(&env, true);
    let proxy_port = env.proxy_port();
    let pages = std::thread::spawn(move || koha_pages(proxy_port, proxy_port, 9, 2));
    std::thread::sleep(Duration::from_secs(2));
    let moved_at = Instant::now();
    let switched = admin(&socket, &format!("SWITCHOVER TO {target}"));
    eprintln!("RUN galera SWITCHOVER TO {target}: {}", switched.trim());
    wait_for("the switchover", DEADLINE, || {
        writer(&socket).0.as_deref() == Some(target.as_str())
    });
    std::thread::sleep(Duration::from_secs(2));
    let maintained = admin(&socket, &format!("SET SERVER {target} MAINTENANCE"));
    eprintln!(
        "RUN galera SET SERVER {target} MAINTENANCE: {}",
        maintained.trim()
    );
    let second = writer(&socket).0.expect("a writer after maintenance");
    assert_ne!(second, target, "the writer in maintenance was not moved");
    std::thread::sleep(Duration::from_secs(2));
    admin(&socket, &format!("SET SERVER {target} ONLINE"));
    let pages = pages.join().expect("koha_pages thread");
    eprintln!("RUN galera Koha pages across a switchover and maintenance: {pages}");
    for (what, run) in [("autocommit", autocommit), ("transactions", transactions)] {
        let report = verify(
            &env,
            &format!("switchover and maintenance ({what})"),
            run,
            moved_at,
            &second,
        );
        assert!(
            report.errors().is_empty(),
            "{what}: client errors {:?}\n{}",
            report.error_summary(4),
            env.proxy_log()
        );
    }
    assert!(pages.contains(" stale=0 errors=0 "), "{pages}");
    eprintln!(
        "RUN galera statements of transactions that finished on the old writer: {}",
        env.proxy_log()
            .matches("open transaction finishes on the old writer")
            .count()
    );

    // SIGKILL of a node that is not the writer: nothing lost, no stale read, and no error
    // the proxy makes (reads in flight there run again elsewhere). The survivors must
    // evict the dead node before they commit again; under the sandbox's 1 s suspect
    // timeout on two busy cores they have been seen to suspect each other for a moment
    // too, and a commit then gets Galera's own 1180 or 1213: printed, allowed.
    let autocommit = ledger(&env, false);
    let proxy_port = env.proxy_port();
    let pages = std::thread::spawn(move || koha_pages(proxy_port, proxy_port, 8, 2));
    std::thread::sleep(Duration::from_secs(2));
    let reader = nodes
        .iter()
        .find(|n| **n != second)
        .expect("a reader")
        .clone();
    let killed_at = Instant::now();
    env.sb().kill(&reader, Signal::Kill).expect("kill a reader");
    let pages = pages.join().expect("koha_pages thread");
    env.sb().start(&reader).expect("restart the reader");
    env.sb()
        .wait_galera_synced(DEADLINE)
        .expect("three nodes Synced again");
    eprintln!("RUN galera Koha pages across a reader's death: {pages}");
    let report = verify(&env, "SIGKILL reader", autocommit, killed_at, &second);
    let galera_own = |code: &str| code.starts_with("ERROR 1180") || code.starts_with("ERROR 1213");
    assert!(
        report
            .error_summary(usize::MAX)
            .iter()
            .all(|(e, _)| galera_own(e)),
        "client errors at a reader's death: {:?}\n{}",
        report.error_summary(4),
        env.proxy_log()
    );
    assert!(pages.contains(" stale=0 "), "{pages}");
    let page_codes = pages
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("error_codes="))
        .unwrap_or("none");
    assert!(
        page_codes == "none"
            || page_codes
                .split(',')
                .all(|c| c.starts_with("1180:") || c.starts_with("1213:")),
        "{pages}"
    );
    // A transaction open on the writer when the writer moves finishes there: BEGIN and an
    // INSERT, SWITCHOVER, another INSERT and COMMIT on the same session, no error.
    let before = writer(&socket).0;
    let finished = {
        use mysql_async::prelude::Queryable;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let opts = Env::opts(env.proxy_port(), "koha", "koha", Some("koha"));
            let mut conn = mysql_async::Conn::new(opts).await.expect("connect");
            conn.query_drop("BEGIN").await.expect("begin");
            conn.query_drop("INSERT INTO g (v) VALUES (-3)")
                .await
                .expect("insert before the move");
            let moved = admin(&socket, "SWITCHOVER");
            eprintln!(
                "RUN galera SWITCHOVER with a transaction open: {}",
                moved.trim()
            );
            conn.query_drop("INSERT INTO g (v) VALUES (-4)")
                .await
                .expect("a statement of the open transaction after the move");
            conn.query_drop("COMMIT")
                .await
                .expect("the commit on the old writer");
            let n: Option<u64> = conn
                .query_first("SELECT COUNT(*) FROM g WHERE v IN (-3, -4)")
                .await
                .expect("count");
            n
        })
    };
    assert_eq!(finished, Some(2), "the transaction's rows");
    assert!(
        env.proxy_log()
            .contains("open transaction finishes on the old writer"),
        "{}",
        env.proxy_log()
    );
    assert_ne!(writer(&socket).0, before, "the writer moved");
    let first = writer(&socket).0.expect("a writer");

    // SIGKILL of the writer: writes move to another node, nothing acknowledged is lost.
    let run = ledger(&env, false);
    std::thread::sleep(Duration::from_secs(2));
    let fault = Instant::now();
    env.sb().kill(&first, Signal::Kill).expect("kill writer");
    wait_for("a new writer", DEADLINE, || {
        writer(&socket).0.is_some_and(|w| w != first)
    });
    std::thread::sleep(Duration::from_secs(2));
    let second = writer(&socket).0.expect("writer");
    verify(&env, "SIGKILL writer", run, fault, &second);
    wait_for("both proxies on the same writer", DEADLINE, || {
        writer(&peer.socket).0 == writer(&socket).0
    });

    // The killed node rejoins; the writer stays where it is (no failback by default).
    env.sb().start(&first).expect("restart the old writer");
    env.sb()
        .wait_galera_synced(DEADLINE)
        .expect("three nodes Synced again");
    std::thread::sleep(Duration::from_secs(2));
    // Sticky: the writer stays unless it stopped being usable, which a rejoin can cause
    // (the writer chosen as the joiner's donor, or survivors briefly suspecting each other
    // on two busy cores); the log then says why. Never back to the rejoined node.
    let now = writer(&socket).0.expect("a writer after the rejoin");
    assert_ne!(now, first, "the writer went back to the rejoined node");
    if now != second {
        let log = env.proxy_log();
        assert!(
            log.contains(&format!("Galera writer moved from {second} (")),
            "the writer left {second} with no reason logged:\n{log}"
        );
    }

    // A restarted proxy follows the recorded writer, not its own first choice.
    peer.start();
    wait_for("the restarted proxy to follow", DEADLINE, || {
        writer(&peer.socket).0 == writer(&socket).0
    });

    // SIGSTOP of the writer: the same.
    let run = ledger(&env, false);
    std::thread::sleep(Duration::from_secs(2));
    let fault = Instant::now();
    env.sb().kill(&second, Signal::Stop).expect("stop writer");
    wait_for("a new writer", DEADLINE, || {
        writer(&socket).0.is_some_and(|w| w != second)
    });
    std::thread::sleep(Duration::from_secs(2));
    let third = writer(&socket).0.expect("writer");
    verify(&env, "SIGSTOP writer", run, fault, &third);
    env.sb().kill(&second, Signal::Cont).expect("continue");
    // The continued node first reports the state it had when stopped, then finds it was
    // evicted and rejoins: wait past that, then for all three in one component.
    std::thread::sleep(Duration::from_secs(3));
    wait_for("three nodes Synced after SIGCONT", DEADLINE, || {
        admin(&socket, "SHOW SERVERS")
            .lines()
            .filter(|l| l.contains("Synced, Primary, size 3"))
            .count()
            == 3
    });

    // Two of three nodes gone: the last is non-Primary; writes are refused, clearly.
    let others: Vec<String> = env
        .sb()
        .servers()
        .iter()
        .map(|s| s.name.clone())
        .filter(|n| *n != third)
        .collect();
    for n in &others {
        env.sb().kill(n, Signal::Kill).expect("kill");
    }
    wait_for("the survivor to be non-Primary", DEADLINE, || {
        let servers = admin(&socket, "SHOW SERVERS");
        let survivor = servers
            .lines()
            .find(|l| l.starts_with(&format!("{third}\t")));
        survivor.is_some_and(|l| l.contains("non-Primary")) && writer(&socket).0.is_none()
    });
    let refused = write_error(env.proxy_port());
    if !refused.contains("no master available") {
        eprintln!(
            "{}\n{}\n{}",
            admin(&socket, "SHOW SERVERS"),
            admin(&socket, "SHOW TOPOLOGY"),
            env.proxy_log()
        );
    }
    assert!(refused.contains("no master available"), "{refused}");
    assert!(refused.contains("Primary"), "{refused}");
    let (_, refused_term) = writer(&socket);
    eprintln!("RUN galera non-Primary: writes refused with: {refused}");

    // The operator makes the survivor Primary again: writes resume on their own.
    env.sb()
        .sql(
            &third,
            "SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'",
        )
        .expect("bootstrap the survivor");
    wait_for("writes to resume", DEADLINE, || {
        through(env.proxy_port(), "INSERT INTO g (v) VALUES (-2)").is_ok()
    });
    assert!(writer(&socket).1 >= refused_term);
    for n in &others {
        env.sb().start(n).expect("restart");
    }
    env.sb()
        .wait_galera_synced(DEADLINE)
        .expect("three nodes Synced at the end");
    drop(peer);
    eprintln!(
        "galera end to end: {:.1} s",
        test_start.elapsed().as_secs_f64()
    );
}

/// The writer leaves the Primary component (isolated with `gmcast.isolate`): it answers
/// the statements sent to it in that moment with Galera's 1047, having run none of them.
/// The proxy sends each again once it follows the new writer: no client sees a 1047, and
/// nothing acknowledged is lost.
#[test]
fn statements_a_writer_cut_from_the_cluster_refuses_are_sent_again_elsewhere() {
    let env = Env::start_galera(3);
    let socket = env.sb().dir().join("admin.sock");
    wait_for("a writer", DEADLINE, || writer(&socket).0.is_some());
    let first = writer(&socket).0.expect("writer");
    let ledger = ledger(&env, false);
    std::thread::sleep(Duration::from_millis(1500));
    let fault = Instant::now();
    env.sb()
        .sql(
            &first,
            "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=1'",
        )
        .expect("isolate the writer");
    wait_for("another writer", DEADLINE, || {
        writer(&socket).0.is_some_and(|w| w != first)
    });
    std::thread::sleep(Duration::from_millis(1500));
    env.sb()
        .sql(
            &first,
            "SET GLOBAL wsrep_provider_options = 'gmcast.isolate=0'",
        )
        .expect("end the isolation");
    env.sb()
        .wait_galera_synced(DEADLINE)
        .expect("three nodes Synced again");
    let new = writer(&socket).0.expect("writer");
    let report = verify(&env, "writer isolated", ledger, fault, &new);
    let errors = report.error_summary(usize::MAX);
    assert!(
        !errors.iter().any(|(e, _)| e.contains("1047")),
        "a client saw the isolated writer's 1047: {errors:?}\n{}",
        env.proxy_log()
    );
    assert!(report.rto(fault).is_some(), "writes resumed");
}
