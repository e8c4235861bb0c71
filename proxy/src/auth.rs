//! mysql_native_password on both sides of the proxy.
//!
//! A client proves it knows the password by sending
//! `SHA1(pw) XOR SHA1(salt ++ SHA1(SHA1(pw)))`. The proxy stores only `SHA1(SHA1(pw))`
//! (the `*HEX` of mysql.user), so it can undo the XOR, recover `SHA1(pw)`, check it against
//! the stored hash, and use it to answer any backend's salt as the same user. The plain
//! password is never stored or needed.

use kohaproxy_config::PasswordHash;
use rand::Rng;
use sha1::{Digest, Sha1};

use crate::protocol::handshake::SCRAMBLE_LEN;

/// SHA1(password): what the proxy recovers from a client's login and answers backends with.
/// `None` stands for the empty password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(Option<[u8; 20]>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

impl Credential {
    /// The credential of an account with no password.
    pub const EMPTY: Credential = Credential(None);

    /// The credential of a plain-text password (used by tests and the monitor).
    pub fn from_password(password: &str) -> Credential {
        if password.is_empty() {
            Credential(None)
        } else {
            Credential(Some(Sha1::digest(password.as_bytes()).into()))
        }
    }

    /// The response that proves this credential to a server that sent `salt`.
    pub fn scramble(&self, salt: &[u8]) -> Vec<u8> {
        let Some(stage1) = self.0 else {
            return Vec::new();
        };
        let stage2: [u8; 20] = Sha1::digest(stage1).into();
        let mask = salted(salt, &stage2);
        xor(&stage1, &mask).to_vec()
    }
}

/// Checks a client's `response` to `salt` against the stored hash; on success returns the
/// recovered credential for logging into backends.
pub fn verify(stored: &PasswordHash, salt: &[u8], response: &[u8]) -> Option<Credential> {
    match stored {
        PasswordHash::Empty => response.is_empty().then_some(Credential::EMPTY),
        PasswordHash::DoubleSha1(stage2) => {
            let response: &[u8; 20] = response.try_into().ok()?;
            let stage1 = xor(response, &salted(salt, stage2));
            let check: [u8; 20] = Sha1::digest(stage1).into();
            constant_time_eq(&check, stage2).then_some(Credential(Some(stage1)))
        }
    }
}

/// A fresh random salt: 20 printable ASCII bytes, never NUL (some clients stop at a NUL).
pub fn new_salt() -> [u8; SCRAMBLE_LEN] {
    let mut rng = rand::rng();
    let mut salt = [0u8; SCRAMBLE_LEN];
    for b in &mut salt {
        *b = rng.random_range(0x21u8..0x7f);
    }
    salt
}

fn salted(salt: &[u8], stage2: &[u8; 20]) -> [u8; 20] {
    let mut h = Sha1::new();
    h.update(salt);
    h.update(stage2);
    h.finalize().into()
}

fn xor(a: &[u8; 20], b: &[u8; 20]) -> [u8; 20] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

fn constant_time_eq(a: &[u8; 20], b: &[u8; 20]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(pw: &str) -> PasswordHash {
        let s1 = Sha1::digest(pw.as_bytes());
        PasswordHash::DoubleSha1(Sha1::digest(s1).into())
    }

    #[test]
    fn a_client_response_is_verified_and_its_credential_recovered() {
        let salt = new_salt();
        let client = Credential::from_password("koha");
        let response = client.scramble(&salt);
        let recovered = verify(&stored("koha"), &salt, &response).unwrap();
        assert_eq!(recovered, client);
        // The recovered credential answers another server's salt like the client would.
        let other = new_salt();
        assert_eq!(recovered.scramble(&other), client.scramble(&other));
    }

    #[test]
    fn wrong_password_wrong_length_and_empty_are_refused() {
        let salt = new_salt();
        let wrong = Credential::from_password("nope").scramble(&salt);
        assert!(verify(&stored("koha"), &salt, &wrong).is_none());
        assert!(verify(&stored("koha"), &salt, &wrong[..19]).is_none());
        assert!(verify(&stored("koha"), &salt, &[]).is_none());
        assert!(verify(&PasswordHash::Empty, &salt, &wrong).is_none());
        assert_eq!(
            verify(&PasswordHash::Empty, &salt, &[]),
            Some(Credential::EMPTY)
        );
    }

    #[test]
    fn salts_are_random_printable_and_nul_free() {
        let a = new_salt();
        assert_ne!(a, new_salt());
        assert!(a.iter().all(|&b| (0x21..0x7f).contains(&b)));
    }
}
