//! Moving TOTP secrets in and out of the gate: `mfa-gate user import` of an `otpauth://`
//! URI or of a pam_google_authenticator file (`~/.google_authenticator`), and `mfa-gate
//! user export` of the users' metadata (and, only when asked, their secrets as
//! `otpauth://` URIs).
//!
//! The parsers are pure and refuse what the gate cannot verify — it checks SHA1, six
//! digits, 30-second steps, the parameters every authenticator app supports — with a
//! message that says why. An imported secret is sealed at rest like any other
//! ([`crate::store::seal`]); scratch codes become recovery codes (stored only as keyed
//! hashes).

use serde::{Deserialize, Serialize};

use crate::audit;
use crate::keys::Keys;
use crate::recovery;
use crate::store::seal::{self, Purpose};
use crate::store::{Outcome, Store, StoreError, UserOp, UserRecord};
use crate::totp;

/// The shortest secret imported: 80 bits, what pam_google_authenticator writes by default
/// (new secrets of the gate's own are 160 bits).
pub const MIN_SECRET_LEN: usize = totp::MIN_IMPORTED_LEN;

/// A secret read from an import source.
#[derive(Clone, PartialEq, Eq)]
pub struct Imported {
    pub secret: Vec<u8>,
    /// Single-use scratch codes (eight digits), imported as recovery codes.
    pub scratch: Vec<String>,
}

impl std::fmt::Debug for Imported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Imported({} secret bytes, {} scratch codes)",
            self.secret.len(),
            self.scratch.len()
        )
    }
}

/// Why an import source was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ImportError(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, ImportError> {
    Err(ImportError(why.into()))
}

/// Decodes a Base32 secret (case, spaces and `=` padding do not matter) and checks its
/// length.
fn secret_from_base32(text: &str) -> Result<Vec<u8>, ImportError> {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_ascii_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let Ok(secret) = data_encoding::BASE32_NOPAD.decode(clean.as_bytes()) else {
        return refuse("the secret is not valid Base32 (letters A-Z and digits 2-7)");
    };
    if secret.len() < MIN_SECRET_LEN {
        return refuse(format!(
            "the secret is only {} bits long; the gate imports secrets of at least {} bits",
            secret.len() * 8,
            MIN_SECRET_LEN * 8
        ));
    }
    if secret.len() > 128 {
        return refuse("the secret is longer than 1024 bits");
    }
    Ok(secret)
}

/// Reads an `otpauth://totp/LABEL?secret=…` URI. `algorithm` (SHA1, SHA256, SHA512),
/// `digits` (6, 8) and `period` are checked: only SHA1, 6 digits and 30 s are what the
/// gate verifies, the rest is refused with the reason.
///
/// # Errors
/// Anything but a TOTP URI the gate can verify.
pub fn parse_otpauth(text: &str) -> Result<Imported, ImportError> {
    let Ok(uri) = url::Url::parse(text.trim()) else {
        return refuse("this is not a URI; expected otpauth://totp/LABEL?secret=BASE32…");
    };
    if uri.scheme() != "otpauth" {
        return refuse(format!(
            "the scheme is {:?}; expected otpauth://totp/…",
            uri.scheme()
        ));
    }
    match uri.host_str().map(str::to_ascii_lowercase).as_deref() {
        Some("totp") => {}
        Some("hotp") => {
            return refuse(
                "this is an HOTP (counter-based) secret; the gate verifies time-based (TOTP) codes only — enroll the user anew",
            )
        }
        other => return refuse(format!("unknown OTP type {other:?}; expected otpauth://totp/…")),
    }
    let mut secret = None;
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in uri.query_pairs() {
        let key = key.to_ascii_lowercase();
        if seen.contains(&key) {
            return refuse(format!("the parameter {key:?} is given twice"));
        }
        seen.push(key.clone());
        match key.as_str() {
            "secret" => secret = Some(secret_from_base32(&value)?),
            "algorithm" => match value.to_ascii_uppercase().as_str() {
                "SHA1" => {}
                "SHA256" | "SHA512" => {
                    return refuse(format!(
                        "algorithm={value}: the gate verifies SHA1 codes only (what every authenticator app supports); enroll the user anew instead"
                    ))
                }
                _ => return refuse(format!("unknown algorithm {value:?}; expected SHA1")),
            },
            "digits" => match value.as_ref() {
                "6" => {}
                "8" => {
                    return refuse(
                        "digits=8: the gate verifies six-digit codes only; enroll the user anew instead",
                    )
                }
                _ => return refuse(format!("digits={value} is not valid; expected 6")),
            },
            "period" => {
                if value.as_ref() != "30" {
                    return refuse(format!(
                        "period={value}: the gate verifies 30-second codes only; enroll the user anew instead"
                    ));
                }
            }
            // The label's issuer, repeated; not needed to verify codes.
            "issuer" | "image" => {}
            other => return refuse(format!("unknown parameter {other:?} in the URI")),
        }
    }
    match secret {
        Some(secret) => Ok(Imported {
            secret,
            scratch: Vec::new(),
        }),
        None => refuse("the URI has no secret= parameter"),
    }
}

