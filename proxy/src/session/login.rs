//! The connection phase: the greeting, authentication against the configured users, the
//! login on the master as the same user, and COM_CHANGE_USER (a login again, mid-session).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::router::{self, Router};
use super::{MasterLink, Session, SessionError, Which, MAX_LOGIN_PACKET};
use crate::auth;
use crate::backend::{self, BackendError, Login};
use crate::io::{read_packet, read_packet_exact, write_packet, ReadError};
use crate::protocol::handshake::{
    AuthSwitchRequest, ChangeUser, HandshakeResponse, HandshakeV10, NATIVE_PASSWORD,
};
use crate::protocol::packets::ERR;
use crate::protocol::Caps;
use crate::refusal::{Refusal, Stage};
use crate::stats::{Booking, SessionEntry};
use crate::tls::ClientStream;
use crate::Shared;

/// Refuses the login with `refusal`, numbered `seq`: the session ends.
async fn refuse<W: AsyncWriteExt + Unpin>(
    client: &mut W,
    shared: &Shared,
    seq: u8,
    refusal: Refusal,
) -> SessionError {
    match super::send_refusal(client, &shared.stats, refusal, seq, Stage::Login).await {
        Err(e) => e,
        Ok(()) => SessionError::ClientProtocol("login refused"),
    }
}

/// The connection phase: greet, authenticate against the configured users, log into the
/// master as the same user, and pass the master's OK on.
pub(super) async fn login(
    shared: &Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    id: u32,
) -> Result<Session, SessionError> {
    let salt = auth::new_salt();
    let mut cbuf = BytesMut::with_capacity(crate::io::INITIAL_BUFFER);
    let (mut client, seq, mut response) = greet(shared, tcp, id, &salt, &mut cbuf).await?;
    let user_name = String::from_utf8_lossy(&response.user).into_owned();
    let mut seq = seq;
    if needs_native_answer(response.auth_plugin.as_deref(), &response.auth_response) {
        (seq, response.auth_response) =
            ask_native_answer(&mut client, &mut cbuf, &salt, seq).await?;
    }
    let Some(credential) = shared.authenticate(&user_name, &salt, &response.auth_response) else {
        let refusal = access_denied(user_name, peer, !response.auth_response.is_empty());
        return Err(refuse(&mut client, shared, seq, refusal).await);
    };

    let login = Login {
        caps: response.caps,
        collation: response.collation,
        max_packet: response.max_packet,
        user: response.user.clone(),
        credential,
        database: response.database.clone(),
        attrs: response.attrs.clone(),
    };
    let split = shared.config.routing.read_write_split;
    let mut master_login = login.clone();
    // The master connection tracks session state (for the router, and to restore it on
    // a new master after a failover); the client is shown only what it tracks.
    master_login.caps = Caps(master_login.caps.0 | Caps::SESSION_TRACK);
    let (backend, ok, master_term, master_index) = match shared.connect_master(&master_login).await
    {
        Ok(b) => b,
        Err(BackendError::Refused { err, .. }) => {
            client
                .write_all(&crate::protocol::packets::packet(seq, &err))
                .await?;
            return Err(SessionError::Login("the master refused the login".into()));
        }
        Err(e) => return Err(refuse(&mut client, shared, seq, no_master(&e)).await),
    };
    let status = crate::protocol::packets::ok_status(&ok).unwrap_or(0);
    let entry = Arc::new(SessionEntry::new(
        id,
        peer,
        &user_name,
        backend.greeting.connection_id,
    ));
    shared.sessions.insert(entry.clone());
    let server = master_index.and_then(|i| shared.stats.servers.get(i));
    let master_link = MasterLink::Live {
        _booking: Booking::open(server, &entry, &backend.server),
    };
    let mut session = Session {
        id,
        peer,
        client,
        cbuf,
        caps: login.caps,
        salt,
        user: login.user.clone(),
        login,
        master: backend,
        master_index,
        master_term,
        master_link,
        server_prepared: false,
        topology_changes: shared.topology.subscribe(),
        replicas: Vec::new(),
        last: Which::Master,
        status,
        router: Router::new(split, router::default_tracking(shared)),
        entry,
        scratch: Vec::new(),
        out: Vec::new(),
        resend: Vec::new(),
        shutdown: shared.shutdown.clone(),
        shared: shared.clone(),
    };
    // The login OK may carry session state the client did not ask for.
    session.send_ok(seq, &ok, false).await?;
    session.track_state().await?;
    Ok(session)
}

