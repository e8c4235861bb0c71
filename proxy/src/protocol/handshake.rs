//! The connection phase: HandshakeV10 (server greeting), HandshakeResponse41 (client login),
//! AuthSwitchRequest, and COM_CHANGE_USER, which carries a login in the command phase.

use super::wire::{put_lenenc, put_null_str, Reader};
use super::{Caps, Malformed};

/// Name of the only authentication plugin the proxy speaks.
pub const NATIVE_PASSWORD: &[u8] = b"mysql_native_password";

/// Length of a mysql_native_password scramble (the salt).
pub const SCRAMBLE_LEN: usize = 20;

/// The server's greeting (HandshakeV10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeV10 {
    /// Server version string, e.g. `5.5.5-10.11.19-MariaDB-0+deb12u1`.
    pub server_version: Vec<u8>,
    /// Connection (thread) id.
    pub connection_id: u32,
    /// The scramble (salt), 20 bytes for mysql_native_password.
    pub scramble: Vec<u8>,
    /// Capabilities offered, including MariaDB's extended ones.
    pub caps: Caps,
    /// Default collation id.
    pub collation: u8,
    /// Server status flags.
    pub status: u16,
    /// Default authentication plugin.
    pub auth_plugin: Vec<u8>,
}

impl HandshakeV10 {
    /// Decodes a greeting payload.
    pub fn decode(payload: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(payload, "handshake");
        let err = Malformed { what: "handshake" };
        if r.u8()? != 10 {
            return Err(err);
        }
        let server_version = r.null_str()?.to_vec();
        let connection_id = r.u32()?;
        let mut scramble = r.take(8)?.to_vec();
        r.u8()?;
        let lower_lo = r.u16()?;
        let collation = r.u8()?;
        let status = r.u16()?;
        let lower_hi = r.u16()?;
        let lower = lower_lo as u32 | (lower_hi as u32) << 16;
        let auth_len = r.u8()? as usize;
        r.take(6)?;
        let ext = r.u32()?;
        let upper = if lower as u64 & Caps::CLIENT_MYSQL == 0 {
            ext
        } else {
            0
        };
        let caps = Caps::from_parts(lower, upper);
        if caps.has(Caps::SECURE_CONNECTION) {
            let n = auth_len.saturating_sub(8).max(13);
            let part2 = r.take(n)?;
            // part 2 is NUL-terminated; the scramble is the bytes before the NUL.
            let end = part2.iter().position(|&b| b == 0).unwrap_or(part2.len());
            scramble.extend_from_slice(&part2[..end]);
        }
        let auth_plugin = if caps.has(Caps::PLUGIN_AUTH) {
            r.null_str_or_rest().to_vec()
        } else {
            NATIVE_PASSWORD.to_vec()
        };
        Ok(HandshakeV10 {
            server_version,
            connection_id,
            scramble,
            caps,
            collation,
            status,
            auth_plugin,
        })
    }

    /// Encodes a greeting payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(10);
        put_null_str(&mut out, &self.server_version);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        out.extend_from_slice(&self.scramble[..8]);
        out.push(0);
        let lower = self.caps.lower();
        out.extend_from_slice(&(lower as u16).to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&((lower >> 16) as u16).to_le_bytes());
        out.push(self.scramble.len() as u8 + 1);
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&self.caps.upper().to_le_bytes());
        put_null_str(&mut out, &self.scramble[8..]);
        put_null_str(&mut out, &self.auth_plugin);
        out
    }
}

/// The client's login (HandshakeResponse41), or the SSL request that precedes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    /// Capabilities the client asked for (extended ones included).
    pub caps: Caps,
    /// Largest packet the client accepts.
    pub max_packet: u32,
    /// Collation id the client asked for.
    pub collation: u8,
    /// User name.
    pub user: Vec<u8>,
    /// The authentication response (a 20-byte scramble or empty for native passwords).
    pub auth_response: Vec<u8>,
    /// Initial schema, if CONNECT_WITH_DB.
    pub database: Option<Vec<u8>>,
    /// Authentication plugin the response was made for.
    pub auth_plugin: Option<Vec<u8>>,
    /// Raw connection attributes (the lenenc block's contents), if CONNECT_ATTRS.
    pub attrs: Option<Vec<u8>>,
}