/// Reads a pam_google_authenticator file: the Base32 secret on the first line, option
/// lines starting with `"`, then eight-digit scratch codes. A counter-based (HOTP) file
/// and a step other than 30 s are refused.
///
/// # Errors
/// Anything but a TOTP file the gate can verify, with the line at fault.
pub fn parse_google_authenticator(text: &str) -> Result<Imported, ImportError> {
    let mut lines = text.lines().enumerate();
    let Some((_, first)) = lines.next() else {
        return refuse("the file is empty");
    };
    let secret =
        secret_from_base32(first).map_err(|e| ImportError(format!("line 1 (the secret): {e}")))?;
    let mut totp_auth = false;
    let mut scratch = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(option) = line.strip_prefix('"') {
            let mut words = option.split_whitespace();
            match words.next().unwrap_or("") {
                "TOTP_AUTH" => totp_auth = true,
                "HOTP_COUNTER" => {
                    return refuse(format!(
                        "line {n}: HOTP_COUNTER: this is a counter-based (HOTP) file; the gate verifies time-based (TOTP) codes only — enroll the user anew"
                    ))
                }
                "STEP_SIZE" => {
                    if words.next() != Some("30") {
                        return refuse(format!(
                            "line {n}: the gate verifies 30-second codes only (STEP_SIZE 30)"
                        ));
                    }
                }
                // Limits of the PAM module; the gate applies its own.
                "RATE_LIMIT" | "WINDOW_SIZE" | "DISALLOW_REUSE" => {}
                other => return refuse(format!("line {n}: unknown option {other:?}")),
            }
            continue;
        }
        if line.len() == 8 && line.bytes().all(|b| b.is_ascii_digit()) {
            if !scratch.iter().any(|s| s == line) {
                scratch.push(line.to_string());
            }
            continue;
        }
        return refuse(format!(
            "line {n}: neither an option line (\") nor an eight-digit scratch code"
        ));
    }
    if !totp_auth {
        return refuse(
            "the file has no \" TOTP_AUTH line, so it is not a time-based (TOTP) secret",
        );
    }
    Ok(Imported { secret, scratch })
}

/// `otpauth://totp/ISSUER:USER?secret=…&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`,
/// for secrets of any length the gate verifies (imported ones may be shorter than the
/// 128 bits `totp-rs` insists on for its own URIs).
pub fn otpauth_uri(secret: &[u8], issuer: &str, user: &str) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let label = format!(
        "{}:{}",
        utf8_percent_encode(issuer, NON_ALPHANUMERIC),
        utf8_percent_encode(user, NON_ALPHANUMERIC)
    );
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("secret", &totp::base32(secret))
        .append_pair("issuer", issuer)
        .append_pair("algorithm", "SHA1")
        .append_pair("digits", "6")
        .append_pair("period", "30")
        .finish();
    format!("otpauth://totp/{label}?{query}")
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportResult {
    Done,
    /// The user has a secret already: reset them first.
    AlreadyEnrolled,
}

