//! TOTP (RFC 6238) on top of `totp-rs`: code syntax, checking with skew, new secrets and
//! the `otpauth://` URI. Pure functions; time is passed in.

use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Length of a new secret: 160 bits, as RFC 4226 §4 recommends.
pub const SECRET_LEN: usize = 20;
/// Shortest secret checked: 80 bits, what pam_google_authenticator writes; only imported
/// secrets are shorter than [`SECRET_LEN`].
pub const MIN_IMPORTED_LEN: usize = 10;
/// Seconds per step.
pub const STEP: u64 = 30;

/// Why a submitted code was not even compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSyntax {
    /// Not exactly six ASCII digits.
    NotSixDigits,
}

/// Accepts exactly `[0-9]{6}` in ASCII: no sign, no spaces, no other digit scripts.
///
/// # Errors
/// [`CodeSyntax::NotSixDigits`] for anything else.
pub fn parse_code(input: &str) -> Result<&str, CodeSyntax> {
    if input.len() == 6 && input.bytes().all(|b| b.is_ascii_digit()) {
        Ok(input)
    } else {
        Err(CodeSyntax::NotSixDigits)
    }
}

/// Draws a new secret from the operating system's CSPRNG.
///
/// # Errors
/// The OS random source failed.
pub fn new_secret() -> Result<[u8; SECRET_LEN], getrandom::Error> {
    let mut secret = [0u8; SECRET_LEN];
    getrandom::fill(&mut secret)?;
    Ok(secret)
}

