//! FaultRelay in front of a TCP echo server: forwarding, cut, blackhole, heal, drop.
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use kohaproxy_faults::{FaultRelay, RelayMode};

/// An echo server on 127.0.0.1 (a thread per connection); returns its address.
fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn connect(relay: &FaultRelay) -> TcpStream {
    let s = TcpStream::connect(relay.address()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    s
}

/// Sends `msg` and reads it back.
fn round_trip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
}

/// What a read sees within its timeout.
#[derive(Debug, PartialEq)]
enum Seen {
    Data(Vec<u8>),
    /// EOF or reset: the connection is closed.
    Closed,
    /// Nothing within the read timeout.
    Silence,
}

fn read_once(s: &mut TcpStream) -> Seen {
    let mut buf = [0u8; 1024];
    match s.read(&mut buf) {
        Ok(0) => Seen::Closed,
        Ok(n) => Seen::Data(buf[..n].to_vec()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Seen::Silence,
        Err(_) => Seen::Closed,
    }
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn forwards_both_ways_and_counts_connections() {
    let relay = FaultRelay::start(&echo_server()).unwrap();
    assert_eq!(relay.address(), format!("127.0.0.1:{}", relay.port()));
    assert_eq!(relay.mode(), RelayMode::Normal);
    let mut a = connect(&relay);
    let mut b = connect(&relay);
    round_trip(&mut a, b"hello");
    round_trip(&mut b, &vec![7u8; 200_000]);
    wait_for("2 connections", || relay.connections() == 2);
    // A half-close is passed on: the echo server sees EOF and closes, so does the relay.
    a.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_once(&mut a), Seen::Closed);
    drop(b);
    wait_for("0 connections", || relay.connections() == 0);
}

#[test]
fn cut_closes_connections_and_refuses_new_ones_until_healed() {
    let relay = FaultRelay::start(&echo_server()).unwrap();
    let mut a = connect(&relay);
    round_trip(&mut a, b"before");
    relay.cut();
    relay.cut(); // idempotent
    let started = Instant::now();
    assert_eq!(read_once(&mut a), Seen::Closed);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "cut is prompt (generous: a loaded 2-core CI machine)"
    );
    wait_for("0 connections", || relay.connections() == 0);

    // New connections are accepted and reset at once.
    let mut b = connect(&relay);
    let _ = b.write_all(b"x");
    assert_eq!(read_once(&mut b), Seen::Closed);
    assert_eq!(relay.connections(), 0);

    relay.heal();
    let mut c = connect(&relay);
    round_trip(&mut c, b"after");
    // The cut connection stays closed.
    assert_eq!(read_once(&mut a), Seen::Closed);
}

#[test]
fn blackhole_is_silence_and_heal_resumes() {
    let relay = FaultRelay::start(&echo_server()).unwrap();
    let mut a = connect(&relay);
    round_trip(&mut a, b"before");
    relay.blackhole();
    relay.blackhole();
    assert_eq!(relay.mode(), RelayMode::Blackhole);

    // Nothing comes back, and the connection is not closed either.
    a.write_all(b"during").unwrap();
    assert_eq!(read_once(&mut a), Seen::Silence);
    assert_eq!(read_once(&mut a), Seen::Silence);
    // A new connection is held open, silent.
    let mut b = connect(&relay);
    b.write_all(b"new").unwrap();
    assert_eq!(read_once(&mut b), Seen::Silence);
    wait_for("2 connections held", || relay.connections() == 2);

    // Healed: what was sent during the partition is delivered, in order.
    relay.heal();
    a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 6];
    a.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"during");
    round_trip(&mut a, b"after");
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 3];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"new");
    let mut c = connect(&relay);
    round_trip(&mut c, b"fresh");
}

#[test]
fn cut_during_blackhole_resets_held_connections() {
    let relay = FaultRelay::start(&echo_server()).unwrap();
    let mut a = connect(&relay);
    round_trip(&mut a, b"x");
    relay.blackhole();
    let mut b = connect(&relay);
    wait_for("2 connections", || relay.connections() == 2);
    relay.cut();
    assert_eq!(read_once(&mut a), Seen::Closed);
    assert_eq!(read_once(&mut b), Seen::Closed);
    wait_for("0 connections", || relay.connections() == 0);
}

#[test]
fn unreachable_target_closes_the_client() {
    // A port nothing listens on (bound, then released).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let relay = FaultRelay::start(&format!("127.0.0.1:{port}")).unwrap();
    let mut a = connect(&relay);
    assert_eq!(read_once(&mut a), Seen::Closed);
}

#[test]
fn drop_stops_the_relay_and_closes_sockets() {
    let relay = FaultRelay::start(&echo_server()).unwrap();
    let address = relay.address();
    let mut a = connect(&relay);
    round_trip(&mut a, b"x");
    relay.blackhole();
    let started = Instant::now();
    drop(relay);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(read_once(&mut a), Seen::Closed);
    assert!(
        TcpStream::connect(address).is_err(),
        "nothing listens any more"
    );
}

#[tokio::test]
async fn works_from_inside_a_runtime() {
    let relay = FaultRelay::start(&echo_server()).unwrap();
    let mut s = tokio::net::TcpStream::connect(relay.address())
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"async").await.unwrap();
    let mut got = [0u8; 5];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"async");
    relay.cut();
    let n = s.read(&mut got).await.unwrap_or(0);
    assert_eq!(n, 0);
    drop(relay); // from inside a runtime: joins a thread of its own, not ours
}
