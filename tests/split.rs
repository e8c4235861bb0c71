//! The read/write split against a real master with two replicas: where each kind of
//! statement runs (told by `@@server_id`), session state on replicas, causal reads while
//! replicas lag or stop applying, a replica killed and restarted, and the split turned off.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Env;
use kohaproxy_sandbox::Signal;
use mysql_async::prelude::*;
use mysql_async::{Conn, Row};

/// Server ids of the master and of the replicas.
struct Ids {
    master: u32,
    replicas: BTreeSet<u32>,
}

fn ids(env: &Env) -> Ids {
    let master = env.sb().servers()[0].server_id;
    let replicas = env.sb().servers()[1..]
        .iter()
        .map(|s| s.server_id)
        .collect();
    Ids { master, replicas }
}

async fn connect(env: &Env) -> Conn {
    Conn::new(env.proxy_opts())
        .await
        .expect("connect through the proxy")
}

/// Runs `sql` and returns the first column of its first row as a server id.
async fn server_of(conn: &mut Conn, sql: &str) -> u32 {
    let row: Option<Row> = conn
        .query_first(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let row = row.unwrap_or_else(|| panic!("{sql}: no row"));
    row.get::<u32, _>(0)
        .unwrap_or_else(|| panic!("{sql}: first column is not a server id: {row:?}"))
}

/// Waits (up to 15 s) until fresh sessions' plain reads reach a replica: the monitor has
/// seen the replicas up and caught up.
async fn wait_for_replica_reads(env: &Env, ids: &Ids) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = connect(env).await;
        let id = server_of(&mut c, "SELECT @@server_id").await;
        c.disconnect().await.ok();
        if ids.replicas.contains(&id) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reads never reached a replica\n{}",
            env.proxy_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn setup(env: &Env) {
    let sql = "
        CREATE TABLE koha.kp_split (id INT AUTO_INCREMENT PRIMARY KEY, v INT, who INT);
        INSERT INTO koha.kp_split (v, who) VALUES (0, 0);
        CREATE SEQUENCE koha.kp_seq;
        CREATE PROCEDURE koha.kp_where() SELECT @@server_id;
        CREATE DATABASE koha_other;
        CREATE TABLE koha_other.t (a INT);";
    for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        env.sb().sql("db1", stmt).expect(stmt);
    }
    env.sb()
        .wait_replication(Duration::from_secs(20))
        .expect("replicas catch up");
}

