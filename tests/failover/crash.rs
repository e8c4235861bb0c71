//! Failover mechanics: crashed, hung and isolated masters, lagging and restarted
//! replicas, a no_promote replica holding the most, and two proxies promoting once.

use super::*;

/// Scenarios 1, 11 and 12: the master SIGKILLed under write load, three times in a row
/// (each time the current master), each old master restarted and rejoined. No
/// acknowledged write is lost, sessions never reconnect (the only client errors are for
/// statements in flight at the kill), and every server ends with the same rows.
#[test]
fn repeated_sigkill_of_the_master_loses_no_acknowledged_write() {
    let env = Env::start(2);
    let ledger = ledger(&env, 6);
    std::thread::sleep(Duration::from_millis(1500));
    let mut master = "db1".to_string();
    let mut faults = Vec::new();
    for round in 1..=3 {
        faults.push(Instant::now());
        env.sb()
            .kill(&master, Signal::Kill)
            .expect("SIGKILL master");
        let new = wait_new_master(&env, &master);
        eprintln!("round {round}: {master} killed, {new} promoted");
        std::thread::sleep(Duration::from_millis(1000));
        env.sb().start(&master).expect("restart the old master");
        wait_replica(&env, &master);
        master = new;
        std::thread::sleep(Duration::from_millis(1000));
    }
    let report = settle_and_verify(
        &env,
        "SIGKILL x3",
        ledger,
        &faults,
        &master,
        &["db1", "db2", "db3"],
    );
    assert_eq!(report.reconnects(), 0, "sessions had to reconnect");
    let codes = error_codes(&report);
    assert!(
        codes.iter().all(|c| *c == Some(1927)),
        "only statements in flight may fail: {:?}",
        report.error_summary(8)
    );
    for f in &faults {
        assert!(report.rto(*f).is_some(), "writes resumed after every fault");
    }
}

/// Scenario 4: a hung master (SIGSTOP) is replaced; when it wakes up, whatever it still
/// answers is never forwarded (no acknowledged write is missing from the new master), it
/// is fenced read-only, and it rejoins or is kept out as diverged.
#[test]
fn a_hung_master_is_replaced_and_fenced_when_it_wakes() {
    let env = Env::start(2);
    let ledger = ledger(&env, 6);
    std::thread::sleep(Duration::from_millis(1500));
    let fault = Instant::now();
    env.sb().kill("db1", Signal::Stop).expect("SIGSTOP db1");
    let new = wait_new_master(&env, "db1");
    std::thread::sleep(Duration::from_millis(1000));
    env.sb().kill("db1", Signal::Cont).expect("SIGCONT db1");
    let fate = wait_for("db1 fenced, then rejoined or kept out", || {
        let (role, read_only, note) = server_row(&env, "db1")?;
        let settled = read_only == "ON" && (role == "replica" || note.starts_with("diverged"));
        settled.then_some((role, note))
    });
    eprintln!("db1 after waking: {fate:?}");
    // A diverged db1 keeps extra transactions: compare only the servers that follow.
    let all: Vec<&str> = if fate.0 == "replica" {
        vec!["db1", "db2", "db3"]
    } else {
        vec!["db2", "db3"]
    };
    let report = settle_and_verify(&env, "SIGSTOP", ledger, &[fault], &new, &all);
    assert_eq!(report.reconnects(), 0, "sessions had to reconnect");
}

