//! What clients see: a switchover under load, session state across a failover, and a
//! Koha DBI connection that survives one.

use super::*;

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
