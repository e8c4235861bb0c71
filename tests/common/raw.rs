//! A raw protocol client: sends exactly the bytes a test wants (what drivers never would)
//! and returns responses as raw bytes, so proxy and direct can be compared byte for byte.

use kohaproxy_proxy::auth::Credential;
use kohaproxy_proxy::protocol::handshake::{HandshakeResponse, HandshakeV10, NATIVE_PASSWORD};
use kohaproxy_proxy::protocol::packets::packet;
use kohaproxy_proxy::protocol::relay::{Relay, Scan};
use kohaproxy_proxy::protocol::response::ResponseTracker;
use kohaproxy_proxy::protocol::{payload_len, Caps};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A logged-in (or not) raw connection.
pub struct RawClient {
    /// The socket.
    pub stream: TcpStream,
    /// Capabilities sent in the login.
    pub caps: Caps,
    /// The greeting received.
    pub greeting: HandshakeV10,
}

/// Reads one packet: (sequence id, payload). `None` when the peer closed the connection.
pub async fn read_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await.ok()?;
    let mut payload = vec![0; payload_len(&header)];
    s.read_exact(&mut payload).await.ok()?;
    Some((header[3], payload))
}

/// The capabilities a typical modern client asks for.
pub const MODERN: u64 = Caps::PROTOCOL_41
    | Caps::SECURE_CONNECTION
    | Caps::PLUGIN_AUTH
    | Caps::CONNECT_WITH_DB
    | Caps::DEPRECATE_EOF
    | Caps::MULTI_STATEMENTS
    | Caps::MULTI_RESULTS
    | Caps::PS_MULTI_RESULTS
    | Caps::TRANSACTIONS
    | Caps::FOUND_ROWS
    | Caps::LOCAL_FILES;

/// The login a client with capabilities `caps` (as far as the server offers them) sends
/// for `user`/`password` to database `koha`, after `greeting`.
pub fn login_response(
    greeting: &HandshakeV10,
    user: &str,
    password: &str,
    caps: u64,
) -> HandshakeResponse {
    HandshakeResponse {
        caps: Caps(caps & (greeting.caps.0 | Caps::CLIENT_MYSQL)),
        max_packet: 1 << 30,
        collation: 45,
        user: user.as_bytes().to_vec(),
        auth_response: Credential::from_password(password).scramble(&greeting.scramble),
        database: Some(b"koha".to_vec()),
        auth_plugin: Some(NATIVE_PASSWORD.to_vec()),
        attrs: None,
    }
}

impl RawClient {
    /// Connects to 127.0.0.1:`port` and logs in; returns the client and the login reply
    /// payload (OK or ERR).
    pub async fn login(port: u16, user: &str, password: &str, caps: u64) -> (RawClient, Vec<u8>) {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (_, greeting) = read_packet(&mut stream).await.unwrap();
        let greeting = HandshakeV10::decode(&greeting).unwrap();
        let login = login_response(&greeting, user, password, caps);
        let caps = login.caps;
        stream.write_all(&packet(1, &login.encode())).await.unwrap();
        let (_, reply) = read_packet(&mut stream).await.unwrap();
        (
            RawClient {
                stream,
                caps,
                greeting,
            },
            reply,
        )
    }

    /// Sends one command packet and returns the whole response, raw (headers included).
    /// Commands without a response return an empty vector.
    pub async fn command(&mut self, payload: &[u8]) -> Vec<u8> {
        self.stream.write_all(&packet(0, payload)).await.unwrap();
        let Some(tracker) = ResponseTracker::for_command(payload[0], self.caps) else {
            return Vec::new();
        };
        let mut relay = Relay::new(tracker);
        let mut buf = Vec::new();
        let mut done = 0;
        loop {
            let (n, scan) = relay.scan(&buf[done..]).unwrap();
            done += n;
            match scan {
                Scan::Done => {
                    assert_eq!(done, buf.len(), "bytes after the end of the response");
                    return buf;
                }
                Scan::LocalInfile => panic!("LOCAL INFILE not expected here"),
                Scan::StateOk(_) => unreachable!("this relay does not hold OKs"),
                Scan::NeedMore => {}
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed in the middle of a response");
            buf.extend_from_slice(&chunk[..n]);
        }
    }
}