impl HandshakeResponse {
    /// Whether `payload` is an SSL request (a login cut short to ask for TLS).
    pub fn is_ssl_request(payload: &[u8]) -> bool {
        payload.len() == 32
            && payload[0..4]
                .try_into()
                .map(|b| u32::from_le_bytes(b) as u64 & Caps::SSL != 0)
                .unwrap_or(false)
    }

    /// Decodes a login payload. Only protocol 4.1 logins are accepted.
    pub fn decode(payload: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(payload, "handshake response");
        let err = Malformed {
            what: "handshake response",
        };
        let lower = r.u32()?;
        if lower as u64 & Caps::PROTOCOL_41 == 0 {
            return Err(err);
        }
        let max_packet = r.u32()?;
        let collation = r.u8()?;
        r.take(19)?;
        let ext = r.u32()?;
        let upper = if lower as u64 & Caps::CLIENT_MYSQL == 0 {
            ext
        } else {
            0
        };
        let caps = Caps::from_parts(lower, upper);
        let user = r.null_str()?.to_vec();
        let auth_response = if caps.has(Caps::PLUGIN_AUTH_LENENC_DATA) {
            r.lenenc_bytes()?.to_vec()
        } else if caps.has(Caps::SECURE_CONNECTION) {
            let n = r.u8()? as usize;
            r.take(n)?.to_vec()
        } else {
            r.null_str()?.to_vec()
        };
        let database = if caps.has(Caps::CONNECT_WITH_DB) && !r.is_empty() {
            Some(r.null_str_or_rest().to_vec())
        } else {
            None
        };
        let (auth_plugin, attrs) = plugin_and_attrs(&mut r, caps)?;
        Ok(HandshakeResponse {
            caps,
            max_packet,
            collation,
            user,
            auth_response,
            database,
            auth_plugin,
            attrs,
        })
    }

    /// Encodes a login payload (used toward backends).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.attrs.as_ref().map_or(0, Vec::len));
        out.extend_from_slice(&self.caps.lower().to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&[0; 19]);
        out.extend_from_slice(&self.caps.upper().to_le_bytes());
        put_null_str(&mut out, &self.user);
        if self.caps.has(Caps::PLUGIN_AUTH_LENENC_DATA) {
            put_lenenc(&mut out, self.auth_response.len() as u64);
        } else {
            out.push(self.auth_response.len() as u8);
        }
        out.extend_from_slice(&self.auth_response);
        if self.caps.has(Caps::CONNECT_WITH_DB) {
            put_null_str(&mut out, self.database.as_deref().unwrap_or_default());
        }
        put_plugin_and_attrs(
            &mut out,
            self.caps,
            self.auth_plugin.as_deref(),
            self.attrs.as_deref(),
        );
        out
    }
}

/// The optional tail shared by a login and COM_CHANGE_USER: the plugin name (with
/// PLUGIN_AUTH) and the connection attributes (with CONNECT_ATTRS), each only if present.
type PluginAndAttrs = (Option<Vec<u8>>, Option<Vec<u8>>);

fn plugin_and_attrs(r: &mut Reader<'_>, caps: Caps) -> Result<PluginAndAttrs, Malformed> {
    let plugin =
        (caps.has(Caps::PLUGIN_AUTH) && !r.is_empty()).then(|| r.null_str_or_rest().to_vec());
    let attrs = if caps.has(Caps::CONNECT_ATTRS) && !r.is_empty() {
        Some(r.lenenc_bytes()?.to_vec())
    } else {
        None
    };
    Ok((plugin, attrs))
}