/// Seals `imported` for `realm`/`user` and stores it (with its scratch codes as recovery
/// codes) for a user who is not enrolled; ends the user's logins in progress; audited.
///
/// # Errors
/// The secret cannot be sealed, or the store failed.
pub async fn import(
    store: &dyn Store,
    keys: &Keys,
    realm: &str,
    user: &str,
    imported: &Imported,
    by: &str,
    now: u64,
) -> Result<ImportResult, StoreError> {
    let sealed = seal::seal(&keys.seal, Purpose::Active, realm, user, &imported.secret)
        .map_err(|e| StoreError::Io(format!("cannot seal the imported secret: {e}")))?;
    let hashes = recovery::hashes(&keys.recovery, realm, user, &imported.scratch);
    let op = UserOp::Import {
        secret: &sealed,
        recovery: &hashes,
    };
    let outcome = store.apply(realm, user, op, now).await?;
    let result = match outcome {
        Outcome::Applied => {
            store.drop_pending(realm, user).await?;
            ImportResult::Done
        }
        _ => ImportResult::AlreadyEnrolled,
    };
    let detail = format!(
        "{}; {} recovery codes",
        if result == ImportResult::Done {
            "done"
        } else {
            "refused: already enrolled"
        },
        hashes.len()
    );
    audit::info(
        "imported",
        &audit::Event {
            realm: Some(realm),
            user: Some(user),
            by: Some(by),
            detail: Some(&detail),
            ..audit::Event::default()
        },
    );
    Ok(result)
}

/// One user in an export file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedUser {
    pub realm: String,
    pub user: String,
    pub enrolled: bool,
    pub enrolled_at: Option<u64>,
    pub enrolled_from: Option<String>,
    pub last_login: Option<u64>,
    pub recovery_codes_left: usize,
    /// The secret as an `otpauth://` URI: only in an export `--with-secrets`. Recovery
    /// codes are stored as hashes and cannot be exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otpauth: Option<String>,
}

