//! Failover, switchover, fencing and rejoin against a real sandbox (a master and two
//! replicas, semi-synchronous AFTER_SYNC) with the real proxy, under write load.
//!
//! Every test runs the write ledger of `kohaproxy-faults` through the proxy: client
//! sessions insert `(client, seq)` rows continuously and record every write that got an
//! OK. Faults are injected with the sandbox (SIGKILL, SIGSTOP) and TCP fault relays (a
//! cut link). After the cluster settles, every acknowledged row must be on the master
//! and exactly one server is writable. Each run prints its RTO (fault to the first
//! acknowledged write started after it), acknowledged writes lost, client errors and the
//! writable servers. Scenario numbers refer to ../shared/research/failover.md section 8.
//!
//! The proxy runs with the default monitor settings (500 ms probes, 3 failures).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::failover::*;
use common::{spawn_proxy, Env};
use kohaproxy_faults::{verify_blocking, wait_converged, writable_servers, FaultRelay};
use kohaproxy_sandbox::Signal;

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

/// Scenario 10: SWITCHOVER TO db2 and back (SWITCHOVER picks the best replica) under write
/// load: no client error, nothing lost, the old master replicates from the new one.
#[test]
fn switchover_under_load_shows_clients_no_error() {
    let env = Env::start(2);
    let ledger = ledger(&env, 6);
    std::thread::sleep(Duration::from_millis(1500));
    let first = Instant::now();
    let done = admin(&env, "SWITCHOVER TO db2").expect("switchover to db2");
    eprintln!("{done}");
    assert_eq!(proxy_master(&env).as_deref(), Some("db2"));
    wait_replica(&env, "db1");
    std::thread::sleep(Duration::from_millis(1500));
    let second = Instant::now();
    let done = admin(&env, "SWITCHOVER").expect("switchover to the best replica");
    eprintln!("{done}");
    let back = proxy_master(&env).expect("a master");
    assert_ne!(back, "db2");
    wait_replica(&env, "db2");
    std::thread::sleep(Duration::from_millis(1000));
    let report = settle_and_verify(
        &env,
        "switchover x2",
        ledger,
        &[first, second],
        &back,
        &["db1", "db2", "db3"],
    );
    assert!(
        report.errors().is_empty(),
        "clients saw errors: {:?}",
        report.error_summary(8)
    );
    assert_eq!(report.reconnects(), 0);
    // Errors the admin gets, not clients.
    let e = admin(&env, "SWITCHOVER TO nosuch").unwrap_err();
    assert!(e.contains("no server is called nosuch"), "{e}");
    let e = admin(&env, "FAILOVER").unwrap_err();
    assert!(e.contains("is up: use SWITCHOVER"), "{e}");
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

/// A master with a transaction no replica has (written directly while replication was
/// stopped) goes away; after the failover it comes back and is kept out as diverged, with
/// the extra GTID shown, read-only and not replicating. `durability = "unmanaged"`: under
/// the default the direct write would wait for a replica to receive it. Then `REBUILD`
/// replaces its data by a backup (taken for it, from the healthy replica): it replicates
/// from the new master, the extra transaction is gone, and every server converges.
#[test]
fn a_diverged_old_master_is_kept_out_until_rebuilt() {
    let env = Env::start_with(2, |text| {
        *text = text.replace("[monitor]\n", "[monitor]\ndurability = \"unmanaged\"\n");
    });
    env.sb()
        .sql(
            "db1",
            "CREATE DATABASE koha_extra; CREATE TABLE koha_extra.t (id INT PRIMARY KEY)",
        )
        .expect("schema");
    env.sb()
        .wait_replication(Duration::from_secs(20))
        .expect("replicated");
    on_replicas(&env, "STOP SLAVE");
    env.sb()
        .sql("db1", "INSERT INTO koha_extra.t VALUES (1)")
        .expect("a write only db1 has");
    // A clean shutdown: a crash would let --init-rpl-role=SLAVE roll back that
    // transaction on restart (it is in the binlog but its commit was never made durable
    // in InnoDB), which is exactly what keeps a crashed master rejoinable.
    env.sb().kill("db1", Signal::Term).expect("SIGTERM db1");
    on_replicas(&env, "START SLAVE");
    let new = wait_new_master(&env, "db1");
    wait_for("db1 stopped and started again", || {
        env.sb().start("db1").ok()
    });
    let note = wait_for("db1 kept out as diverged", || {
        let (role, read_only, note) = server_row(&env, "db1")?;
        (note.starts_with("diverged") && read_only == "ON" && role != "replica").then_some(note)
    });
    eprintln!("{note}");
    assert!(note.contains("0-1-"), "the extra GTID is shown: {note}");
    assert_eq!(writable_servers(env.sb()), vec![new.clone()]);
    let log = env.proxy_log();
    assert!(log.contains("diverged"), "the log says so");

    assert!(
        admin(&env, "REBUILD db2").is_err_and(|e| e.contains("master")) || new != "db2",
        "the master is never rebuilt"
    );
    let said = admin(&env, "REBUILD db1").expect("REBUILD db1");
    assert!(said.contains("rebuilding db1 (diverged)"), "{said}");
    wait_logged(&env, "db1 rebuilt and replicating", || {
        let (role, _, note) = server_row(&env, "db1")?;
        (role == "replica" && !note.starts_with("diverged")).then_some(())
    });
    let extra = env
        .sb()
        .sql("db1", "SELECT COUNT(*) FROM koha_extra.t")
        .expect("db1 answers");
    assert_eq!(extra.trim(), "0", "the diverged write is gone from db1");
    env.sb()
        .sql(&new, "INSERT INTO koha_extra.t VALUES (2)")
        .expect("a write on the master");
    let all = ["db1", "db2", "db3"];
    wait_converged(env.sb(), &all, DEADLINE).expect("every server converges");
    let log = env.proxy_log();
    assert!(
        log.contains("db1 rebuilt from backup"),
        "the log says it is done:\n{log}"
    );
    // What only db1 had is kept: its last binlog files, raw, beside a note.
    let saved = env.sb().dir().join("backups").join(".diverged");
    let kept: Vec<_> = std::fs::read_dir(&saved)
        .expect("the saved binlogs' directory")
        .flatten()
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let files: Vec<String> = std::fs::read_dir(kept[0].path())
        .expect("saved")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|f| f.starts_with("mysql-bin.")),
        "{files:?}"
    );
    let note = std::fs::read_to_string(kept[0].path().join("diverged.txt")).expect("note");
    assert!(note.contains("0-1-"), "{note}");
}