/// Sends the greeting (the master's version and capabilities, this session's id and
/// salt), reads the client's login (after TLS, if it asks for it) and returns the
/// stream, the next sequence id and the login, its capabilities cut to what was offered.
async fn greet(
    shared: &Arc<Shared>,
    mut tcp: TcpStream,
    id: u32,
    salt: &[u8; 20],
    cbuf: &mut BytesMut,
) -> Result<(ClientStream, u8, HandshakeResponse), SessionError> {
    let template = match shared.greeting().await {
        Ok(g) => g,
        Err(e) => return Err(refuse(&mut tcp, shared, 0, no_master(&e)).await),
    };
    let mut advertised = Caps(template.caps.0 & Caps::PROXYABLE);
    if shared.tls.is_some() {
        advertised = Caps(advertised.0 | Caps::SSL);
    }
    let greeting = HandshakeV10 {
        server_version: template.server_version.clone(),
        connection_id: id,
        scramble: salt.to_vec(),
        caps: advertised,
        collation: template.collation,
        status: template.status,
        auth_plugin: NATIVE_PASSWORD.to_vec(),
    };
    write_packet(&mut tcp, 0, &greeting.encode()).await?;

    let (mut seq, mut payload) = match read_packet_exact(&mut tcp, MAX_LOGIN_PACKET).await {
        Ok(p) => p,
        Err(ReadError::TooLarge(_)) => {
            return Err(refuse(&mut tcp, shared, 2, Refusal::BadHandshake).await)
        }
        Err(e) => return Err(SessionError::Client(e)),
    };
    let mut client = ClientStream::Plain(tcp);
    if HandshakeResponse::is_ssl_request(&payload) {
        // TLS starts right after the SSL request (read exactly, so the ClientHello is
        // still in the socket).
        let Some(acceptor) = &shared.tls else {
            let refusal = Refusal::TlsNotConfigured;
            return Err(refuse(&mut client, shared, seq.wrapping_add(1), refusal).await);
        };
        let ClientStream::Plain(tcp) = client else {
            return Err(SessionError::ClientProtocol("second SSL request"));
        };
        let tls = acceptor
            .accept(tcp)
            .await
            .map_err(|e| SessionError::Login(format!("TLS handshake failed: {e}")))?;
        client = ClientStream::Tls(Box::new(tls));
        (seq, payload) = match read_packet(&mut client, cbuf, MAX_LOGIN_PACKET).await {
            Ok(p) => p,
            Err(ReadError::TooLarge(_)) => {
                return Err(refuse(&mut client, shared, 3, Refusal::BadHandshake).await)
            }
            Err(e) => return Err(SessionError::Client(e)),
        };
    }
    let Ok(mut response) = HandshakeResponse::decode(&payload) else {
        let refusal = Refusal::BadHandshake;
        return Err(refuse(&mut client, shared, seq.wrapping_add(1), refusal).await);
    };
    // TLS is the proxy's business with this client, never carried to a backend.
    response.caps = Caps(response.caps.0 & advertised.0 & !Caps::SSL);
    Ok((client, seq.wrapping_add(1), response))
}

/// Whether a client answered for another plugin than mysql_native_password (or with an
/// answer of the wrong length) and must be asked again.
fn needs_native_answer(plugin: Option<&[u8]>, answer: &[u8]) -> bool {
    let native = plugin.is_none_or(|p| p == NATIVE_PASSWORD);
    !native || !matches!(answer.len(), 0 | 20)
}

/// Asks the client for a mysql_native_password answer to `salt` (AuthSwitchRequest
/// numbered `seq`); returns the next sequence id and the answer.
async fn ask_native_answer(
    client: &mut ClientStream,
    cbuf: &mut BytesMut,
    salt: &[u8; 20],
    seq: u8,
) -> Result<(u8, Vec<u8>), SessionError> {
    let switch = AuthSwitchRequest {
        plugin: NATIVE_PASSWORD.to_vec(),
        data: salt.to_vec(),
    };
    write_packet(client, seq, &switch.encode()).await?;
    let (s, data) = read_packet(client, cbuf, MAX_LOGIN_PACKET)
        .await
        .map_err(SessionError::Client)?;
    Ok((s.wrapping_add(1), data.to_vec()))
}

