//! First-factor modes: how the gate learns that the console accepted a password.
//!
//! Each mode yields the user name and a *binding*: a keyed hash of whatever proves the
//! first factor (the Basic credentials), so a session opened with one set of credentials
//! is not accepted with another.

pub mod basic;
pub mod form;
pub mod login_body;

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

/// The one spelling of a user name the gate keys enrollments by, or `None` when the name
/// is not in its standard form (surrounding spaces, a Unicode form a console would fold,
/// such as full-width letters) and so must be refused rather than treated as a new user.
/// With `fold_case` (the default) `Alice` and `alice` are one user, as most consoles
/// (Jenkins, LDAP, case-insensitive databases) treat them.
pub fn canonical_user(name: &str, fold_case: bool) -> Option<String> {
    use unicode_normalization::UnicodeNormalization;
    if !acceptable_user(name) || name.trim() != name || name.nfkc().ne(name.chars()) {
        return None;
    }
    // Lower-casing can lengthen a name or upset its normal form (U+0130 → "i\u{307}"):
    // normalise again and check the result, so the stored name is itself canonical.
    let canonical: String = if fold_case {
        name.to_lowercase().nfkc().collect()
    } else {
        name.to_string()
    };
    acceptable_user(&canonical).then_some(canonical)
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
    fn user_names_have_one_spelling() {
        assert_eq!(canonical_user("Alice", true).as_deref(), Some("alice"));
        assert_eq!(canonical_user("Alice", false).as_deref(), Some("Alice"));
        assert_eq!(canonical_user("jürgen", true).as_deref(), Some("jürgen"));
        for variant in ["alice ", " alice", "\u{ff41}lice", "a\u{0308}", "ﬁ"] {
            assert_eq!(canonical_user(variant, true), None, "{variant:?}");
        }
        // Found by fuzzing: lower-casing U+0130 grows the name and can upset its normal
        // form; the canonical name must itself be canonical (or the name is refused).
        let long = format!("\u{130}{}", "a".repeat(126));
        for name in [long.as_str(), "\u{130}\u{338}", "\u{130}x"] {
            if let Some(c) = canonical_user(name, true) {
                assert_eq!(
                    canonical_user(&c, true).as_deref(),
                    Some(c.as_str()),
                    "{name:?}"
                );
                assert!(acceptable_user(&c));
            }
        }
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