/// The master SIGKILLed and started again at once, before the proxy would fail over
/// (`fail_count = 40`: 20 s), five times under write load. With `--init-rpl-role=SLAVE`,
/// crash recovery removes the binlogged transactions whose InnoDB commit was not yet
/// durable, acknowledged ones included (semi-sync AFTER_SYNC: a replica has them). No
/// acknowledged write may be lost for that.
#[test]
fn a_master_restarted_at_once_after_a_crash_loses_no_acknowledged_write() {
    let env = Env::start_with(2, |text| {
        *text = text.replace("[monitor]\n", "[monitor]\nfail_count = 40\n");
    });
    let ledger = ledger(&env, 6);
    std::thread::sleep(Duration::from_millis(1500));
    let mut faults = Vec::new();
    for round in 1..=5 {
        let master = proxy_master(&env).expect("a master");
        faults.push(Instant::now());
        env.sb()
            .kill(&master, Signal::Kill)
            .expect("SIGKILL master");
        env.sb().start(&master).expect("restart it");
        let now = wait_logged(&env, &format!("round {round}: a writable master"), || {
            routed_master(&env)
        });
        eprintln!("round {round}: {master} killed and restarted; master now {now}");
        std::thread::sleep(Duration::from_millis(1500));
    }
    let master = proxy_master(&env).expect("a master");
    let report = settle_and_verify(
        &env,
        "master restarted at once x5",
        ledger,
        &faults,
        &master,
        &["db1", "db2", "db3"],
    );
    for f in &faults {
        assert!(report.rto(*f).is_some(), "writes resumed after every fault");
    }
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

/// Scenario 8, a double fault: the master and the only replica acknowledging (db3 and
/// db4 have stopped replicating) are SIGKILLed together. Four servers, so that the two
/// left are a majority of the three others and may lock the topology (with three, the
/// failover waits for that lock instead). db3 and db4 lack acknowledged writes, so the
/// failover is refused with that reason and writes wait; when the two servers come back
/// the cluster has one master again and every acknowledged write is there. (The
/// replica's relay log tail is discarded at its restart, but the master kept them: with
/// `innodb_flush_log_at_trx_commit=3` its `--init-rpl-role=SLAVE` recovery rolls back
/// only commits no client was told of. With 1 it rolled back about one acknowledged
/// write in 1,500.)
#[test]
fn a_double_fault_is_refused_until_a_server_with_the_writes_returns() {
    let env = Env::start(3);
    for r in ["db3", "db4"] {
        env.sb().sql(r, "STOP SLAVE").expect("stop replicating");
    }
    let ledger = ledger(&env, 4);
    std::thread::sleep(Duration::from_millis(1500));
    let fault = Instant::now();
    env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
    env.sb().kill("db2", Signal::Kill).expect("SIGKILL db2");
    for r in ["db3", "db4"] {
        env.sb().sql(r, "START SLAVE").expect("replicate again");
    }
    let refused = wait_for("the failover refused", || {
        let out = admin(&env, "SHOW TOPOLOGY").ok()?;
        out.contains("has every acknowledged write").then_some(out)
    });
    eprintln!("{}", refused.trim());
    assert!(refused.contains("acknowledged"), "{refused}");
    assert!(
        writable_servers(env.sb()).is_empty(),
        "db3 was not promoted"
    );
    env.sb().start("db2").expect("restart db2");
    env.sb().start("db1").expect("restart db1");
    let master = wait_logged(&env, "one writable master again", || routed_master(&env));
    std::thread::sleep(Duration::from_millis(1500));
    let report = ledger.stop_and_join().expect("ledger");
    let all = ["db1", "db2", "db3", "db4"];
    let position = wait_converged(env.sb(), &all, DEADLINE).expect("servers converge");
    let verdict = verify_blocking(&report, direct(&env, &master)).expect("verify");
    eprintln!(
        "RUN double fault: master {master}, RTO {:?}, {verdict}, position {position}",
        report.rto(fault)
    );
    assert!(report.rto(fault).is_some(), "writes resumed");
    assert_eq!(writable_servers(env.sb()), vec![master]);
    assert!(verdict.lost.is_empty(), "{verdict}");
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

/// A session keeps its socket and its state across a failover: schema, character set,
/// sql_mode, time zone and user variables are the same on the new master; an open
/// transaction is reported rolled back (1213) and the session goes on; a session holding
/// a temporary table is told it lost it and closed. `SET SERVER ... MAINTENANCE` takes a
/// replica out of read rotation.
#[test]
fn sessions_keep_their_state_across_a_failover() {
    use mysql_async::prelude::Queryable;
    let env = Env::start(2);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut plain = mysql_async::Conn::new(env.proxy_opts())
            .await
            .expect("connect");
        let setup = "CREATE TABLE IF NOT EXISTS koha.fo (id INT PRIMARY KEY, v VARCHAR(20))";
        plain.query_drop(setup).await.expect("table");
        for sql in [
            "SET NAMES latin1 COLLATE latin1_german1_ci",
            "SET sql_mode = 'ANSI_QUOTES'",
            "SET time_zone = '+03:00'",
            "SET @who = 'patron 42'",
            "CREATE DATABASE IF NOT EXISTS test_fo",
            "USE test_fo",
        ] {
            plain.query_drop(sql).await.expect(sql);
        }
        let mut txn = mysql_async::Conn::new(env.proxy_opts())
            .await
            .expect("connect");
        txn.query_drop("BEGIN").await.expect("begin");
        txn.query_drop("INSERT INTO koha.fo VALUES (1, 'in a transaction')")
            .await
            .expect("insert");
        let mut temp = mysql_async::Conn::new(env.proxy_opts())
            .await
            .expect("connect");
        temp.query_drop("CREATE TEMPORARY TABLE koha.scratch (i INT)")
            .await
            .expect("temporary table");

        // Maintenance takes a replica out of read rotation.
        let drained = admin(&env, "SET SERVER db2 MAINTENANCE").expect("maintenance");
        assert!(
            drained.contains("no statement of this proxy runs there any more"),
            "{drained}"
        );
        let id_of = |name: &str| env.sb().server(name).map(|s| s.server_id);
        let mut served = Vec::new();
        for _ in 0..10 {
            let id: Option<u32> = plain.query_first("SELECT @@server_id").await.expect("read");
            served.push(id);
        }
        assert!(
            !served.contains(&id_of("db2")),
            "db2 is in maintenance: {served:?}"
        );
        assert!(
            served.contains(&id_of("db3")),
            "reads still go to db3: {served:?}"
        );
        admin(&env, "SET SERVER db2 ONLINE").expect("online");

        let before: Option<(String, String, String, String, String)> = plain
            .query_first(
                "SELECT @@collation_connection, @@sql_mode, @@time_zone, @who, \
                 COALESCE(DATABASE(), 'none') /* kohaproxy:master */",
            )
            .await
            .expect("state before");
        env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
        let new = wait_new_master(&env, "db1");
        let after: Option<(String, String, String, String, String)> = plain
            .query_first(
                "SELECT @@collation_connection, @@sql_mode, @@time_zone, @who, \
                 COALESCE(DATABASE(), 'none') /* kohaproxy:master */",
            )
            .await
            .expect("the same session answers after the failover");
        assert_eq!(before, after, "the session's state followed it to {new}");
        let id: Option<u32> = plain
            .query_first("SELECT @@server_id /* kohaproxy:master */")
            .await
            .expect("server id");
        assert_eq!(id, env.sb().server(&new).map(|s| s.server_id));
        plain
            .query_drop("INSERT INTO koha.fo VALUES (2, 'after')")
            .await
            .expect("a write on the new master");

        let err = txn
            .query_drop("INSERT INTO koha.fo VALUES (3, 'same transaction')")
            .await
            .expect_err("the transaction was lost");
        match err {
            mysql_async::Error::Server(e) => assert_eq!(e.code, 1213, "{}", e.message),
            other => panic!("expected a server error, got {other}"),
        }
        txn.query_drop("ROLLBACK").await.expect("rollback answers");
        txn.query_drop("INSERT INTO koha.fo VALUES (4, 'next transaction')")
            .await
            .expect("the session goes on");

        let err = temp
            .query_drop("INSERT INTO koha.scratch VALUES (1)")
            .await
            .expect_err("the temporary table is gone");
        eprintln!("session with a temporary table: {err}");
        assert!(
            temp.query_drop("SELECT 1").await.is_err(),
            "that session was closed"
        );

        let rows: Vec<(u32, String)> = plain
            .query("SELECT id, v FROM koha.fo ORDER BY id /* kohaproxy:master */")
            .await
            .expect("rows");
        let ids: Vec<u32> = rows.iter().map(|r| r.0).collect();
        assert_eq!(ids, vec![2, 4], "the lost transaction's row is not there");
        // The console shows the sessions on the new master and nothing left on db1.
        let sessions = admin(&env, "SHOW SESSIONS").expect("sessions");
        for line in sessions.lines() {
            let backends = line.split('\t').nth(3).unwrap_or("");
            assert!(!backends.split(',').any(|b| b == "db1"), "{sessions}");
        }
        let servers = admin(&env, "SHOW SERVERS").expect("servers");
        let db1 = servers
            .lines()
            .find(|l| l.starts_with("db1\t"))
            .expect("db1 row");
        assert_eq!(
            db1.split('\t').nth(8),
            Some("0"),
            "db1 connections: {servers}"
        );
        let _ = plain.disconnect().await;
        let _ = txn.disconnect().await;
    });
}