/// Scenarios 5 and 7, through TCP fault relays (no root needed): the proxy reaches db1
/// through relay P, the replicas through relay R. Cutting only P (the proxy is cut off,
/// the replicas still replicate) causes no failover. Cutting both isolates db1: the proxy
/// fails over; after healing, db1 is fenced and never routed to again.
#[test]
fn a_proxy_cut_off_alone_does_not_fail_over_but_an_isolated_master_does() {
    let mut proxy_relay = None;
    let env = Env::start_with(2, |text| {
        let at = text.find("name = \"db1\"").expect("db1 in config");
        let line = text[at..].find("address = \"").expect("address") + at;
        let start = line + "address = \"".len();
        let end = text[start..].find('"').expect("quote") + start;
        let relay = FaultRelay::start(&text[start..end]).expect("relay");
        text.replace_range(start..end, &relay.address());
        proxy_relay = Some(relay);
    });
    let proxy_relay = proxy_relay.expect("relay");
    let db1 = env.sb().server("db1").expect("db1").address();
    let replica_relay = FaultRelay::start(&db1).expect("replica relay");
    let change = format!(
        "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}; START SLAVE",
        replica_relay.port()
    );
    on_replicas(&env, &change);
    wait_replica(&env, "db2");
    wait_replica(&env, "db3");
    let ledger = ledger(&env, 4);
    std::thread::sleep(Duration::from_millis(1500));

    // Scenario 5: only the proxy loses db1.
    proxy_relay.cut();
    let seen = wait_for("the proxy sees db1 down and refuses to fail over", || {
        let out = admin(&env, "SHOW TOPOLOGY").ok()?;
        out.contains("still replicate from it").then_some(out)
    });
    eprintln!("{seen}");
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(
        writable_servers(env.sb()),
        vec!["db1".to_string()],
        "no failover"
    );
    proxy_relay.heal();
    wait_for("db1 the proxy's master again", || {
        (proxy_master(&env).as_deref() == Some("db1")).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1000));

    // Scenario 7: db1 isolated from everyone.
    let fault = Instant::now();
    proxy_relay.cut();
    replica_relay.cut();
    let new = wait_for("a new master while db1 is isolated", || {
        let m = proxy_master(&env)?;
        (m != "db1").then_some(m)
    });
    std::thread::sleep(Duration::from_millis(1500));
    proxy_relay.heal();
    replica_relay.heal();
    // A write db1 was committing when it was cut off waits for a semi-sync ack, then
    // commits asynchronously (rpl_semi_sync_master_timeout): db1 may well have diverged.
    let (role, note) = wait_for("db1 fenced, then rejoined or kept out", || {
        let (role, read_only, note) = server_row(&env, "db1")?;
        let settled = read_only == "ON" && (role == "replica" || note.starts_with("diverged"));
        settled.then_some((role, note))
    });
    eprintln!("db1 after the heal: {role} {note}");
    let all: Vec<&str> = if role == "replica" {
        vec!["db1", "db2", "db3"]
    } else {
        vec!["db2", "db3"]
    };
    settle_and_verify(&env, "isolated master", ledger, &[fault], &new, &all);
    assert_ne!(proxy_master(&env).as_deref(), Some("db1"));
}

/// Scenario 2: both replicas' SQL threads stopped (they receive but do not apply), then
/// the master dies: the candidate applies its relay log before it is promoted, and no
/// acknowledged write is lost.
#[test]
fn lagging_replicas_apply_their_relay_log_before_promotion() {
    let env = Env::start(2);
    let ledger = ledger(&env, 4);
    std::thread::sleep(Duration::from_millis(800));
    on_replicas(&env, "STOP SLAVE SQL_THREAD");
    std::thread::sleep(Duration::from_millis(2000));
    let fault = Instant::now();
    env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
    let new = wait_new_master(&env, "db1");
    let other = other_replica(&new);
    // The other replica was re-pointed with its SQL thread stopped: START SLAVE ran.
    wait_replica(&env, other);
    std::thread::sleep(Duration::from_millis(1000));
    settle_and_verify(
        &env,
        "lagging replicas",
        ledger,
        &[fault],
        &new,
        &["db2", "db3"],
    );
}

/// Scenario 3: the replica that received the most may not be promoted (`no_promote`),
/// and the one that may is behind (its IO thread was stopped while the other
/// acknowledged). The promotable one first catches up from the other, then is promoted:
/// no acknowledged write is lost, and the other follows it.
#[test]
fn a_promotable_replica_catches_up_from_a_no_promote_one_that_has_more() {
    let env = Env::start_with(2, |text| {
        *text = text.replace("name = \"db3\"\n", "name = \"db3\"\nno_promote = true\n");
    });
    let ledger = ledger(&env, 4);
    std::thread::sleep(Duration::from_millis(1000));
    env.sb()
        .sql("db2", "STOP SLAVE IO_THREAD")
        .expect("db2 stops receiving");
    std::thread::sleep(Duration::from_millis(1500));
    let fault = Instant::now();
    env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
    env.sb()
        .sql("db2", "START SLAVE IO_THREAD")
        .expect("db2 tries to receive again");
    let new = wait_logged(&env, "a new master", || {
        routed_master(&env).filter(|m| m != "db1")
    });
    assert_eq!(new, "db2", "only db2 may be promoted");
    let log = env.proxy_log();
    assert!(
        log.contains("caught up from a replica that may not be promoted"),
        "db2 caught up from db3 first:\n{log}"
    );
    wait_replica(&env, "db3");
    std::thread::sleep(Duration::from_millis(1000));
    let report = settle_and_verify(
        &env,
        "catch up from a no_promote replica",
        ledger,
        &[fault],
        "db2",
        &["db2", "db3"],
    );
    assert!(report.rto(fault).is_some(), "writes resumed");
}

