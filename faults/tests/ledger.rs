//! The write ledger and the cluster verdicts against a real sandbox (master + 1 replica),
//! without the proxy: a clean run, transactions, server errors (read_only) that must not
//! cost the connection, a SIGKILLed master, and a FaultRelay cut and blackhole.
use std::time::{Duration, Instant};

use kohaproxy_faults::{
    checksums_equal, gtid_current_pos, verify_blocking, wait_converged, writable_servers,
    FaultRelay, Ledger, LedgerOptions, LedgerReport, Outcome,
};
use kohaproxy_sandbox::{Sandbox, SandboxGuard, Signal, UpOptions};
use mysql_async::Opts;

fn sandbox() -> (tempfile::TempDir, SandboxGuard) {
    let dir = tempfile::Builder::new()
        .prefix("kpf")
        .tempdir_in("/tmp")
        .unwrap();
    let mut opts = UpOptions::new(dir.path().join("sb"));
    opts.replicas = 1;
    let sb = SandboxGuard(Sandbox::up(&opts).unwrap());
    (dir, sb)
}

/// The application user, straight to one server.
fn koha(port: u16) -> Opts {
    Opts::from_url(&format!("mysql://koha:koha@127.0.0.1:{port}")).unwrap()
}

fn options(port: u16, clients: usize, secs: f64) -> LedgerOptions {
    let mut o = LedgerOptions::new(koha(port));
    o.clients = clients;
    o.duration = Duration::from_secs_f64(secs);
    o
}

fn port(sb: &Sandbox, name: &str) -> u16 {
    sb.server(name).unwrap().port
}

