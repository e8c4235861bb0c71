//! Connections to MariaDB servers, logged in as the client's own user.

use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::auth::Credential;
use crate::io::{read_packet, write_packet, ReadError};
use crate::protocol::handshake::{
    AuthSwitchRequest, HandshakeResponse, HandshakeV10, NATIVE_PASSWORD,
};
use crate::protocol::packets::{EOF, ERR, OK};
use crate::protocol::{Caps, Malformed};

/// Largest connection-phase packet accepted from a server.
const MAX_LOGIN_PACKET: usize = 64 * 1024;

/// A logged-in connection to one server.
#[derive(Debug)]
pub struct Backend {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read from the server and not yet forwarded.
    pub buf: BytesMut,
    /// The server's greeting (its version, salt, capabilities, thread id).
    pub greeting: HandshakeV10,
    /// Capabilities in force on this connection.
    pub caps: Caps,
    /// Name of the server (from the config), for logs.
    pub server: String,
}

/// Who to log in as, and with what.
#[derive(Debug, Clone)]
pub struct Login {
    /// Capabilities the client negotiated with the proxy.
    pub caps: Caps,
    /// Collation id the client asked for.
    pub collation: u8,
    /// Largest packet the client accepts.
    pub max_packet: u32,
    /// User name.
    pub user: Vec<u8>,
    /// SHA1(password), recovered from the client's login.
    pub credential: Credential,
    /// Initial schema.
    pub database: Option<Vec<u8>>,
    /// The client's connection attributes, passed on.
    pub attrs: Option<Vec<u8>>,
}

/// Why a backend connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// TCP connect failed or timed out.
    #[error("cannot connect to {server}: {source}")]
    Connect {
        /// Server name.
        server: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading or writing failed during login.
    #[error("login to {server} failed: {source}")]
    Read {
        /// Server name.
        server: String,
        /// The read error.
        source: ReadError,
    },
    /// The server's packets made no sense.
    #[error("login to {server}: {source}")]
    Protocol {
        /// Server name.
        server: String,
        /// What was malformed.
        source: Malformed,
    },
    /// The server refused the login with this ERR payload (forwarded to the client as is).
    #[error("{server} refused the login")]
    Refused {
        /// Server name.
        server: String,
        /// The ERR packet's payload.
        err: BytesMut,
    },
    /// The server asked for an authentication method the proxy cannot answer.
    #[error(
        "{server} asks for authentication plugin {plugin}, only mysql_native_password is supported"
    )]
    UnsupportedPlugin {
        /// Server name.
        server: String,
        /// The plugin name.
        plugin: String,
    },
}

/// Only reads a server's greeting (used to learn what to advertise to clients).
pub async fn greeting(
    server: &str,
    address: &str,
    timeout: Duration,
) -> Result<HandshakeV10, BackendError> {
    let mut stream = connect_tcp(server, address, timeout).await?;
    let mut buf = BytesMut::new();
    let read = tokio::time::timeout(
        timeout,
        read_packet(&mut stream, &mut buf, MAX_LOGIN_PACKET),
    );
    let (_, payload) = flatten(server, read.await)?;
    if payload.first() == Some(&ERR) {
        return Err(BackendError::Refused {
            server: server.into(),
            err: payload,
        });
    }
    HandshakeV10::decode(&payload).map_err(|source| BackendError::Protocol {
        server: server.into(),
        source,
    })
}

/// Connects to `address` and logs in as `login`. On success returns the connection and the
/// server's final OK payload (to forward to the client).
pub async fn connect(
    server: &str,
    address: &str,
    login: &Login,
    timeout: Duration,
) -> Result<(Backend, BytesMut), BackendError> {
    let stream = connect_tcp(server, address, timeout).await?;
    match tokio::time::timeout(timeout, handshake(server, stream, login)).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::Read {
            server: server.into(),
            source: ReadError::Io(std::io::ErrorKind::TimedOut.into()),
        }),
    }
}

async fn connect_tcp(
    server: &str,
    address: &str,
    timeout: Duration,
) -> Result<TcpStream, BackendError> {
    let err = |source| BackendError::Connect {
        server: server.into(),
        source,
    };
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| err(std::io::ErrorKind::TimedOut.into()))?
        .map_err(err)?;
    stream.set_nodelay(true).map_err(err)?;
    Ok(stream)
}

