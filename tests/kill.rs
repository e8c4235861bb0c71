//! KILL through the proxy reaches the right session: clients see proxy session ids, and a
//! KILL naming one is aimed at that session's backend thread, never at a stranger's.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_query_and_kill_connection_by_proxy_session_id() {
    let env = tokio::task::spawn_blocking(|| Env::start(0)).await.unwrap();
    let mut victim = mysql_async::Conn::new(env.proxy_opts()).await.unwrap();
    let mut killer = mysql_async::Conn::new(env.proxy_opts()).await.unwrap();
    let victim_id = victim.id();
    assert!(
        victim_id >= 1 << 30,
        "proxy session ids are in their own range"
    );

    // KILL QUERY stops the running statement and keeps the connection.
    let started = Instant::now();
    let sleeping = tokio::spawn(async move {
        let r: Result<Option<i64>, _> = victim.query_first("SELECT SLEEP(30)").await;
        (victim, r)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    killer
        .query_drop(format!("KILL QUERY {victim_id}"))
        .await
        .unwrap();
    let (mut victim, result) = sleeping.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the sleep was not interrupted"
    );
    // SLEEP() reports an interruption by returning 1 (or the statement fails with 1317).
    match result {
        Ok(v) => assert_eq!(v, Some(1)),
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1317),
        Err(e) => panic!("unexpected: {e}"),
    }
    let alive: Option<i64> = victim.query_first("SELECT 2").await.unwrap();
    assert_eq!(alive, Some(2));

    // KILL (CONNECTION) ends the victim's session; the killer is untouched.
    killer
        .query_drop(format!("KILL {victim_id}"))
        .await
        .unwrap();
    assert!(
        victim.query_drop("SELECT 3").await.is_err(),
        "victim still connected"
    );
    let alive: Option<i64> = killer.query_first("SELECT 4").await.unwrap();
    assert_eq!(alive, Some(4));

    // An id that is no session of ours goes to the server as written.
    let err = killer
        .query_drop(format!("KILL {}", victim_id + 1000))
        .await
        .unwrap_err();
    match err {
        mysql_async::Error::Server(e) => assert_eq!(e.code, 1094, "{e}"),
        e => panic!("unexpected: {e}"),
    }
}
