//! Who a request is about: the one spelling of a user name, plain form-field names, and
//! the binding of a session to the first-factor credentials it was opened with.
//!
//! A binding is a keyed hash of whatever proves the first factor (the Basic credentials,
//! the console's session cookie), so a session opened with one set of credentials is not
//! accepted with another.

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use http::header::AUTHORIZATION;
use http::HeaderMap;
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

/// Whether a form-field name reads the same on every stack: only ASCII letters, digits,
/// `_`, `-`, `$` and `:` (PHP turns ` `, `.` and `[` into `_` and drops leading spaces;
/// other stacks differ on the rest).
pub fn plain_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$' | b':'))
}

/// Credentials from an `Authorization: Basic` header.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, <password>)", self.user)
    }
}

/// Reads `Authorization: Basic …`. `None` when there is no such header; `Some(Err)` when
/// it is there but malformed.
pub fn credentials(headers: &HeaderMap) -> Option<Result<Credentials, ()>> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return Some(Err(()));
    }
    Some(parse(value.as_bytes()))
}

fn parse(value: &[u8]) -> Result<Credentials, ()> {
    let text = std::str::from_utf8(value).map_err(|_| ())?;
    let (scheme, token) = text.trim().split_once(' ').ok_or(())?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(());
    }
    let decoded = B64.decode(token.trim()).map_err(|_| ())?;
    let decoded = String::from_utf8(decoded).map_err(|_| ())?;
    let (user, password) = decoded.split_once(':').ok_or(())?;
    Ok(Credentials {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// The user (in its canonical spelling) and the session binding of the Basic
/// credentials in `headers`, for `realm`; `None` without usable credentials.
pub fn basic_identity(
    key: &[u8; 32],
    realm: &str,
    fold_case: bool,
    headers: &HeaderMap,
) -> Option<(String, String)> {
    let c = credentials(headers)?.ok()?;
    let user = canonical_user(&c.user, fold_case)?;
    let bind = binding(key, realm, &user, c.password.as_bytes());
    Some((user, bind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

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

    fn header(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
        );
        h
    }

    #[test]
    fn parses_basic_credentials() {
        let h = header(&format!("Basic {}", B64.encode("alice:pa:ss")));
        let c = credentials(&h).and_then(Result::ok);
        assert_eq!(
            c,
            Some(Credentials {
                user: "alice".into(),
                password: "pa:ss".into()
            })
        );
        assert!(credentials(&HeaderMap::new()).is_none());
    }

    #[test]
    fn malformed_credentials_are_errors() {
        for bad in [
            "Bearer abc",
            "Basic !!!",
            "Basic",
            &format!("Basic {}", B64.encode("nocolon")),
        ] {
            assert!(matches!(credentials(&header(bad)), Some(Err(()))), "{bad}");
        }
    }
}