/// Writes the tail read by [`plugin_and_attrs`].
fn put_plugin_and_attrs(
    out: &mut Vec<u8>,
    caps: Caps,
    plugin: Option<&[u8]>,
    attrs: Option<&[u8]>,
) {
    if caps.has(Caps::PLUGIN_AUTH) {
        put_null_str(out, plugin.unwrap_or(NATIVE_PASSWORD));
    }
    if caps.has(Caps::CONNECT_ATTRS) {
        let attrs = attrs.unwrap_or_default();
        put_lenenc(out, attrs.len() as u64);
        out.extend_from_slice(attrs);
    }
}

/// AuthSwitchRequest (0xfe): the server asks for a response made with another plugin/salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitchRequest {
    /// The plugin to use.
    pub plugin: Vec<u8>,
    /// Plugin data (for native passwords: the 20-byte salt).
    pub data: Vec<u8>,
}

impl AuthSwitchRequest {
    /// Decodes a payload that starts with 0xfe.
    pub fn decode(payload: &[u8]) -> Result<Self, Malformed> {
        let mut r = Reader::new(payload, "auth switch request");
        if r.u8()? != 0xfe {
            return Err(Malformed {
                what: "auth switch request",
            });
        }
        let plugin = r.null_str_or_rest().to_vec();
        let mut data = r.remaining().to_vec();
        if data.last() == Some(&0) {
            data.pop();
        }
        Ok(AuthSwitchRequest { plugin, data })
    }

    /// Encodes the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.plugin.len() + self.data.len() + 1);
        out.push(0xfe);
        put_null_str(&mut out, &self.plugin);
        put_null_str(&mut out, &self.data);
        out
    }
}

/// COM_CHANGE_USER's payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeUser {
    /// New user name.
    pub user: Vec<u8>,
    /// Authentication response for the connection's original scramble.
    pub auth_response: Vec<u8>,
    /// New default schema (may be empty).
    pub database: Vec<u8>,
    /// Collation id, if sent.
    pub collation: Option<u16>,
    /// Plugin the response was made with, if sent.
    pub auth_plugin: Option<Vec<u8>>,
    /// Raw connection attributes, if sent.
    pub attrs: Option<Vec<u8>>,
}

impl ChangeUser {
    /// Decodes a COM_CHANGE_USER payload (starting with the command byte) sent by a client
    /// that negotiated `caps`.
    pub fn decode(payload: &[u8], caps: Caps) -> Result<Self, Malformed> {
        let mut r = Reader::new(payload, "change user");
        r.u8()?;
        let user = r.null_str()?.to_vec();
        let auth_response = if caps.has(Caps::SECURE_CONNECTION) {
            let n = r.u8()? as usize;
            r.take(n)?.to_vec()
        } else {
            r.null_str()?.to_vec()
        };
        let database = r.null_str_or_rest().to_vec();
        let collation = if r.remaining().len() >= 2 {
            Some(r.u16()?)
        } else {
            None
        };
        let (auth_plugin, attrs) = plugin_and_attrs(&mut r, caps)?;
        Ok(ChangeUser {
            user,
            auth_response,
            database,
            collation,
            auth_plugin,
            attrs,
        })
    }

