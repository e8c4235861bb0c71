//! mysql_native_password for the TCP console: a random salt per connection and the check
//! of a client's answer against the configured plain password.

use sha1::{Digest, Sha1};

/// The plugin the console offers and checks.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";

/// A random 20-byte salt of printable ASCII (no NUL: the greeting ends part 2 with one).
pub fn salt() -> [u8; 20] {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut s = [0u8; 20];
    for b in &mut s {
        *b = rng.random_range(0x21u8..=0x7e);
    }
    s
}

/// Whether `response` is the mysql_native_password answer to `salt` for `password`:
/// SHA1(password) XOR SHA1(salt + SHA1(SHA1(password))). An empty password is answered by
/// an empty response.
pub fn check_native(password: &str, salt: &[u8], response: &[u8]) -> bool {
    if password.is_empty() {
        return response.is_empty();
    }
    if response.len() != 20 {
        return false;
    }
    let expected = scramble(password, salt);
    // No early exit: the time taken does not tell how much of the answer was right.
    expected
        .iter()
        .zip(response)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// What a client sends for `password` and `salt`.
pub fn scramble(password: &str, salt: &[u8]) -> [u8; 20] {
    let stage1: [u8; 20] = Sha1::digest(password.as_bytes()).into();
    let stage2: [u8; 20] = Sha1::digest(stage1).into();
    let mut h = Sha1::new();
    h.update(salt);
    h.update(stage2);
    let mask: [u8; 20] = h.finalize().into();
    let mut out = [0u8; 20];
    for (o, (a, b)) in out.iter_mut().zip(stage1.iter().zip(mask)) {
        *o = a ^ b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_and_wrong_answers() {
        let s = salt();
        assert!(check_native("secret", &s, &scramble("secret", &s)));
        assert!(!check_native("secret", &s, &scramble("Secret", &s)));
        assert!(!check_native("secret", &s, &scramble("secret", &salt())));
        assert!(!check_native("secret", &s, b""));
        assert!(!check_native("secret", &s, &[0u8; 19]));
        assert!(!check_native("secret", &s, &[0u8; 40]));
        assert!(check_native("", &s, b""));
        assert!(!check_native("", &s, &scramble("x", &s)));
    }

    #[test]
    fn salts_are_printable_and_differ() {
        let a = salt();
        assert!(a.iter().all(|b| (0x21..=0x7e).contains(b)));
        assert_ne!(a, salt());
    }

    #[test]
    fn a_server_holding_only_the_hash_accepts_the_answer() {
        // mysql.user's *2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19 is SHA1(SHA1("password")); the
        // server recovers SHA1(password) from the answer and hashes it again.
        let stored: Vec<u8> = (0..20)
            .map(|i| {
                u8::from_str_radix(
                    &"2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"[2 * i..2 * i + 2],
                    16,
                )
                .unwrap()
            })
            .collect();
        let s = salt();
        let answer = scramble("password", &s);
        let mut h = Sha1::new();
        h.update(s);
        h.update(&stored);
        let mask: [u8; 20] = h.finalize().into();
        let stage1: Vec<u8> = answer.iter().zip(mask).map(|(a, m)| a ^ m).collect();
        assert_eq!(Sha1::digest(&stage1).to_vec(), stored);
    }
}
