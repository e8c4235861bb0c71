//! Raw protocol helpers: greetings, logins, packets, waiting for a close.

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// Raw protocol helpers.
// ---------------------------------------------------------------------------------------

/// The error code of an ERR payload.
pub(super) fn err_code(payload: &[u8]) -> Option<u16> {
    (payload.first() == Some(&0xff) && payload.len() >= 3)
        .then(|| u16::from_le_bytes([payload[1], payload[2]]))
}

/// A login payload for `greeting` (koha's database, mysql_native_password), with
/// connection attributes when `attrs`.
pub(super) fn login_payload(
    greeting: &HandshakeV10,
    user: &str,
    password: &str,
    attrs: bool,
) -> Vec<u8> {
    let mut caps = MODERN;
    if attrs {
        caps |= Caps::CONNECT_ATTRS;
    }
    let mut login = raw::login_response(greeting, user, password, caps);
    login.attrs = attrs.then(|| b"\x0c_client_name\x0ahostile-rs\x04_pid\x0512345".to_vec());
    login.encode()
}

/// Why a raw login did not give a session.
#[derive(Debug)]
pub(super) enum LoginFail {
    /// The proxy answered with this error (in place of the greeting, or to the login).
    Refused(u16, String),
    /// The connection failed, closed or stalled.
    Broken(String),
}

/// Connects to the proxy and reads its greeting (an ERR instead is `Refused`).
pub(super) async fn greet(port: u16) -> Result<(TcpStream, HandshakeV10), LoginFail> {
    tokio::time::timeout(LOGIN_BOUND, async {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| LoginFail::Broken(format!("connect: {e}")))?;
        let _ = s.set_nodelay(true);
        let (_, payload) = read_packet(&mut s)
            .await
            .ok_or_else(|| LoginFail::Broken("closed before the greeting".into()))?;
        if let Some(code) = err_code(&payload) {
            return Err(LoginFail::Refused(
                code,
                String::from_utf8_lossy(&payload[9.min(payload.len())..]).into_owned(),
            ));
        }
        let greeting = HandshakeV10::decode(&payload)
            .map_err(|e| LoginFail::Broken(format!("bad greeting: {e}")))?;
        Ok((s, greeting))
    })
    .await
    .unwrap_or_else(|_| Err(LoginFail::Broken("no greeting in time".into())))
}

/// A raw login as `user`/`password`; the socket once the proxy said OK.
pub(super) async fn raw_login(
    port: u16,
    user: &str,
    password: &str,
) -> Result<TcpStream, LoginFail> {
    let (mut s, greeting) = greet(port).await?;
    tokio::time::timeout(LOGIN_BOUND, async {
        let login = login_payload(&greeting, user, password, false);
        s.write_all(&packet(1, &login))
            .await
            .map_err(|e| LoginFail::Broken(format!("send login: {e}")))?;
        let (_, reply) = read_packet(&mut s)
            .await
            .ok_or_else(|| LoginFail::Broken("closed before the login reply".into()))?;
        match err_code(&reply) {
            Some(code) => Err(LoginFail::Refused(
                code,
                String::from_utf8_lossy(&reply[9.min(reply.len())..]).into_owned(),
            )),
            None if reply.first() == Some(&0) => Ok(()),
            None => Err(LoginFail::Broken(format!("login reply {reply:?}"))),
        }
    })
    .await
    .unwrap_or_else(|_| Err(LoginFail::Broken("no login reply in time".into())))?;
    Ok(s)
}

/// A packet: header then payload.
pub(super) fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    kohaproxy_proxy::protocol::packets::packet(seq, payload)
}

/// Reads until the proxy closes `s` (end of stream or reset); returns how long that took,
/// or None if it was still open after `limit`.
pub(super) async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}