fn codes(report: &LedgerReport) -> Vec<Option<u16>> {
    let mut c: Vec<Option<u16>> = report
        .errors()
        .iter()
        .filter_map(|a| match &a.outcome {
            Outcome::Failed { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    c.dedup();
    c
}

#[test]
fn clean_runs_transactions_and_server_errors() {
    let (_dir, sb) = sandbox();
    let master = port(&sb, "db1");

    // A clean run: nothing fails, nothing is lost, on the master and on the replica.
    let report = Ledger::run_blocking(options(master, 4, 2.0)).unwrap();
    eprintln!("{report}");
    assert!(report.errors().is_empty(), "{report}");
    assert!(report.acked().len() > 100, "{report}");
    assert_eq!(report.clients.len(), 4);
    assert_eq!(report.reconnects(), 0);
    assert!(
        report.write_pause() < Duration::from_millis(3000),
        "{report}"
    );
    let verdict = verify_blocking(&report, koha(master)).unwrap();
    assert!(verdict.is_clean(), "{verdict}");
    assert_eq!(verdict.acked, report.acked().len());
    assert_eq!(verdict.unacked_present + verdict.unacked_absent, 0);
    assert_eq!(writable_servers(&sb), vec!["db1".to_string()]);
    let pos = wait_converged(&sb, &["db1", "db2"], Duration::from_secs(10)).unwrap();
    assert_eq!(gtid_current_pos(&sb, "db2").unwrap(), pos);
    assert!(checksums_equal(&sb, &["db1", "db2"], "koha_ledger.acks").unwrap());
    let on_replica = verify_blocking(&report, koha(port(&sb, "db2"))).unwrap();
    assert!(on_replica.is_clean(), "{on_replica}");

    // Transactions: two rows per attempt, later client ids, no torn transaction.
    let mut o = options(master, 2, 1.0);
    o.transactions = true;
    let tx = Ledger::run_blocking(o).unwrap();
    assert!(tx.errors().is_empty(), "{tx}");
    assert_eq!(
        tx.clients.iter().map(|c| c.client).collect::<Vec<_>>(),
        vec![5, 6],
        "client ids follow the previous run's"
    );
    assert!(tx.attempts.iter().all(|a| a.rows == 2));
    let verdict = verify_blocking(&tx, koha(master)).unwrap();
    assert!(verdict.is_clean(), "{verdict}");
    assert_eq!(verdict.acked, 2 * tx.acked_attempts());

    // Server errors (read_only): the clients keep their connections and resume on them.
    let ledger = Ledger::spawn(options(master, 3, 2.5));
    std::thread::sleep(Duration::from_millis(700));
    sb.sql("db1", "SET GLOBAL read_only = 1").unwrap();
    let fault = Instant::now(); // in force from here on
    std::thread::sleep(Duration::from_millis(800));
    sb.sql("db1", "SET GLOBAL read_only = 0").unwrap();
    let healed = Instant::now();
    let report = ledger.join().unwrap();
    eprintln!("{report}");
    assert_eq!(codes(&report), vec![Some(1290)], "{report}");
    assert_eq!(report.reconnects(), 0, "{report}");
    assert!(report.attempts.iter().all(|a| a.connection == 0));
    assert!(report
        .attempts_since(healed)
        .all(|a| a.outcome == Outcome::Acked));
    let rto = report.rto(fault).unwrap();
    assert!(
        rto >= Duration::from_millis(600) && rto <= healed - fault + Duration::from_millis(2000),
        "rto {rto:?}, read-only for {:?}",
        healed - fault
    );
    assert!(
        report.write_pause() >= Duration::from_millis(600),
        "{report}"
    );
    let verdict = verify_blocking(&report, koha(master)).unwrap();
    assert!(verdict.is_clean(), "{verdict}");
    assert!(verdict.unacked_absent > 0, "{verdict}");
    assert_eq!(verdict.unacked_present, 0, "{verdict}");
}

#[test]
fn sigkill_of_the_master_mid_run() {
    let (_dir, sb) = sandbox();
    let master = port(&sb, "db1");
    let mut o = options(master, 4, 30.0);
    o.connect_timeout = Duration::from_secs(1);
    let ledger = Ledger::spawn(o);
    std::thread::sleep(Duration::from_millis(1000));
    let killing = Instant::now();
    sb.kill("db1", Signal::Kill).unwrap();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_millis(700));
    let report = ledger.stop_and_join().unwrap();
    eprintln!("{report}");

    assert!(report
        .attempts
        .iter()
        .any(|a| a.invoked < killing && a.outcome.is_acked()));
    assert!(!report.errors().is_empty(), "the kill must show");
    assert!(
        report.attempts_since(killed).all(|a| !a.outcome.is_acked()),
        "nothing can be acknowledged once the master is dead"
    );
    // Broken connections, not server errors; nobody could reconnect.
    assert!(report
        .errors()
        .iter()
        .all(|a| matches!(a.outcome, Outcome::Failed { code: None, .. })));
    assert!(report.clients.iter().all(|c| c.connect_failures > 0));
    assert_eq!(report.reconnects(), 0);
    assert_eq!(report.rto(killed), None);
    assert!(
        report.write_pause() >= Duration::from_millis(600),
        "{report}"
    );
    assert!(report.longest_gap(killed) >= Duration::from_millis(600));

    // Semi-sync AFTER_SYNC: every acknowledged row reached the replica (the candidate
    // master) before the client saw its OK. Its SQL thread may still be applying the
    // relay log, so poll briefly.
    let deadline = Instant::now() + Duration::from_secs(15);
    let verdict = loop {
        let v = verify_blocking(&report, koha(port(&sb, "db2"))).unwrap();
        if v.is_clean() || Instant::now() >= deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("db2: {verdict}");
    assert!(verdict.is_clean(), "db2: {verdict}");
    assert_eq!(verdict.acked, report.acked().len());
    assert_eq!(writable_servers(&sb), Vec::<String>::new());
}

#[test]
fn ledger_through_a_fault_relay() {
    let (_dir, sb) = sandbox();
    let master = port(&sb, "db1");
    let relay = FaultRelay::start(&format!("127.0.0.1:{master}")).unwrap();
    let mut o = options(relay.port(), 3, 30.0);
    o.statement_timeout = Duration::from_millis(400);
    o.connect_timeout = Duration::from_millis(400);
    let timeout_margin = o.statement_timeout + Duration::from_millis(200);
    let ledger = Ledger::spawn(o);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(relay.connections(), 3);

    // A cut breaks every connection; the clients reconnect once it heals.
    let cut = Instant::now();
    relay.cut();
    std::thread::sleep(Duration::from_millis(500));
    let healed = Instant::now();
    relay.heal();
    std::thread::sleep(Duration::from_millis(700));

    // A blackhole: statements time out, connections are replaced after heal.
    let blackholed = Instant::now();
    relay.blackhole();
    std::thread::sleep(Duration::from_millis(1000));
    let healed_again = Instant::now();
    relay.heal();
    std::thread::sleep(Duration::from_millis(1000));
    let report = ledger.stop_and_join().unwrap();
    eprintln!("{report}");

    // Attempts wholly inside an outage: started after it began, ended before it healed.
    // (An attempt started just before may still be acknowledged late on a loaded
    // machine, and one still pending at a heal may be acknowledged after it.)
    let during = |from: Instant, to: Instant| {
        report
            .attempts
            .iter()
            .filter(move |a| a.invoked >= from && a.completed <= to)
    };
    assert!(during(cut + Duration::from_millis(50), healed).all(|a| !a.outcome.is_acked()));
    assert!(
        during(blackholed + Duration::from_millis(50), healed_again).all(|a| !a.outcome.is_acked())
    );
    // The blackhole times statements out: one that was sent just before it began counts
    // too (on a loaded machine every client may have had one in flight then).
    assert!(
        report
            .attempts
            .iter()
            .any(|a| a.outcome == Outcome::TimedOut
                && a.completed > blackholed
                && a.completed <= healed_again + timeout_margin),
        "{report:?}"
    );
    let rto = report.rto(cut).unwrap();
    assert!(rto >= healed - cut, "rto {rto:?}");
    let rto = report.rto(blackholed).unwrap();
    assert!(rto >= healed_again - blackholed, "rto {rto:?}");
    // One reconnect after the cut, at least one after the blackhole's timeouts.
    assert!(
        report.clients.iter().all(|c| c.reconnects >= 2),
        "{report:?}"
    );
    assert!(report
        .attempts_since(healed_again + Duration::from_millis(500))
        .any(|a| a.outcome.is_acked()));

    drop(relay);
    let verdict = verify_blocking(&report, koha(master)).unwrap();
    eprintln!("{verdict}");
    assert!(verdict.is_clean(), "{verdict}");
}