/// Koha's own client stack through a failover: one DBD::mysql connection (no
/// auto-reconnect) doing checkout transactions while the master is killed. The same
/// connection goes on, Koha's sql_mode and character set are still in force, and every
/// checkout whose commit succeeded is on the new master.
#[test]
fn a_koha_dbi_connection_survives_a_failover() {
    let env = Env::start(2);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/perl/koha_failover.pl");
    let child = Command::new("perl")
        .arg(&script)
        .args([env.proxy_port().to_string(), "6".into()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot run perl");
    std::thread::sleep(Duration::from_millis(2000));
    env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
    let new = wait_new_master(&env, "db1");
    let out = child.wait_with_output().expect("perl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "perl failed: {stderr}");
    eprintln!("{stderr}");
    let acked: Vec<u32> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("acked ")?.parse().ok())
        .collect();
    let value = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key).map(str::trim).map(String::from))
            .unwrap_or_default()
    };
    eprintln!(
        "RUN DBD::mysql: {} checkouts acknowledged, errors {}, connection id changes {}",
        acked.len(),
        value("errors "),
        value("connection_id_changes ")
    );
    assert!(
        value("sql_mode ").contains("NO_ENGINE_SUBSTITUTION"),
        "{stdout}"
    );
    assert_eq!(value("charset "), "utf8mb4");
    assert!(acked.len() > 10, "{stdout}");
    let on_master = env
        .sb()
        .sql(&new, "SELECT id FROM koha.kp_fo_issues ORDER BY id")
        .expect("read the new master");
    let present: std::collections::HashSet<u32> = on_master
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let lost: Vec<&u32> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(lost.is_empty(), "acknowledged checkouts lost: {lost:?}");
}

