//! One broken client never affects another: garbage, truncated packets, oversized packets,
//! logins that never finish, wrong passwords and out-of-order packets each get an error or
//! a closed connection within a bound, while a healthy session keeps working throughout.

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, read_packet, RawClient};
use common::Env;
use mysql_async::prelude::Queryable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    kohaproxy_proxy::protocol::packets::packet(seq, payload)
}

/// Waits until the proxy closes `s` (reading and dropping whatever it sends); returns how
/// long that took, or panics after `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("connection still open after {limit:?}"),
        }
    }
}

/// A client logged in through the raw protocol (to send what real drivers never would).
async fn raw_login(port: u16, user: &str, password: &str) -> (TcpStream, Vec<u8>) {
    let (client, reply) = RawClient::login(port, user, password, raw::MODERN).await;
    (client.stream, reply)
}

/// Error number and message of an ERR payload.
fn err_of(payload: &[u8]) -> (u16, String) {
    assert_eq!(
        payload.first(),
        Some(&0xff),
        "expected ERR, got {payload:?}"
    );
    let code = u16::from_le_bytes([payload[1], payload[2]]);
    (code, String::from_utf8_lossy(&payload[9..]).into_owned())
}

/// A healthy session that must keep working while others misbehave.
async fn still_serving(conn: &mut mysql_async::Conn, env: &Env, round: &str) {
    let n: Option<i64> = conn
        .query_first("SELECT COUNT(*) FROM koha.survivors")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "healthy session broken after {round}: {e}\n{}",
                env.proxy_log()
            )
        });
    conn.query_drop(format!("INSERT INTO koha.survivors VALUES ('{round}')"))
        .await
        .unwrap();
    assert!(n.is_some());
    // New logins still work too.
    let mut fresh = mysql_async::Conn::new(env.proxy_opts())
        .await
        .unwrap_or_else(|e| panic!("new login refused after {round}: {e}"));
    let one: Option<i64> = fresh.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    fresh.disconnect().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_clients_get_errors_and_others_carry_on() {
    let env = tokio::task::spawn_blocking(|| {
        Env::start_with(0, |toml| {
            *toml = toml.replace(
                "[proxy]\n",
                "[proxy]\nhandshake_timeout_ms = 1000\nmax_allowed_packet = \"1M\"\n",
            );
        })
    })
    .await
    .unwrap();
    let port = env.proxy_port();
    let mut healthy = mysql_async::Conn::new(env.proxy_opts()).await.unwrap();
    healthy
        .query_drop("CREATE TABLE koha.survivors (round VARCHAR(64))")
        .await
        .unwrap();
    still_serving(&mut healthy, &env, "start").await;

    // 1. HTTP (garbage) instead of a login: "Bad handshake", then closed.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    read_packet(&mut s).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    closed_within(&mut s, Duration::from_secs(5)).await;
    still_serving(&mut healthy, &env, "garbage login").await;

    // 2. A well-formed header announcing a login that never fully arrives, and
    // 3. a client that connects and says nothing: both closed after handshake_timeout.
    let mut truncated = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    read_packet(&mut truncated).await.unwrap();
    truncated
        .write_all(&[100, 0, 0, 1, 0x0d, 0xa2])
        .await
        .unwrap();
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let start = Instant::now();
    closed_within(&mut truncated, Duration::from_secs(5)).await;
    closed_within(&mut silent, Duration::from_secs(5)).await;
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "closed before the timeout: {waited:?}"
    );
    still_serving(&mut healthy, &env, "truncated and silent logins").await;

    // 4. Many logins that never finish hold no backend connection.
    let before = threads_connected(&env);
    let mut idle = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        read_packet(&mut s).await.unwrap();
        idle.push(s);
    }
    still_serving(&mut healthy, &env, "100 pending logins").await;
    let during = threads_connected(&env);
    assert!(
        during <= before + 2,
        "pending logins opened backend connections: {before} -> {during}"
    );
    drop(idle);

    // 5. Wrong password and unknown user: error 1045 with MariaDB's text.
    let (_, reply) = raw_login(port, "koha", "wrong").await;
    assert_eq!(
        err_of(&reply),
        (
            1045,
            "Access denied for user 'koha'@'127.0.0.1' (using password: YES)".into()
        )
    );
    let (_, reply) = raw_login(port, "nobody", "").await;
    assert_eq!(
        err_of(&reply),
        (
            1045,
            "Access denied for user 'nobody'@'127.0.0.1' (using password: NO)".into()
        )
    );
    let direct = mysql_async::Conn::new(Env::opts(env.master_port(), "koha", "wrong", None)).await;
    match direct {
        Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1045),
        other => panic!("direct wrong password: {other:?}"),
    }
    still_serving(&mut healthy, &env, "wrong passwords").await;

    // 6. After login, a command packet with a wrong sequence id: error 1156, closed.
    let (mut s, reply) = raw_login(port, "koha", "koha").await;
    assert_eq!(reply[0], 0, "login OK");
    s.write_all(&packet(5, b"\x03SELECT 1")).await.unwrap();
    let (_, reply) = read_packet(&mut s).await.unwrap();
    assert_eq!(err_of(&reply).0, 1156);
    closed_within(&mut s, Duration::from_secs(5)).await;
    still_serving(&mut healthy, &env, "out-of-order packet").await;

    // 7. A statement bigger than max_allowed_packet (1M here): error 1153, closed.
    let (mut s, _) = raw_login(port, "koha", "koha").await;
    let mut big = b"\x03SELECT '".to_vec();
    big.resize(2 << 20, b'x');
    big.push(b'\'');
    let _ = s.write_all(&packet(0, &big)).await;
    let (_, reply) = read_packet(&mut s).await.unwrap();
    assert_eq!(err_of(&reply).0, 1153);
    closed_within(&mut s, Duration::from_secs(5)).await;
    still_serving(&mut healthy, &env, "oversized packet").await;

    // 8. A command that stops half-way, then the client vanishes.
    let (mut s, _) = raw_login(port, "koha", "koha").await;
    s.write_all(&[200, 0, 0, 0, 0x03, b'S', b'E'])
        .await
        .unwrap();
    drop(s);
    // 9. A client that leaves in the middle of a large result.
    let (mut s, _) = raw_login(port, "koha", "koha").await;
    s.write_all(&packet(
        0,
        b"\x03SELECT REPEAT('x', 1000000) FROM seq_1_to_50",
    ))
    .await
    .unwrap();
    let mut some = [0u8; 1000];
    s.read_exact(&mut some).await.unwrap();
    drop(s);
    // 10. Empty packet and an unknown command: errors, the session stays usable.
    let (mut s, _) = raw_login(port, "koha", "koha").await;
    s.write_all(&packet(0, b"")).await.unwrap();
    let (_, reply) = read_packet(&mut s).await.unwrap();
    assert_eq!(reply[0], 0xff);
    s.write_all(&packet(0, b"\x99")).await.unwrap();
    let (_, reply) = read_packet(&mut s).await.unwrap();
    assert_eq!(err_of(&reply).0, 1047);
    s.write_all(&packet(0, b"\x0e")).await.unwrap(); // COM_PING
    let (_, reply) = read_packet(&mut s).await.unwrap();
    assert_eq!(reply[0], 0, "ping after errors");
    still_serving(&mut healthy, &env, "vanishing clients").await;

    let rounds: Vec<String> = healthy
        .query("SELECT round FROM koha.survivors")
        .await
        .unwrap();
    assert_eq!(
        rounds.len(),
        8,
        "every write of the healthy session is there"
    );
    healthy.disconnect().await.unwrap();

    // Each of the proxy's own errors is counted under its code (SHOW STATS).
    let stats = kohaproxy_faults::admin(&env.sb().dir().join("admin.sock"), "SHOW STATS")
        .expect("SHOW STATS");
    let count = |name: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix('\t')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {name} in SHOW STATS:\n{stats}"))
    };
    assert!(count("refused.1043.bad_handshake") >= 1, "{stats}");
    assert_eq!(count("refused.1045.access_denied"), 2, "{stats}");
    assert_eq!(count("refused.1156.packets_out_of_order"), 1, "{stats}");
    assert_eq!(count("refused.1153.packet_too_large"), 1, "{stats}");
    assert_eq!(count("refused.1835.malformed_packet"), 1, "{stats}");
    assert_eq!(count("refused.1040.too_many_connections"), 0, "{stats}");
}

/// The master's Threads_connected.
fn threads_connected(env: &Env) -> u64 {
    env.sb()
        .sql("db1", "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'THREADS_CONNECTED'")
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