/// Scenario 9: a replica killed and restarted under load (its relay log is discarded by
/// `relay_log_recovery` and fetched again), then the master SIGKILLed while that replica
/// is still catching up: the other replica, which acknowledged meanwhile, has every
/// acknowledged write, and the choice falls on whichever has received the most.
#[test]
fn a_replica_restart_then_a_master_crash_loses_no_acknowledged_write() {
    let env = Env::start(2);
    let ledger = ledger(&env, 6);
    std::thread::sleep(Duration::from_millis(1500));
    env.sb().kill("db2", Signal::Kill).expect("SIGKILL db2");
    env.sb().start("db2").expect("restart db2");
    let fault = Instant::now();
    env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
    let new = wait_new_master(&env, "db1");
    eprintln!("db2 restarted, db1 killed: {new} promoted");
    std::thread::sleep(Duration::from_millis(1000));
    env.sb().start("db1").expect("restart db1");
    wait_replica(&env, "db1");
    let other = other_replica(&new);
    wait_replica(&env, other);
    std::thread::sleep(Duration::from_millis(1000));
    let report = settle_and_verify(
        &env,
        "replica restart, then master crash",
        ledger,
        &[fault],
        &new,
        &["db1", "db2", "db3"],
    );
    assert!(report.rto(fault).is_some(), "writes resumed");
}

/// Scenario 14: two proxies watch the same cluster; the master dies; exactly one of them
/// promotes, the other follows, and writes through both land on the one new master.
#[test]
fn two_proxies_promote_once() {
    let env = Env::start(2);
    let (second_path, port) = second_proxy_config(&env, "");
    let second_log = env.sb().dir().join("proxy2.log");
    let _proxy2 = spawn_proxy(&second_path, second_log.clone(), port);

    let first_ledger = ledger(&env, 3);
    let second_ledger = second_ledger(port, 3);
    std::thread::sleep(Duration::from_millis(1500));
    let fault = Instant::now();
    env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
    let new = wait_new_master(&env, "db1");
    let socket2 = env.sb().dir().join("admin2.sock");
    wait_for("the second proxy follows the new master", || {
        let out = kohaproxy_faults::admin(&socket2, "SHOW TOPOLOGY").ok()?;
        out.starts_with(&format!("{new}\t")).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let second_report = second_ledger.stop_and_join().expect("second ledger");
    let report = settle_and_verify(
        &env,
        "two proxies",
        first_ledger,
        &[fault],
        &new,
        &["db2", "db3"],
    );
    let verdict = verify_blocking(&second_report, direct(&env, &new)).expect("verify");
    eprintln!(
        "RUN two proxies (second): RTO {:?}, lost {}, errors {}",
        second_report.rto(fault),
        verdict.lost.len(),
        second_report.errors().len()
    );
    assert!(verdict.lost.is_empty(), "{verdict}");
    assert!(report.rto(fault).is_some() && second_report.rto(fault).is_some());
    for r in [&report, &second_report] {
        assert_eq!(r.reconnects(), 0);
        assert!(
            error_codes(r).iter().all(|c| *c == Some(1927)),
            "{:?}",
            r.error_summary(8)
        );
    }
    let first_log = env.proxy_log();
    let second_log = std::fs::read_to_string(&second_log).unwrap_or_default();
    let promoted = first_log.matches(" promoted from=").count()
        + second_log.matches(" promoted from=").count();
    assert_eq!(
        promoted, 1,
        "exactly one promotion:\n{first_log}\n---\n{second_log}"
    );
}