/// Scenario 6b under `durability = "replicated"` (the default): no replica receives (both
/// IO threads stopped), so the master's commits wait for an ack that does not come: none
/// is acknowledged, and SHOW SERVERS says why. Then the master crashes: the replicas hold
/// everything it acknowledged, so one is promoted at once, the held commits' clients get
/// an error, and no acknowledged write is lost.
#[test]
fn under_replicated_durability_no_write_is_acknowledged_without_a_replica() {
    let env = Env::start(2);
    let ledger = ledger(&env, 4);
    std::thread::sleep(Duration::from_millis(1500));
    on_replicas(&env, "STOP SLAVE IO_THREAD");
    let stopped = Instant::now();
    let note = wait_logged(&env, "the master's note says commits wait", || {
        let (_, _, note) = server_row(&env, "db1")?;
        note.contains("no replica is connected").then_some(note)
    });
    eprintln!("db1: {note}");
    std::thread::sleep(Duration::from_millis(3000));
    let fault = Instant::now();
    env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
    let new = wait_promoted_from_db1(&env);
    let report = settle_and_verify(
        &env,
        "durability replicated, no replica receiving, then a crash",
        ledger,
        &[fault],
        &new,
        &["db2", "db3"],
    );
    // A commit that began once no replica received was never acknowledged.
    let late = report
        .attempts
        .iter()
        .filter(|a| {
            a.outcome.is_acked()
                && a.invoked > stopped + Duration::from_millis(200)
                && a.completed < fault
        })
        .count();
    assert_eq!(late, 0, "writes acknowledged with no replica receiving");
    let codes = error_codes(&report);
    eprintln!("client error codes: {codes:?}");
    assert!(
        codes.contains(&Some(1927)),
        "held commits failed: {codes:?}"
    );
    assert!(report.rto(fault).is_some(), "writes resumed on {new}");
}