    /// Encodes the payload (command byte included) for a backend that negotiated `caps`.
    pub fn encode(&self, caps: Caps) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.attrs.as_ref().map_or(0, Vec::len));
        out.push(super::command::CHANGE_USER);
        put_null_str(&mut out, &self.user);
        out.push(self.auth_response.len() as u8);
        out.extend_from_slice(&self.auth_response);
        put_null_str(&mut out, &self.database);
        out.extend_from_slice(&self.collation.unwrap_or(0).to_le_bytes());
        put_plugin_and_attrs(
            &mut out,
            caps,
            self.auth_plugin.as_deref(),
            self.attrs.as_deref(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MariaDB 10.11 greeting as captured on the wire (payload only).
    fn mariadb_greeting() -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(b"5.5.5-10.11.19-MariaDB-0+deb12u1\0");
        p.extend_from_slice(&42u32.to_le_bytes());
        p.extend_from_slice(b"abcdefgh\0");
        p.extend_from_slice(&0xf7feu16.to_le_bytes());
        p.push(45);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&0x81bfu16.to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&0x1du32.to_le_bytes());
        p.extend_from_slice(b"ijklmnopqrst\0");
        p.extend_from_slice(b"mysql_native_password\0");
        p
    }

    #[test]
    fn greeting_decodes_and_re_encodes_identically() {
        let raw = mariadb_greeting();
        let h = HandshakeV10::decode(&raw).unwrap();
        assert_eq!(h.connection_id, 42);
        assert_eq!(h.scramble, b"abcdefghijklmnopqrst");
        assert_eq!(h.collation, 45);
        assert!(!h.caps.has(Caps::CLIENT_MYSQL));
        assert!(h.caps.has(Caps::MARIADB_STMT_BULK_OPERATIONS));
        assert!(h.caps.has(Caps::DEPRECATE_EOF));
        assert_eq!(h.auth_plugin, NATIVE_PASSWORD);
        assert_eq!(h.encode(), raw);
    }

    #[test]
    fn truncated_greetings_are_errors_not_panics() {
        let raw = mariadb_greeting();
        for n in 0..raw.len() - 22 {
            let _ = HandshakeV10::decode(&raw[..n]);
        }
        assert!(HandshakeV10::decode(&raw[..20]).is_err());
    }

    #[test]
    fn login_round_trips_with_every_optional_part() {
        let login = HandshakeResponse {
            caps: Caps(
                Caps::PROTOCOL_41
                    | Caps::SECURE_CONNECTION
                    | Caps::PLUGIN_AUTH
                    | Caps::PLUGIN_AUTH_LENENC_DATA
                    | Caps::CONNECT_WITH_DB
                    | Caps::CONNECT_ATTRS
                    | Caps::FOUND_ROWS
                    | Caps::MARIADB_STMT_BULK_OPERATIONS,
            ),
            max_packet: 1 << 24,
            collation: 33,
            user: b"koha".to_vec(),
            auth_response: vec![7; 20],
            database: Some(b"koha".to_vec()),
            auth_plugin: Some(NATIVE_PASSWORD.to_vec()),
            attrs: Some(b"\x04_pid\x0212".to_vec()),
        };
        let decoded = HandshakeResponse::decode(&login.encode()).unwrap();
        assert_eq!(decoded, login);
        let bytes = login.encode();
        for n in 0..bytes.len() {
            let _ = HandshakeResponse::decode(&bytes[..n]);
        }
    }

    #[test]
    fn pre_41_logins_and_ssl_requests_are_recognised() {
        assert!(HandshakeResponse::decode(&[0; 40]).is_err());
        let mut ssl = vec![0u8; 32];
        ssl[..4].copy_from_slice(&((Caps::SSL | Caps::PROTOCOL_41) as u32).to_le_bytes());
        assert!(HandshakeResponse::is_ssl_request(&ssl));
    }

    #[test]
    fn auth_switch_and_change_user_round_trip() {
        let s = AuthSwitchRequest {
            plugin: NATIVE_PASSWORD.to_vec(),
            data: vec![9; 20],
        };
        assert_eq!(AuthSwitchRequest::decode(&s.encode()).unwrap(), s);
        let caps = Caps(Caps::PROTOCOL_41 | Caps::SECURE_CONNECTION | Caps::PLUGIN_AUTH);
        let c = ChangeUser {
            user: b"root".to_vec(),
            auth_response: vec![],
            database: b"koha".to_vec(),
            collation: Some(45),
            auth_plugin: Some(NATIVE_PASSWORD.to_vec()),
            attrs: None,
        };
        assert_eq!(ChangeUser::decode(&c.encode(caps), caps).unwrap(), c);
    }
}