/// The users of `target` (one user, or all users of all realms when `None`), with their
/// secrets opened when `with_secrets`; audited.
///
/// # Errors
/// The store failed, or a secret does not open (fail closed: nothing is exported).
pub async fn export(
    store: &dyn Store,
    keys: &Keys,
    issuer: &str,
    target: Option<(&str, &str)>,
    with_secrets: bool,
    by: &str,
) -> Result<Vec<ExportedUser>, StoreError> {
    let records: Vec<(String, String, UserRecord)> = match target {
        None => store.users(None).await?,
        Some((realm, user)) => store
            .user(realm, user)
            .await?
            .map(|r| (realm.to_string(), user.to_string(), r))
            .into_iter()
            .collect(),
    };
    let mut out = Vec::with_capacity(records.len());
    for (realm, user, r) in records {
        let otpauth = match (&r.secret, with_secrets) {
            (Some(sealed), true) => {
                let secret = seal::open(&keys.seal, Purpose::Active, &realm, &user, sealed)
                    .map_err(|e| {
                        StoreError::Corrupt(format!(
                            "the secret of {realm}/{user} cannot be opened: {e}"
                        ))
                    })?;
                Some(otpauth_uri(&secret, issuer, &user))
            }
            _ => None,
        };
        out.push(ExportedUser {
            enrolled: r.enrolled(),
            enrolled_at: r.enrolled_at,
            enrolled_from: r.enrolled_from.clone(),
            last_login: r.last_login,
            recovery_codes_left: r.recovery.len(),
            otpauth,
            realm,
            user,
        });
    }
    let detail = format!(
        "{} users, {}",
        out.len(),
        if with_secrets {
            "with secrets"
        } else {
            "without secrets"
        }
    );
    let what = target.map(|(r, u)| format!("{r}/{u}"));
    audit::warn(
        "exported",
        &audit::Event {
            realm: target.map(|(r, _)| r),
            user: what.as_deref().and(target.map(|(_, u)| u)),
            by: Some(by),
            detail: Some(&detail),
            ..audit::Event::default()
        },
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn otpauth_uris_the_gate_can_verify_are_read() {
        let ok = parse_otpauth(&format!(
            "otpauth://totp/Acme:alice?secret={SEED_B32}&issuer=Acme&algorithm=SHA1&digits=6&period=30"
        ));
        assert_eq!(ok.map(|i| i.secret), Ok(b"12345678901234567890".to_vec()));
        let lower = parse_otpauth(&format!(
            "otpauth://totp/x?secret={}",
            SEED_B32.to_lowercase()
        ));
        assert!(lower.is_ok(), "{lower:?}");
    }

    #[test]
    fn otpauth_uris_the_gate_cannot_verify_are_refused_with_the_reason() {
        let cases = [
            ("otpauth://hotp/x?secret=GEZDGNBVGY3TQOJQ&counter=1", "HOTP"),
            (
                "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ&algorithm=SHA256",
                "SHA1 codes only",
            ),
            (
                "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ&algorithm=SHA512",
                "SHA1 codes only",
            ),
            (
                "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ&algorithm=MD5",
                "unknown algorithm",
            ),
            (
                "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ&digits=8",
                "six-digit",
            ),
            (
                "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ&digits=7",
                "not valid",
            ),
            (
                "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ&period=60",
                "30-second",
            ),
            ("otpauth://totp/x?secret=GEZDGNBV", "only 40 bits"),
            ("otpauth://totp/x?secret=not*base32", "Base32"),
            ("otpauth://totp/x?issuer=A", "no secret"),
            (
                "otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ&secret=GEZDGNBVGY3TQOJQ",
                "twice",
            ),
            ("https://example.com/?secret=GEZDGNBVGY3TQOJQ", "scheme"),
            ("alice", "not a URI"),
        ];
        for (uri, why) in cases {
            let e = parse_otpauth(uri).err().map(|e| e.0).unwrap_or_default();
            assert!(e.contains(why), "{uri}: {e}");
        }
    }

    #[test]
    fn google_authenticator_files_give_the_secret_and_scratch_codes() {
        let file = format!(
            "{SEED_B32}\n\" RATE_LIMIT 3 30 1767225600\n\" WINDOW_SIZE 17\n\" DISALLOW_REUSE 58907520\n\" TOTP_AUTH\n12345678\n87654321\n"
        );
        let i = parse_google_authenticator(&file);
        assert_eq!(
            i.map(|i| (i.secret, i.scratch)),
            Ok((
                b"12345678901234567890".to_vec(),
                vec!["12345678".to_string(), "87654321".to_string()]
            ))
        );
        // The PAM module's default: an 80-bit secret.
        assert!(parse_google_authenticator("GEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n").is_ok());
    }

    #[test]
    fn google_authenticator_files_the_gate_cannot_verify_are_refused() {
        let cases = [
            (
                "GEZDGNBVGY3TQOJQ\n\" HOTP_COUNTER 1\n12345678\n",
                "line 2: HOTP_COUNTER",
            ),
            ("GEZDGNBVGY3TQOJQ\n\" RATE_LIMIT 3 30\n", "no \" TOTP_AUTH"),
            (
                "GEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n\" STEP_SIZE 60\n",
                "line 3: the gate verifies 30-second",
            ),
            ("GEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n1234\n", "line 3: neither"),
            (
                "GEZDGNBVGY3TQOJQ\n\" TOTP_AUTH\n\" SOMETHING\n",
                "unknown option",
            ),
            ("", "empty"),
            ("GEZ\n\" TOTP_AUTH\n", "line 1"),
        ];
        for (file, why) in cases {
            let e = parse_google_authenticator(file)
                .err()
                .map(|e| e.0)
                .unwrap_or_default();
            assert!(e.contains(why), "{file:?}: {e}");
        }
    }

    #[test]
    fn exported_uris_read_back() {
        let secret = b"0123456789".to_vec();
        let uri = otpauth_uri(&secret, "Acme consoles", "a:b&c");
        assert!(
            uri.starts_with("otpauth://totp/Acme%20consoles:a%3Ab%26c?"),
            "{uri}"
        );
        assert_eq!(parse_otpauth(&uri).map(|i| i.secret), Ok(secret));
    }
}