/// The master SIGKILLed and started again at once (`fail_count = 40`: no failover) while
/// no replica receives: kohaproxy makes it writable again, and under `durability =
/// "replicated"` it first gives it the master's semi-sync settings. The restarted server
/// has its command line's (a replica's: no wait without replicas), under which its first
/// commits were acknowledged with no replica having them (the chaos soak lost two that
/// way). No write is acknowledged until a replica receives again; none is lost.
#[test]
fn a_master_restarted_while_no_replica_receives_acknowledges_nothing_alone() {
    let env = Env::start_with(2, |text| {
        *text = text.replace("[monitor]\n", "[monitor]\nfail_count = 40\n");
    });
    let ledger = ledger(&env, 4);
    std::thread::sleep(Duration::from_millis(1500));
    on_replicas(&env, "STOP SLAVE IO_THREAD");
    let fault = Instant::now();
    env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
    env.sb().start("db1").expect("restart db1");
    wait_logged(&env, "db1 made writable again", || {
        (writable_servers(env.sb()) == ["db1"]).then_some(())
    });
    std::thread::sleep(Duration::from_millis(3000));
    let resumed = Instant::now();
    on_replicas(&env, "START SLAVE IO_THREAD");
    std::thread::sleep(Duration::from_millis(1500));
    let report = settle_and_verify(
        &env,
        "master restarted while no replica receives",
        ledger,
        &[fault],
        "db1",
        &["db1", "db2", "db3"],
    );
    let alone = report
        .attempts
        .iter()
        .filter(|a| a.outcome.is_acked() && a.invoked > fault && a.completed < resumed)
        .count();
    assert_eq!(alone, 0, "writes acknowledged with no replica receiving");
    assert!(
        report.rto(fault).is_some(),
        "writes resumed once a replica received"
    );
}