fn flatten<T>(
    server: &str,
    r: Result<Result<T, ReadError>, tokio::time::error::Elapsed>,
) -> Result<T, BackendError> {
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(BackendError::Read {
            server: server.into(),
            source,
        }),
        Err(_) => Err(BackendError::Read {
            server: server.into(),
            source: ReadError::Io(std::io::ErrorKind::TimedOut.into()),
        }),
    }
}

async fn handshake(
    server: &str,
    mut stream: TcpStream,
    login: &Login,
) -> Result<(Backend, BytesMut), BackendError> {
    let read_err = |source| BackendError::Read {
        server: server.into(),
        source,
    };
    let proto = |source| BackendError::Protocol {
        server: server.into(),
        source,
    };
    let mut buf = BytesMut::with_capacity(crate::io::INITIAL_BUFFER);
    let (_, payload) = read_packet(&mut stream, &mut buf, MAX_LOGIN_PACKET)
        .await
        .map_err(read_err)?;
    if payload.first() == Some(&ERR) {
        return Err(BackendError::Refused {
            server: server.into(),
            err: payload,
        });
    }
    let greeting = HandshakeV10::decode(&payload).map_err(proto)?;
    // Carry the client's own flags, less what this server lacks.
    let required = Caps::PROTOCOL_41 | Caps::SECURE_CONNECTION | Caps::PLUGIN_AUTH;
    let mut caps = Caps((login.caps.0 & greeting.caps.0) | (required & greeting.caps.0));
    if login.database.is_none() {
        caps = Caps(caps.0 & !Caps::CONNECT_WITH_DB);
    }
    if login.attrs.is_none() {
        caps = Caps(caps.0 & !Caps::CONNECT_ATTRS);
    }
    let response = HandshakeResponse {
        caps,
        max_packet: login.max_packet,
        collation: login.collation,
        user: login.user.clone(),
        auth_response: login.credential.scramble(&greeting.scramble),
        database: login.database.clone(),
        auth_plugin: Some(NATIVE_PASSWORD.to_vec()),
        attrs: login.attrs.clone(),
    };
    write_packet(&mut stream, 1, &response.encode())
        .await
        .map_err(|e| read_err(e.into()))?;
    let ok = finish_auth(server, &mut stream, &mut buf, &login.credential).await?;
    Ok((
        Backend {
            stream,
            buf,
            greeting,
            caps,
            server: server.into(),
        },
        ok,
    ))
}

/// Reads the server's answers to a login or COM_CHANGE_USER, answering auth switches with
/// `credential`, until OK (returned) or ERR (`Refused`).
pub async fn finish_auth(
    server: &str,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    credential: &Credential,
) -> Result<BytesMut, BackendError> {
    let read_err = |source| BackendError::Read {
        server: server.into(),
        source,
    };
    loop {
        let (mut seq, payload) = read_packet(stream, buf, MAX_LOGIN_PACKET)
            .await
            .map_err(read_err)?;
        match payload.first() {
            Some(&OK) => return Ok(payload),
            Some(&ERR) => {
                return Err(BackendError::Refused {
                    server: server.into(),
                    err: payload,
                })
            }
            Some(&EOF) => {
                let switch = AuthSwitchRequest::decode(&payload).map_err(|source| {
                    BackendError::Protocol {
                        server: server.into(),
                        source,
                    }
                })?;
                if switch.plugin != NATIVE_PASSWORD {
                    return Err(BackendError::UnsupportedPlugin {
                        server: server.into(),
                        plugin: String::from_utf8_lossy(&switch.plugin).into_owned(),
                    });
                }
                seq = seq.wrapping_add(1);
                write_packet(stream, seq, &credential.scramble(&switch.data))
                    .await
                    .map_err(|e| read_err(e.into()))?;
            }
            _ => {
                return Err(BackendError::Protocol {
                    server: server.into(),
                    source: Malformed {
                        what: "authentication reply",
                    },
                })
            }
        }
    }
}
