//! Shutdown loses no work: on SIGTERM the proxy stops accepting, closes idle sessions, lets
//! a transaction in flight commit, and exits; a transaction still open when the grace
//! period ends is cut off, and the server rolls it back (never half-applied).

mod common;

use std::time::Duration;

use common::Env;
use mysql_async::prelude::Queryable;

async fn rows(env: &Env) -> Vec<String> {
    let mut direct = mysql_async::Conn::new(env.direct_opts()).await.unwrap();
    direct
        .query("SELECT what FROM koha.checkouts ORDER BY what")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_open_transactions_commit_and_then_exits() {
    let mut env = tokio::task::spawn_blocking(|| {
        Env::start_with(0, |toml| {
            *toml = toml.replace("[proxy]\n", "[proxy]\nshutdown_grace_s = 10\n");
        })
    })
    .await
    .unwrap();

    let mut setup = mysql_async::Conn::new(env.proxy_opts()).await.unwrap();
    setup
        .query_drop("CREATE TABLE koha.checkouts (what VARCHAR(32) PRIMARY KEY)")
        .await
        .unwrap();
    let mut idle = mysql_async::Conn::new(env.proxy_opts()).await.unwrap();
    let mut checkout = mysql_async::Conn::new(env.proxy_opts()).await.unwrap();
    checkout.query_drop("SET autocommit = 0").await.unwrap();
    checkout
        .query_drop("INSERT INTO checkouts VALUES ('first item')")
        .await
        .unwrap();

    env.terminate_proxy();
    // The listener is closed before the drain begins, and the drain says so.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while !env.proxy_log().contains("shutting down: no new clients") {
        assert!(
            tokio::time::Instant::now() < until,
            "no shutdown: {}",
            env.proxy_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // No new clients; the idle session is closed (within a bound).
    assert!(
        mysql_async::Conn::new(env.proxy_opts()).await.is_err(),
        "new client accepted"
    );
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while idle.ping().await.is_ok() {
        assert!(
            tokio::time::Instant::now() < until,
            "idle session kept open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The transaction in flight goes on and commits.
    checkout
        .query_drop("INSERT INTO checkouts VALUES ('second item')")
        .await
        .unwrap_or_else(|e| panic!("transaction cut short: {e}\n{}", env.proxy_log()));
    checkout.query_drop("COMMIT").await.unwrap();
    // Then that session is closed too, and the proxy exits well before the grace period.
    assert!(checkout.query_drop("SELECT 1").await.is_err());
    let mut env = tokio::task::spawn_blocking(move || {
        let took = env.wait_proxy_exit(Duration::from_secs(5));
        assert!(took.is_some(), "proxy still running: {}", env.proxy_log());
        env
    })
    .await
    .unwrap();
    assert_eq!(rows(&env).await, ["first item", "second item"]);
    let log = env.proxy_log();
    assert!(
        log.contains("shutting down") && log.contains("all sessions closed"),
        "{log}"
    );

    // Grace period over: the open transaction is cut off and rolled back by the server.
    let config = env.sb().config_path();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("shutdown_grace_s = 10", "shutdown_grace_s = 1"),
    )
    .unwrap();
    env = tokio::task::spawn_blocking(move || {
        env.start_proxy();
        env
    })
    .await
    .unwrap();
    let mut slow = mysql_async::Conn::new(env.proxy_opts()).await.unwrap();
    slow.query_drop("START TRANSACTION").await.unwrap();
    slow.query_drop("INSERT INTO checkouts VALUES ('never committed')")
        .await
        .unwrap();
    env.terminate_proxy();
    let env = tokio::task::spawn_blocking(move || {
        let took = env.wait_proxy_exit(Duration::from_secs(10));
        let took = took.unwrap_or_else(|| panic!("proxy did not exit: {}", env.proxy_log()));
        assert!(
            took >= Duration::from_millis(900),
            "exited before the grace period: {took:?}"
        );
        env
    })
    .await
    .unwrap();
    assert!(
        slow.query_drop("COMMIT").await.is_err(),
        "commit after the grace period"
    );
    // The server notices the closed connection and rolls back.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = rows(&env).await;
        assert!(
            !r.contains(&"never committed".to_string()) || std::time::Instant::now() < deadline
        );
        if !r.contains(&"never committed".to_string()) {
            assert_eq!(r, ["first item", "second item"]);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(env.proxy_log().contains("grace period over"));
}