fn no_master(e: &BackendError) -> Refusal {
    Refusal::NoMaster {
        reason: e.to_string(),
    }
}

fn access_denied(user: String, peer: SocketAddr, with_password: bool) -> Refusal {
    Refusal::AccessDenied {
        user,
        host: peer.ip(),
        with_password,
    }
}

// === impl Session ===

impl Session {
    /// COM_CHANGE_USER: authenticated by the proxy like a login, then replayed on the
    /// backend with the recovered credential. A refused change closes the session: it
    /// must not carry on as the previous user.
    pub(super) async fn change_user(&mut self, len: usize) -> Result<(), SessionError> {
        self.entry.phase.set(crate::phase::Phase::LoggingIn);
        if len > MAX_LOGIN_PACKET {
            return Err(refuse(&mut self.client, &self.shared, 1, Refusal::PacketTooLarge).await);
        }
        let (_, payload) = read_packet(&mut self.client, &mut self.cbuf, MAX_LOGIN_PACKET)
            .await
            .map_err(SessionError::Client)?;
        let Ok(mut request) = ChangeUser::decode(&payload, self.caps) else {
            return Err(refuse(&mut self.client, &self.shared, 1, Refusal::Malformed).await);
        };
        let mut seq = 1u8;
        let mut salt = self.salt;
        if needs_native_answer(request.auth_plugin.as_deref(), &request.auth_response) {
            salt = auth::new_salt();
            (seq, request.auth_response) =
                ask_native_answer(&mut self.client, &mut self.cbuf, &salt, seq).await?;
        }
        let user_name = String::from_utf8_lossy(&request.user).into_owned();
        let Some(credential) = self
            .shared
            .authenticate(&user_name, &salt, &request.auth_response)
        else {
            let refusal = access_denied(user_name, self.peer, !request.auth_response.is_empty());
            return Err(refuse(&mut self.client, &self.shared, seq, refusal).await);
        };
        // Replay on the backend against its own scramble.
        request.auth_response = credential.scramble(&self.master.greeting.scramble);
        request.auth_plugin = Some(NATIVE_PASSWORD.to_vec());
        write_packet(
            &mut self.master.stream,
            0,
            &request.encode(self.master.caps),
        )
        .await
        .map_err(|e| self.backend_error(e.to_string()))?;
        let server = self.master.server.clone();
        let result = backend::finish_auth(
            &server,
            &mut self.master.stream,
            &mut self.master.buf,
            &credential,
        )
        .await;
        match result {
            Ok(ok) => {
                self.status = crate::protocol::packets::ok_status(&ok).unwrap_or(self.status);
                // The new user's session starts from the server's defaults; replica
                // connections are opened again as that user.
                self.forget_state(true);
                self.login.user = request.user.clone();
                self.login.credential = credential;
                self.login.database =
                    (!request.database.is_empty()).then(|| request.database.clone());
                if let Ok(mut u) = self.entry.user.lock() {
                    *u = user_name;
                }
                self.user = request.user;
                self.send_ok(seq, &ok, false).await?;
                self.track_state().await?;
                Ok(())
            }
            Err(BackendError::Refused { err, .. }) => {
                debug_assert_eq!(err.first(), Some(&ERR));
                self.client
                    .write_all(&crate::protocol::packets::packet(seq, &err))
                    .await?;
                Err(SessionError::Login(
                    "the backend refused COM_CHANGE_USER".into(),
                ))
            }
            Err(e) => Err(self.backend_error(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_logins_are_asked_again_for_a_native_answer() {
        let twenty = [7u8; 20];
        // (plugin, answer, asked again)
        type Row<'a> = (Option<&'a [u8]>, &'a [u8], bool);
        let table: &[Row] = &[
            (None, &twenty, false),
            (Some(NATIVE_PASSWORD), &twenty, false),
            (Some(NATIVE_PASSWORD), &[], false),
            (Some(b"caching_sha2_password"), &[1; 32], true),
            (Some(b"client_ed25519"), &[], true),
            (Some(NATIVE_PASSWORD), &[1; 8], true),
        ];
        for (plugin, answer, expected) in table {
            assert_eq!(
                needs_native_answer(*plugin, answer),
                *expected,
                "{:?} {}",
                plugin.map(String::from_utf8_lossy),
                answer.len()
            );
        }
    }
}