/// The secret in Base32 without padding, as apps expect it.
pub fn base32(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// The secret in groups of four characters, for typing it in by hand.
pub fn grouped(secret: &[u8]) -> String {
    let text = base32(secret);
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

fn totp(secret: &[u8], skew: u8) -> Result<Totp, totp_rs::TotpError> {
    let builder = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(STEP)
        .with_skew(u16::from(skew))
        .with_secret(Secret::from(secret.to_vec()));
    // `build` refuses secrets under 128 bits; imported ones may have 80 (what
    // pam_google_authenticator writes), checked at import.
    if (MIN_IMPORTED_LEN..16).contains(&secret.len()) {
        Ok(builder.build_noncompliant())
    } else {
        builder.build()
    }
}

/// Checks `code` at unix time `now` within `skew` steps on either side; returns the step
/// (counter) it matched, which the caller must store to refuse it a second time.
///
/// Comparison is done by `totp-rs` on the decoded value in constant time.
pub fn check(secret: &[u8], code: &str, now: u64, skew: u8) -> Option<u64> {
    let code = parse_code(code).ok()?;
    totp(secret, skew).ok()?.check(code, now)
}

/// The `otpauth://totp/ISSUER:USER?secret=…&issuer=ISSUER` URI for an authenticator app.
///
/// # Errors
/// The issuer or user contains `:` (which an app would misread) or the secret is too short.
pub fn otpauth_uri(secret: &[u8], issuer: &str, user: &str) -> Result<String, totp_rs::TotpError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(STEP)
        .with_secret(Secret::from(secret.to_vec()))
        .with_issuer(Some(issuer))
        .with_account_name(user)
        .build()?
        .to_url()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    fn code(alg: Algorithm, seed: &[u8], digits: u8, time: u64) -> String {
        let t = Builder::new()
            .with_algorithm(alg)
            .with_digits(digits)
            .with_secret(Secret::from(seed.to_vec()))
            .build();
        t.map(|t| t.generate(time).to_string()).unwrap_or_default()
    }

    /// RFC 6238 Appendix B, 8 digits, all three hash functions.
    #[test]
    fn rfc6238_vectors() {
        let table: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, sha1, sha256, sha512) in table {
            assert_eq!(code(Algorithm::SHA1, SEED_SHA1, 8, t), sha1, "SHA1 t={t}");
            assert_eq!(
                code(Algorithm::SHA256, SEED_SHA256, 8, t),
                sha256,
                "SHA256 t={t}"
            );
            assert_eq!(
                code(Algorithm::SHA512, SEED_SHA512, 8, t),
                sha512,
                "SHA512 t={t}"
            );
        }
        // The classic bug: the 20-byte seed with SHA256 gives another code.
        assert_eq!(code(Algorithm::SHA256, SEED_SHA1, 8, 59), "32247374");
    }

    /// RFC 4226 Appendix D: HOTP is TOTP with counter = time / 30.
    #[test]
    fn rfc4226_vectors() {
        let expected = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, want) in expected.iter().enumerate() {
            let time = counter as u64 * STEP;
            assert_eq!(
                code(Algorithm::SHA1, SEED_SHA1, 6, time),
                *want,
                "counter {counter}"
            );
        }
    }

    #[test]
    fn base32_of_the_rfc_seed() {
        assert_eq!(base32(SEED_SHA1), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            grouped(SEED_SHA1),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
    }

    #[test]
    fn leading_zero_is_kept() {
        assert_eq!(
            check(SEED_SHA1, "081804", 1111111109, 1),
            Some(1111111109 / STEP)
        );
    }

    #[test]
    fn skew_window_edges() {
        // 287082 is the code of counter 1 (t = 30..59).
        let step = 1u64;
        for (t, want) in [
            (step * 30, Some(1)),      // T
            (step * 30 + 30, Some(1)), // T+1 still accepts T
            (step * 30 - 30, Some(1)), // T-1 accepts T
            (step * 30 + 60, None),    // T+2
        ] {
            assert_eq!(check(SEED_SHA1, "287082", t, 1), want, "t={t}");
        }
        // 520489 is counter 9; at counter 11 it is two steps old.
        assert_eq!(check(SEED_SHA1, "520489", 11 * 30, 1), None);
        assert_eq!(check(SEED_SHA1, "520489", 7 * 30, 1), None);
        // Without skew only T passes.
        assert_eq!(check(SEED_SHA1, "287082", 60, 0), None);
    }

    #[test]
    fn steps_are_64_bit() {
        let t = 20000000000u64;
        let c = code(Algorithm::SHA1, SEED_SHA1, 6, t);
        assert_eq!(check(SEED_SHA1, &c, t, 1), Some(t / STEP));
        assert!(t / STEP > u64::from(u32::MAX) / 1000);
    }

    #[test]
    fn only_six_ascii_digits_are_codes() {
        let long = "1".repeat(1 << 20);
        for bad in [
            "+287082",
            "0287082",
            "\u{ff12}\u{ff18}\u{ff17}\u{ff10}\u{ff18}\u{ff12}",
            "",
            "28708",
            " 287082",
            "287082 ",
            "2870\u{0}82",
            "287\r\n082",
            "-28708",
            "28708a",
            &long,
        ] {
            assert_eq!(parse_code(bad), Err(CodeSyntax::NotSixDigits), "{bad:?}");
            assert_eq!(check(SEED_SHA1, bad, 30, 1), None);
        }
        assert_eq!(parse_code("287082"), Ok("287082"));
    }

    #[test]
    fn new_secrets_are_random_and_long_enough() -> Result<(), getrandom::Error> {
        let a = new_secret()?;
        let b = new_secret()?;
        assert_ne!(a, b);
        assert_eq!(base32(&a).len(), 32);
        assert!(!base32(&a).contains('='));
        Ok(())
    }

    #[test]
    fn otpauth_uri_shape() -> Result<(), totp_rs::TotpError> {
        let uri = otpauth_uri(SEED_SHA1, "Acme consoles", "alice")?;
        assert_eq!(
            uri,
            "otpauth://totp/Acme%20consoles:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Acme%20consoles"
        );
        let odd = otpauth_uri(SEED_SHA1, "Acme", "a&b%c#d")?;
        assert!(
            odd.starts_with("otpauth://totp/Acme:a%26b%25c%23d?"),
            "{odd}"
        );
        assert!(otpauth_uri(SEED_SHA1, "Acme", "a:b").is_err());
        Ok(())
    }
}
