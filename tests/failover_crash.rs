//! A proxy that dies in the middle of a failover (scenario 13 of
//! ../shared/research/failover.md section 8): it aborts at each crash point
//! (`KOHAPROXY_CRASH_AT`, see docs/ARCHITECTURE.md) and is started again, or a second proxy
//! finishes the job. The cluster ends with one master every replica follows, and no
//! acknowledged write is lost.

mod common;

use std::time::{Duration, Instant};

use common::failover::*;
use common::{spawn_proxy_with, Env};
use kohaproxy_faults::{verify_blocking, wait_converged, writable_servers};
use kohaproxy_sandbox::Signal;

/// The crash points of a failover, in order (`KOHAPROXY_CRASH_AT`; see
/// docs/ARCHITECTURE.md).
const FAILOVER_STEPS: [&str; 9] = [
    "failover:locked",
    "failover:term",
    "failover:cut",
    "failover:drained",
    "failover:stopped",
    "failover:recorded",
    "failover:reset",
    "failover:writable",
    "failover:repointed",
];

/// The crash points of a switchover, in order.
const SWITCHOVER_STEPS: [&str; 7] = [
    "switchover:read_only",
    "switchover:caught_up",
    "switchover:stopped",
    "switchover:reset",
    "switchover:recorded",
    "switchover:writable",
    "switchover:demoted",
];

/// Waits for `env`'s proxy, started with `KOHAPROXY_CRASH_AT=point`, to abort there.
fn wait_crashed_at(env: &mut Env, point: &str) {
    let crashed = env.wait_proxy_exit(DEADLINE);
    let log = env.proxy_log();
    assert!(
        crashed.is_some() && log.contains(&format!("={point} reached")),
        "the proxy did not die at {point}:\n{log}"
    );
}

/// Scenario 13: the proxy dies (aborts at crash point `point`) in the middle of the
/// failover from a SIGKILLed master, and is started again: it finishes the promotion the
/// dead process began, or runs the failover again when nothing changed yet. The cluster
/// ends with one writable master that every replica follows, and no acknowledged write
/// is lost.
fn proxy_killed_mid_failover_and_restarted(point: &str) {
    let mut env = Env::start(2);
    env.start_proxy_with("proxy-crashed.log", &[("KOHAPROXY_CRASH_AT", point)]);
    let ledger = ledger(&env, 4);
    std::thread::sleep(Duration::from_millis(1500));
    let fault = Instant::now();
    env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
    wait_crashed_at(&mut env, point);
    env.start_proxy();
    let new = wait_promoted_from_db1(&env);
    let report = settle_and_verify(
        &env,
        &format!("proxy killed at {point}"),
        ledger,
        &[fault],
        &new,
        &["db2", "db3"],
    );
    assert!(report.rto(fault).is_some(), "writes resumed");
    // Once the term is recorded, the chosen server is kept: the restarted proxy
    // finishes its promotion (or finds it done), never promotes another.
    let restarted_log = env.proxy_log();
    let promoted_again = restarted_log.contains(" promoted from=");
    let finished = restarted_log.contains(&format!("finished the promotion of {new}"));
    match point {
        "failover:recorded" | "failover:reset" => assert!(
            finished && !promoted_again,
            "{point}: the promotion was not finished:\n{restarted_log}"
        ),
        "failover:writable" | "failover:repointed" => assert!(
            !finished && !promoted_again,
            "{point}: nothing was left to do:\n{restarted_log}"
        ),
        _ => assert!(
            promoted_again,
            "{point}: the failover was not run again:\n{restarted_log}"
        ),
    }
}

#[test]
fn a_proxy_killed_early_in_a_failover_runs_it_again_after_a_restart() {
    for point in &FAILOVER_STEPS[..5] {
        proxy_killed_mid_failover_and_restarted(point);
    }
}

#[test]
fn a_proxy_killed_late_in_a_failover_finishes_it_after_a_restart() {
    for point in &FAILOVER_STEPS[5..] {
        proxy_killed_mid_failover_and_restarted(point);
    }
}

/// Whether server `name`'s replication runs with both threads (`Slave_running`).
fn both_threads_running(env: &Env, name: &str) -> bool {
    env.sb()
        .sql(
            name,
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
             WHERE VARIABLE_NAME = 'SLAVE_RUNNING'",
        )
        .is_ok_and(|out| out.trim() == "ON")
}

/// The master only seemed dead (SIGSTOP), and the proxy failing over from it dies right
/// after cutting every replica off from it (IO threads stopped), before it chose. The old
/// master answers again (SIGCONT) and stays the master; the restarted proxy finds the
/// replicas marked cut off from it and reconnects them, so they acknowledge and follow it
/// again, and no acknowledged write is lost.
#[test]
fn replicas_a_dead_proxy_cut_off_from_a_master_that_answers_again_are_reconnected() {
    let point = "failover:cut";
    let mut env = Env::start(2);
    env.start_proxy_with("proxy-crashed.log", &[("KOHAPROXY_CRASH_AT", point)]);
    let ledger = ledger(&env, 4);
    std::thread::sleep(Duration::from_millis(1500));
    let fault = Instant::now();
    env.sb().kill("db1", Signal::Stop).expect("SIGSTOP db1");
    wait_crashed_at(&mut env, point);
    env.sb().kill("db1", Signal::Cont).expect("SIGCONT db1");
    for replica in ["db2", "db3"] {
        assert!(
            !both_threads_running(&env, replica),
            "{replica} was not cut off from db1; the crashed proxy's log:\n{}",
            std::fs::read_to_string(env.sb().dir().join("proxy-crashed.log")).unwrap_or_default()
        );
    }
    env.start_proxy();
    wait_logged(&env, "the replicas reconnected to db1", || {
        ["db2", "db3"]
            .iter()
            .all(|r| both_threads_running(&env, r))
            .then_some(())
    });
    assert_eq!(routed_master(&env).as_deref(), Some("db1"));
    let log = env.proxy_log();
    assert!(
        log.contains("cut off from the master by a failover that never promoted"),
        "the restarted proxy did not say why it reconnected the replicas:\n{log}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let report = settle_and_verify(
        &env,
        "proxy killed at failover:cut, old master back",
        ledger,
        &[fault],
        "db1",
        &["db1", "db2", "db3"],
    );
    assert!(report.rto(fault).is_some(), "writes resumed");
}

