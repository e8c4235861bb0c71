//! The connection phase: the server's greeting, the client's login, the auth switch and
//! COM_CHANGE_USER, decoded from peer bytes and encoded again as the proxy does.

use kohaproxy_config::PasswordHash;
use kohaproxy_proxy::auth;
use kohaproxy_proxy::protocol::handshake::{
    AuthSwitchRequest, ChangeUser, HandshakeResponse, HandshakeV10, NATIVE_PASSWORD,
};
use kohaproxy_proxy::protocol::Caps;

/// A salt as `auth::new_salt` makes them.
const SALT: &[u8; 20] = b"0123456789abcdefghij";

/// Input: a selector byte (which packet, modulo 4), then, for COM_CHANGE_USER, 4 bytes of
/// the client's capabilities, then the payload.
pub fn handshake(data: &[u8]) {
    let ([which], rest) = crate::prefix::<1>(data);
    match which % 4 {
        0 => greeting(rest),
        1 => login(rest),
        2 => auth_switch(rest),
        _ => {
            let (caps, payload) = crate::prefix::<4>(rest);
            change_user(payload, Caps(u64::from(u32::from_le_bytes(caps))));
        }
    }
}

/// A server's greeting, and the greeting the proxy builds from it for its clients (its
/// own salt, the server's version and capabilities), which must read back the same.
fn greeting(payload: &[u8]) {
    let Ok(server) = HandshakeV10::decode(payload) else {
        return;
    };
    assert!(server.scramble.len() >= 8);
    let ours = HandshakeV10 {
        server_version: server.server_version.clone(),
        connection_id: server.connection_id.wrapping_add(1),
        scramble: SALT.to_vec(),
        caps: Caps(server.caps.0 & Caps::PROXYABLE | Caps::SECURE_CONNECTION),
        collation: server.collation,
        status: server.status,
        auth_plugin: NATIVE_PASSWORD.to_vec(),
    };
    let again = HandshakeV10::decode(&ours.encode()).expect("the proxy's greeting reads back");
    assert_eq!(again, ours);
}

/// A client's login: the SSL-request test, the password check, and the login encoded
/// again (toward a backend), which must be stable once encoded.
fn login(payload: &[u8]) {
    let _ = HandshakeResponse::is_ssl_request(payload);
    let Ok(login) = HandshakeResponse::decode(payload) else {
        return;
    };
    let stored = PasswordHash::from_plain("koha");
    let _ = auth::verify(&stored, SALT, &login.auth_response);
    let _ = auth::verify(&PasswordHash::Empty, SALT, &login.auth_response);
    let lenenc = login.caps.has(Caps::PLUGIN_AUTH_LENENC_DATA);
    let secure = login.caps.has(Caps::SECURE_CONNECTION) && login.auth_response.len() < 256;
    if !(lenenc || secure) {
        return;
    }
    let first = login.encode();
    let again = HandshakeResponse::decode(&first).expect("an encoded login reads back");
    assert_eq!(again.encode(), first, "login encoding is not stable");
    assert_eq!(again.user, login.user);
    assert_eq!(again.auth_response, login.auth_response);
}

/// An auth switch request reads back the same once encoded.
fn auth_switch(payload: &[u8]) {
    let Ok(switch) = AuthSwitchRequest::decode(payload) else {
        return;
    };
    let again = AuthSwitchRequest::decode(&switch.encode()).expect("a switch reads back");
    assert_eq!(again, switch);
}

/// COM_CHANGE_USER from a client, encoded again for a backend with the same
/// capabilities: stable once encoded.
fn change_user(payload: &[u8], caps: Caps) {
    let Ok(request) = ChangeUser::decode(payload, caps) else {
        return;
    };
    if !caps.has(Caps::SECURE_CONNECTION) {
        return;
    }
    let first = request.encode(caps);
    let again = ChangeUser::decode(&first, caps).expect("an encoded COM_CHANGE_USER reads back");
    assert_eq!(
        again.encode(caps),
        first,
        "COM_CHANGE_USER encoding is not stable"
    );
    assert_eq!(again.user, request.user);
    assert_eq!(again.auth_response, request.auth_response);
}
