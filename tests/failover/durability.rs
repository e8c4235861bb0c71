//! What is kept when copies are lost: diverged old masters (kept out, then rebuilt),
//! crash recovery, double faults, and the `durability` setting when no replica receives.

use super::*;

/// A master with a transaction no replica has (written directly while replication was
/// stopped) goes away; after the failover it comes back and is kept out as diverged, with
/// the extra GTID shown, read-only and not replicating. `durability = "unmanaged"`: under
/// the default the direct write would wait for a replica to receive it. Then `REBUILD`
/// replaces its data by a backup (taken for it, from the healthy replica): it replicates
/// from the new master, the extra transaction is gone, and every server converges.
#[test]
fn a_diverged_old_master_is_kept_out_until_rebuilt() {
    let (env, new) = diverged_db1("0");
    let log = env.proxy_log();
    assert!(log.contains("diverged"), "the log says so");

    let refused = admin(&env, &format!("REBUILD {new}"));
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("master")),
        "the master is never rebuilt: {refused:?}"
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

/// The sandbox of [`a_diverged_old_master_is_kept_out_until_rebuilt`] up to db1 kept out
/// as diverged (`rebuild_diverged_after_s` as given); returns it and the new master.
fn diverged_db1(rebuild_after_s: &str) -> (Env, String) {
    let env = Env::start_with(2, |text| {
        *text = text.replace("[monitor]\n", "[monitor]\ndurability = \"unmanaged\"\n");
        *text = text.replace(
            "[backup]\n",
            &format!("[backup]\nrebuild_diverged_after_s = {rebuild_after_s}\n"),
        );
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
    on_replicas(&env, "STOP SLAVE IO_THREAD");
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
    (env, new)
}

/// The same diverged old master with `rebuild_diverged_after_s = 2`: nobody types
/// `REBUILD`; two seconds later kohaproxy rebuilds it on its own, and every server
/// converges.
#[test]
fn a_diverged_server_is_rebuilt_on_its_own_after_the_delay() {
    let (env, _new) = diverged_db1("2");
    wait_logged(&env, "db1 rebuilt on its own and replicating", || {
        let (role, _, note) = server_row(&env, "db1")?;
        (role == "replica" && !note.starts_with("diverged")).then_some(())
    });
    let log = env.proxy_log();
    assert!(
        log.contains("kept out for 2 s: rebuilding db1 (diverged)"),
        "{log}"
    );
    let extra = env
        .sb()
        .sql("db1", "SELECT COUNT(*) FROM koha_extra.t")
        .expect("db1 answers");
    assert_eq!(extra.trim(), "0", "the diverged write is gone from db1");
    wait_converged(env.sb(), &["db1", "db2", "db3"], DEADLINE).expect("every server converges");
    assert!(env.proxy_log().contains("db1 rebuilt from backup"));
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
    let (ledger, fault) = only_db1_and_db2_receive(&env);
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

/// Chaos seeds 3 and 4: a kohaproxy restarted after the only replica receiving (db2)
/// died knows no acknowledged position; the writes the proxy acknowledged before its
/// restart are on db1 and db2 only. When db1 dies too, db3 and db4 (which stopped
/// replicating before the writes) lack them: promoting either would lose them. The
/// restarted proxy saw db1 list no connected replica while db2 was already unreachable,
/// so db2 may hold writes up to what db1 had then, and no reachable replica has that:
/// the failover is refused with that reason. When db2 returns it is still refused: a
/// restarted replica discards the relay log it had acknowledged writes from (seen in CI:
/// db2 back at 0-1-774 while db1 held the acknowledged 0-1-775). When db1 returns it
/// takes writes again and nothing acknowledged is lost. Four servers, as in the double
/// fault above, so that the two left may lock the topology.
#[test]
fn a_restarted_proxy_never_promotes_a_replica_an_absent_one_may_be_ahead_of() {
    let mut env = Env::start(3);
    let (ledger, fault) = only_db1_and_db2_receive(&env);
    env.sb().kill("db2", Signal::Kill).expect("SIGKILL db2");
    env.start_proxy();
    // The restarted proxy sees db1 answer, with no replica connected, for a few rounds.
    std::thread::sleep(Duration::from_millis(1500));
    env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
    for r in ["db3", "db4"] {
        env.sb().sql(r, "START SLAVE").expect("replicate again");
    }
    let refusal = "db2 stopped replicating from db1";
    let refused = wait_logged(&env, "the failover refused", || {
        let out = admin(&env, "SHOW TOPOLOGY").ok()?;
        out.contains(refusal).then_some(out)
    });
    eprintln!("{}", refused.trim());
    assert!(refused.contains("may have held writes up to"), "{refused}");
    env.sb().start("db2").expect("restart db2");
    // A few rounds with db2 answering: it cannot show that it holds what it received.
    std::thread::sleep(Duration::from_millis(2000));
    let topology = admin(&env, "SHOW TOPOLOGY").unwrap_or_default();
    assert!(topology.contains(refusal), "{topology}");
    assert!(
        writable_servers(env.sb()).is_empty(),
        "nothing was promoted"
    );
    env.sb().start("db1").expect("restart db1");
    let master = wait_logged(&env, "db1 takes writes again", || routed_master(&env));
    assert_eq!(master, "db1", "the server with every write keeps them");
    settle_and_verify(
        &env,
        "restarted proxy, then a double fault",
        ledger,
        &[fault],
        &master,
        &["db1", "db2", "db3", "db4"],
    );
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

/// In a four-server sandbox, db3 and db4 stop receiving and the ledger writes for 1.5 s:
/// only db1 and db2 hold its writes. Returns the ledger and the moment faults begin.
fn only_db1_and_db2_receive(env: &Env) -> (kohaproxy_faults::LedgerHandle, Instant) {
    for r in ["db3", "db4"] {
        env.sb()
            .sql(r, "STOP SLAVE IO_THREAD")
            .expect("stop receiving");
    }
    let ledger = ledger(env, 4);
    std::thread::sleep(Duration::from_millis(1500));
    (ledger, Instant::now())
}
