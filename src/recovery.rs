//! Recovery codes: ten single-use codes shown once after enrollment, stored only as keyed
//! hashes. A code is ten characters of the Base32 alphabet (50 random bits), shown as
//! `abcde-fghij`; case, spaces and dashes do not matter when it is typed back. Scratch
//! codes imported from pam_google_authenticator (eight digits) are recovery codes too.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;

use crate::keys::keyed_hash;

/// How many codes a user gets.
pub const COUNT: usize = 10;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Ten new codes (display form) from the OS CSPRNG.
///
/// # Errors
/// The OS random generator failed.
pub fn generate() -> Result<Vec<String>, getrandom::Error> {
    let mut out = Vec::with_capacity(COUNT);
    for _ in 0..COUNT {
        let mut bytes = [0u8; 10];
        getrandom::fill(&mut bytes)?;
        let chars: String = bytes
            .iter()
            .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
            .collect();
        out.push(format!("{}-{}", &chars[..5], &chars[5..]));
    }
    Ok(out)
}

/// The canonical form of typed input, if it can be a recovery code at all.
pub fn normalize(input: &str) -> Option<String> {
    if input.len() > 32 {
        return None;
    }
    let code: String = input
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let ours = code.len() == 10 && code.bytes().all(|b| ALPHABET.contains(&b));
    // Scratch codes imported from pam_google_authenticator: eight digits.
    let scratch = code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit());
    (ours || scratch).then_some(code)
}

/// The stored form of a code for (`realm`, `user`).
pub fn hash(key: &[u8; 32], realm: &str, user: &str, normalized: &str) -> String {
    B64URL.encode(keyed_hash(
        key,
        &[
            b"recovery",
            realm.as_bytes(),
            user.as_bytes(),
            normalized.as_bytes(),
        ],
    ))
}

/// The stored hashes of display-form codes.
pub fn hashes(key: &[u8; 32], realm: &str, user: &str, codes: &[String]) -> Vec<String> {
    codes
        .iter()
        .filter_map(|c| normalize(c))
        .map(|c| hash(key, realm, user, &c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_random_normalisable_and_hashed_per_user() -> Result<(), getrandom::Error> {
        let codes = generate()?;
        assert_eq!(codes.len(), COUNT);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), COUNT);
        for c in &codes {
            assert_eq!(c.len(), 11);
            assert_eq!(
                normalize(&c.to_uppercase().replace('-', " ")),
                Some(c.replace('-', ""))
            );
        }
        let k = [5u8; 32];
        let h = hashes(&k, "r", "u", &codes);
        assert_eq!(h.len(), COUNT);
        assert_ne!(
            hash(&k, "r", "u", "aaaaaaaaaa"),
            hash(&k, "r", "v", "aaaaaaaaaa")
        );
        assert!(!h
            .iter()
            .any(|x| codes.iter().any(|c| x.contains(&c.replace('-', "")))));
        Ok(())
    }

    #[test]
    fn other_input_is_not_a_recovery_code() {
        for bad in [
            "123456",
            "",
            "abcde-fghi",
            "abcde-fghij1",
            "abcde-fgh1j",
            &"a".repeat(100),
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