async fn start(replicas: usize, edit: impl FnOnce(&mut String) + Send + 'static) -> Env {
    tokio::task::spawn_blocking(move || {
        let env = Env::start_with(replicas, edit);
        setup(&env);
        env
    })
    .await
    .expect("start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_statement_runs_where_it_must() {
    let env = start(2, |_| {}).await;
    let ids = ids(&env);
    wait_for_replica_reads(&env, &ids).await;

    // Plain reads spread over both replicas, session by session.
    let mut seen = BTreeSet::new();
    for _ in 0..12 {
        let mut c = connect(&env).await;
        for _ in 0..3 {
            let id = server_of(&mut c, "SELECT @@server_id").await;
            assert!(ids.replicas.contains(&id), "plain read ran on {id}");
            seen.insert(id);
        }
        c.disconnect().await.ok();
    }
    assert_eq!(seen, ids.replicas, "both replicas serve reads");

    // Writes run on the master.
    let mut c = connect(&env).await;
    c.query_drop("INSERT INTO kp_split (v, who) VALUES (1, @@server_id)")
        .await
        .unwrap();
    let who: Option<u32> = c
        .query_first("SELECT who FROM kp_split WHERE v = 1")
        .await
        .unwrap();
    assert_eq!(who, Some(ids.master), "the insert ran on the master");

    // Each case on a fresh session: (statement, runs on the master?).
    let cases: &[(&str, bool)] = &[
        ("SELECT @@server_id FROM kp_split LIMIT 1 FOR UPDATE", true),
        (
            "SELECT @@server_id FROM kp_split LIMIT 1 LOCK IN SHARE MODE",
            true,
        ),
        (
            "SELECT @@server_id FROM kp_split LIMIT 1 /*!50000 FOR UPDATE */",
            true,
        ),
        ("SELECT @@server_id, GET_LOCK('kp', 0)", true),
        ("SELECT @@server_id, RELEASE_LOCK('kp')", true),
        ("SELECT @@server_id, LAST_INSERT_ID()", true),
        ("SELECT @@server_id, FOUND_ROWS()", true),
        ("SELECT @@server_id, NEXTVAL(kp_seq)", true),
        ("SELECT @@server_id, NEXT VALUE FOR kp_seq", true),
        ("CALL kp_where()", true),
        ("/* kohaproxy:master */ SELECT @@server_id", true),
        ("SELECT @@server_id /* kohaproxy:master */", true),
        ("sElEcT\t@@server_id\n", false),
        ("/* a comment */ SELECT @@server_id -- trailing", false),
        ("(SELECT @@server_id)", false),
        ("WITH w AS (SELECT @@server_id AS s) SELECT s FROM w", false),
        ("SELECT @@server_id FROM kp_split WHERE v = 0", false),
        (
            "SELECT /* kohaproxy:replica */ @@server_id, LAST_INSERT_ID()",
            false,
        ),
    ];
    for &(sql, on_master) in cases {
        let mut c = connect(&env).await;
        let id = server_of(&mut c, sql).await;
        if on_master {
            assert_eq!(id, ids.master, "{sql} must run on the master");
        } else {
            assert!(
                ids.replicas.contains(&id),
                "{sql} must run on a replica, ran on {id}"
            );
        }
        c.disconnect().await.ok();
    }

    // Multi-statements run on the master.
    let mut c = connect(&env).await;
    let mut result = c
        .query_iter("SELECT @@server_id; SELECT @@server_id")
        .await
        .unwrap();
    let first: Vec<u32> = result.collect().await.unwrap();
    let second: Vec<u32> = result.collect().await.unwrap();
    assert_eq!((first, second), (vec![ids.master], vec![ids.master]));
    drop(result);

    // SELECT ... INTO a user variable: on the master, and the session stays there so the
    // variable is found.
    c.query_drop("SELECT @@server_id INTO @kp_into")
        .await
        .unwrap();
    let into: Option<u32> = c.query_first("SELECT @kp_into").await.unwrap();
    assert_eq!(into, Some(ids.master));
    c.disconnect().await.ok();

    // Transactions: BEGIN ... COMMIT and autocommit=0 keep everything on the master; the
    // session reads from replicas again afterwards.
    let mut c = connect(&env).await;
    c.query_drop("BEGIN").await.unwrap();
    assert_eq!(server_of(&mut c, "SELECT @@server_id").await, ids.master);
    c.query_drop("COMMIT").await.unwrap();
    assert!(ids
        .replicas
        .contains(&server_of(&mut c, "SELECT @@server_id").await));
    c.query_drop("SET autocommit = 0").await.unwrap();
    assert_eq!(server_of(&mut c, "SELECT @@server_id").await, ids.master);
    c.query_drop("COMMIT").await.unwrap();
    assert_eq!(server_of(&mut c, "SELECT @@server_id").await, ids.master);
    c.query_drop("SET autocommit = 1").await.unwrap();
    assert!(ids
        .replicas
        .contains(&server_of(&mut c, "SELECT @@server_id").await));

    // START TRANSACTION READ ONLY runs on one replica to its end.
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let r1 = server_of(&mut c, "SELECT @@server_id").await;
    let r2 = server_of(&mut c, "SELECT @@server_id FROM kp_split LIMIT 1").await;
    assert!(ids.replicas.contains(&r1), "read-only transaction on {r1}");
    assert_eq!(r1, r2, "one replica for the whole read-only transaction");
    c.query_drop("COMMIT").await.unwrap();

    // A temporary table pins the session to the master until the connection is reset.
    c.query_drop("CREATE TEMPORARY TABLE kp_tmp (a INT)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO kp_tmp VALUES (1)").await.unwrap();
    assert_eq!(
        server_of(&mut c, "SELECT @@server_id FROM kp_tmp").await,
        ids.master
    );
    assert_eq!(server_of(&mut c, "SELECT @@server_id").await, ids.master);
    c.reset().await.unwrap();
    assert!(ids
        .replicas
        .contains(&server_of(&mut c, "SELECT @@server_id").await));

    // SHOW WARNINGS follows the statement before it.
    let _: Vec<Row> = c
        .query("SELECT CAST('x' AS INT), @@server_id")
        .await
        .unwrap();
    let warnings: Vec<Row> = c.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "the replica's warning is shown");

    // Prepared statements run on the master (where they were prepared).
    let id: Option<u32> = c.exec_first("SELECT @@server_id + ?", (0,)).await.unwrap();
    assert_eq!(id, Some(ids.master));
    c.disconnect().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_follows_the_session_to_replicas() {
    let env = start(2, |_| {}).await;
    let ids = ids(&env);
    wait_for_replica_reads(&env, &ids).await;
    let mut c = connect(&env).await;
    let probe = "SELECT @@server_id, @@character_set_client, @@collation_connection, \
                 @@sql_mode, @@time_zone, @kp_var, @kp_num, DATABASE(), @@lc_time_names";
    for stmt in [
        "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci",
        "SET sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES'",
        "SET time_zone = '+03:00', lc_time_names = 'fr_FR'",
        "SET @kp_var = 'it''s', @kp_num = -12.5",
        "USE koha_other",
    ] {
        c.query_drop(stmt).await.unwrap();
    }
    type Probe = (
        u32,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    );
    let seen: Probe = c.query_first(probe).await.unwrap().unwrap();
    assert!(
        ids.replicas.contains(&seen.0),
        "the probe ran on a replica: {seen:?}"
    );
    assert_eq!(
        (
            seen.1.as_str(),
            seen.2.as_str(),
            seen.3.as_str(),
            seen.4.as_str()
        ),
        (
            "utf8mb4",
            "utf8mb4_unicode_ci",
            "ANSI_QUOTES,STRICT_ALL_TABLES",
            "+03:00"
        )
    );
    assert_eq!(
        (
            seen.5.as_str(),
            seen.6.as_str(),
            seen.7.as_str(),
            seen.8.as_str()
        ),
        ("it's", "-12.5", "koha_other", "fr_FR")
    );
    // Changed again: the replica follows.
    c.query_drop("SET time_zone = '-01:00'").await.unwrap();
    c.query_drop("SET @kp_var = NULL").await.unwrap();
    let (id, tz, var): (u32, String, Option<String>) = c
        .query_first("SELECT @@server_id, @@time_zone, @kp_var")
        .await
        .unwrap()
        .unwrap();
    assert!(ids.replicas.contains(&id));
    assert_eq!((tz.as_str(), var), ("-01:00", None));
    // A user variable set from a query cannot be replayed: the session stays on the master.
    c.query_drop("SET @kp_q = (SELECT COUNT(*) FROM koha.kp_split)")
        .await
        .unwrap();
    let (id, q): (u32, u32) = c
        .query_first("SELECT @@server_id, @kp_q")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((id, q), (ids.master, 1));
    // COM_CHANGE_USER starts over: defaults again, reads on replicas again.
    c.change_user(
        mysql_async::ChangeUserOpts::default()
            .with_user(Some("koha".into()))
            .with_pass(Some("koha".into()))
            .with_db_name(Some("koha".into())),
    )
    .await
    .unwrap();
    let (id, tz, var): (u32, String, Option<String>) = c
        .query_first("SELECT @@server_id, @@time_zone, @kp_var")
        .await
        .unwrap()
        .unwrap();
    assert!(ids.replicas.contains(&id), "after COM_CHANGE_USER: {id}");
    assert_eq!((tz.as_str(), var), ("SYSTEM", None));
    c.disconnect().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_every_acknowledged_write() {
    let env = start(2, |_| {}).await;
    let ids = ids(&env);
    wait_for_replica_reads(&env, &ids).await;
    let mut writer = connect(&env).await;
    let mut reader = connect(&env).await;
    // The reader holds a replica connection already.
    assert!(ids
        .replicas
        .contains(&server_of(&mut reader, "SELECT @@server_id").await));

    // Replicas that stop applying: reads still see every write.
    for r in ["db2", "db3"] {
        env.sb().sql(r, "STOP SLAVE SQL_THREAD").unwrap();
    }
    for v in 100..110 {
        writer
            .exec_drop("INSERT INTO kp_split (v) VALUES (?)", (v,))
            .await
            .unwrap();
        let sql = format!("SELECT COUNT(*) FROM kp_split WHERE v = {v}");
        let own: Option<u32> = writer.query_first(&sql).await.unwrap();
        let other: Option<u32> = reader.query_first(&sql).await.unwrap();
        assert_eq!((own, other), (Some(1), Some(1)), "write {v} seen at once");
    }
    for r in ["db2", "db3"] {
        env.sb().sql(r, "START SLAVE SQL_THREAD").unwrap();
    }

    // Replicas that apply late but stay within the lag limit (MASTER_DELAY = 2 s): only
    // the causal check keeps a read from missing a write.
    for r in ["db2", "db3"] {
        // One statement list: kohaproxy starts a replication found stopped.
        env.sb()
            .sql(
                r,
                "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 2; START SLAVE",
            )
            .unwrap();
    }
    let mut where_read = BTreeSet::new();
    for v in 200..230 {
        writer
            .exec_drop("INSERT INTO kp_split (v) VALUES (?)", (v,))
            .await
            .unwrap();
        let sql = format!("SELECT COUNT(*), @@server_id FROM kp_split WHERE v = {v}");
        let (n, id): (u32, u32) = reader.query_first(&sql).await.unwrap().unwrap();
        assert_eq!(
            n, 1,
            "write {v} seen at once by another session (read on {id})"
        );
        where_read.insert(id);
        let mut fresh = connect(&env).await;
        let (n, _): (u32, u32) = fresh.query_first(&sql).await.unwrap().unwrap();
        assert_eq!(n, 1, "write {v} seen at once by a new session");
        fresh.disconnect().await.ok();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("reads right after writes ran on {where_read:?}");

    // Delay off, no more writes: reads return to the replicas.
    for r in ["db2", "db3"] {
        // One statement list: kohaproxy starts a replication found stopped.
        env.sb()
            .sql(
                r,
                "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 0; START SLAVE",
            )
            .unwrap();
    }
    env.sb()
        .wait_replication(Duration::from_secs(20))
        .expect("replicas catch up");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let id = server_of(&mut reader, "SELECT @@server_id").await;
        if ids.replicas.contains(&id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "reads stayed on the master\n{}",
            env.proxy_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.disconnect().await.ok();
    reader.disconnect().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_costs_no_client_error() {
    let env = start(2, |_| {}).await;
    let ids = ids(&env);
    wait_for_replica_reads(&env, &ids).await;
    // Sessions that hold connections to both replicas.
    let mut sessions = Vec::new();
    for _ in 0..6 {
        let mut c = connect(&env).await;
        server_of(&mut c, "SELECT @@server_id").await;
        sessions.push(c);
    }
    let db2 = env.sb().server("db2").unwrap().server_id;
    env.sb().kill("db2", Signal::Kill).unwrap();
    let until = Instant::now() + Duration::from_secs(3);
    let mut after = BTreeSet::new();
    while Instant::now() < until {
        for c in &mut sessions {
            after.insert(server_of(c, "SELECT @@server_id").await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !after.contains(&db2),
        "reads reached the killed replica: {after:?}"
    );
    env.sb().start("db2").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    'back: loop {
        for _ in 0..4 {
            let mut c = connect(&env).await;
            let id = server_of(&mut c, "SELECT @@server_id").await;
            c.disconnect().await.ok();
            if id == db2 {
                break 'back;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the restarted replica never served reads again\n{}",
            env.proxy_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for c in sessions {
        c.disconnect().await.ok();
    }
}

/// A read-only transaction runs on one replica; if that replica dies under it, the
/// transaction is lost and the client is told so (1213, run it again), never answered
/// from another server as if the transaction went on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_on_a_killed_replica_gets_an_error() {
    let env = start(2, |_| {}).await;
    let ids = ids(&env);
    wait_for_replica_reads(&env, &ids).await;
    let mut c = connect(&env).await;
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let on = server_of(&mut c, "SELECT @@server_id").await;
    let name = ["db2", "db3"]
        .into_iter()
        .find(|n| env.sb().server(n).unwrap().server_id == on)
        .unwrap_or_else(|| panic!("the read-only transaction ran on {on}, not a replica"));
    env.sb().kill(name, Signal::Kill).unwrap();
    match c.query_drop("SELECT 1").await {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1213, "{e:?}"),
        other => panic!("a statement of the lost transaction: {other:?}"),
    }
    // The session goes on, outside any transaction, on the servers left.
    let after = server_of(&mut c, "SELECT @@server_id").await;
    assert_ne!(after, on, "read on the killed replica");
    let stats = kohaproxy_faults::admin(&env.sb().dir().join("admin.sock"), "SHOW STATS").unwrap();
    assert!(
        stats.contains("refused.1213.replica_lost_in_transaction\t1"),
        "{stats}"
    );
    c.disconnect().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_split_off_everything_runs_on_the_master() {
    let env = start(2, |toml| {
        *toml = toml.replace("read_write_split = true", "read_write_split = false");
        if !toml.contains("read_write_split") {
            toml.push_str("\n[routing]\nread_write_split = false\n");
        }
    })
    .await;
    let ids = ids(&env);
    // Once the monitor calls both replicas healthy, reads could go there: they must not.
    let socket = env.sb().dir().join("admin.sock");
    let until = Instant::now() + Duration::from_secs(20);
    while !["db2", "db3"].iter().all(|name| {
        kohaproxy_faults::server_row(&socket, name).is_some_and(|row| row.role == "replica")
    }) {
        assert!(Instant::now() < until, "replicas never healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        let mut c = connect(&env).await;
        assert_eq!(server_of(&mut c, "SELECT @@server_id").await, ids.master);
        c.disconnect().await.ok();
    }
}

/// Runs a Perl script from tests/perl with `args`; returns its stdout, or fails with its
/// output and the proxy's log.
fn perl(env: &Env, script: &str, args: &[String]) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/perl")
        .join(script);
    let out = std::process::Command::new("perl")
        .arg(&path)
        .args(args)
        .output()
        .expect("cannot run perl");
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{}\n{}\n--- proxy log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        env.proxy_log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn koha_shaped_perl_sessions_see_every_write() {
    let env = start(2, |_| {}).await;
    let ids = ids(&env);
    wait_for_replica_reads(&env, &ids).await;
    // One replica applies a second late: only causal reads keep Koha's pages right.
    // One statement list: kohaproxy starts a replication found stopped.
    env.sb()
        .sql(
            "db3",
            "STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = 1; START SLAVE",
        )
        .unwrap();
    let port = env.proxy_port().to_string();
    let out =
        tokio::task::block_in_place(|| perl(&env, "koha_causal.pl", &[port.clone(), "60".into()]));
    assert!(out.contains("ok 60 iterations"), "{out}");
    // The Koha session script sees through the split what it sees on the master alone.
    let via_proxy = tokio::task::block_in_place(|| perl(&env, "koha_session.pl", &[port]));
    let direct = tokio::task::block_in_place(|| {
        perl(&env, "koha_session.pl", &[env.master_port().to_string()])
    });
    assert_eq!(
        via_proxy, direct,
        "koha_session.pl through the split vs direct"
    );
}