/// Scenario 6b under `durability = "available"`: semi-sync fell back to asynchronous (no
/// replica receiving; the master held commits for its timeout first), so writes were
/// acknowledged that only the master has, and SHOW SERVERS says so; then the master
/// hangs. Promoting a replica would lose them: the proxy refuses, says so, keeps writes
/// waiting, and carries on with the old master when it wakes. Nothing acknowledged is
/// lost.
#[test]
fn a_failover_that_would_lose_acknowledged_writes_is_refused() {
    let env = Env::start_with(2, |text| {
        *text = text.replace("[monitor]\n", "[monitor]\ndurability = \"available\"\n");
    });
    on_replicas(&env, "STOP SLAVE IO_THREAD");
    let ledger = ledger(&env, 4);
    // The monitor keeps rpl_semi_sync_master_wait_no_slave ON on the master: commits are
    // held rpl_semi_sync_master_timeout (10 s) before semi-sync falls back.
    wait_for("semi-sync fell back to asynchronous", || {
        let status = env
            .sb()
            .sql(
                "db1",
                "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                 WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_STATUS'",
            )
            .ok()?;
        (status.trim() == "OFF").then_some(())
    });
    let note = wait_for("the master's note says it acknowledges alone", || {
        let (_, _, note) = server_row(&env, "db1")?;
        note.contains("acknowledged by the master alone")
            .then_some(note)
    });
    eprintln!("db1: {note}");
    std::thread::sleep(Duration::from_millis(1500));
    let fault = Instant::now();
    env.sb().kill("db1", Signal::Stop).expect("SIGSTOP db1");
    let refused = wait_for("the failover refused", || {
        let out = admin(&env, "SHOW TOPOLOGY").ok()?;
        out.contains("refused").then_some(out)
    });
    eprintln!("{}", refused.trim());
    assert!(refused.contains("acknowledged"), "{refused}");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        writable_servers(env.sb()).is_empty(),
        "no replica was promoted"
    );
    env.sb().kill("db1", Signal::Cont).expect("SIGCONT db1");
    on_replicas(&env, "START SLAVE IO_THREAD");
    wait_for("db1 the master again", || {
        (proxy_master(&env).as_deref() == Some("db1")).then_some(())
    });
    wait_replica(&env, "db2");
    wait_replica(&env, "db3");
    std::thread::sleep(Duration::from_millis(1000));
    let report = settle_and_verify(
        &env,
        "refused failover",
        ledger,
        &[fault],
        "db1",
        &["db1", "db2", "db3"],
    );
    assert_eq!(report.reconnects(), 0);
}
