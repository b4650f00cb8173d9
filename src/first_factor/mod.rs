//! First-factor modes: how the gate learns that the console accepted a password.
//!
//! Each mode yields the user name and a *binding*: a keyed hash of whatever proves the
//! first factor (the Basic credentials), so a session opened with one set of credentials
//! is not accepted with another.

pub mod basic;
pub mod form;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use subtle::ConstantTimeEq;

use crate::keys::keyed_hash;

/// The binding of a session to first-factor credentials: 128 bits of a keyed hash.
pub fn binding(key: &[u8; 32], realm: &str, user: &str, secret: &[u8]) -> String {
    let hash = keyed_hash(
        key,
        &[b"binding", realm.as_bytes(), user.as_bytes(), secret],
    );
    B64URL.encode(hash.get(..16).unwrap_or(&hash))
}

/// Compares two bindings in constant time.
pub fn same_binding(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Whether a user name can be used: printable, not too long, no `:` (which would make
/// the authenticator's label ambiguous).
pub fn acceptable_user(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && !name.chars().any(|c| c.is_control() || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_differ_by_every_part() {
        let k = [3u8; 32];
        let a = binding(&k, "r", "alice", b"pw");
        assert!(same_binding(&a, &binding(&k, "r", "alice", b"pw")));
        assert!(!same_binding(&a, &binding(&k, "r", "alice", b"pw2")));
        assert!(!same_binding(&a, &binding(&k, "r", "bob", b"pw")));
        assert!(!same_binding(&a, &binding(&k, "q", "alice", b"pw")));
        assert!(!same_binding(&a, &binding(&[4u8; 32], "r", "alice", b"pw")));
    }

    #[test]
    fn user_names() {
        assert!(acceptable_user("alice"));
        assert!(acceptable_user("a&b%c#d"));
        for bad in ["", "a:b", "a\nb", "a\0b", &"x".repeat(129)] {
            assert!(!acceptable_user(bad), "{bad:?}");
        }
    }
}