/// Scenario 13 with two proxies: the one that fails over first dies half-way (after
/// STOP SLAVE, or after its term record and RESET SLAVE ALL); the other, which detects
/// the failure later (`fail_count = 8`), finishes the job. Neither proxy's acknowledged
/// writes are lost.
#[test]
fn when_one_of_two_proxies_dies_mid_failover_the_other_finishes_it() {
    for point in ["failover:stopped", "failover:reset"] {
        let mut env = Env::start(2);
        env.start_proxy_with("proxy-crashed.log", &[("KOHAPROXY_CRASH_AT", point)]);
        let (second_path, port) = second_proxy_config(&env, "fail_count = 8\n");
        let second_log = env.sb().dir().join("proxy2.log");
        let _proxy2 = spawn_proxy_with(&second_path, second_log.clone(), port, &[]);
        let first_ledger = ledger(&env, 2);
        let second_ledger = second_ledger(port, 3);
        std::thread::sleep(Duration::from_millis(1500));
        let fault = Instant::now();
        env.sb().kill("db1", Signal::Kill).expect("SIGKILL db1");
        wait_crashed_at(&mut env, point);
        let socket2 = env.sb().dir().join("admin2.sock");
        let new = wait_for("the second proxy routes to one writable master", || {
            let writable = writable_servers(env.sb());
            let master = kohaproxy_faults::proxy_master(&socket2)?;
            (writable == [master.clone()] && master != "db1").then_some(master)
        });
        std::thread::sleep(Duration::from_millis(1500));
        let first = first_ledger.stop_and_join().expect("first ledger");
        let second = second_ledger.stop_and_join().expect("second ledger");
        wait_converged(env.sb(), &["db2", "db3"], DEADLINE).expect("servers converge");
        for (name, report) in [("first", &first), ("second", &second)] {
            let verdict = verify_blocking(report, direct(&env, &new)).expect("verify");
            eprintln!(
                "RUN two proxies, first killed at {point} ({name} ledger): RTO {:?}, {verdict}",
                report.rto(fault)
            );
            assert!(
                verdict.acked > 0 && verdict.lost.is_empty(),
                "{point}: {verdict}"
            );
        }
        assert!(
            second.rto(fault).is_some(),
            "writes resumed through the second proxy"
        );
        let log2 = std::fs::read_to_string(&second_log).unwrap_or_default();
        if point == "failover:reset" {
            assert!(
                log2.contains(&format!("finished the promotion of {new}")),
                "{point}: the second proxy did not finish the promotion:\n{log2}"
            );
        }
        assert_eq!(writable_servers(env.sb()), vec![new.clone()]);
    }
}

/// The proxy dies (aborts at crash point `point`) in the middle of `SWITCHOVER TO db2`
/// under write load, and is started again. Before the term record on db2 (`reset` and
/// earlier) the old master db1, read-only and followed by every replica, is the master
/// again; from the record on, db2's promotion is finished or found done, and db1 rejoins
/// it. Either way the cluster ends with one writable master every server follows, and
/// no acknowledged write is lost.
fn proxy_killed_mid_switchover_and_restarted(point: &str) {
    let mut env = Env::start(2);
    env.start_proxy_with("proxy-crashed.log", &[("KOHAPROXY_CRASH_AT", point)]);
    let ledger = ledger(&env, 4);
    std::thread::sleep(Duration::from_millis(1500));
    let fault = Instant::now();
    // The proxy dies before it answers.
    let _ = admin(&env, "SWITCHOVER TO db2");
    wait_crashed_at(&mut env, point);
    env.start_proxy();
    let master = wait_logged(&env, &format!("{point}: one routed master"), || {
        routed_master(&env)
    });
    let expected = match point {
        "switchover:read_only"
        | "switchover:caught_up"
        | "switchover:stopped"
        | "switchover:reset" => "db1",
        _ => "db2",
    };
    assert_eq!(master, expected, "{point}: the master after the restart");
    std::thread::sleep(Duration::from_millis(1500));
    let report = settle_and_verify(
        &env,
        &format!("proxy killed at {point}"),
        ledger,
        &[fault],
        &master,
        &["db1", "db2", "db3"],
    );
    assert!(report.rto(fault).is_some(), "writes resumed");
}

#[test]
fn a_proxy_killed_early_in_a_switchover_leaves_the_old_master_in_place() {
    for point in &SWITCHOVER_STEPS[..4] {
        proxy_killed_mid_switchover_and_restarted(point);
    }
}

#[test]
fn a_proxy_killed_late_in_a_switchover_finishes_it_after_a_restart() {
    for point in &SWITCHOVER_STEPS[4..] {
        proxy_killed_mid_switchover_and_restarted(point);
    }
}
